package engine

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// upstreamCall is one event the test upstream received.
type upstreamCall struct {
	event  string
	header http.Header
	body   []byte
}

// testUpstream is a real HTTP event handler: it answers abuse protection, records
// every event and replies with reply(event, body) when set (200 empty otherwise).
type testUpstream struct {
	t     *testing.T
	srv   *httptest.Server
	calls chan upstreamCall
	mu    sync.Mutex
	reply func(w http.ResponseWriter, call upstreamCall)
}

func newTestUpstream(t *testing.T) *testUpstream {
	t.Helper()
	u := &testUpstream{t: t, calls: make(chan upstreamCall, 100)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		body, _ := io.ReadAll(r.Body)
		call := upstreamCall{event: r.Header.Get("ce-eventName"), header: r.Header.Clone(), body: body}
		u.calls <- call // recorded before the reply, so a test can see a call that hangs
		u.mu.Lock()
		reply := u.reply
		u.mu.Unlock()
		if reply != nil {
			reply(w, call)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *testUpstream) setReply(f func(w http.ResponseWriter, call upstreamCall)) {
	u.mu.Lock()
	u.reply = f
	u.mu.Unlock()
}

// next returns the next recorded event, skipping none, within 5 s.
func (u *testUpstream) next(want string) upstreamCall {
	u.t.Helper()
	select {
	case c := <-u.calls:
		if c.event != want {
			u.t.Fatalf("upstream got event %q, want %q", c.event, want)
		}
		return c
	case <-time.After(5 * time.Second):
		u.t.Fatalf("upstream got no %q event within 5s", want)
	}
	return upstreamCall{}
}

func upstreamServer(t *testing.T, u *testUpstream, systemEvents ...string) *Server {
	t.Helper()
	return testServer(t, func(c *Config) {
		c.Upstream.RetryDelays = []time.Duration{} // failures are immediate in tests
		c.Hubs["up"] = HubSettings{EventHandlers: []EventHandler{{
			URLTemplate:      u.srv.URL + "/api/{hub}/{event}",
			UserEventPattern: "*",
			SystemEvents:     systemEvents,
		}}}
	})
}

func TestUpstreamConnectAppliesResult(t *testing.T) {
	u := newTestUpstream(t)
	s := upstreamServer(t, u, "connect", "connected", "disconnected")
	u.setReply(func(w http.ResponseWriter, call upstreamCall) {
		if call.event == "connect" {
			w.Header().Set("ce-connectionState", "c3RhdGU=")
			_, _ = w.Write([]byte(`{"userId":"fromUpstream","groups":["g1"],"roles":["webpubsub.joinLeaveGroup"],"subprotocol":null}`))
		}
	})
	c, m := mustJSONClient(t, s, "up", "fromToken", nil, nil)
	connect := u.next("connect")
	var req struct {
		Claims       map[string][]string
		Query        map[string][]string
		Headers      map[string][]string
		Subprotocols []string
	}
	if err := json.Unmarshal(connect.body, &req); err != nil {
		t.Fatalf("connect body %q: %v", connect.body, err)
	}
	if req.Claims["sub"][0] != "fromToken" || len(req.Subprotocols) != 1 || req.Subprotocols[0] != "json.webpubsub.azure.v1" {
		t.Fatalf("connect body %s", connect.body)
	}
	if _, leaked := req.Query["access_token"]; leaked {
		t.Fatal("access_token forwarded in the connect query")
	}
	if m["userId"] != "fromUpstream" {
		t.Fatalf("connected %v", m)
	}
	connected := u.next("connected")
	if connected.header.Get("ce-userId") != "fromUpstream" || connected.header.Get("ce-connectionState") != "c3RhdGU=" ||
		connected.header.Get("ce-subprotocol") != "json.webpubsub.azure.v1" {
		t.Fatalf("connected headers %v", connected.header)
	}
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/up/groups/g1", "", nil), 200)
	c.send(`{"type":"joinGroup","group":"g2","ackId":1}`) // role from the upstream
	jsonEq(t, c.readJSON(), `{"type":"ack","ackId":1,"success":true}`)
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/up/connections/"+m["connectionId"].(string)+"?reason=bye", "", nil), 204)
	d := u.next("disconnected")
	if !strings.Contains(string(d.body), `"reason":"bye"`) {
		t.Fatalf("disconnected body %s", d.body)
	}
}

func TestUpstreamConnectRejected(t *testing.T) {
	u := newTestUpstream(t)
	s := upstreamServer(t, u, "connect", "connected", "disconnected")
	for _, tc := range []struct {
		status, want int
	}{{401, 401}, {403, 403}, {500, 500}} {
		u.setReply(func(w http.ResponseWriter, call upstreamCall) {
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte("no"))
		})
		tok := clientToken(t, s, "up", "u", nil, nil)
		_, err := dial(t, s, "/client/hubs/up?access_token="+tok, "json.webpubsub.azure.v1")
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != tc.want {
			t.Fatalf("upstream %d: dial err %v, want HTTP %d", tc.status, err, tc.want)
		}
		u.next("connect")
	}
	select {
	case c := <-u.calls:
		t.Fatalf("unexpected %q event after rejected connects", c.event)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestUpstreamSimpleClientMessages(t *testing.T) {
	u := newTestUpstream(t)
	s := upstreamServer(t, u)
	tok := clientToken(t, s, "up", "u", nil, nil)
	c, err := dial(t, s, "/client/hubs/up?access_token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	u.setReply(func(w http.ResponseWriter, call upstreamCall) {
		switch string(call.body) {
		case "text":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("world"))
		case "json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"a":1}`))
		case "\x00\xff":
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte{1, 2})
		case "empty":
			w.Header().Set("Content-Type", "application/octet-stream") // express res.success()
		case "boom":
			w.WriteHeader(500)
		}
	})
	c.send("text")
	if call := u.next("message"); call.header.Get("Content-Type") != "text/plain" && !strings.HasPrefix(call.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("content type %q", call.header.Get("Content-Type"))
	}
	if op, p, _ := c.read(); op != ws.OpText || string(p) != "world" {
		t.Fatalf("reply %v %q", op, p)
	}
	c.send("json")
	u.next("message")
	if op, p, _ := c.read(); op != ws.OpText || string(p) != `{"a":1}` {
		t.Fatalf("reply %v %q", op, p)
	}
	if err := wsWrite(c, ws.OpBinary, []byte{0, 0xff}); err != nil {
		t.Fatal(err)
	}
	if call := u.next("message"); call.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("binary content type %q", call.header.Get("Content-Type"))
	}
	if op, p, _ := c.read(); op != ws.OpBinary || string(p) != "\x01\x02" {
		t.Fatalf("reply %v %q", op, p)
	}
	c.send("empty")
	u.next("message")
	c.expectSilence(200 * time.Millisecond)
	c.send("boom")
	u.next("message")
	if code, _ := c.expectClose(); code != ws.StatusInternalServerError {
		t.Fatalf("close %d after upstream 500, want 1011", code)
	}
}

