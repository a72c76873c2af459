//go:build e2e

// The drain of operations.md §2 through the real binary: SDK clients (testdata/sdk/drain.mjs)
// and raw Go clients, REST sends in flight at the SIGTERM, a Go app server recording the
// system events.

package engine_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/webpubsub/webpubsub/engine"
)

const (
	drainHub      = "drain"
	drainRate     = 200 // closes per second: 400 connections take at least 2 s
	drainDelay    = time.Second
	drainSDK      = 100 // SDK clients, half of them reliable
	drainGoJSON   = 150 // raw json.webpubsub.azure.v1 clients
	drainGoSimple = 150 // raw simple WebSocket clients
	drainSends    = 50  // REST sends in flight at the SIGTERM
)

func drainE2EConfig(upstreamPort int) string {
	return fmt.Sprintf(`hubs:
  %s:
    anonymousConnectPolicy: allow
    eventHandlers:
      - urlTemplate: "http://127.0.0.1:%d/{event}"
        systemEvents: ["connected", "disconnected"]
shutdown:
  drainDelaySeconds: %g
  closeRatePerSecond: %d
  timeoutSeconds: 30
`, drainHub, upstreamPort, drainDelay.Seconds(), drainRate)
}

// drainClient is what one client saw, SDK or Go.
type drainClient struct {
	Label        string   `json:"label"`
	ConnectionID string   `json:"connectionId"`
	Reliable     bool     `json:"reliable"`
	Disconnected []string `json:"disconnected"` // SDK: `disconnected` event messages
	Messages     []struct {
		Data string `json:"data"`
		At   int64  `json:"at"` // unix ms
	} `json:"messages"`
	Close *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
		At     int64  `json:"at"` // unix ms
	} `json:"close"`
	sawDisconnected bool // raw JSON client: a system/disconnected message came after the data
	err             error
}

