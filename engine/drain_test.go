package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// closeSeen is what a client read until its close frame.
type closeSeen struct {
	msgs   []string // data messages before the close
	code   ws.StatusCode
	reason string
	at     time.Time // when the close frame was read
	err    error
}

// untilClose reads until a close frame arrives or d passes. It does not fail the
// test, so many clients can read from their own goroutines.
func (c *wsClient) untilClose(d time.Duration) closeSeen {
	deadline := time.Now().Add(d)
	var cs closeSeen
	for {
		op, p, err := c.readWithin(time.Until(deadline))
		if err != nil {
			cs.err = err
			return cs
		}
		if op == ws.OpClose {
			cs.at = time.Now()
			if len(p) >= 2 {
				cs.code, cs.reason = ws.StatusCode(uint16(p[0])<<8|uint16(p[1])), string(p[2:])
			}
			return cs
		}
		cs.msgs = append(cs.msgs, string(p))
	}
}

// drainServer is a test server with the given drain settings.
func drainServer(t *testing.T, sh Shutdown, mutate func(*Config)) *Server {
	t.Helper()
	return testServer(t, func(c *Config) {
		c.Shutdown = sh
		if mutate != nil {
			mutate(c)
		}
	})
}

// startDrain runs Shutdown in the background; the result arrives on the channel.
func startDrain(s *Server, timeout time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(timeout)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	return done
}

func healthStatus(s *Server) (int, error) {
	resp, err := http.Get(s.testURL() + "/api/health")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func wantDrainResult(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("Shutdown did not return within %v", within)
		return nil
	}
}

