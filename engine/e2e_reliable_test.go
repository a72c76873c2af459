//go:build e2e

// End-to-end tests of json.reliable.webpubsub.azure.v1 recovery (client-protocol.md §7.5,
// §7.6; client-examples.md E4) with the official @azure/web-pubsub-client, whose default
// protocol it is. The client reaches the server only through a TCP proxy that lives in this
// test: the proxy can cut every live connection at once (both sockets closed, no WebSocket close
// frame, as when a network path dies) and refuse or hold new connections for a while. REST calls
// (@azure/web-pubsub) go to the server directly, so sends keep arriving while the client is cut
// off. An unchanged @azure/web-pubsub-express app is the upstream, so each scenario checks what
// the app was sent (no `connected` again on recovery, `disconnected` only when the window
// expires) as well as what the client saw.
//
// Each scenario of testdata/sdk/reliable.mjs runs in one Node process, driven like upstream.mjs:
//  1. the script starts the express app on 127.0.0.1:0 and prints {"type":"listening","port":N};
//  2. the harness starts the server (event handlers at that port), then the proxy, and writes
//     {"connectionString":"...","proxy":"127.0.0.1:P"} to the script's stdin;
//  3. the script prints checks, and control requests for the proxy:
//     {"type":"control","id":I,"action":"cut","mode":"refuse"|"hold","ms":M} gates new
//     connections for M ms (refuse: accept and close at once; hold: accept and forward only when
//     the gate lifts), then cuts every live connection;
//     {"type":"control","id":I,"action":"stats"} asks for the proxy's counters.
//     The harness answers each on stdin with one line {"id":I,"ok":true,...}.
//
// Run with `make e2e`, or: go test -tags e2e -count=1 -v ./engine/ -run E2EReliable
package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// reliableHub is the hub reliable.mjs uses; the config points its event handler at the app.
	reliableHub = "reliable"
	// recoveryWindowSeconds is the recovery window of the windowExpired scenario, short so the
	// test does not wait the 30 s default out.
	recoveryWindowSeconds = 2
)

// reliableScenario is one scenario of reliable.mjs.
type reliableScenario struct {
	name string
	// config is appended to the event-handler configuration.
	config string
	// env adds environment variables for the script.
	env map[string]string
}

// reliableScenarios must list exactly what `node reliable.mjs --list` prints.
var reliableScenarios = []reliableScenario{
	// The default recovery window (30 s) is far longer than any cut in this scenario.
	{name: "cutMidStream"},
	{
		name:   "windowExpired",
		config: fmt.Sprintf("limits:\n  recoveryWindowSeconds: %d\n", recoveryWindowSeconds),
		env:    map[string]string{"WEBPUBSUB_RECOVERY_WINDOW_MS": fmt.Sprint(recoveryWindowSeconds * 1000)},
	},
}

// reliableConfig points reliableHub's event handler at the express app on port, for the
// system events the scenarios check.
func reliableConfig(port int, extra string) string {
	return fmt.Sprintf(`hubs:
  %s:
    eventHandlers:
      - urlTemplate: "http://127.0.0.1:%d/api/webpubsub/hubs/{hub}/{event}"
        userEventPattern: "*"
        systemEvents: ["connect", "connected", "disconnected"]
`, reliableHub, port) + extra
}

