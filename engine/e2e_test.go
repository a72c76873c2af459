//go:build e2e

// End-to-end tests with the official Azure Web PubSub SDKs (STYLE.md §8). TestMain builds the
// real binary once (or uses $WEBPUBSUB_E2E_BINARY). Every scenario starts its own server on
// 127.0.0.1:0 with a random access key, runs one Node scenario from testdata/sdk/scenarios.mjs
// against it, turns each JSON observation the script prints into a test result, and stops the
// server with SIGTERM, expecting exit code 0.
//
// Run with `make e2e` (it runs `npm ci` in testdata/sdk first).
package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// serverStartTimeout bounds the wait for the "listening on" line and /api/health.
	serverStartTimeout = 20 * time.Second
	// serverStopTimeout bounds the wait for the server to exit after SIGTERM.
	serverStopTimeout = 15 * time.Second
	// scenarioTimeout bounds one Node scenario; the script has its own 60s watchdog.
	scenarioTimeout = 90 * time.Second
)

// e2eBinary is the server built by TestMain; e2eRoot is the repository root.
var e2eBinary, e2eRoot string

// e2eScenario is one scenario of scenarios.mjs and how the harness runs it.
type e2eScenario struct {
	name string
	// config is the YAML passed with --config; empty means no config file.
	config string
	// env adds environment variables for the script.
	env map[string]string
	// sigtermOnReady sends SIGTERM to the server when the script prints {"type":"ready"}.
	sigtermOnReady bool
	// prepare, if set, runs after the server started and returns more environment for the
	// script.
	prepare func(t *testing.T, srv *server) map[string]string
	// reliableOnly scenarios test json.reliable.webpubsub.azure.v1 itself (recovery); they run
	// in TestE2E only.
	reliableOnly bool
	// pendingIssue names the open issue that builds what the scenario needs; until it is
	// resolved the scenario is reported as skipped with that reason, never silently dropped.
	pendingIssue string
}

// e2eScenarios must list exactly the scenarios that `node scenarios.mjs --list` prints, so a
// scenario cannot be added to the script and silently never run (TestE2E checks this).
var e2eScenarios = []e2eScenario{
	{name: "connect"},
	{name: "joinLeave"},
	{name: "sendToGroup"},
	{name: "noEcho"},
	{name: "permissions"},
	{name: "restPermissions"},
	{name: "sendToAll"},
	{name: "sendToUser"},
	{name: "sendToConnection"},
	{name: "groupSend"},
	{name: "membership"},
	{name: "exists"},
	{name: "closeConnection"},
	{name: "closeAll"},
	{name: "closeUser"},
	{name: "closeGroup"},
	{name: "filters"},
	{name: "bulkGroups"},
	{name: "listConnections"},
	{name: "clientAccessToken"},
	{name: "badToken"},
	{name: "restAuth"},
	{
		name:   "anonymous",
		config: "hubs:\n  anon:\n    anonymousConnectPolicy: allow\n",
		env:    map[string]string{"WEBPUBSUB_HUB": "anon"},
	},
	{name: "cliToken", prepare: cliToken},
	{name: "recovery", reliableOnly: true},
	{name: "shutdown", sigtermOnReady: true},
}

func TestMain(m *testing.M) {
	os.Exit(e2eMain(m))
}

func e2eMain(m *testing.M) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	e2eRoot = root
	if bin := os.Getenv("WEBPUBSUB_E2E_BINARY"); bin != "" {
		// Test an already built binary (a release build, say) instead of building one.
		e2eBinary = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "webpubsub-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	e2eBinary = filepath.Join(dir, "webpubsub")
	build := exec.Command("go", "build", "-o", e2eBinary, "./cmd/webpubsub")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/webpubsub failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// repoRoot finds the module root from the location of this file.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate e2e_test.go")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", file)
		}
		dir = parent
	}
}

// TestE2E runs every scenario with the JS client's default subprotocol,
// json.reliable.webpubsub.azure.v1, then checks that the scenarios together called every public
// method of the REST SDK (see runScenarios).
func TestE2E(t *testing.T) {
	runScenarios(t, true, nil)
}

