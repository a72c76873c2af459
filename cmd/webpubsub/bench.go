package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/webpubsub/webpubsub/bench"
	"github.com/webpubsub/webpubsub/engine"
)

const benchUsage = `usage:
  webpubsub bench idle    --server-pid PID [--conns N] [--hold 10s] [--protocol P] [common flags]
  webpubsub bench connect [--conns N] [--concurrency C] [--server-pid PID] [--protocol P] [common flags]
  webpubsub bench fanout  [--members N] [--messages M] [--rate R] [--size B] [--publisher rest|client]
                          [--target group|all] [--member-groups G] [--filter ODATA [--filter-name NAME]]
                          [--protocol P] [common flags]
  webpubsub bench chat    [--groups G] [--members-per-group K] [--messages M] [--rate R] [--size B]
                          [--protocol P] [common flags]
  webpubsub bench echo    [--conns N] [--messages M] [--rate R] [--size B] [--upstream-listen ADDR]
                          [--upstream-delay D] [--print-config] [common flags]
  webpubsub bench drain   --server-pid PID [--conns N] [--reconnect-to CONNECTION_STRING]
                          [--protocol P] [common flags]

Load-tests a running server over real sockets:
  idle     hold N idle connections; server RSS per connection (needs --server-pid, same host)
  connect  connect storm; handshakes/s, handshake latency, failures by kind
  fanout   N members of one group, M group sends at R/s of B bytes through REST or a client;
           deliveries/s, completeness, end-to-end latency p50/p99/p999/max, server CPU per
           million deliveries. --target all sends to the whole hub through REST instead, with
           member i (user bench-<i>) in group g<i mod G>; --filter adds an OData filter, and
           the bench expects each send at the members the filter selects
  chat     G groups of K members; every member sends M messages to its group at R/s with
           sendToGroup; deliveries/s, completeness, latency
  echo     N plain WebSocket clients (no subprotocol) each send M text messages at R/s; the
           server forwards each to the bench's built-in upstream as the "message" event and
           sends its reply (the same text) back; round trips/s, completeness, round-trip
           latency p50/p99/p999/max, the way in (client to upstream), server CPU per round
           trip, and the events the upstream received. --upstream-delay makes it a slow
           upstream (for fanout on another hub meanwhile). See "webpubsub bench echo --help".
  drain    hold N connections, send SIGTERM to the server (--server-pid) and measure its drain
           as the clients see it: signal to first and last close and to the server's exit,
           closes per second (most in any 1 s window, median of whole seconds), close codes.
           --reconnect-to makes every closed client reconnect to a second server at once and
           reports that wave's pace the same way. The server must run on this host.

--protocol is the subprotocol of the idle, connect, fanout, chat and drain clients: json (the
default), json.reliable, protobuf or protobuf.reliable. Reliable clients acknowledge the
highest sequenceId they have seen once a second when it changed, and at once when it is
more than 300 past the last acknowledgement, as the JS SDK does. Benchmark names carry
protocol=P, so benchstat can put the protocols side by side (-col /protocol).

The clients run on gnet event loops in worker processes (this binary, re-executed), at
most --conns-per-worker connections each, so no process passes the open-file limit
(ulimit -n). Source addresses are spread over 127.0.0.1-127.0.0.254 against a loopback
server. Every run stops by itself: after the count, the planned time and --timeout.
The bench reports its own CPU (itself and its workers) beside the server's.
--scrape URL plays a Prometheus server during the run: a GET of URL (the server's admin
/metrics) every --scrape-interval (1s); the result reports the scrapes that succeeded and
keeps its benchmark name, so benchstat compares a run with a scraper to one without.
The server is given by --connection-string or $WEBPUBSUB_CONNECTION_STRING.
With $WEBPUBSUB_BENCH_WORKER_CPUPROFILE=PREFIX each worker writes a CPU profile to PREFIX.PID.
Run "webpubsub bench SCENARIO --help" for all flags.
`