func TestE2EReliable(t *testing.T) {
	sdk := requireNode(t)
	for _, pkg := range []string{"@azure/web-pubsub-express", "express"} {
		if _, err := os.Stat(filepath.Join(sdk, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed in %s/node_modules: run `make npm-deps`", pkg, sdk)
		}
	}
	checkScriptList(t, sdk, "reliable.mjs", scenarioNames(reliableScenarios, func(sc reliableScenario) string { return sc.name }))
	for _, sc := range reliableScenarios {
		t.Run(sc.name, func(t *testing.T) {
			runReliableScenario(t, sdk, sc)
		})
	}
}

// controlRequest is a {"type":"control"} line of reliable.mjs.
type controlRequest struct {
	ID     int    `json:"id"`
	Action string `json:"action"`
	Mode   string `json:"mode"`
	MS     int    `json:"ms"`
}

// reliableLine is every field a line of reliable.mjs may carry.
type reliableLine struct {
	observation
	controlRequest
	Port int `json:"port"`
}

// runReliableScenario starts `node reliable.mjs name`, waits for the app's port, starts the
// server and the proxy, and serves the script's control requests until it exits.
func runReliableScenario(t *testing.T, sdk string, sc reliableScenario) {
	t.Helper()
	n := startNode(t, sdk, sc.env, "reliable.mjs", sc.name)
	ctx, stdin, lines, stderrText := n.ctx, n.stdin, n.lines, n.stderrText
	reply := func(v any) {
		b, _ := json.Marshal(v)
		if _, err := stdin.Write(append(b, '\n')); err != nil {
			t.Errorf("%s: write to node: %v", sc.name, err)
		}
	}

	// 1. The app's port.
	port := 0
	deadline := time.NewTimer(serverStartTimeout)
	defer deadline.Stop()
	for port == 0 {
		select {
		case line, ok := <-lines:
			if !ok {
				err := n.wait()
				t.Fatalf("%s: node exited before printing its port (%v)\nstderr:\n%s", sc.name, err, stderrText())
			}
			var o reliableLine
			if json.Unmarshal(line, &o) == nil && o.Type == "listening" && o.Port > 0 {
				port = o.Port
			} else {
				t.Logf("node: %s", line)
			}
		case <-deadline.C:
			t.Fatalf("%s: node printed no {\"type\":\"listening\"} line within %v\nstderr:\n%s", sc.name, serverStartTimeout, stderrText())
		}
	}

	// 2. The server, the proxy in front of it, then the addresses for the script.
	srv := startServer(t, reliableConfig(port, sc.config))
	proxy := startProxy(t, strings.TrimPrefix(srv.endpoint, "http://"))
	t.Logf("express app on 127.0.0.1:%d, server %s, proxy %s", port, srv.endpoint, proxy.addr())
	reply(map[string]string{"connectionString": srv.connectionString(), "proxy": proxy.addr()})

	// 3. Observations and control requests until node exits.
	var summary *observation
	checks := 0
	for line := range lines {
		var o reliableLine
		if err := json.Unmarshal(line, &o); err != nil || o.Type == "" {
			t.Logf("node: %s", line)
			continue
		}
		switch o.Type {
		case "check", "info":
			o.report(t, sc.name, &checks)
		case "control":
			reply(proxy.serve(t, o.controlRequest))
		case "summary":
			summary = &o.observation
		default:
			t.Logf("node: %s", line)
		}
	}
	waitErr := n.wait()
	if ctx.Err() != nil {
		t.Fatalf("%s: node did not finish within %v\nstderr:\n%s", sc.name, scenarioTimeout, stderrText())
	}
	t.Logf("proxy: %+v", proxy.stats())
	judgeScenario(t, sc.name, summary, checks, waitErr, stderrText())
	srv.stop(t)
}

// tcpProxy forwards every TCP connection accepted on 127.0.0.1:0 to target. It can cut all
// live connections (both sides closed, so the peers see the stream end without a WebSocket
// close frame) and gate new ones for a while: refused (accepted and closed at once) or held
// (accepted, forwarded only when the gate lifts).
type tcpProxy struct {
	ln     net.Listener
	target string
	done   chan struct{} // closed by close()
	wg     sync.WaitGroup

	mu        sync.Mutex
	live      map[*proxyPair]struct{}
	gateMode  string    // "refuse" or "hold" until gateUntil
	gateUntil time.Time // zero: no gate
	counts    proxyStats
}

// proxyStats are the proxy's counters, also what a stats control request answers.
type proxyStats struct {
	Accepted  int `json:"accepted"`  // connections accepted
	Forwarded int `json:"forwarded"` // connections that reached the target
	Refused   int `json:"refused"`   // closed at once by a refuse gate
	Held      int `json:"held"`      // delayed by a hold gate
	Cut       int `json:"cut"`       // connections closed by cut()
	Live      int `json:"live"`      // connections being forwarded now
}

type proxyPair struct {
	client, upstream net.Conn
	once             sync.Once
}

func (p *proxyPair) close() {
	p.once.Do(func() {
		_ = p.client.Close()
		_ = p.upstream.Close()
	})
}

// startProxy listens on 127.0.0.1:0 and forwards to target until the test ends.
func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, done: make(chan struct{}), live: map[*proxyPair]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// handle applies the gate to one accepted connection, then forwards it.
func (p *tcpProxy) handle(c net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	p.counts.Accepted++
	mode, wait := p.gateMode, time.Until(p.gateUntil)
	if wait > 0 && mode == "refuse" {
		p.counts.Refused++
		p.mu.Unlock()
		_ = c.Close()
		return
	}
	if wait > 0 {
		p.counts.Held++
	}
	p.mu.Unlock()
	if wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-p.done:
			timer.Stop()
			_ = c.Close()
			return
		}
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	pair := &proxyPair{client: c, upstream: up}
	p.mu.Lock()
	select {
	case <-p.done:
		p.mu.Unlock()
		pair.close()
		return
	default:
	}
	p.counts.Forwarded++
	p.live[pair] = struct{}{}
	p.mu.Unlock()
	var copies sync.WaitGroup
	copies.Add(2)
	pipe := func(dst, src net.Conn) {
		defer copies.Done()
		_, _ = io.Copy(dst, src)
		pair.close() // either direction ending ends both, as a dead path would
	}
	go pipe(up, c)
	go pipe(c, up)
	copies.Wait()
	p.mu.Lock()
	delete(p.live, pair)
	p.mu.Unlock()
}