// TestE2EDrain stops a server holding 400 connections with SIGTERM while 50 REST sends are
// in flight. Every client must get all 50 messages, then 1001 ServiceReload (PubSub clients
// on json.webpubsub.azure.v1 a `disconnected` message first); the closes must spread over at
// least 400 / closeRatePerSecond seconds; reliable SDK clients must try to recover; the app
// server must get `disconnected` for every connection; the process must exit 0.
func TestE2EDrain(t *testing.T) {
	sdk := requireNode(t)
	app := startEventRecorder(t)
	srv := startServerEnv(t, drainE2EConfig(app.port()), nil)
	proxy := startRecordingProxy(t, strings.TrimPrefix(srv.endpoint, "http://"))

	node := startNode(t, sdk, map[string]string{
		"WEBPUBSUB_CONNECTION_STRING": srv.connectionString(),
		"WEBPUBSUB_HUB":               drainHub,
		"DRAIN_CLIENTS":               fmt.Sprint(drainSDK),
		"DRAIN_PROXY":                 proxy.addr(),
	}, "drain.mjs")
	var ready struct {
		Clients []drainClient `json:"clients"`
	}
	nodeLine(t, node, "ready", &ready)

	goClients := make([]*drainClient, 0, drainGoJSON+drainGoSimple)
	var readers sync.WaitGroup
	for i := range drainGoJSON + drainGoSimple {
		dc := &drainClient{Label: fmt.Sprint("go", i)}
		proto := ""
		if i < drainGoJSON {
			proto = "json.webpubsub.azure.v1"
		}
		conn, rd := dialDrainClient(t, srv.endpoint, proto, dc)
		goClients = append(goClients, dc)
		readers.Add(1)
		go func() {
			defer readers.Done()
			readDrainClient(conn, rd, proto != "", dc)
		}()
	}
	total := drainSDK + drainGoJSON + drainGoSimple
	app.waitFor(t, "connected", total)

	// 50 sends at once; SIGTERM as soon as the first is answered, while the rest are in flight.
	status := make([]int, drainSends)
	answered := make(chan struct{}, drainSends)
	var sends sync.WaitGroup
	for i := range drainSends {
		sends.Add(1)
		go func() {
			defer sends.Done()
			status[i] = restSendToAll(srv, fmt.Sprintf("m%02d", i))
			answered <- struct{}{}
		}()
	}
	<-answered
	srv.signalStop()
	signalled := time.Now()
	t.Logf("SIGTERM sent with %d of %d sends answered", len(answered)+1, drainSends)
	unready := waitUnready(t, srv)
	t.Logf("/api/health 503 %v after SIGTERM", unready)
	// operations.md §6 says 100 ms. The probe is answered on the event loops, but they are
	// busy writing the 50 sends' 20 000 frames, on two cores shared with 400 clients
	// (measured 30-160 ms here), so this bound is loose; drain_test.go checks 100 ms.
	if unready > time.Second {
		t.Errorf("/api/health turned 503 %v after SIGTERM, want at once", unready)
	}
	sends.Wait()
	for i, st := range status {
		if st != http.StatusAccepted {
			t.Errorf("send m%02d: status %d, want 202", i, st)
		}
	}

	readers.Wait()
	var result struct {
		Error   string        `json:"error"`
		Clients []drainClient `json:"clients"`
	}
	nodeLine(t, node, "result", &result)
	if result.Error != "" {
		t.Fatalf("drain.mjs: %s", result.Error)
	}
	if err := node.wait(); err != nil {
		t.Errorf("drain.mjs exited with %v\n%s", err, node.stderrText())
	}
	srv.stop(t) // exit 0 within serverStopTimeout

	all := slices.Clone(goClients)
	for i := range result.Clients {
		all = append(all, &result.Clients[i])
	}
	if len(all) != total {
		t.Fatalf("%d clients reported, want %d", len(all), total)
	}
	var closes []time.Time
	for _, c := range all {
		checkDrainClient(t, c)
		if c.Close != nil {
			closes = append(closes, time.UnixMilli(c.Close.At))
		}
	}
	if t.Failed() {
		return
	}
	slices.SortFunc(closes, time.Time.Compare)
	first, last := closes[0].Sub(signalled), closes[len(closes)-1].Sub(signalled)
	t.Logf("closes seen from %v to %v after SIGTERM", first.Round(time.Millisecond), last.Round(time.Millisecond))
	if first < drainDelay*8/10 {
		t.Errorf("first close %v after SIGTERM, before the %v drain delay", first, drainDelay)
	}
	if want := time.Duration(total-1) * time.Second / drainRate * 9 / 10; last-first < want {
		t.Errorf("%d closes at %d/s spread over %v, want at least %v", total, drainRate, last-first, want)
	}

	// Reliable SDK clients try to recover after the 1001 (and fail: the node is gone).
	for _, c := range result.Clients {
		if c.Reliable && proxy.recoveries(c.ConnectionID) == 0 {
			t.Errorf("%s (%s): no recovery attempt after the 1001", c.Label, c.ConnectionID)
		}
	}
	// The app server got `disconnected` for every connection, before the process exited.
	connected, disconnected := app.idsOf("connected"), app.idsOf("disconnected")
	if len(connected) != total || !slices.Equal(connected, disconnected) {
		t.Errorf("app server: %d connected, %d disconnected; want %d of each for the same ids", len(connected), len(disconnected), total)
	}
}

// checkDrainClient asserts one client's view: every message, in order before the close, and
// 1001 ServiceReload.
func checkDrainClient(t *testing.T, c *drainClient) {
	t.Helper()
	if c.err != nil {
		t.Errorf("%s: %v", c.Label, c.err)
		return
	}
	if c.Close == nil || c.Close.Code != int(ws.StatusGoingAway) || c.Close.Reason != "ServiceReload" {
		t.Errorf("%s: close %+v, want 1001 ServiceReload", c.Label, c.Close)
		return
	}
	got := map[string]bool{}
	for _, m := range c.Messages {
		if m.At > c.Close.At {
			t.Errorf("%s: %q arrived after the close", c.Label, m.Data)
		}
		got[m.Data] = true
	}
	if len(got) != drainSends || len(c.Messages) != drainSends {
		t.Errorf("%s: %d messages (%d distinct) before the close, want %d", c.Label, len(c.Messages), len(got), drainSends)
	}
	switch {
	case strings.HasPrefix(c.Label, "sdk") && !c.Reliable:
		if len(c.Disconnected) == 0 || !strings.HasPrefix(c.Disconnected[0], "ServiceReload") {
			t.Errorf("%s: disconnected events %q, want the ServiceReload message", c.Label, c.Disconnected)
		}
	case strings.HasPrefix(c.Label, "go") && c.ConnectionID != "":
		if !c.sawDisconnected {
			t.Errorf("%s: no system/disconnected message before the close", c.Label)
		}
	}
}