// TestE2EJSONProtocol runs every scenario again with json.webpubsub.azure.v1.
func TestE2EJSONProtocol(t *testing.T) {
	runScenarios(t, false, map[string]string{"WEBPUBSUB_PROTOCOL": "json.webpubsub.azure.v1"})
}

// runScenarios runs every scenario of e2eScenarios as a subtest, then the subtest
// methodCoverage: each scenario reports which methods of WebPubSubServiceClient and of the
// group class it called, and every method `node scenarios.mjs --methods` reads from the SDK's
// prototypes must have been called by some scenario. The list comes from the installed package,
// so an SDK upgrade that adds a method fails here until a scenario calls it.
func runScenarios(t *testing.T, reliable bool, env map[string]string) {
	sdk := requireNode(t)
	checkScriptList(t, sdk, "scenarios.mjs", scenarioNames(e2eScenarios, func(sc e2eScenario) string { return sc.name }))
	var methods []string
	scriptJSON(t, sdk, "scenarios.mjs", "--methods", &methods)
	if len(methods) == 0 {
		t.Fatalf("node scenarios.mjs --methods listed no SDK method")
	}
	called := map[string][]string{} // method → scenarios that called it
	entered, selected := 0, 0
	for _, sc := range e2eScenarios {
		if sc.reliableOnly && !reliable {
			continue
		}
		selected++
		t.Run(sc.name, func(t *testing.T) {
			entered++
			if sc.pendingIssue != "" {
				t.Skip("needs " + sc.pendingIssue)
			}
			srv := startServer(t, sc.config)
			merged := map[string]string{}
			for k, v := range env {
				merged[k] = v
			}
			for k, v := range sc.env {
				merged[k] = v
			}
			if sc.prepare != nil {
				for k, v := range sc.prepare(t, srv) {
					merged[k] = v
				}
			}
			var onReady func()
			if sc.sigtermOnReady {
				onReady = srv.signalStop
			}
			for _, m := range runScenario(t, sdk, srv, sc.name, merged, onReady) {
				called[m] = append(called[m], sc.name)
			}
			srv.stop(t)
		})
	}
	t.Run("methodCoverage", func(t *testing.T) {
		if entered < selected {
			// -run picked a subset; the coverage of a subset proves nothing either way.
			t.Skipf("only %d of %d scenarios ran; method coverage needs all of them", entered, selected)
		}
		checkMethodCoverage(t, methods, called)
	})
}

// checkMethodCoverage fails for every SDK method in methods that no scenario called.
func checkMethodCoverage(t *testing.T, methods []string, called map[string][]string) {
	t.Helper()
	var missing []string
	for _, m := range methods {
		if len(called[m]) == 0 {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		t.Errorf("no scenario called %d of the %d public SDK methods: %s\nadd a scenario to scenarios.mjs that calls each and checks its effect on real clients",
			len(missing), len(methods), strings.Join(missing, ", "))
	}
	t.Logf("%d of %d SDK methods called", len(methods)-len(missing), len(methods))
}

// cliToken asks `webpubsub token` for a client URL of hub e2e_cliToken, so the cliToken
// scenario can check that the server accepts what the CLI signs.
func cliToken(t *testing.T, srv *server) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2eBinary, "token", "--hub", "e2e_cliToken", "--user", "cli-user",
		"--role", "webpubsub.sendToGroup", "--group", "cli-group", "--ttl", "1h",
		"--connection-string", srv.connectionString())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("webpubsub token: %v\n%s", err, exitStderr(err))
	}
	url := strings.TrimSpace(string(out))
	if !strings.HasPrefix(url, "ws://") || !strings.Contains(url, "access_token=") {
		t.Fatalf("webpubsub token printed %q, want a ws:// client URL with access_token", out)
	}
	return map[string]string{
		"WEBPUBSUB_CLIENT_URL":   url,
		"WEBPUBSUB_EXPECT_USER":  "cli-user",
		"WEBPUBSUB_EXPECT_GROUP": "cli-group",
	}
}