// gate refuses or holds new connections for d.
func (p *tcpProxy) gate(mode string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gateMode, p.gateUntil = mode, time.Now().Add(d)
}

// cut closes every live connection and reports how many there were.
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	pairs := make([]*proxyPair, 0, len(p.live))
	for pair := range p.live {
		pairs = append(pairs, pair)
	}
	p.counts.Cut += len(pairs)
	p.mu.Unlock()
	for _, pair := range pairs {
		pair.close()
	}
	return len(pairs)
}

func (p *tcpProxy) stats() proxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.counts
	s.Live = len(p.live)
	return s
}

// close stops accepting, closes every connection and waits for the goroutines, bounded.
func (p *tcpProxy) close() {
	select {
	case <-p.done:
		return
	default:
	}
	p.mu.Lock()
	close(p.done)
	p.mu.Unlock()
	_ = p.ln.Close()
	p.cut()
	finished := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
	}
}

// serve carries out one control request of the script and returns the answer for its stdin.
func (p *tcpProxy) serve(t *testing.T, req controlRequest) map[string]any {
	t.Helper()
	answer := map[string]any{"id": req.ID, "ok": true}
	fail := func(err error) map[string]any {
		t.Errorf("control request %+v: %v", req, err)
		return map[string]any{"id": req.ID, "ok": false, "error": err.Error()}
	}
	switch req.Action {
	case "cut":
		if req.Mode != "refuse" && req.Mode != "hold" {
			return fail(fmt.Errorf("mode %q: want refuse or hold", req.Mode))
		}
		if req.MS < 0 || req.MS > 60000 {
			return fail(fmt.Errorf("ms %d out of range", req.MS))
		}
		// The gate first, so the client's immediate reconnect already meets it.
		p.gate(req.Mode, time.Duration(req.MS)*time.Millisecond)
		answer["cut"] = p.cut()
		t.Logf("proxy: cut %v connection(s), %s new ones for %d ms", answer["cut"], req.Mode, req.MS)
	case "stats":
		s := p.stats()
		answer["stats"] = s
	default:
		return fail(errors.New("unknown action " + req.Action))
	}
	return answer
}