// dialDrainClient opens a raw WebSocket to the drain hub; a JSON client reads its
// `connected` message for its connection id.
func dialDrainClient(t *testing.T, endpoint, protocol string, dc *drainClient) (net.Conn, io.Reader) {
	t.Helper()
	d := ws.Dialer{Timeout: 10 * time.Second}
	if protocol != "" {
		d.Protocols = []string{protocol}
	}
	conn, br, _, err := d.Dial(t.Context(), "ws"+strings.TrimPrefix(endpoint, "http")+"/client/hubs/"+drainHub)
	if err != nil {
		t.Fatalf("dial %s: %v", dc.Label, err)
	}
	t.Cleanup(func() { conn.Close() })
	var rd io.Reader = conn
	if br != nil {
		rd = io.MultiReader(br, conn)
	}
	if protocol != "" {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, _, err := wsutil.ReadServerData(struct {
			io.Reader
			io.Writer
		}{rd, conn})
		var m struct{ Event, ConnectionID string }
		if err != nil || json.Unmarshal(p, &m) != nil || m.Event != "connected" {
			t.Fatalf("%s: first message %q (%v), want connected", dc.Label, p, err)
		}
		dc.ConnectionID = m.ConnectionID
		_ = conn.SetReadDeadline(time.Time{})
	}
	return conn, rd
}

// readDrainClient records data messages until the close frame.
func readDrainClient(conn net.Conn, rd io.Reader, pubsub bool, dc *drainClient) {
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	rw := struct {
		io.Reader
		io.Writer
	}{rd, conn}
	for {
		p, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				dc.Close = &struct {
					Code   int    `json:"code"`
					Reason string `json:"reason"`
					At     int64  `json:"at"`
				}{int(ce.Code), ce.Reason, time.Now().UnixMilli()}
			} else {
				dc.err = fmt.Errorf("read before the close: %w", err)
			}
			return
		}
		data := string(p)
		if pubsub {
			var m struct{ Type, Event, Data string }
			if err := json.Unmarshal(p, &m); err != nil {
				dc.err = fmt.Errorf("bad JSON %q", p)
				return
			}
			if m.Type == "system" && m.Event == "disconnected" {
				dc.sawDisconnected = true
				continue
			}
			if dc.sawDisconnected {
				dc.err = fmt.Errorf("%q after the disconnected message", p)
				return
			}
			data = m.Data
		}
		dc.Messages = append(dc.Messages, struct {
			Data string `json:"data"`
			At   int64  `json:"at"`
		}{data, time.Now().UnixMilli()})
	}
}

// restSendToAll sends text to every connection of the drain hub and returns the status (0 on
// a transport error).
func restSendToAll(srv *server, text string) int {
	u := srv.endpoint + "/api/hubs/" + drainHub + "/:send?api-version=2024-01-01"
	tok, err := engine.SignRESTToken(srv.key, u, time.Now())
	if err != nil {
		return 0
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(text))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitUnready polls /api/health until it answers 503 and returns how long that took.
func waitUnready(t *testing.T, srv *server) time.Duration {
	t.Helper()
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	for time.Since(start) < 5*time.Second {
		if resp, err := client.Get(srv.endpoint + "/api/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				return time.Since(start)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("/api/health never answered 503 after SIGTERM")
	return 0
}

// nodeLine reads the script's stdout until a line of the given type and decodes it into v.
func nodeLine(t *testing.T, n *nodeScript, typ string, v any) {
	t.Helper()
	timeout := time.After(scenarioTimeout)
	for {
		select {
		case line, ok := <-n.lines:
			if !ok {
				t.Fatalf("drain.mjs ended before a %q line\n%s", typ, n.stderrText())
			}
			var head struct{ Type string }
			if err := json.Unmarshal(line, &head); err != nil || head.Type != typ {
				t.Logf("node: %.300s (%v)", line, err)
				continue
			}
			if err := json.Unmarshal(line, v); err != nil {
				t.Fatalf("drain.mjs %s line: %v", typ, err)
			}
			return
		case <-timeout:
			t.Fatalf("no %q line from drain.mjs within %v\n%s", typ, scenarioTimeout, n.stderrText())
		}
	}
}

// eventRecorder is the app server: it answers abuse protection and records the connection id
// of every system event by name.
type eventRecorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string][]string // event name → connection ids in arrival order
}

func startEventRecorder(t *testing.T) *eventRecorder {
	t.Helper()
	r := &eventRecorder{ids: map[string][]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		name := req.Header.Get("ce-eventName")
		r.ids[name] = append(r.ids[name], req.Header.Get("ce-connectionId"))
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *eventRecorder) port() int { return r.srv.Listener.Addr().(*net.TCPAddr).Port }

// idsOf returns the sorted, distinct connection ids of event.
func (r *eventRecorder) idsOf(event string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.ids[event])
	slices.Sort(out)
	return slices.Compact(out)
}

func (r *eventRecorder) waitFor(t *testing.T, event string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(r.idsOf(event)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("app server got %d %q events, want %d", len(r.idsOf(event)), event, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordingProxy forwards TCP connections to target and remembers each one's HTTP request
// line, so a test sees the reliable clients' recovery handshakes (awps_reconnection_token).
type recordingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	lines  []string
}

func startRecordingProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{ln: ln, target: target}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				p.forward(c)
			}()
		}
	}()
	return p
}