// operations.md §2 step 1 and 2: readiness is 503 at once, handshakes are accepted for
// the drain delay and refused after it; open connections keep being served meanwhile.
func TestDrainReadinessThenListenerStops(t *testing.T) {
	s := drainServer(t, Shutdown{DrainDelay: 800 * time.Millisecond, CloseRatePerSecond: -1}, nil)
	old, _ := mustJSONClient(t, s, "hub1", "old", nil, nil)
	if code, err := healthStatus(s); err != nil || code != 200 {
		t.Fatalf("health before the drain: %d %v", code, err)
	}

	start := time.Now()
	done := startDrain(s, 10*time.Second)
	for {
		code, err := healthStatus(s)
		if err != nil {
			t.Fatalf("health during the delay: %v", err)
		}
		if code == 503 {
			break
		}
		if time.Since(start) > 100*time.Millisecond {
			t.Fatalf("health still %d %v after the drain started, want 503 within 100ms", code, time.Since(start))
		}
	}
	t.Logf("health 503 after %v", time.Since(start))

	// Still serving during the delay: a new handshake and a REST send.
	late, _ := mustJSONClient(t, s, "hub1", "late", nil, nil)
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:send", "text/plain", []byte("during the delay")), 202)
	for _, c := range []*wsClient{old, late} {
		if m := c.readJSON(); m["data"] != "during the delay" {
			t.Fatalf("got %v, want the message sent during the delay", m)
		}
	}
	for _, c := range []*wsClient{old, late} {
		cs := c.untilClose(5 * time.Second)
		if cs.err != nil || cs.code != ws.StatusGoingAway {
			t.Fatalf("close %d %q %v", cs.code, cs.reason, cs.err)
		}
		if waited := cs.at.Sub(start); waited < 700*time.Millisecond {
			t.Fatalf("closed %v after the drain started, before the 800ms delay", waited)
		}
	}
	if _, err := dial(t, s, "/client/hubs/anon"); err == nil {
		t.Fatal("a handshake after the drain delay was accepted")
	}
	if err := wantDrainResult(t, done, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Step 2 at the socket: once the listener stops accepting, the kernel refuses new
// connections (ECONNREFUSED: the listening socket is closed, so a balancer's TCP check
// sees it), while the reactor keeps serving what is open: a keep-alive HTTP connection
// still gets answers and the paced closes still run to the end.
func TestDrainListenerRefusesConnects(t *testing.T) {
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: 2}, nil)
	var clients []*wsClient
	for i := range 4 {
		c, _ := mustJSONClient(t, s, "hub1", fmt.Sprint("u", i), nil, nil)
		clients = append(clients, c)
	}
	ka, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ka.Close()
	_ = ka.SetDeadline(time.Now().Add(10 * time.Second))
	kr := bufio.NewReader(ka)
	health := func() int {
		t.Helper()
		if _, err := ka.Write([]byte("GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(kr, nil)
		if err != nil {
			t.Fatalf("health on the open keep-alive connection: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := health(); code != 200 {
		t.Fatalf("health before the drain = %d", code)
	}

	done := startDrain(s, 10*time.Second)
	// A connect just before the swap may be accepted and then reset (OnOpen); once the
	// socket is closed every connect is refused.
	dialErr := func() error {
		c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	// The drain lasts about 1.5 s (4 closes at 2/s); a stopped engine refuses too, so
	// the refusal must come well before it ends.
	began := time.Now()
	for err := dialErr(); !errors.Is(err, syscall.ECONNREFUSED); err = dialErr() {
		if time.Since(began) > 500*time.Millisecond {
			t.Fatalf("connects not refused 500 ms into the drain; the last: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 20 {
		if err := dialErr(); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("a connect after the listener stopped: %v, want ECONNREFUSED", err)
		}
	}
	if code := health(); code != 503 {
		t.Fatalf("health on the open connection during the drain = %d, want 503", code)
	}
	for _, c := range clients { // 4 closes at 2/s: the last ones come after the swap
		if cs := c.untilClose(5 * time.Second); cs.err != nil || cs.code != ws.StatusGoingAway {
			t.Fatalf("close %d %q %v, want 1001", cs.code, cs.reason, cs.err)
		}
	}
	if err := wantDrainResult(t, done, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Step 3: every kind of client gets 1001 ServiceReload; only PubSub clients on a
// non-reliable subprotocol are sent `disconnected` first.
func TestDrainCloseFrames(t *testing.T) {
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: -1}, nil)
	jsonC, _ := mustJSONClient(t, s, "hub1", "j", nil, nil)
	simple, err := dial(t, s, "/client/hubs/hub1?access_token="+clientToken(t, s, "hub1", "s", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	reliable, err := dial(t, s, "/client/hubs/hub1?access_token="+clientToken(t, s, "hub1", "r", nil, nil), "json.reliable.webpubsub.azure.v1")
	if err != nil {
		t.Fatal(err)
	}
	if m := reliable.readJSON(); m["event"] != "connected" {
		t.Fatalf("reliable first message %v", m)
	}
	waitFor(t, func() bool { return s.wsConns.Load() == 3 })
	done := startDrain(s, 10*time.Second)

	cs := jsonC.untilClose(5 * time.Second)
	if cs.err != nil || cs.code != ws.StatusGoingAway || cs.reason != "ServiceReload" || len(cs.msgs) != 1 {
		t.Fatalf("json client: close %d %q after %q (%v)", cs.code, cs.reason, cs.msgs, cs.err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(cs.msgs[0]), &m); err != nil || m["type"] != "system" || m["event"] != "disconnected" ||
		!strings.HasPrefix(fmt.Sprint(m["message"]), "ServiceReload") {
		t.Fatalf("json client got %s before the close, want system/disconnected ServiceReload...", cs.msgs[0])
	}
	for name, c := range map[string]*wsClient{"simple": simple, "reliable": reliable} {
		cs := c.untilClose(5 * time.Second)
		if cs.err != nil || cs.code != ws.StatusGoingAway || cs.reason != "ServiceReload" || len(cs.msgs) != 0 {
			t.Fatalf("%s client: close %d %q after %q (%v), want 1001 ServiceReload alone", name, cs.code, cs.reason, cs.msgs, cs.err)
		}
	}
	if err := wantDrainResult(t, done, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Step 3's pacing, as the clients see it: N closes at rate R take at least N/R, and
// no quarter of them comes in a burst.
func TestDrainPacing(t *testing.T) {
	const n, rate = 40, 20
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: rate}, nil)
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i], _ = mustJSONClient(t, s, "hub1", fmt.Sprint("u", i), nil, nil)
	}
	waitFor(t, func() bool { return s.wsConns.Load() == n })
	seen := make([]closeSeen, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen[i] = c.untilClose(20 * time.Second)
		}()
	}
	start := time.Now()
	done := startDrain(s, 30*time.Second)
	wg.Wait()
	if err := wantDrainResult(t, done, 10*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	at := make([]time.Duration, n)
	for i, cs := range seen {
		if cs.err != nil || cs.code != ws.StatusGoingAway {
			t.Fatalf("client %d: close %d %v", i, cs.code, cs.err)
		}
		at[i] = cs.at.Sub(start)
	}
	slices.Sort(at)
	t.Logf("closes seen from %v to %v", at[0], at[n-1])
	perClose := time.Second / rate
	if want := time.Duration(n) * perClose * 9 / 10; at[n-1] < want {
		t.Fatalf("%d closes at %d/s took %v, want at least %v", n, rate, at[n-1], want)
	}
	for q := 0; q < 4; q++ {
		first, last := at[q*n/4], at[(q+1)*n/4-1]
		if want := time.Duration(n/4-1) * perClose / 3; last-first < want {
			t.Fatalf("closes %d..%d came within %v, want spread over at least %v", q*n/4, (q+1)*n/4-1, last-first, want)
		}
	}
}

// A second signal (Hurry) closes the rest at once instead of at the paced rate.
func TestDrainHurry(t *testing.T) {
	const n, rate = 20, 2 // 10 s if paced
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: rate}, nil)
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i], _ = mustJSONClient(t, s, "hub1", fmt.Sprint("u", i), nil, nil)
	}
	waitFor(t, func() bool { return s.wsConns.Load() == n })
	done := startDrain(s, 30*time.Second)
	time.Sleep(1200 * time.Millisecond)
	if left := s.wsConns.Load(); left < n-4 || left == n {
		t.Fatalf("%d of %d open 1.2s into a drain at %d/s", left, n, rate)
	}
	hurried := time.Now()
	// The second Shutdown is what cmd does on a second SIGTERM; it waits for the first.
	second := startDrain(s, 30*time.Second)
	for i, c := range clients {
		if cs := c.untilClose(5 * time.Second); cs.err != nil || cs.code != ws.StatusGoingAway {
			t.Fatalf("client %d: close %d %v", i, cs.code, cs.err)
		}
	}
	if took := time.Since(hurried); took > 4*time.Second {
		t.Fatalf("the rest closed %v after the hurry, want at once", took)
	}
	if err := wantDrainResult(t, done, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := wantDrainResult(t, second, 5*time.Second); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// Step 5: what is left when Shutdown.Timeout passes is cut, and Shutdown says so. Here
// a handshake waits for an upstream connect event that does not answer in time.
func TestDrainTimeoutCuts(t *testing.T) {
	u := newTestUpstream(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	u.setReply(func(w http.ResponseWriter, call upstreamCall) { <-release })
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: -1, Timeout: 700 * time.Millisecond}, func(c *Config) {
		c.Hubs["up"] = HubSettings{EventHandlers: []EventHandler{{URLTemplate: u.srv.URL + "/{event}", SystemEvents: []string{"connect"}}}}
	})
	other, _ := mustJSONClient(t, s, "hub1", "u", nil, nil)
	go func() { _, _ = dial(t, s, "/client/hubs/up?access_token="+clientToken(t, s, "up", "u", nil, nil)) }()
	u.next("connect")

	start := time.Now()
	err := wantDrainResult(t, startDrain(s, 10*time.Second), 10*time.Second)
	if !errors.Is(err, ErrDrainCut) {
		t.Fatalf("Shutdown = %v, want ErrDrainCut", err)
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Fatalf("cut after %v, before the 700ms timeout", took)
	}
	if cs := other.untilClose(time.Second); cs.code != ws.StatusGoingAway {
		t.Fatalf("the open WebSocket: close %d %v, want 1001 before the cut", cs.code, cs.err)
	}
}

// Step 4, the race: a REST send answered 202 just before the drain, whose fan-out has
// not run yet (the worker is stalled between the response and the dispatch), still
// reaches the client before its 1001.
func TestDrainDeliversSendAnsweredBeforeIt(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: -1}, nil)
	hook := func() {
		once.Do(func() {
			close(stalled)
			<-release
		})
	}
	s.beforeFanout.Store(&hook)
	c, _ := mustJSONClient(t, s, "hub1", "u", nil, nil)
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:send", "text/plain", []byte("accepted")), 202)
	<-stalled
	done := startDrain(s, 10*time.Second)
	waitFor(t, func() bool { return s.draining.Load() })
	c.expectSilence(300 * time.Millisecond) // neither the message nor the close yet
	close(release)

	cs := c.untilClose(5 * time.Second)
	if cs.err != nil || cs.code != ws.StatusGoingAway || len(cs.msgs) != 2 || !strings.Contains(cs.msgs[0], `"data":"accepted"`) {
		t.Fatalf("close %d after %q (%v), want the accepted message, disconnected, then 1001", cs.code, cs.msgs, cs.err)
	}
	if err := wantDrainResult(t, done, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Step 4: the upstream gets `disconnected` for every connection the drain closed
// before Shutdown returns, reliable ones included (a lone node's state dies with it).
func TestDrainSendsDisconnectedEvents(t *testing.T) {
	u := newTestUpstream(t)
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: -1}, func(c *Config) {
		c.Upstream.RetryDelays = []time.Duration{}
		c.Hubs["up"] = HubSettings{AnonymousConnectPolicy: "allow", EventHandlers: []EventHandler{{
			URLTemplate: u.srv.URL + "/{event}", SystemEvents: []string{"disconnected"}}}}
	})
	for _, proto := range []string{"json.webpubsub.azure.v1", "json.reliable.webpubsub.azure.v1"} {
		c, err := dial(t, s, "/client/hubs/up", proto)
		if err != nil {
			t.Fatal(err)
		}
		c.readJSON()
	}
	var slow sync.Once
	u.setReply(func(w http.ResponseWriter, call upstreamCall) {
		slow.Do(func() { time.Sleep(300 * time.Millisecond) }) // Shutdown must wait for it
	})
	if err := wantDrainResult(t, startDrain(s, 10*time.Second), 10*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if st := s.up.Stats(); st.Sent != 2 || st.Pending != 0 {
		t.Fatalf("upstream stats after Shutdown: %+v, want both disconnected events sent", st)
	}
	for range 2 {
		call := u.next("disconnected")
		if !strings.Contains(string(call.body), "ServiceReload") {
			t.Fatalf("disconnected body %s, want the ServiceReload reason", call.body)
		}
	}
}

// Step 4: bytes queued for a client that reads slowly are flushed before its socket is
// closed (gnet's close would drop what the socket cannot take at once).
func TestDrainFlushesQueuedBytes(t *testing.T) {
	s := drainServer(t, Shutdown{DrainDelay: -1, CloseRatePerSecond: -1}, nil)
	// A tiny receive window, so most of the 8 MiB stays queued on the server.
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	d := ws.Dialer{Protocols: []string{"json.webpubsub.azure.v1"}, NetDial: nd.DialContext}
	conn, br, _, err := d.Dial(ctxTimeout(t, 5*time.Second), "ws://"+s.Addr().String()+"/client/hubs/hub1?access_token="+clientToken(t, s, "hub1", "slow", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &wsClient{t: t, conn: conn, br: br}
	if m := c.readJSON(); m["event"] != "connected" {
		t.Fatalf("first message %v", m)
	}
	const sends = 8
	body := bytes.Repeat([]byte("x"), 1<<20-64)
	for range sends {
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:send", "text/plain", body), 202)
	}
	done := startDrain(s, 20*time.Second)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while the client had not read its bytes", err)
	case <-time.After(500 * time.Millisecond):
	}
	cs := c.untilClose(15 * time.Second)
	if cs.err != nil || cs.code != ws.StatusGoingAway || len(cs.msgs) != sends+1 {
		t.Fatalf("close %d after %d messages (%v), want %d messages, disconnected, then 1001", cs.code, len(cs.msgs), cs.err, sends)
	}
	if err := wantDrainResult(t, done, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
