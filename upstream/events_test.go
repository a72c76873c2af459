package upstream

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const testKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"

// §7 test vector.
func TestSignatureVector(t *testing.T) {
	got := Signature("connection1", []string{testKey})
	want := "sha256=ccffbe0c66ac42c03b8ac3a369f09b01b1d3a2e1f30d399a613bd30aa773f4ca"
	if got != want {
		t.Fatalf("Signature = %q, want %q", got, want)
	}
	two := Signature("connection1", []string{testKey, "secondary"})
	if !strings.HasPrefix(two, want+",sha256=") || strings.Contains(two, " ") || len(two) != 2*len(want)+1 {
		t.Fatalf("two keys: %q", two)
	}
	if Signature("connection1", nil) != "" {
		t.Fatal("no keys must give no signature")
	}
}

// headerNames returns the sorted canonical header names of h.
func headerNames(h http.Header) []string {
	var names []string
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func canon(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = textproto.CanonicalMIMEHeaderKey(n)
	}
	sort.Strings(out)
	return out
}

// transport headers net/http shows besides ours.
var transport = []string{"Content-Length"}

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

// §3: every event carries exactly its headers.
func TestEventHeadersExact(t *testing.T) {
	st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {})
	c := newTestClient(t, Config{Keys: []string{testKey, "second"}, RequestOrigin: "wps.example.com"})
	hub, err := CompileHub([]Handler{{URLTemplate: st.srv.URL + "/{hub}/{event}?code=s3cret", UserEventPattern: "*",
		SystemEvents: []string{"connect", "connected", "disconnected"}, BearerToken: "tok"}})
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(SessionInfo{Hub: "Chat", HubKey: hub, ConnectionID: "connection1", UserID: "user1", Subprotocol: "json.webpubsub.azure.v1"})
	if r := connectSync(t, s, ConnectRequest{Subprotocols: []string{"json.webpubsub.azure.v1"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	s.Connected()
	if r := userSync(t, s, "message", Text, []byte("hi")); r.Err != nil {
		t.Fatal(r.Err)
	}
	s.Disconnected("bye")
	waitFor(t, "4 posts", func() bool { return len(st.requests(http.MethodPost)) == 4 })

	base := []string{"WebHook-Request-Origin", "ce-specversion", "ce-awpsversion", "ce-type", "ce-source", "ce-id", "ce-time",
		"ce-hub", "ce-connectionId", "ce-eventName", "ce-userId", "ce-signature", "Content-Type", "Authorization"}
	cases := []struct {
		path, ceType, name, id, ct string
		subprotocol                bool
	}{
		{"/Chat/connect", "azure.webpubsub.sys.connect", "connect", "0", "application/json; charset=utf-8", false},
		{"/Chat/connected", "azure.webpubsub.sys.connected", "connected", "1", "application/json; charset=utf-8", true},
		{"/Chat/message", "azure.webpubsub.user.message", "message", "2", "text/plain; charset=utf-8", true},
		{"/Chat/disconnected", "azure.webpubsub.sys.disconnected", "disconnected", "3", "application/json; charset=utf-8", true},
	}
	posts := st.requests(http.MethodPost)
	for i, tc := range cases {
		t.Run("event="+tc.name, func(t *testing.T) {
			r := posts[i]
			if r.path != tc.path || r.query != "code=s3cret" {
				t.Errorf("url %s?%s, want %s?code=s3cret", r.path, r.query, tc.path)
			}
			want := append(slices.Clone(base), transport...)
			if tc.subprotocol {
				want = append(want, "ce-subprotocol")
			}
			if got, w := headerNames(r.header), canon(want...); !slices.Equal(got, w) {
				t.Errorf("headers\n got %v\nwant %v", got, w)
			}
			h := r.header
			checks := map[string]string{
				"ce-specversion": "1.0", "ce-awpsversion": "1.0", "ce-type": tc.ceType,
				"ce-source": "/hubs/Chat/client/connection1", "ce-id": tc.id, "ce-hub": "Chat",
				"ce-connectionId": "connection1", "ce-eventName": tc.name, "ce-userId": "user1",
				"ce-signature":           Signature("connection1", []string{testKey, "second"}),
				"WebHook-Request-Origin": "wps.example.com", "Content-Type": tc.ct, "Authorization": "Bearer tok",
			}
			if tc.subprotocol {
				checks["ce-subprotocol"] = "json.webpubsub.azure.v1"
			}
			for k, v := range checks {
				if got := h.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want [%q]", k, got, v)
				}
			}
			if !timeRE.MatchString(h.Get("ce-time")) {
				t.Errorf("ce-time %q", h.Get("ce-time"))
			}
		})
	}
	if string(posts[1].body) != "{}" || string(posts[2].body) != "hi" || string(posts[3].body) != `{"reason":"bye"}` {
		t.Errorf("bodies %q %q %q", posts[1].body, posts[2].body, posts[3].body)
	}
	want := `{"claims":{},"query":{},"headers":{},"subprotocols":["json.webpubsub.azure.v1"],"clientCertificates":[]}`
	if string(posts[0].body) != want {
		t.Errorf("connect body %s, want %s", posts[0].body, want)
	}
	// Validation request: OPTIONS with exactly origin and ce-awpsversion.
	opts := st.requests(http.MethodOptions)
	if len(opts) != 1 {
		t.Fatalf("%d OPTIONS, want 1", len(opts))
	}
	if opts[0].path != "/Chat/validate" || opts[0].query != "code=s3cret" {
		t.Errorf("OPTIONS %s?%s", opts[0].path, opts[0].query)
	}
	if got, w := headerNames(opts[0].header), canon(append([]string{"WebHook-Request-Origin", "ce-awpsversion"}, transport...)...); !slices.Equal(got, w) {
		t.Errorf("OPTIONS headers %v, want %v", got, w)
	}
}

// No user, no keys, no auth, no subprotocol: those headers are absent.
func TestEventHeadersOptionalAbsent(t *testing.T) {
	st := newStub(t, nil)
	c := newTestClient(t, Config{})
	s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c1"})
	if r := userSync(t, s, "ev", Binary, []byte{0, 1}); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := st.requests(http.MethodPost)[0]
	want := canon(append([]string{"WebHook-Request-Origin", "ce-specversion", "ce-awpsversion", "ce-type", "ce-source", "ce-id", "ce-time",
		"ce-hub", "ce-connectionId", "ce-eventName", "Content-Type"}, transport...)...)
	if got := headerNames(r.header); !slices.Equal(got, want) {
		t.Errorf("headers\n got %v\nwant %v", got, want)
	}
	if r.header.Get("WebHook-Request-Origin") != "localhost" || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("origin %q content type %q", r.header.Get("WebHook-Request-Origin"), r.header.Get("Content-Type"))
	}
	if r.header.Get("ce-id") != "1" || r.header.Get("ce-type") != "azure.webpubsub.user.ev" {
		t.Errorf("ce-id %q ce-type %q", r.header.Get("ce-id"), r.header.Get("ce-type"))
	}
}