func (p *recordingProxy) addr() string { return p.ln.Addr().String() }

func (p *recordingProxy) forward(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	p.mu.Lock()
	p.lines = append(p.lines, line)
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(up, line); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, br)
		up.Close()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

// recoveries counts the recovery handshakes for connection id.
func (p *recordingProxy) recoveries(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, line := range p.lines {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		u, err := url.Parse(fields[1])
		if err != nil {
			continue
		}
		q := u.Query()
		if q.Get("awps_connection_id") == id && q.Get("awps_reconnection_token") != "" {
			n++
		}
	}
	return n
}

// TestE2EDrainExitCodes: a second SIGTERM closes the rest at once and the exit is 0; a
// drain that shutdown.timeoutSeconds cuts exits 1.
func TestE2EDrainExitCodes(t *testing.T) {
	const n = 10
	run := func(t *testing.T, shutdown string, during func(*server)) (*server, []*drainClient) {
		srv := startServerEnv(t, fmt.Sprintf("hubs:\n  %s: {anonymousConnectPolicy: allow}\nshutdown: %s\n", drainHub, shutdown), nil)
		clients := make([]*drainClient, n)
		var readers sync.WaitGroup
		for i := range clients {
			clients[i] = &drainClient{Label: fmt.Sprint("go", i)}
			conn, rd := dialDrainClient(t, srv.endpoint, "", clients[i])
			readers.Add(1)
			go func() {
				defer readers.Done()
				readDrainClient(conn, rd, false, clients[i])
			}()
		}
		srv.signalStop()
		during(srv)
		readers.Wait()
		select {
		case <-srv.exited:
		case <-time.After(serverStopTimeout):
			t.Fatalf("server did not exit within %v of SIGTERM", serverStopTimeout)
		}
		return srv, clients
	}

	t.Run("second-signal", func(t *testing.T) {
		start := time.Now()
		srv, clients := run(t, "{drainDelaySeconds: 0, closeRatePerSecond: 1, timeoutSeconds: 30}", func(srv *server) {
			time.Sleep(1500 * time.Millisecond) // one or two closed at 1/s
			_ = srv.cmd.Process.Signal(syscall.SIGTERM)
		})
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("drain took %v after a second SIGTERM; paced it would take %ds", took, n)
		}
		if srv.waitErr != nil {
			t.Errorf("exit after a hurried drain: %v, want 0", srv.waitErr)
		}
		for _, c := range clients {
			if c.err != nil || c.Close == nil || c.Close.Code != int(ws.StatusGoingAway) {
				t.Errorf("%s: close %+v (%v), want 1001", c.Label, c.Close, c.err)
			}
		}
		if !strings.Contains(srv.stdoutText(), "received again") {
			t.Errorf("stdout does not mention the second signal:\n%s", srv.stdoutText())
		}
	})

	t.Run("timeout", func(t *testing.T) {
		srv, _ := run(t, "{drainDelaySeconds: 0, closeRatePerSecond: 1, timeoutSeconds: 1.5}", func(*server) {})
		var ee *exec.ExitError
		if !errors.As(srv.waitErr, &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit after a cut drain: %v, want exit code 1", srv.waitErr)
		}
		if !strings.Contains(srv.stderrText(), "shutdown timeout passed") {
			t.Errorf("stderr does not say the drain was cut:\n%s", srv.stderrText())
		}
	})
}
