// Command webpubsub is a self-hosted server wire-compatible with Azure Web PubSub.
//
//	webpubsub [serve] [--config FILE] [--listen ADDR] [--access-key KEY]
//	webpubsub token --hub H [--user U] [--role R]... [--group G]... [--ttl 1h]
//	webpubsub version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/webpubsub/webpubsub/bench"
	"github.com/webpubsub/webpubsub/engine"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "token":
		return token(args, stdout, stderr)
	case "bench":
		return benchCmd(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "webpubsub %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "webpubsub: unknown command %q\n", cmd)
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  webpubsub [serve] [--config FILE] [--listen ADDR] [--access-key KEY] [--admin ADDR] [--log-level LEVEL]
  webpubsub token --hub HUB [--user ID] [--role ROLE]... [--group GROUP]... [--ttl 1h] [--connection-string CS]
  webpubsub version
Run "webpubsub COMMAND --help" for a command's flags.
`)
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var src configSource
	fs.StringVar(&src.path, "config", "", "configuration file (YAML or JSON); none means development mode")
	fs.StringVar(&src.listen, "listen", "", "address of the public port, overrides listen[0].address (default 127.0.0.1:8080)")
	fs.StringVar(&src.accessKey, "access-key", "", "primary access key, overrides keys.primary")
	fs.StringVar(&src.logLevel, "log-level", "", "debug, info, warn or error; overrides log.level (default info)")
	checkOnly := fs.Bool("check", false, "validate the configuration, print the effective settings and exit")
	fs.StringVar(&src.admin, "admin", "", "address of the admin listener (/livez, /readyz, /metrics; /debug/pprof/ with admin.pprof), overrides admin.address; off by default")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if src.admin != "" {
		if err := checkListenAddress(src.admin); err != nil {
			fmt.Fprintf(stderr, "webpubsub: --admin %q: %v\n", src.admin, err)
			return exitUsage
		}
	}
	src.environ = os.Environ
	run, err := src.load()
	if err != nil {
		fmt.Fprintf(stderr, "webpubsub: %v\n", err)
		return exitUsage
	}
	cfg := run.cfg
	level := new(slog.LevelVar)
	level.Set(run.level)
	log := newLogger(stderr, run.info.Log.Format, level)
	cfg.Logger = log
	if *checkOnly {
		fmt.Fprintf(stdout, "configuration OK: listen=%s hubs=%d dev=%v\n", cfg.Listen, len(cfg.Hubs), run.dev)
		return exitOK
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// Each gnet loop holds its P while it waits in epoll_wait, and the runtime only
		// takes it back after up to 10 ms. With one P per core the REST workers and the
		// upstream client then wait for a P: measured 2.2 ms p50 echo round trip at
		// GOMAXPROCS=2, 0.23 ms at 4. Keep one loop per core and as many spare Ps.
		runtime.GOMAXPROCS(2 * cfg.Loops)
	}
	if os.Getenv("GOGC") == "" {
		// Density over CPU: the garbage of a connect storm (token checks, handshake
		// buffers) otherwise lets the heap grow to twice the live set. GOGC=50 cut idle
		// RSS per connection from 2.2 to 1.9 KiB at N = 10 000 (BENCHMARKS.md).
		debug.SetGCPercent(50)
	}
	log.Info("config loaded", "path", run.info.Path, "hubs", len(cfg.Hubs), "overrides", run.info.Overrides,
		"logFormat", run.info.Log.Format, "logLevel", run.level.String(), "dev", run.dev)
	srv, err := engine.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "webpubsub: %v\n", err)
		return exitUsage
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintf(stderr, "webpubsub: %v (is another process using the port? pick one with --listen)\n", err)
		return exitRuntime
	}
	// Before the listening line: whoever reads it may send SIGHUP, whose default action
	// ends the process.
	stopReload := reloadOnHangup(srv, src, run, level, log)
	defer stopReload()
	addr := srv.Addr()
	endpoint := cfg.PublicEndpoint
	if endpoint == "" {
		host := addr.IP.String()
		if addr.IP.IsUnspecified() {
			host = "127.0.0.1"
		}
		endpoint = "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
	}
	key := "<keys.primary>"
	if run.dev {
		key = cfg.Keys.Primary
		fmt.Fprintln(stdout, "webpubsub: development mode: no configuration, using the well-known development access key (never expose this port)")
	}
	log.Info("listening", "listener", addr.String(), "endpoint", endpoint)
	fmt.Fprintf(stdout, "webpubsub: listening on http://%s\n", addr)
	if a := srv.AdminAddr(); a != nil {
		fmt.Fprintf(stdout, "webpubsub: admin listener on http://%s (/livez, /readyz, /metrics", a)
		if cfg.Admin.Pprof {
			fmt.Fprint(stdout, ", /debug/pprof/")
		}
		fmt.Fprintln(stdout, ")")
	}
	fmt.Fprintf(stdout, "Connection string: Endpoint=%s;AccessKey=%s;Version=1.0;\n", endpoint, key)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		fmt.Fprintf(stdout, "webpubsub: %v received, draining (send it again, or press Ctrl-C, to close every connection at once)\n", s)
	case <-srv.Done():
		fmt.Fprintf(stderr, "webpubsub: server stopped: %v\n", srv.Err())
		return exitRuntime
	}
	return drain(srv, sig, stdout, stderr)
}

// drain runs the shutdown sequence after the first SIGTERM or SIGINT
// (operations.md §2); another signal closes the remaining connections at once. The
// exit code is 1 when shutdown.timeoutSeconds passed before the drain finished.
func drain(srv *engine.Server, sig <-chan os.Signal, stdout, stderr io.Writer) int {
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	for {
		select {
		case s := <-sig:
			fmt.Fprintf(stdout, "webpubsub: %v received again, closing the remaining connections at once\n", s)
			srv.Hurry()
		case err := <-done:
			if err != nil {
				fmt.Fprintf(stderr, "webpubsub: shutdown: %v\n", err)
				return exitRuntime
			}
			fmt.Fprintln(stdout, "webpubsub: stopped")
			return exitOK
		}
	}
}

// configSource is where the configuration comes from: the file, the environment and the
// flags that override them. Startup and every SIGHUP read it the same way.
type configSource struct {
	path, listen, accessKey, logLevel, admin string
	environ                                  func() []string
}

// loadedConfig is one reading of a configSource.
type loadedConfig struct {
	cfg   engine.Config // without Logger
	info  fileInfo
	dev   bool       // no key configured: the development key on loopback
	level slog.Level // --log-level, else log.level, else info
}

// load reads the file and the environment and applies the flags. An error is one line
// that names the offending key or flag.
func (src configSource) load() (loadedConfig, error) {
	cfg, info, err := loadConfig(src.path, src.environ())
	if err != nil {
		return loadedConfig{}, err
	}
	run := loadedConfig{info: info, level: slog.LevelInfo}
	if info.Log.LevelSet {
		run.level = info.Log.Level
	}
	if src.logLevel != "" {
		if run.level, err = parseLevel(src.logLevel); err != nil {
			return loadedConfig{}, fmt.Errorf("--log-level %q: %w", src.logLevel, err)
		}
	}
	if src.listen != "" {
		cfg.Listen = src.listen
	}
	if src.accessKey != "" {
		cfg.Keys.Primary = src.accessKey
	}
	if src.admin != "" {
		cfg.Admin.Address = src.admin
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Keys.Primary == "" && !cfg.Auth.DisableAccessKeys {
		if !isLoopback(cfg.Listen) {
			return loadedConfig{}, fmt.Errorf("refusing to listen on %s without an access key: set keys.primary in the config file, WPS_KEYS__PRIMARY, or --access-key (the development key is only used on loopback)", cfg.Listen)
		}
		run.dev = true
		cfg.Keys.Primary = engine.DevAccessKey
	}
	cfg.RequestOrigin = info.RequestOrigin
	if os.Getenv("GOMAXPROCS") == "" && cfg.Loops == 0 {
		cfg.Loops = runtime.NumCPU() // see serve: one loop per core, twice as many Ps
	}
	run.cfg = cfg
	return run, nil
}

// newLogger returns the server's logger: slog text or JSON lines (operations.md §5) on w
// at level, which SIGHUP may change.
func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// reloadOnHangup reloads the configuration on every SIGHUP (operations.md §2): it reads
// src again (same file, environment and flags), sets the log level and hands the rest to
// srv.Reload. What needs a restart is logged at warn and ignored; an invalid file is one
// error line and the running configuration stays. It returns a function that stops it.
func reloadOnHangup(srv *engine.Server, src configSource, running loadedConfig, level *slog.LevelVar, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			next, err := src.load()
			if err == nil && next.dev && !running.dev {
				// Development mode is chosen at startup only: a file that lost its key must
				// not switch a running server to the well-known development key.
				err = errors.New("config: keys.primary: required (the development key is only used when the server starts without one)")
			}
			if err != nil {
				log.Error("config reload rejected, the running configuration stays", "err", err)
				continue
			}
			res, err := srv.Reload(next.cfg)
			if err != nil {
				log.Error("config reload rejected, the running configuration stays", "err", err)
				continue
			}
			if next.info.Log.Format != running.info.Log.Format {
				res.NeedRestart = append(res.NeedRestart, "log.format")
			}
			for _, name := range res.NeedRestart {
				log.Warn("config change needs a restart, ignored", "key", name)
			}
			if next.level != level.Level() {
				level.Set(next.level)
				res.Changed = append(res.Changed, "log.level")
			}
			log.Info("config reloaded", "path", src.path, "changed", res.Changed)
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func token(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hub := fs.String("hub", "", "hub name (required)")
	user := fs.String("user", "", "user id (sub claim)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	cs := fs.String("connection-string", os.Getenv("WEBPUBSUB_CONNECTION_STRING"), "connection string (default $WEBPUBSUB_CONNECTION_STRING, else the development one)")
	var roles, groups listFlag
	fs.Var(&roles, "role", "role, e.g. webpubsub.joinLeaveGroup (repeatable)")
	fs.Var(&groups, "group", "group joined at connect (repeatable)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *hub == "" {
		fmt.Fprintln(stderr, "webpubsub token: --hub is required")
		return exitUsage
	}
	if *cs == "" {
		*cs = "Endpoint=http://127.0.0.1:8080;AccessKey=" + engine.DevAccessKey + ";Version=1.0;"
	}
	svc, err := bench.ParseConnectionString(*cs)
	if err != nil {
		fmt.Fprintf(stderr, "webpubsub token: %v\n", err)
		return exitUsage
	}
	endpoint := svc.Endpoint
	tok, err := engine.SignClientToken(svc.AccessKey, endpoint, *hub, *user, roles, groups, time.Now(), *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "webpubsub token: %v\n", err)
		return exitUsage
	}
	u, _ := url.Parse(endpoint)
	scheme := "wss"
	if u.Scheme == "http" {
		scheme = "ws"
	}
	base := strings.TrimSuffix(u.Host+u.Path, "/")
	fmt.Fprintf(stdout, "%s://%s/client/hubs/%s?access_token=%s\n", scheme, base, url.PathEscape(*hub), tok)
	return exitOK
}