// echoUsage is the two-step use of the echo scenario, in its --help.
const echoUsage = `
The echo scenario needs a server whose hub has an event handler pointing at the bench's
built-in upstream, so the server is configured and started first, in two steps:

  webpubsub bench echo --hub echo --upstream-listen 127.0.0.1:8081 --print-config > echo.yaml
  webpubsub serve --config echo.yaml &
  webpubsub bench echo --hub echo --upstream-listen 127.0.0.1:8081 --conns 1000 --messages 20 --rate 5

The printed YAML holds only hubs.<hub>.eventHandlers: urlTemplate
http://ADDR/upstream/{hub}/{event}, every user event, connected and disconnected; merge it
into your own configuration file if you have one. The upstream answers the validation
OPTIONS (WebHook-Allowed-Origin: *), connect (204), connected and disconnected (200), and
echoes each message (200, text/plain, the same body) after --upstream-delay.

A slow upstream beside a fan-out on another hub (the server configured for hub slow):
  webpubsub bench echo --hub slow --upstream-delay 2s --conns 1000 --messages 10 --rate 5 &
  webpubsub bench fanout --hub fast --members 1000 --messages 50 --rate 5
`

// defaultUpstreamListen is where `bench echo` runs its upstream unless told otherwise: a
// fixed port, because the server's configuration names it before the bench starts.
const defaultUpstreamListen = "127.0.0.1:8081"