// §3: header names go on the wire in the spec's spelling.
func TestHeaderSpellingOnWire(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	heads := make(chan []string, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					var lines []string
					n := 0
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						l = strings.TrimRight(l, "\r\n")
						if l == "" {
							break
						}
						lines = append(lines, l)
						if v, ok := strings.CutPrefix(strings.ToLower(l), "content-length: "); ok {
							json.Unmarshal([]byte(v), &n)
						}
					}
					if _, err := br.Discard(n); err != nil {
						return
					}
					heads <- lines
					conn.Write([]byte("HTTP/1.1 200 OK\r\nWebHook-Allowed-Origin: *\r\nContent-Length: 0\r\n\r\n"))
				}
			}()
		}
	}()
	c := newTestClient(t, Config{Keys: []string{testKey}, ValidationDisabled: true})
	s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, "http://"+ln.Addr().String()), ConnectionID: "connection1", UserID: "u", Subprotocol: "p"})
	s.Connected()
	var lines []string
	select {
	case lines = <-heads:
	case <-time.After(5 * time.Second):
		t.Fatal("no request")
	}
	var names []string
	for _, l := range lines[1:] {
		names = append(names, l[:strings.IndexByte(l, ':')])
	}
	for _, want := range []string{"WebHook-Request-Origin", "ce-specversion", "ce-awpsversion", "ce-type", "ce-source", "ce-id",
		"ce-time", "ce-hub", "ce-connectionId", "ce-eventName", "ce-userId", "ce-subprotocol", "ce-signature", "Content-Type"} {
		if !slices.Contains(names, want) {
			t.Errorf("header %q not on the wire as spelled; got %v", want, names)
		}
	}
	if strings.Contains(strings.Join(lines, "\n"), "User-Agent") {
		t.Errorf("unexpected User-Agent: %v", lines)
	}
}