func TestUpstreamNoMessageHandlerClosesSimpleClient(t *testing.T) {
	u := newTestUpstream(t)
	s := testServer(t, func(c *Config) {
		c.Hubs["up"] = HubSettings{EventHandlers: []EventHandler{{URLTemplate: u.srv.URL + "/{event}", SystemEvents: []string{"connected"}}}}
	})
	tok := clientToken(t, s, "up", "u", nil, nil)
	c, err := dial(t, s, "/client/hubs/up?access_token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	u.next("connected")
	c.send("hello")
	if code, _ := c.expectClose(); code != ws.StatusNormalClosure {
		t.Fatalf("close %d, want 1000", code)
	}
}

func TestUpstreamPubSubEvents(t *testing.T) {
	u := newTestUpstream(t)
	s := upstreamServer(t, u)
	c, _ := mustJSONClient(t, s, "up", "u", nil, nil)
	u.setReply(func(w http.ResponseWriter, call upstreamCall) {
		switch call.event {
		case "echo":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("ce-connectionState", "bmV4dA==")
			_, _ = w.Write([]byte(`{"echo":` + string(call.body) + `}`))
		case "bin":
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte("hi"))
		case "fail":
			w.WriteHeader(500)
		}
	})
	c.send(`{"type":"event","event":"echo","ackId":6,"dataType":"json","data":{"x":1}}`)
	call := u.next("echo")
	if call.header.Get("ce-type") != "azure.webpubsub.user.echo" || !strings.HasPrefix(call.header.Get("Content-Type"), "application/json") || string(call.body) != `{"x":1}` {
		t.Fatalf("event request %v %q", call.header, call.body)
	}
	jsonEq(t, c.readJSON(), `{"type":"message","from":"server","dataType":"json","data":{"echo":{"x":1}}}`)
	jsonEq(t, c.readJSON(), `{"type":"ack","ackId":6,"success":true}`)
	c.send(`{"type":"event","event":"bin","dataType":"text","data":"ping me"}`)
	if call := u.next("bin"); call.header.Get("ce-connectionState") != "bmV4dA==" || string(call.body) != "ping me" {
		t.Fatalf("state not sent back, or body: %v %q", call.header, call.body)
	}
	jsonEq(t, c.readJSON(), `{"type":"message","from":"server","dataType":"binary","data":"aGk="}`)
	c.send(`{"type":"invoke","invocationId":"1","target":"event","event":"echo","dataType":"json","data":2}`)
	u.next("echo")
	jsonEq(t, c.readJSON(), `{"type":"invokeResponse","invocationId":"1","success":true,"dataType":"json","data":{"echo":2}}`)
	c.send(`{"type":"event","event":"fail","ackId":7,"dataType":"text","data":"x"}`)
	u.next("fail")
	if m := c.readJSON(); m["success"] != false || m["error"].(map[string]any)["name"] != "InvocationFailed" {
		t.Fatalf("ack after upstream 500: %v", m)
	}
	c.send(`{"type":"event","event":"fail","dataType":"text","data":"x"}`)
	u.next("fail")
	if code, before := c.expectClose(); code != ws.StatusPolicyViolation || len(before) != 1 || before[0]["event"] != "disconnected" {
		t.Fatalf("close %d after %v", code, before)
	}
}