// benchCmd runs "webpubsub bench SCENARIO [flags]".
func benchCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, benchUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	scenario, args := args[0], args[1:]
	switch scenario {
	case "worker":
		// Hidden: a worker process the parent starts; it speaks JSON lines on stdin/stdout.
		return bench.WorkerMain(os.Stdin, stdout)
	}
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: webpubsub bench %s [flags]\n", scenario)
		fs.PrintDefaults()
		if scenario == "echo" {
			fmt.Fprint(stderr, echoUsage)
		}
	}
	cs := fs.String("connection-string", os.Getenv("WEBPUBSUB_CONNECTION_STRING"), "connection string (default $WEBPUBSUB_CONNECTION_STRING, else the development one on 127.0.0.1:8080)")
	var o bench.Options
	fs.StringVar(&o.Hub, "hub", "bench", "hub to connect to")
	fs.DurationVar(&o.Timeout, "timeout", 0, "bound on waiting for the server (ramp-up, drain), added to the planned time (default 60s)")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", 0, "bound on one connection from dial to its connected event (default 10s)")
	fs.IntVar(&o.Concurrency, "concurrency", 200, "handshakes in flight, over all workers")
	fs.IntVar(&o.LoopbackSources, "loopback-sources", 254, "spread source addresses over 127.0.0.1-127.0.0.N against a loopback server; -1 lets the kernel pick")
	fs.IntVar(&o.ConnsPerWorker, "conns-per-worker", 0, "connections per worker process at most (default 15000, less under a low ulimit -n)")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "server process id, to read its memory, threads and CPU time from /proc")
	format := fs.String("format", "table", "table (a table and the benchmark line), bench (Go benchmark lines only, for benchstat) or json")
	progress := fs.Bool("progress", isTerminal(os.Stderr), "print a status line to stderr every second (default: when stderr is a terminal)")
	scrapeURL := fs.String("scrape", "", "GET this URL (the server's admin /metrics) every --scrape-interval during the run, like a Prometheus server, and report how many scrapes succeeded")
	scrapeInterval := fs.Duration("scrape-interval", time.Second, "time between two --scrape GETs")

	var run func(context.Context) (*bench.Result, error)
	var printConfig func() int
	switch scenario {
	case "idle", "connect", "fanout", "chat", "drain":
		fs.StringVar(&o.Protocol, "protocol", bench.ProtocolJSON, "client subprotocol: "+strings.Join(bench.Protocols, ", "))
	}
	switch scenario {
	case "idle":
		var c bench.IdleConfig
		fs.IntVar(&c.Conns, "conns", 1000, "connections to hold")
		fs.DurationVar(&c.Hold, "hold", 0, "how long to hold them once all are up (default 10s)")
		run = func(ctx context.Context) (*bench.Result, error) { c.Options = o; return bench.RunIdle(ctx, c) }
	case "drain":
		var c bench.DrainConfig
		fs.IntVar(&c.Conns, "conns", 1000, "connections the server holds when it is told to stop")
		reconnect := fs.String("reconnect-to", "", "connection string of a second server (same hub, same token rules) that every closed client reconnects to")
		run = func(ctx context.Context) (*bench.Result, error) {
			c.Options = o
			if *reconnect != "" {
				svc, err := bench.ParseConnectionString(*reconnect)
				if err != nil {
					return nil, fmt.Errorf("%w: --reconnect-to: %w", bench.ErrConfig, err)
				}
				c.ReconnectTo = svc
			}
			return bench.RunDrain(ctx, c)
		}
	case "connect":
		var c bench.ConnectConfig
		fs.IntVar(&c.Conns, "conns", 1000, "connections to open")
		run = func(ctx context.Context) (*bench.Result, error) { c.Options = o; return bench.RunConnect(ctx, c) }
	case "fanout":
		var c bench.FanoutConfig
		fs.IntVar(&c.Members, "members", 1000, "group members (connections)")
		fs.IntVar(&c.Messages, "messages", 50, "group sends")
		fs.Float64Var(&c.Rate, "rate", 5, "sends per second")
		fs.IntVar(&c.SizeBytes, "size", 64, "payload bytes (at least 31: send time and sequence number)")
		fs.StringVar(&c.Group, "group", "bench", "group name")
		fs.StringVar(&c.Publisher, "publisher", bench.PublisherREST, "rest (REST group send) or client (a client with the webpubsub.sendToGroup role)")
		fs.StringVar(&c.Target, "target", bench.TargetGroup, "group (send to --group) or all (REST send to every connection of the hub)")
		fs.IntVar(&c.MemberGroups, "member-groups", 0, "with --target all, member i joins group g<i mod N>, for filters on groups (0: no group)")
		fs.StringVar(&c.Filter, "filter", "", "OData filter of every REST send; member i is user bench-<i>, and the bench counts the members it selects with the server's own filter code (connectionId cannot be used)")
		fs.StringVar(&c.FilterName, "filter-name", "", "label of the filter in the benchmark name, filter=NAME (default: the filter, spaces as _)")
		fs.IntVar(&c.InFlight, "in-flight", 16, "REST sends in flight at most")
		fs.DurationVar(&c.Quiet, "quiet", 0, "end the drain once no delivery arrived for this long (default 5s)")
		run = func(ctx context.Context) (*bench.Result, error) {
			c.Options = o
			if c.Filter != "" {
				sel, err := filterSelector(c.Filter)
				if err != nil {
					return nil, fmt.Errorf("%w: --filter: %w", bench.ErrConfig, err)
				}
				c.Select = sel
			}
			return bench.RunFanout(ctx, c)
		}
	case "chat":
		var c bench.ChatConfig
		fs.IntVar(&c.Groups, "groups", 100, "groups")
		fs.IntVar(&c.MembersPerGroup, "members-per-group", 10, "members of each group (connections = groups x members-per-group)")
		fs.IntVar(&c.Messages, "messages", 10, "messages each member sends")
		fs.Float64Var(&c.Rate, "rate", 1, "sends per second of each member")
		fs.IntVar(&c.SizeBytes, "size", 64, "payload bytes (at least 31: send time and sequence number)")
		fs.DurationVar(&c.Quiet, "quiet", 0, "bound on the wait for acks, and end the drain once no delivery arrived for this long (default 5s)")
		run = func(ctx context.Context) (*bench.Result, error) { c.Options = o; return bench.RunChat(ctx, c) }
	case "echo":
		var c bench.EchoConfig
		fs.IntVar(&c.Conns, "conns", 1000, "plain WebSocket clients")
		fs.IntVar(&c.Messages, "messages", 20, "messages each client sends")
		fs.Float64Var(&c.Rate, "rate", 5, "sends per second of each client")
		fs.IntVar(&c.SizeBytes, "size", 64, "payload bytes (at least 42: send time, sequence number and client)")
		fs.StringVar(&c.UpstreamListen, "upstream-listen", defaultUpstreamListen, "address of the built-in upstream; the server's event handler must point there (see --print-config)")
		fs.DurationVar(&c.UpstreamDelay, "upstream-delay", 0, "the upstream waits this long before answering each message (a slow app server)")
		fs.DurationVar(&c.Quiet, "quiet", 0, "end the drain once no echo arrived for this long (default 5s)")
		onlyConfig := fs.Bool("print-config", false, "print the server configuration (YAML) for this --hub and --upstream-listen, and exit")
		c.OnUpstream = func(tmpl string) {
			fmt.Fprintf(stderr, "webpubsub bench echo: upstream listening; hub %q needs an event handler with urlTemplate %s (see --print-config)\n", o.Hub, tmpl)
		}
		printConfig = func() int {
			if !*onlyConfig {
				return -1
			}
			yaml, err := bench.EchoServerConfig(o.Hub, c.UpstreamListen)
			if err != nil {
				fmt.Fprintf(stderr, "webpubsub bench echo: %v\n", err)
				return exitUsage
			}
			fmt.Fprint(stdout, yaml)
			return exitOK
		}
		run = func(ctx context.Context) (*bench.Result, error) { c.Options = o; return bench.RunEcho(ctx, c) }
	default:
		fmt.Fprintf(stderr, "webpubsub bench: unknown scenario %q\n", scenario)
		fmt.Fprint(stderr, benchUsage)
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "webpubsub bench %s: unexpected argument %q\n", scenario, fs.Arg(0))
		return exitUsage
	}
	if printConfig != nil {
		if code := printConfig(); code >= 0 {
			return code
		}
	}
	switch *format {
	case "text":
		*format = "table" // the flag's old name
	case "table", "bench", "json":
	default:
		fmt.Fprintf(stderr, "webpubsub bench: --format %q: use table, bench or json\n", *format)
		return exitUsage
	}
	if *cs == "" {
		*cs = "Endpoint=http://127.0.0.1:8080;AccessKey=" + engine.DevAccessKey + ";Version=1.0;"
	}
	svc, err := bench.ParseConnectionString(*cs)
	if err != nil {
		fmt.Fprintf(stderr, "webpubsub bench: %v: pass --connection-string \"Endpoint=http://HOST:PORT;AccessKey=KEY;Version=1.0;\" or set WEBPUBSUB_CONNECTION_STRING\n", err)
		return exitUsage
	}
	o.Service = svc
	if *progress {
		o.Progress = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var scraper *bench.Scraper
	if *scrapeURL != "" {
		scraper = bench.StartScraper(*scrapeURL, *scrapeInterval)
	}
	res, err := run(ctx)
	if scraper != nil {
		st := scraper.Stop()
		if res != nil {
			res.AddScrapes(*scrapeURL, st)
		}
	}
	if err != nil && res == nil {
		fmt.Fprintf(stderr, "webpubsub bench %s: %v\n", scenario, err)
		if errors.Is(err, bench.ErrConfig) {
			return exitUsage
		}
		return exitRuntime
	}
	switch *format {
	case "json":
		_ = res.WriteJSON(stdout)
	case "bench":
		_ = bench.WriteBenchmarkHeader(stdout, bench.CPUModel())
		_ = res.WriteBenchmark(stdout)
	default:
		_ = res.WriteText(stdout)
		fmt.Fprintln(stdout)
		_ = bench.WriteBenchmarkHeader(stdout, bench.CPUModel())
		_ = res.WriteBenchmark(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "webpubsub bench %s: %v\n", scenario, err)
		return exitRuntime
	}
	return exitOK
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// filterSelector reads an OData filter with the server's own compiler, so the bench
// expects each filtered send exactly where the server delivers it.
func filterSelector(text string) (bench.Selector, error) {
	f, err := engine.CompileFilter(text, 0)
	if err != nil {
		return nil, err
	}
	return func(userID string, groups []string) bool {
		return f.Match(&engine.FilterTarget{
			UserID: userID, HasUser: userID != "", GroupCount: len(groups),
			InGroup: func(g string) bool { return slices.Contains(groups, g) },
		})
	}, nil
}
