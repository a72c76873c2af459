package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// §9: abuse protection.
func TestValidation(t *testing.T) {
	cases := []struct {
		name   string
		opts   func(w http.ResponseWriter, r *http.Request)
		public string
		ok     bool
	}{
		{"allowed=star", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("WebHook-Allowed-Origin", "*") }, "", true},
		{"allowed=origin", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WebHook-Allowed-Origin", "WPS.example.com")
		}, "", true},
		{"allowed=comma-joined", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WebHook-Allowed-Origin", "localhost:8080 , wps.example.com")
		}, "", true},
		{"allowed=second-line", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("WebHook-Allowed-Origin", "other.example.com")
			w.Header().Add("WebHook-Allowed-Origin", "wps.example.com:8443")
		}, "wps.example.com:8443", true},
		{"allowed=other", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WebHook-Allowed-Origin", "evil.example.com")
		}, "", false},
		{"allowed=missing", func(w http.ResponseWriter, r *http.Request) {}, "", false},
		{"status=400", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			w.WriteHeader(400)
		}, "", false},
		{"status=404-then-get", func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodOptions {
				w.WriteHeader(404)
				return
			}
			w.Header().Set("WebHook-Allowed-Origin", "*")
		}, "", true},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "/elsewhere")
			w.Header().Set("WebHook-Allowed-Origin", "*")
			w.WriteHeader(302)
		}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStub(t, nil)
			st.setOptions(tc.opts)
			c := newTestClient(t, Config{RequestOrigin: "wps.example.com", PublicHostPort: tc.public})
			s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
			r := userSync(t, s, "message", Text, []byte("x"))
			posts := len(st.requests(http.MethodPost))
			if tc.ok {
				if r.Err != nil || posts != 1 {
					t.Fatalf("want accepted: err %v, %d posts", r.Err, posts)
				}
			} else if !errors.Is(r.Err, ErrNotValidated) || posts != 0 {
				t.Fatalf("want ErrNotValidated and no POST: err %v, %d posts", r.Err, posts)
			}
			for _, v := range st.requests("") {
				if v.method != http.MethodPost && v.header.Get("WebHook-Request-Origin") != "wps.example.com" {
					t.Errorf("%s without origin", v.method)
				}
			}
		})
	}
}

// §9.4: success is cached, then revalidated in the background; failure backs off
// and events fail meanwhile without new OPTIONS; validation can be disabled.
func TestValidationCacheAndBackoff(t *testing.T) {
	t.Run("cache", func(t *testing.T) {
		st := newStub(t, nil)
		c := newTestClient(t, Config{ValidationSuccessCache: 100 * time.Millisecond})
		hub := allHub(t, st.srv.URL)
		for i := range 5 {
			s := c.NewSession(SessionInfo{Hub: "h", HubKey: hub, ConnectionID: fmt.Sprint(i)})
			if r := userSync(t, s, "message", Text, []byte("x")); r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		if n := len(st.requests(http.MethodOptions)); n != 1 {
			t.Fatalf("%d OPTIONS for one URL, want 1", n)
		}
		time.Sleep(120 * time.Millisecond)
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: hub, ConnectionID: "late"})
		if r := userSync(t, s, "message", Text, []byte("x")); r.Err != nil {
			t.Fatal(r.Err)
		}
		waitFor(t, "background revalidation", func() bool { return len(st.requests(http.MethodOptions)) == 2 })
		// Another hub name resolves to another validation URL.
		s2 := c.NewSession(SessionInfo{Hub: "other", HubKey: hub, ConnectionID: "x"})
		if r := userSync(t, s2, "message", Text, []byte("x")); r.Err != nil {
			t.Fatal(r.Err)
		}
		if o := st.requests(http.MethodOptions); len(o) != 3 || o[2].path != "/other/validate" {
			t.Fatalf("OPTIONS %d", len(o))
		}
	})
	t.Run("backoff", func(t *testing.T) {
		st := newStub(t, nil)
		var allow atomic.Bool
		st.setOptions(func(w http.ResponseWriter, r *http.Request) {
			if allow.Load() {
				w.Header().Set("WebHook-Allowed-Origin", "*")
			}
		})
		c := newTestClient(t, Config{})
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
		for range 3 {
			if r := userSync(t, s, "message", Text, []byte("x")); !errors.Is(r.Err, ErrNotValidated) {
				t.Fatalf("err %v", r.Err)
			}
		}
		s.Connected() // non-blocking: fails too, counted
		if n := len(st.requests(http.MethodOptions)); n != 1 {
			t.Fatalf("%d OPTIONS during back-off, want 1", n)
		}
		allow.Store(true)
		time.Sleep(1100 * time.Millisecond) // first back-off step is 1s
		if r := userSync(t, s, "message", Text, []byte("x")); r.Err != nil {
			t.Fatalf("after back-off: %v", r.Err)
		}
		if st := c.Stats(); st.Failed != 4 || st.Sent != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		st := newStub(t, nil)
		st.setOptions(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
		c := newTestClient(t, Config{ValidationDisabled: true})
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
		if r := userSync(t, s, "message", Text, []byte("x")); r.Err != nil {
			t.Fatal(r.Err)
		}
		if n := len(st.requests(http.MethodOptions)); n != 0 {
			t.Fatalf("%d OPTIONS with validation disabled", n)
		}
	})
}