// requireNode fails (never skips) when Node.js or the SDK modules are missing, and returns the
// directory of the scenarios.
func requireNode(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found in PATH: the e2e tests need Node.js 20+ (apt-get install nodejs npm), then run `make npm-deps`")
	}
	sdk := filepath.Join(e2eRoot, "engine", "testdata", "sdk")
	for _, pkg := range []string{"@azure/web-pubsub", "@azure/web-pubsub-client"} {
		if _, err := os.Stat(filepath.Join(sdk, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed in %s/node_modules: run `make npm-deps`", pkg, sdk)
		}
	}
	return sdk
}

// checkScriptList compares the scenario names a script prints with `--list` with
// ours, so a scenario cannot be added to a script and silently never run.
func checkScriptList(t *testing.T, sdk, script string, ours []string) {
	t.Helper()
	var listed []string
	scriptJSON(t, sdk, script, "--list", &listed)
	listed, ours = slices.Sorted(slices.Values(listed)), slices.Sorted(slices.Values(ours))
	if !slices.Equal(listed, ours) {
		t.Fatalf("scenario lists differ:\n  %s: %v\n  the Go table: %v\nadd the scenario to the table beside its runner", script, listed, ours)
	}
}

// scriptJSON runs `node script flag` in the SDK directory and decodes the one JSON value it
// prints into v.
func scriptJSON(t *testing.T, sdk, script, flag string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, flag)
	cmd.Dir = sdk
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s %s: %v\n%s", script, flag, err, exitStderr(err))
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), v); err != nil {
		t.Fatalf("node %s %s printed %q: %v", script, flag, out, err)
	}
}

// scenarioNames lists the name of every element of a scenario table.
func scenarioNames[S any](table []S, name func(S) string) []string {
	out := make([]string, len(table))
	for i, sc := range table {
		out[i] = name(sc)
	}
	return out
}

func exitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// server is one running webpubsub process.
type server struct {
	cmd      *exec.Cmd
	endpoint string // http://127.0.0.1:PORT
	key      string
	exited   chan struct{} // closed when the process has been waited for
	waitErr  error         // set before exited is closed

	mu        sync.Mutex
	stdout    []string // every stdout line, for diagnostics
	connLine  string   // the "Connection string:" line, if printed
	stderr    bytes.Buffer
	signalled bool
	stopSent  time.Time
}

var listeningRE = regexp.MustCompile(`webpubsub: listening on (http://127\.0\.0\.1:\d+)`)

// startServer starts the binary on 127.0.0.1:0 with a random key and waits until /api/health
// answers 200. The server is killed at cleanup if the test did not stop it. Its drain has no
// delay (SIGTERM closes the connections at once); startServerEnv keeps the configured one.
func startServer(t *testing.T, config string) *server {
	t.Helper()
	// Debug level: every line the server can write is searched for secrets at cleanup.
	return startServerEnv(t, config, []string{"WPS_SHUTDOWN__DRAINDELAYSECONDS=0", "WPS_LOG__LEVEL=debug"})
}