// TestUpstreamBlockingOrderAndIsolation: a connection's events go one at a time, and
// a slow upstream call never stalls other connections on the same loops.
func TestUpstreamBlockingOrderAndIsolation(t *testing.T) {
	u := newTestUpstream(t)
	s := upstreamServer(t, u)
	release := make(chan struct{})
	u.setReply(func(w http.ResponseWriter, call upstreamCall) {
		if string(call.body) == "slow" {
			<-release
		}
	})
	slow, _ := mustJSONClient(t, s, "up", "a", nil, nil)
	others := make([]*wsClient, 4)
	for i := range others {
		others[i], _ = mustJSONClient(t, s, "up", "b", nil, nil)
	}
	slow.send(`{"type":"event","event":"e","dataType":"text","data":"slow"}`)
	slow.send(`{"type":"event","event":"e","dataType":"text","data":"second"}`)
	u.next("e")
	for _, o := range others { // every loop keeps serving while the upstream hangs
		o.send(`{"type":"ping"}`)
		jsonEq(t, o.readJSON(), `{"type":"pong"}`)
	}
	select {
	case c := <-u.calls:
		t.Fatalf("second event %q sent before the first answered", c.body)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if c := u.next("e"); string(c.body) != "second" {
		t.Fatalf("second event body %q", c.body)
	}
}

func wsWrite(c *wsClient, op ws.OpCode, p []byte) error {
	return ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewFrame(op, true, p)))
}

// TestUpstreamFaults: a misbehaving upstream gives the documented client-visible
// outcome and the connection (or the server) carries on.
func TestUpstreamFaults(t *testing.T) {
	u := newTestUpstream(t)
	s := upstreamServer(t, u)
	c, _ := mustJSONClient(t, s, "up", "u", nil, nil)
	u.setReply(func(w http.ResponseWriter, call upstreamCall) {
		switch call.event {
		case "html":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<p>no</p>"))
		case "badjson":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{nope"))
		case "redirect":
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(http.StatusFound)
		case "huge":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(strings.Repeat("x", 2<<20)))
		}
	})
	for i, ev := range []string{"html", "badjson", "redirect", "huge"} {
		c.send(`{"type":"event","event":"` + ev + `","ackId":` + string(rune('1'+i)) + `,"dataType":"text","data":"x"}`)
		u.next(ev)
		m := c.readJSON()
		if m["type"] != "ack" || m["success"] != false || m["error"].(map[string]any)["name"] != "InvocationFailed" {
			t.Fatalf("%s: got %v, want an InvocationFailed ack", ev, m)
		}
	}
	c.send(`{"type":"ping"}`)
	jsonEq(t, c.readJSON(), `{"type":"pong"}`)
}

func TestUpstreamUnreachableConnect(t *testing.T) {
	u := newTestUpstream(t)
	url := u.srv.URL
	u.srv.Close() // nothing listens there any more
	s := testServer(t, func(c *Config) {
		c.Upstream.RetryDelays = []time.Duration{}
		c.Upstream.ValidationDisabled = true
		c.Hubs["up"] = HubSettings{EventHandlers: []EventHandler{{URLTemplate: url + "/{event}", SystemEvents: []string{"connect"}}}}
	})
	tok := clientToken(t, s, "up", "u", nil, nil)
	_, err := dial(t, s, "/client/hubs/up?access_token="+tok, "json.webpubsub.azure.v1")
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != 500 {
		t.Fatalf("dial err %v, want HTTP 500", err)
	}
	// other hubs are unaffected
	mustJSONClient(t, s, "hub1", "u", nil, nil)
}
