package engine

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestRESTHealth(t *testing.T) {
	s := testServer(t, nil)
	for _, m := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(m, s.testURL()+"/api/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s /api/health = %d", m, resp.StatusCode)
		}
	}
}

// TestRESTHealthBesideBusyPool: the probe is answered on the loop, so a worker pool
// that is all busy neither delays it nor hides a drain's 503 (operations.md §2). The
// only worker is stalled after a send's 202; the probe must still answer, pipelined
// twice on one keep-alive connection, and 503 once draining.
func TestRESTHealthBesideBusyPool(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := testServer(t, func(c *Config) { c.Workers = 1 })
	hook := func() { once.Do(func() { close(stalled); <-release }) }
	s.beforeFanout.Store(&hook)
	defer close(release)
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:send", "text/plain", []byte("x")), 202)
	<-stalled

	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	probe := func(want int) {
		t.Helper()
		// Two requests in one write: the second waits in the loop's buffer.
		if _, err := conn.Write([]byte("GET /api/health HTTP/1.1\r\nHost: x\r\n\r\nHEAD /api/health/ HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		for _, method := range []string{"GET", "HEAD"} {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("%s /api/health with the pool busy (want %d): %v", method, want, err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("%s /api/health = %d, want %d", method, resp.StatusCode, want)
			}
		}
	}
	probe(200)
	s.draining.Store(true)
	probe(503)
}

// TestRESTSends covers send to all, user, connection and group in the three
// content types, with `excluded` (rest-api.md §1.4, client-examples.md E3.12, E6).
func TestRESTSends(t *testing.T) {
	s := testServer(t, nil)
	a, am := mustJSONClient(t, s, "hub1", "user1", nil, []string{"group1"})
	b, bm := mustJSONClient(t, s, "hub1", "user2", nil, []string{"group1"})
	tok := clientToken(t, s, "hub1", "user3", nil, []string{"group1"})
	simple, err := dial(t, s, "/client/hubs/hub1?access_token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	aID, bID := am["connectionId"].(string), bm["connectionId"].(string)
	_ = bID

	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:send?api-version=2024-12-01", "text/plain", []byte("Hello World")), 202)
	want := `{"type":"message","from":"server","dataType":"text","data":"Hello World"}`
	jsonEq(t, a.readJSON(), want)
	jsonEq(t, b.readJSON(), want)
	if op, p, _ := simple.read(); op != ws.OpText || string(p) != "Hello World" {
		t.Fatalf("simple got %v %q", op, p)
	}

	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:send?excluded="+aID, "application/octet-stream", []byte{1, 2, 3}), 202)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"server","dataType":"binary","data":"AQID"}`)
	if op, p, _ := simple.read(); op != ws.OpBinary || string(p) != "\x01\x02\x03" {
		t.Fatalf("simple got %v %q", op, p)
	}
	a.expectSilence(150 * time.Millisecond)

	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/users/user2/:send", "application/json", []byte(`"Hello World"`)), 202)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"server","dataType":"json","data":"Hello World"}`)

	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/connections/"+aID+"/:send", "application/json; charset=utf-8", []byte(`{"Hello":"World"}`)), 202)
	jsonEq(t, a.readJSON(), `{"type":"message","from":"server","dataType":"json","data":{"Hello":"World"}}`)

	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/groups/group1/:send?excluded="+aID, "text/plain", []byte("x")), 202)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"group","group":"group1","dataType":"text","data":"x"}`)
	if op, p, _ := simple.read(); op != ws.OpText || string(p) != "x" {
		t.Fatalf("simple got %v %q", op, p)
	}
	a.expectSilence(150 * time.Millisecond)

	// Sends to nobody are still accepted.
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/connections/nope/:send", "text/plain", nil), 202)
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/groups/empty/:send", "text/plain", nil), 202)
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/Other/users/nobody/:send", "text/plain", nil), 202)
}

func TestRESTMembershipAndExists(t *testing.T) {
	s := testServer(t, nil)
	a, am := mustJSONClient(t, s, "hub1", "user1", nil, nil)
	_, _ = mustJSONClient(t, s, "hub1", "user1", nil, nil)
	id := am["connectionId"].(string)

	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/connections/"+id, "", nil), 200)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/HUB1/connections/"+id, "", nil), 200) // hubs are case-insensitive
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/connections/nope", "", nil), 404)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/users/user1", "", nil), 200)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/users/nobody", "", nil), 404)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/g1", "", nil), 404)

	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/groups/g1/connections/"+id, "", nil), 200)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/g1", "", nil), 200)
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/groups/g1/:send", "text/plain", []byte("in g1")), 202)
	if m := a.readJSON(); m["data"] != "in g1" {
		t.Fatalf("group send: %v", m)
	}
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/groups/g1/connections/"+id, "", nil), 204)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/g1", "", nil), 404)
	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/groups/g1/connections/nope", "", nil), 404)
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/groups/g1/connections/nope", "", nil), 204)

	// user ↔ group: both of user1's connections
	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/users/user1/groups/"+encodeURIComponent("room 1/x"), "", nil), 200)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/"+encodeURIComponent("room 1/x"), "", nil), 200)
	got := s.reg.GroupMembers("hub1", "room 1/x")
	if len(got) != 2 {
		t.Fatalf("members of %q = %d, want 2", "room 1/x", len(got))
	}
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/users/user1/groups/"+encodeURIComponent("room 1/x"), "", nil), 204)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/"+encodeURIComponent("room 1/x"), "", nil), 404)
	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/users/nobody/groups/g", "", nil), 200)

	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/users/user1/groups/g2", "", nil), 200)
	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/users/user1/groups/g3", "", nil), 200)
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/connections/"+id+"/groups", "", nil), 204)
	if g := s.reg.Conn("hub1", id).Groups(); len(g) != 0 {
		t.Fatalf("after remove-from-all: %v", g)
	}
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/g2", "", nil), 200) // the other connection
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/users/user1/groups", "", nil), 204)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/g2", "", nil), 404)
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/g3", "", nil), 404)
}