// §11: retries on 5xx, 408 and network errors with the same ce-id and body;
// none on 4xx, 429 or timeout.
func TestRetries(t *testing.T) {
	cases := []struct {
		name     string
		statuses []int
		posts    int
		ok       bool
	}{
		{"503-then-200", []int{503, 200}, 2, true},
		{"500x3-then-200", []int{500, 502, 500, 200}, 4, true},
		{"408-then-200", []int{408, 200}, 2, true},
		{"500-always", []int{500, 500, 500, 500, 500}, 4, false},
		{"400", []int{400, 200}, 1, false},
		{"429", []int{429, 200}, 1, false},
		{"404", []int{404, 200}, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				i := int(n.Add(1)) - 1
				w.WriteHeader(tc.statuses[min(i, len(tc.statuses)-1)])
			})
			c := newTestClient(t, Config{})
			s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
			r := userSync(t, s, "message", Text, []byte("payload"))
			if (r.Err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", r.Err, tc.ok)
			}
			var se *StatusError
			if !tc.ok && !errors.As(r.Err, &se) {
				t.Fatalf("err %T %v, want *StatusError", r.Err, r.Err)
			}
			posts := st.requests(http.MethodPost)
			if len(posts) != tc.posts {
				t.Fatalf("%d posts, want %d", len(posts), tc.posts)
			}
			for _, p := range posts {
				if p.header.Get("ce-id") != "1" || string(p.body) != "payload" || p.header.Get("ce-time") != posts[0].header.Get("ce-time") {
					t.Fatalf("retry changed the event: id %q body %q", p.header.Get("ce-id"), p.body)
				}
			}
			if got := c.Stats().Retried; got != uint64(tc.posts-1) {
				t.Fatalf("Retried %d", got)
			}
		})
	}
	t.Run("network-error", func(t *testing.T) {
		st := newStub(t, nil)
		url := st.srv.URL
		st.srv.Close()
		c := newTestClient(t, Config{ValidationDisabled: true})
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, url), ConnectionID: "c"})
		r := userSync(t, s, "message", Text, []byte("x"))
		if r.Err == nil || c.Stats().Retried != 3 {
			t.Fatalf("err %v stats %+v", r.Err, c.Stats())
		}
	})
	t.Run("timeout-not-retried", func(t *testing.T) {
		release := make(chan struct{})
		st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) { <-release })
		t.Cleanup(func() { close(release) })
		c := newTestClient(t, Config{Timeout: 100 * time.Millisecond})
		s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
		start := time.Now()
		r := userSync(t, s, "message", Text, []byte("x"))
		if !errors.Is(r.Err, ErrTimeout) {
			t.Fatalf("err %v, want ErrTimeout", r.Err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
		if n := len(st.requests(http.MethodPost)); n != 1 {
			t.Fatalf("%d posts, want 1", n)
		}
	})
}

