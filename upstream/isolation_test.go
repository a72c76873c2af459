package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A hanging upstream host does not delay events to another host, and
// MaxConnsPerHost bounds the requests in flight to the hanging one.
func TestPerHostIsolation(t *testing.T) {
	release := make(chan struct{})
	inflight := make(chan struct{}, 100)
	slow := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		inflight <- struct{}{}
		<-release
	})
	t.Cleanup(func() { close(release) })
	fast := newStub(t, nil)
	c := newTestClient(t, Config{MaxConnsPerHost: 4, Timeout: 30 * time.Second})
	slowHub, fastHub := allHub(t, slow.srv.URL), allHub(t, fast.srv.URL)
	for i := range 20 {
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: slowHub, ConnectionID: fmt.Sprint("slow", i)})
		s.UserEvent("message", Text, []byte("x"), func(EventResult) {})
	}
	waitFor(t, "4 requests in flight", func() bool { return len(inflight) == 4 })
	start := time.Now()
	for i := range 10 {
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: fastHub, ConnectionID: fmt.Sprint("fast", i)})
		if r := userSync(t, s, "message", Text, []byte("x")); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("fast host took %v behind a hanging one", d)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(inflight); n != 4 {
		t.Fatalf("%d requests in flight to the slow host, want MaxConnsPerHost=4", n)
	}
	if p := c.Stats().Pending; p != 20 {
		t.Fatalf("pending %d, want 20", p)
	}
}

// MaxPendingEvents: beyond it non-blocking events are dropped and counted,
// blocking ones fail with ErrQueueFull; the calls never block.
func TestMaxPendingEvents(t *testing.T) {
	release := make(chan struct{})
	st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) { <-release })
	c := newTestClient(t, Config{MaxPendingEvents: 3, Timeout: 30 * time.Second})
	hub := allHub(t, st.srv.URL)
	var sessions []*Session
	for i := range 6 {
		sessions = append(sessions, c.NewSession(SessionInfo{Hub: "h", HubKey: hub, ConnectionID: fmt.Sprint(i)}))
	}
	start := time.Now()
	for _, s := range sessions[:5] {
		s.Connected()
	}
	got := make(chan EventResult, 1)
	sessions[5].UserEvent("message", Text, nil, func(r EventResult) { got <- r })
	cr := make(chan ConnectResult, 1)
	sessions[5].Connect(ConnectRequest{}, func(r ConnectResult) { cr <- r })
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("calls blocked for %v", d)
	}
	if r := <-got; !errors.Is(r.Err, ErrQueueFull) {
		t.Fatalf("blocking event: %v", r.Err)
	}
	if r := <-cr; !errors.Is(r.Err, ErrQueueFull) {
		t.Fatalf("connect: %v", r.Err)
	}
	if s := c.Stats(); s.Dropped != 4 || s.Pending != 3 {
		t.Fatalf("stats %+v, want Dropped 4, Pending 3", s)
	}
	close(release)
	waitFor(t, "drain", func() bool { return c.Stats().Pending == 0 })
	if s := c.Stats(); s.Sent != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// Close drops queued events: blocking ones complete with ErrClosed.
func TestClose(t *testing.T) {
	release := make(chan struct{})
	st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) { <-release })
	defer close(release)
	c := newTestClient(t, Config{MaxConnsPerHost: 1, Timeout: 30 * time.Second})
	hub := allHub(t, st.srv.URL)
	first := c.NewSession(SessionInfo{Hub: "h", HubKey: hub, ConnectionID: "a"})
	first.Connected()
	waitFor(t, "in flight", func() bool { return len(st.requests(http.MethodPost)) == 1 })
	s := c.NewSession(SessionInfo{Hub: "h", HubKey: hub, ConnectionID: "b"})
	got := make(chan EventResult, 1)
	s.UserEvent("message", Text, nil, func(r EventResult) { got <- r })
	c.Close()
	if r := <-got; !errors.Is(r.Err, ErrClosed) {
		t.Fatalf("queued event after Close: %v", r.Err)
	}
	if r := userSync(t, s, "message", Text, nil); !errors.Is(r.Err, ErrClosed) {
		t.Fatalf("event after Close: %v", r.Err)
	}
}