func TestRESTClose(t *testing.T) {
	s := testServer(t, nil)
	t.Run("connection-with-reason", func(t *testing.T) {
		c, m := mustJSONClient(t, s, "hub1", "u", nil, nil)
		wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/connections/"+m["connectionId"].(string)+"?reason=kicked", "", nil), 204)
		code, before := c.expectClose()
		if code != ws.StatusPolicyViolation || len(before) != 1 || before[0]["message"] != "kicked" {
			t.Fatalf("close %d after %v", code, before)
		}
		wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/connections/gone", "", nil), 204)
	})
	t.Run("all-user-group-with-excluded", func(t *testing.T) {
		keep, km := mustJSONClient(t, s, "hub2", "u1", nil, []string{"g"})
		c1, _ := mustJSONClient(t, s, "hub2", "u1", nil, nil)
		c2, _ := mustJSONClient(t, s, "hub2", "u2", nil, []string{"g"})
		c3, _ := mustJSONClient(t, s, "hub2", "u3", nil, nil)
		keepID := km["connectionId"].(string)
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub2/users/u1/:closeConnections?excluded="+keepID, "", nil), 204)
		if code, _ := c1.expectClose(); code != ws.StatusPolicyViolation {
			t.Fatalf("user close %d", code)
		}
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub2/groups/g/:closeConnections?excluded="+keepID+"&reason=bye", "", nil), 204)
		if code, before := c2.expectClose(); code != ws.StatusPolicyViolation || before[0]["message"] != "bye" {
			t.Fatalf("group close %d %v", code, before)
		}
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub2/:closeConnections?excluded="+keepID, "", nil), 204)
		if code, _ := c3.expectClose(); code != ws.StatusPolicyViolation {
			t.Fatalf("hub close %d", code)
		}
		keep.send(`{"type":"ping"}`)
		jsonEq(t, keep.readJSON(), `{"type":"pong"}`)
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub2/:closeConnections", "", nil), 204)
		keep.expectClose()
	})
}

