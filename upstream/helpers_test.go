package upstream

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// record is one request an upstream stub received.
type record struct {
	method string
	path   string
	query  string
	header http.Header
	body   []byte
	at     time.Time
}

// stub is a real HTTP upstream. handle answers POSTs; OPTIONS is answered by
// options (default: 200 with WebHook-Allowed-Origin: *).
type stub struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []record
	handle  func(w http.ResponseWriter, r *http.Request, body []byte)
	options func(w http.ResponseWriter, r *http.Request)
}

func newStub(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte)) *stub {
	t.Helper()
	s := &stub{handle: handle}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, record{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), body: body, at: time.Now()})
		opt := s.options
		s.mu.Unlock()
		if r.Method != http.MethodPost {
			if opt != nil {
				opt(w, r)
				return
			}
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		if s.handle != nil {
			s.handle(w, r, body)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stub) setOptions(f func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.options = f
	s.mu.Unlock()
}

// requests returns the recorded requests of method ("" = all).
func (s *stub) requests(method string) []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []record
	for _, r := range s.reqs {
		if method == "" || r.method == method {
			out = append(out, r)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testLogger writes the package's log lines to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// newTestClient returns a Client with fast retries and test logging.
func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 15 * time.Millisecond}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// allHub compiles one handler receiving every event at url+"/{event}".
func allHub(t *testing.T, url string) *Hub {
	t.Helper()
	h, err := CompileHub([]Handler{{URLTemplate: url + "/{hub}/{event}", UserEventPattern: "*", SystemEvents: []string{"connect", "connected", "disconnected"}}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// connectSync runs Connect and waits for its result.
func connectSync(t *testing.T, s *Session, req ConnectRequest) ConnectResult {
	t.Helper()
	ch := make(chan ConnectResult, 1)
	s.Connect(req, func(r ConnectResult) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("connect result timed out")
		return ConnectResult{}
	}
}

// userSync runs UserEvent and waits for its result.
func userSync(t *testing.T, s *Session, name string, ct ContentType, body []byte) EventResult {
	t.Helper()
	ch := make(chan EventResult, 1)
	s.UserEvent(name, ct, body, func(r EventResult) { ch <- r })
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("user event result timed out")
		return EventResult{}
	}
}