// §5: per session, events go in order, one at a time; user events wait for a slow
// connected; disconnected is last; nothing after it.
func TestSessionOrdering(t *testing.T) {
	var mu sync.Mutex
	var log []string
	st := newStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		name := r.Header.Get("ce-eventName")
		mu.Lock()
		log = append(log, "start "+name+" "+r.Header.Get("ce-id"))
		mu.Unlock()
		if name == "connected" {
			time.Sleep(150 * time.Millisecond)
		}
		mu.Lock()
		log = append(log, "end "+name)
		mu.Unlock()
	})
	c := newTestClient(t, Config{})
	s := c.NewSession(SessionInfo{Hub: "h", HubKey: allHub(t, st.srv.URL), ConnectionID: "c"})
	if r := connectSync(t, s, ConnectRequest{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	s.Connected()
	results := make(chan EventResult, 3)
	for _, body := range []string{"a", "b", "c"} {
		s.UserEvent("message", Text, []byte(body), func(r EventResult) { results <- r })
	}
	s.Disconnected("")
	after := make(chan EventResult, 1)
	s.UserEvent("message", Text, []byte("late"), func(r EventResult) { after <- r })
	if r := <-after; !errors.Is(r.Err, ErrClosed) {
		t.Fatalf("event after disconnected: %v, want ErrClosed", r.Err)
	}
	for range 3 {
		if r := <-results; r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	waitFor(t, "disconnected", func() bool { mu.Lock(); defer mu.Unlock(); return len(log) == 12 })
	want := []string{"start connect 0", "end connect", "start connected 1", "end connected",
		"start message 2", "end message", "start message 3", "end message", "start message 4", "end message",
		"start disconnected 5", "end disconnected"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(log, want) {
		t.Fatalf("order\n got %v\nwant %v", log, want)
	}
	var bodies []string
	for _, r := range st.requests(http.MethodPost) {
		if r.header.Get("ce-eventName") == "message" {
			bodies = append(bodies, string(r.body))
		}
	}
	if !slices.Equal(bodies, []string{"a", "b", "c"}) {
		t.Fatalf("bodies %v", bodies)
	}
}

// Connect and user events without a matching handler make no call.
func TestNoHandler(t *testing.T) {
	st := newStub(t, nil)
	hub, err := CompileHub([]Handler{{URLTemplate: st.srv.URL + "/{event}", UserEventPattern: "chat", SystemEvents: []string{"connected"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, Config{})
	s := c.NewSession(SessionInfo{Hub: "h", HubKey: hub, ConnectionID: "c"})
	if r := connectSync(t, s, ConnectRequest{}); r.Err != nil || r.UserID != nil || r.HasRoles {
		t.Fatalf("connect without handler: %+v", r)
	}
	if r := userSync(t, s, "other", Text, nil); !errors.Is(r.Err, ErrNoHandler) {
		t.Fatalf("unmatched user event: %v", r.Err)
	}
	if r := userSync(t, s, "CHAT", Text, []byte("x")); r.Err != nil {
		t.Fatalf("matched (case-insensitive) user event: %v", r.Err)
	}
	s.Disconnected("x") // no handler: nothing sent
	nilSession := c.NewSession(SessionInfo{Hub: "h", ConnectionID: "d"})
	if r := connectSync(t, nilSession, ConnectRequest{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	nilSession.Connected()
	time.Sleep(20 * time.Millisecond)
	posts := st.requests(http.MethodPost)
	if len(posts) != 1 || posts[0].path != "/CHAT" {
		t.Fatalf("posts %+v", posts)
	}
}