// startServerEnv is startServer with extra environment variables (WPS_* overrides) for the
// server and no others.
func startServerEnv(t *testing.T, config string, env []string) *server {
	t.Helper()
	key := randomKey(t)
	args := []string{"serve", "--listen", "127.0.0.1:0", "--access-key", key}
	if config != "" {
		path := filepath.Join(t.TempDir(), "webpubsub.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	return startBinary(t, key, env, args...)
}

// startBinary starts the binary with args and the extra environment variables env, key
// being the access key it uses, and waits as startServer does.
func startBinary(t *testing.T, key string, env []string, args ...string) *server {
	t.Helper()
	s := &server{key: key, exited: make(chan struct{})}
	s.cmd = exec.Command(e2eBinary, args...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", e2eBinary, err)
	}
	listening := make(chan string, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stdout = append(s.stdout, line)
			if strings.HasPrefix(line, "Connection string:") {
				s.connLine = line
			}
			s.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case listening <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		<-readDone // Wait closes the pipe, so finish reading first
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if leak := logLeak(s.stderrText(), key); leak != "" {
			t.Errorf("the server log holds a secret (operations.md §5): %s", leak)
		}
		if t.Failed() {
			t.Logf("server stdout:\n%s\nserver stderr:\n%s", s.stdoutText(), s.stderrText())
		}
	})

	deadline := time.NewTimer(serverStartTimeout)
	defer deadline.Stop()
	select {
	case s.endpoint = <-listening:
	case <-s.exited:
		t.Fatalf("server exited before listening (%v)\nstdout:\n%s\nstderr:\n%s", s.waitErr, s.stdoutText(), s.stderrText())
	case <-deadline.C:
		t.Fatalf("server printed no %q line within %v\nstdout:\n%s\nstderr:\n%s", "webpubsub: listening on http://127.0.0.1:PORT", serverStartTimeout, s.stdoutText(), s.stderrText())
	}
	s.waitHealthy(t, time.Now().Add(serverStartTimeout))
	return s
}

// secretShapes are what a leaked credential looks like in a log whatever its value: a
// JWT (client and REST tokens, as the SDKs sign them) or an upstream ce-signature.
var secretShapes = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}|sha256=[0-9a-fA-F]{64}`)

// logLeak returns, with some context, the first access key or credential-shaped text in
// a server's log, or "". Every server an e2e test starts is checked when it ends, so the
// whole e2e run's logs (the SDK suites' tokens included) are searched.
func logLeak(log string, keys ...string) string {
	for _, k := range keys {
		if i := strings.Index(log, k); k != "" && i >= 0 {
			return fmt.Sprintf("access key at byte %d: …%s…", i, log[max(0, i-120):i])
		}
	}
	if loc := secretShapes.FindStringIndex(log); loc != nil {
		return fmt.Sprintf("credential-shaped text %.16s… at byte %d: …%s…", log[loc[0]:loc[1]], loc[0], log[max(0, loc[0]-120):loc[0]])
	}
	return ""
}

// waitHealthy polls GET /api/health until it answers 200 or the deadline passes.
func (s *server) waitHealthy(t *testing.T, deadline time.Time) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		resp, err := client.Get(s.endpoint + "/api/health")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/api/health not 200 before the deadline; last: %s", s.endpoint, last)
		}
		select {
		case <-s.exited:
			t.Fatalf("server exited while waiting for /api/health (%v)", s.waitErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// connectionString is what the SDKs are given. Built from the port and the key we chose,
// since the printed one may mask the key.
func (s *server) connectionString() string {
	return "Endpoint=" + s.endpoint + ";AccessKey=" + s.key + ";Version=1.0;"
}

// signalStop sends SIGTERM once.
func (s *server) signalStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signalled {
		return
	}
	s.signalled = true
	s.stopSent = time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
}

// stop sends SIGTERM (unless already sent) and checks that the server exits 0 in time, having
// printed its connection string on the way.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.signalStop()
	select {
	case <-s.exited:
	case <-time.After(serverStopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("server did not exit within %v of SIGTERM; killed", serverStopTimeout)
		return
	}
	s.mu.Lock()
	took := time.Since(s.stopSent)
	s.mu.Unlock()
	t.Logf("server exited %v after SIGTERM", took.Round(time.Millisecond))
	if s.waitErr != nil {
		t.Errorf("server exit after SIGTERM: %v (want exit code 0)", s.waitErr)
	}
	s.mu.Lock()
	line := s.connLine
	s.mu.Unlock()
	if line == "" {
		t.Errorf("server never printed a %q line", "Connection string: Endpoint=...")
	} else if !strings.Contains(line, "Endpoint="+s.endpoint) {
		t.Errorf("printed %q does not name the listening endpoint %s", line, s.endpoint)
	}
}

func (s *server) stdoutText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.stdout, "\n")
}

func (s *server) stderrText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// lockedWriter serializes writes from exec's copying goroutine with readers of the buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// randomKey returns an Azure-like access key: 32 random bytes, base64 (44 characters).
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// observation is one JSON line printed by scenarios.mjs (see lib.mjs).
type observation struct {
	Type     string          `json:"type"`
	Scenario string          `json:"scenario"`
	Name     string          `json:"name"`
	OK       bool            `json:"ok"`
	Expected json.RawMessage `json:"expected"`
	Actual   json.RawMessage `json:"actual"`
	Value    json.RawMessage `json:"value"`
	Passed   int             `json:"passed"`
	Failed   int             `json:"failed"`
	Error    string          `json:"error"`
	Methods  []string        `json:"methods"` // "coverage" lines: SDK methods called so far
}

// runScenario runs `node scenarios.mjs name` against srv and reports every failed check as a
// test error carrying what the SDK saw and what was expected. It returns the SDK methods the
// scenario called, from its "coverage" line.
func runScenario(t *testing.T, sdk string, srv *server, name string, env map[string]string, onReady func()) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "scenarios.mjs", name)
	cmd.Dir = sdk
	cmd.Env = append(os.Environ(), "WEBPUBSUB_CONNECTION_STRING="+srv.connectionString())
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}

	var summary *observation
	var methods []string
	checks := 0
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var o observation
		if err := json.Unmarshal(line, &o); err != nil || o.Type == "" {
			t.Logf("node: %s", line)
			continue
		}
		switch o.Type {
		case "check", "info":
			o.report(t, name, &checks)
		case "ready":
			if onReady != nil {
				onReady()
			}
		case "summary":
			summary = &o
		case "coverage":
			methods = o.Methods
		default:
			t.Logf("node: %s", line)
		}
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%s: node did not finish within %v\nstderr:\n%s", name, scenarioTimeout, stderr.String())
	}
	judgeScenario(t, name, summary, checks, waitErr, stderr.String())
	return methods
}

// report turns a "check" or "info" line into a test error or log line.
func (o *observation) report(t *testing.T, scenario string, checks *int) {
	t.Helper()
	if o.Type == "info" {
		t.Logf("info %s: %s", o.Name, o.Value)
		return
	}
	*checks++
	if !o.OK {
		t.Errorf("%s: %s\n\texpected: %s\n\tactual:   %s", scenario, o.Name, o.Expected, o.Actual)
	}
}

// judgeScenario checks a finished script: a summary line, no failures, an exit code that
// agrees, and at least one passing check (a script that checked nothing proves nothing).
func judgeScenario(t *testing.T, name string, summary *observation, checks int, waitErr error, stderr string) {
	t.Helper()
	if summary == nil {
		t.Fatalf("%s: no summary line from node (exit: %v)\nstderr:\n%s", name, waitErr, stderr)
	}
	if summary.Error != "" {
		t.Errorf("%s: scenario aborted: %s", name, summary.Error)
	}
	t.Logf("%s: %d checks passed, %d failed", name, summary.Passed, summary.Failed)
	if summary.Failed > 0 || waitErr != nil {
		if waitErr == nil {
			t.Errorf("%s: summary reports %d failures but node exited 0", name, summary.Failed)
		} else if !t.Failed() {
			t.Errorf("%s: node exited with %v\nstderr:\n%s", name, waitErr, strings.TrimSpace(stderr))
		}
	}
	if checks == 0 || summary.Passed == 0 {
		t.Errorf("%s: the scenario made no passing check", name)
	}
}

// nodeScript is a running `node SCRIPT ARGS…` in the SDK directory: its stdout as
// lines, its stdin, and its stderr kept for failure messages. It is killed at the
// end of the test if the test did not wait for it.
type nodeScript struct {
	ctx    context.Context
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	mu     sync.Mutex
	stderr bytes.Buffer
	waited bool
}

func startNode(t *testing.T, dir string, env map[string]string, args ...string) *nodeScript {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	n := &nodeScript{ctx: ctx, lines: make(chan []byte, 64)}
	n.cmd = exec.CommandContext(ctx, "node", args...)
	n.cmd.Dir = dir
	n.cmd.Env = os.Environ()
	for k, v := range env {
		n.cmd.Env = append(n.cmd.Env, k+"="+v)
	}
	n.cmd.Stderr = &lockedWriter{mu: &n.mu, w: &n.stderr}
	var err error
	if n.stdin, err = n.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		cancel() // kills node after an early Fatal
		if !n.waited {
			for range n.lines {
			}
			_ = n.cmd.Wait()
		}
	})
	go func() {
		defer close(n.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			n.lines <- bytes.Clone(sc.Bytes())
		}
	}()
	return n
}

func (n *nodeScript) stderrText() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stderr.String()
}

// wait waits for node to exit.
func (n *nodeScript) wait() error {
	n.waited = true
	return n.cmd.Wait()
}