// §10 and config.md §3.2: handler validation and matching.
func TestCompileHub(t *testing.T) {
	bad := []struct {
		h     Handler
		field string
	}{
		{Handler{URLTemplate: ""}, "urlTemplate"},
		{Handler{URLTemplate: "ftp://x/{event}"}, "urlTemplate"},
		{Handler{URLTemplate: "/relative/{event}"}, "urlTemplate"},
		{Handler{URLTemplate: "http://{hub}.example.com/x"}, "urlTemplate"},
		{Handler{URLTemplate: "http://example.com/{other}"}, "urlTemplate"},
		{Handler{URLTemplate: "tunnel:///api/{event}"}, "urlTemplate"},
		{Handler{URLTemplate: "https://x/{@Microsoft.KeyVault(SecretUri=https://v/s)}"}, "urlTemplate"},
		{Handler{URLTemplate: "http://x/", SystemEvents: []string{"connect", "joined"}}, "systemEvents"},
		{Handler{URLTemplate: "http://x/", UserEventPattern: "a,,b"}, "userEventPattern"},
		{Handler{URLTemplate: "http://x/", UserEventPattern: "a b"}, "userEventPattern"},
	}
	for i, tc := range bad {
		_, err := CompileHub([]Handler{{URLTemplate: "http://ok/"}, tc.h})
		if !errors.Is(err, ErrInvalidHandler) || !strings.Contains(err.Error(), "eventHandlers[1]."+tc.field) {
			t.Errorf("case %d (%+v): err %v, want eventHandlers[1].%s", i, tc.h, err, tc.field)
		}
	}
	_, err := CompileHub([]Handler{{URLTemplate: "ftp://u:pw@x/?code=secret"}})
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "pw") {
		t.Errorf("error leaks a secret: %v", err)
	}

	hub, err := CompileHub([]Handler{
		{URLTemplate: "http://a/{event}?code=1", SystemEvents: []string{"Connect"}},
		{URLTemplate: "https://b:8443/{hub}/{event}", UserEventPattern: " chat , order.* , x?z, a.**", SystemEvents: []string{"connected"}},
		{URLTemplate: "http://c/{event}", UserEventPattern: "*", SystemEvents: []string{"disconnected", "connect"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !hub.HasConnect() || !hub.HasConnected() || !hub.HasDisconnected() {
		t.Fatal("system events")
	}
	if hub.system(sysConnect).index != 0 || hub.system(sysDisconnected).index != 2 {
		t.Fatal("first matching handler must win")
	}
	for name, want := range map[string]int{"chat": 1, "CHAT": 1, "order.new": 1, "order.new.x": 2, "xyz": 1, "a.b.c": 1, "other": 2} {
		if h := hub.user(name); h == nil || h.index != want {
			t.Errorf("user event %q: handler %v, want %d", name, h, want)
		}
	}
	var nilHub *Hub
	if nilHub.HasConnect() || nilHub.HasUserEvent("x") {
		t.Fatal("nil hub has handlers")
	}
	only, _ := CompileHub([]Handler{{URLTemplate: "http://a/", SystemEvents: []string{"connect"}}})
	if only.HasUserEvent("message") || only.HasConnected() {
		t.Fatal("systemEvents-only handler receives user events")
	}
	tg := hub.handlers[1].resolve("my hub", "a/b")
	if tg.url != "https://b:8443/my%20hub/a%2Fb" || tg.hostKey != "https://b:8443" || tg.validateURL != "https://b:8443/my%20hub/validate" {
		t.Fatalf("resolved %+v", tg)
	}
	if got := hub.handlers[0].resolve("h", "connect").logURL; got != "http://a/connect?…" {
		t.Fatalf("logURL %q", got)
	}
}