// §6.2: user-event responses.
func TestUserEventResponses(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 2048)
	cases := []struct {
		name    string
		ct      string // "-" = no Content-Type header
		status  int
		body    []byte
		err     error
		hasBody bool
		kind    ContentType
		valid   bool
	}{
		{"express-success-empty", "application/octet-stream", 200, nil, nil, false, Binary, false},
		{"204", "", 204, nil, nil, false, Binary, false},
		{"empty-odd-type", "image/png", 200, nil, nil, false, Binary, false},
		{"text", "text/plain; charset=utf-8", 200, []byte("hello"), nil, true, Text, false},
		{"json", "application/json; charset=utf-8", 200, []byte(`{"a":1}`), nil, true, JSON, true},
		{"json-upper", "Application/JSON", 200, []byte(`[1]`), nil, true, JSON, true},
		{"json-invalid", "application/json", 200, []byte(`{nope`), nil, true, JSON, false},
		{"binary", "application/octet-stream", 200, []byte{0, 1, 2}, nil, true, Binary, false},
		{"missing-type", "-", 200, []byte{9}, nil, true, Binary, false},
		{"protobuf", "application/x-protobuf", 200, []byte{1}, nil, true, Protobuf, false},
		{"wrong-type", "text/html", 200, []byte("<p>"), ErrBadContentType, false, Binary, false},
		{"too-large", "text/plain", 200, big, ErrResponseTooLarge, false, Binary, false},
		{"redirect", "text/plain", 307, []byte("go"), ErrRedirect, false, Binary, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				if tc.ct == "-" {
					w.Header()["Content-Type"] = nil
				} else if tc.ct != "" {
					w.Header().Set("Content-Type", tc.ct)
				}
				if tc.status == 307 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				w.Write(tc.body)
			})
			c := newTestClient(t, Config{MaxResponseBytes: 1024})
			s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
			r := userSync(t, s, "message", Text, []byte("x"))
			if tc.err != nil {
				if !errors.Is(r.Err, tc.err) {
					t.Fatalf("err %v, want %v", r.Err, tc.err)
				}
				if n := len(st.requests(http.MethodPost)); n != 1 {
					t.Fatalf("%d posts (no retry expected)", n)
				}
				return
			}
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if r.HasBody != tc.hasBody || r.ContentType != tc.kind || r.ValidJSON != tc.valid || (tc.hasBody && !bytes.Equal(r.Body, tc.body)) {
				t.Fatalf("result %+v", r)
			}
		})
	}
}

// §8: connection state round trip, clearing, limits; non-blocking answers
// change nothing.
func TestConnectionState(t *testing.T) {
	var next atomic.Value // header values to answer with, per event name
	st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		m := next.Load().(map[string][]string)
		for _, v := range m[r.Header.Get("ce-eventName")] {
			w.Header().Add("ce-connectionState", v)
		}
	})
	c := newTestClient(t, Config{MaxConnectionStateBytes: 64})
	s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
	next.Store(map[string][]string{"connect": {"eyJhIjoxfQ=="}, "connected": {"ignored"}})
	if r := connectSync(t, s, ConnectRequest{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	s.Connected()
	next.Store(map[string][]string{"connected": {"ignored"}, "one": {"s2"}, "two": {""}})
	if r := userSync(t, s, "one", Text, nil); r.Err != nil {
		t.Fatal(r.Err)
	}
	if s.ConnectionState() != "s2" {
		t.Fatalf("state %q", s.ConnectionState())
	}
	if r := userSync(t, s, "two", Text, nil); r.Err != nil { // empty header clears
		t.Fatal(r.Err)
	}
	if r := userSync(t, s, "three", Text, nil); r.Err != nil {
		t.Fatal(r.Err)
	}
	posts := st.requests(http.MethodPost)
	got := []string{}
	for _, p := range posts {
		got = append(got, p.header.Get("ce-eventName")+"="+strings.Join(p.header.Values("ce-connectionState"), "|"))
	}
	want := "connect= connected=eyJhIjoxfQ== one=eyJhIjoxfQ== two=s2 three="
	if strings.Join(got, " ") != want {
		t.Fatalf("states\n got %v\nwant %v", strings.Join(got, " "), want)
	}

	next.Store(map[string][]string{"big": {strings.Repeat("a", 65)}, "dup": {"x", "y"}, "ok": {strings.Repeat("b", 64)}})
	if r := userSync(t, s, "big", Text, nil); !errors.Is(r.Err, ErrConnectionState) {
		t.Fatalf("over limit: %v", r.Err)
	}
	if r := userSync(t, s, "dup", Text, nil); !errors.Is(r.Err, ErrConnectionState) {
		t.Fatalf("duplicate header: %v", r.Err)
	}
	if s.ConnectionState() != "" {
		t.Fatalf("a failed response changed the state to %q", s.ConnectionState())
	}
	if r := userSync(t, s, "ok", Text, nil); r.Err != nil || len(s.ConnectionState()) != 64 {
		t.Fatalf("at limit: %v", r.Err)
	}
	// Connect over the limit fails the connect.
	next.Store(map[string][]string{"connect": {strings.Repeat("a", 65)}})
	s2 := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "d"})
	if r := connectSync(t, s2, ConnectRequest{}); !errors.Is(r.Err, ErrConnectionState) {
		t.Fatalf("connect over limit: %v", r.Err)
	}
}