// TestRESTBadInput: every bad request gets its status and an ErrorDetail body,
// and the server keeps serving.
func TestRESTBadInput(t *testing.T) {
	s := testServer(t, func(c *Config) { c.Limits.MaxMessageBytes = 1024 })
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		signed                          bool
	}{
		{"unknown-route", "GET", "/api/nope", "", "", 404, true},
		{"unknown-hub-route", "POST", "/api/hubs/hub1/nope/:send", "text/plain", "", 404, true},
		{"wrong-method", "GET", "/api/hubs/hub1/:send", "", "", 405, true},
		{"no-token", "POST", "/api/hubs/hub1/:send", "text/plain", "x", 401, false},
		{"bad-hub", "POST", "/api/hubs/1hub/:send", "text/plain", "x", 400, true},
		{"no-content-type", "POST", "/api/hubs/hub1/:send", "", "x", 400, true},
		{"bad-content-type", "POST", "/api/hubs/hub1/:send", "text/html", "x", 400, true},
		{"bad-json", "POST", "/api/hubs/hub1/:send", "application/json", "{nope", 400, true},
		{"bad-ttl", "POST", "/api/hubs/hub1/:send?messageTtlSeconds=301", "text/plain", "x", 400, true},
		{"whitespace-group", "POST", "/api/hubs/hub1/groups/%20%20/:send", "text/plain", "x", 400, true},
		{"too-large", "POST", "/api/hubs/hub1/:send", "text/plain", strings.Repeat("x", 2000), 413, true},
		{"unknown-top-level", "GET", "/nothing-here", "", "", 404, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			if tc.signed {
				resp = restReq(t, s, tc.method, tc.path, tc.ctype, []byte(tc.body))
			} else {
				req, _ := http.NewRequest(tc.method, s.testURL()+tc.path, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", tc.ctype)
				var err error
				if resp, err = http.DefaultClient.Do(req); err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
			}
			wantStatus(t, resp, tc.status)
			readErrorDetail(t, resp)
		})
	}
	t.Run("bad-signature", func(t *testing.T) {
		u := s.testURL() + "/api/hubs/hub1/:send"
		tok, _ := SignRESTToken("wrong-key", u, time.Now())
		req, _ := http.NewRequest("POST", u, strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("malformed-http", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("GARBAGE\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, _ := io.ReadAll(conn)
		if !strings.HasPrefix(string(b), "HTTP/1.1 400") {
			t.Fatalf("got %q", b)
		}
	})
	t.Run("keep-alive-pipelined", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
		_, _ = conn.Write([]byte(req + req + "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, _ := io.ReadAll(conn)
		if n := strings.Count(string(b), "HTTP/1.1 200"); n != 3 {
			t.Fatalf("%d responses in %q", n, b)
		}
	})
	// still healthy
	wantStatus(t, restReq(t, s, "GET", "/api/health", "", nil), 200)
}

// TestSlowConsumer: a client that stops reading is closed once its pending bytes
// pass the limit; a reading client in the same hub still gets every message.
func TestSlowConsumer(t *testing.T) {
	s := testServer(t, func(c *Config) { c.Limits.MaxOutboundBytes = 4 << 20 })
	_, sm := mustJSONClient(t, s, "hub1", "slow", nil, nil)
	fast, _ := mustJSONClient(t, s, "hub1", "fast", nil, nil)
	slowID := sm["connectionId"].(string)
	payload := strings.Repeat("x", 256<<10)
	got := make(chan int, 1)
	go func() {
		n := 0
		for {
			_ = fast.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			op, _, err := fast.read()
			if err != nil || op != ws.OpText {
				break
			}
			n++
			if n == 100 {
				break
			}
		}
		got <- n
	}()
	for i := 0; i < 100; i++ {
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:send", "text/plain", []byte(payload)), 202)
	}
	if n := <-got; n != 100 {
		t.Fatalf("fast client got %d of 100 messages", n)
	}
	waitFor(t, func() bool { return s.reg.Conn("hub1", slowID) == nil })
}

func TestRESTPermissions(t *testing.T) {
	s := testServer(t, nil)
	c, m := mustJSONClient(t, s, "hub1", "u", nil, nil)
	id := m["connectionId"].(string)
	perm := "/api/hubs/hub1/permissions/joinLeaveGroup/connections/" + id
	wantStatus(t, restReq(t, s, "HEAD", perm+"?targetName=g1", "", nil), 404)
	c.send(`{"type":"joinGroup","group":"g1","ackId":1}`)
	if r := c.readJSON(); r["success"] != false {
		t.Fatalf("join before grant: %v", r)
	}
	wantStatus(t, restReq(t, s, "PUT", perm+"?targetName=g1", "", nil), 200)
	wantStatus(t, restReq(t, s, "HEAD", perm+"?targetName=g1", "", nil), 200)
	wantStatus(t, restReq(t, s, "HEAD", perm, "", nil), 404) // group grant is not hub-wide
	c.send(`{"type":"joinGroup","group":"g1","ackId":2}`)
	jsonEq(t, c.readJSON(), `{"type":"ack","ackId":2,"success":true}`)
	wantStatus(t, restReq(t, s, "PUT", perm, "", nil), 200)
	wantStatus(t, restReq(t, s, "HEAD", perm+"?targetName=any", "", nil), 200)
	wantStatus(t, restReq(t, s, "DELETE", perm, "", nil), 204) // clears group grants too
	wantStatus(t, restReq(t, s, "HEAD", perm+"?targetName=g1", "", nil), 404)
	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/permissions/joinLeaveGroup/connections/nope", "", nil), 404)
	wantStatus(t, restReq(t, s, "PUT", "/api/hubs/hub1/permissions/fly/connections/"+id, "", nil), 400)
}

func TestRESTGenerateToken(t *testing.T) {
	s := testServer(t, nil)
	resp := restReq(t, s, "POST", "/api/hubs/hub1/:generateToken?userId=u9&role=webpubsub.joinLeaveGroup&group=g1&minutesToExpire=5", "", nil)
	wantStatus(t, resp, 200)
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		t.Fatalf("body: %v %v", out, err)
	}
	c, err := dial(t, s, "/client/hubs/hub1?access_token="+out.Token, "json.webpubsub.azure.v1")
	if err != nil {
		t.Fatal(err)
	}
	if m := c.readJSON(); m["userId"] != "u9" {
		t.Fatalf("connected %v", m)
	}
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/groups/g1", "", nil), 200)
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/:generateToken?minutesToExpire=0", "", nil), 400)
}

// TestHTTPIdleTimeout: a request head that never completes, and an idle keep-alive
// connection, are both closed by the sweep.
func TestHTTPIdleTimeout(t *testing.T) {
	s := testServer(t, func(c *Config) { c.Limits.HTTPIdleTimeout = time.Second })
	for _, sent := range []string{"GET /api/health HTTP/1.1\r\nHost: x\r\n", "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"} {
		conn, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte(sent))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(conn) // returns at EOF, i.e. when the server closes
		if err != nil {
			t.Fatalf("%q: no close within 5s: %v (read %q)", sent, err, b)
		}
		if time.Since(start) < 900*time.Millisecond {
			t.Fatalf("%q: closed after %v, before the idle timeout", sent, time.Since(start))
		}
	}
}
