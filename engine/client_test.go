package engine

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestHandshake(t *testing.T) {
	s := testServer(t, nil)
	t.Run("json/connected-first", func(t *testing.T) {
		c, m := mustJSONClient(t, s, "hub1", "user1", nil, []string{"group1"})
		if m["userId"] != "user1" || len(m["connectionId"].(string)) < 22 {
			t.Fatalf("connected = %v", m)
		}
		_ = c
		resp := restReq(t, s, "HEAD", "/api/hubs/hub1/groups/group1", "", nil)
		wantStatus(t, resp, 200) // token group joined at connect
	})
	t.Run("json/anonymous-userId-null", func(t *testing.T) {
		_, m := mustJSONClient(t, s, "hub1", "", nil, nil)
		if v, ok := m["userId"]; !ok || v != nil {
			t.Fatalf("userId = %v (present %v), want null", v, ok)
		}
	})
	t.Run("query-hub-and-header-token", func(t *testing.T) {
		tok := clientToken(t, s, "hub1", "u", nil, nil)
		d := ws.Dialer{Protocols: []string{"json.webpubsub.azure.v1"}, Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}})}
		conn, _, hs, err := d.Dial(ctxTimeout(t, 5*time.Second), "ws://"+s.Addr().String()+"/client/?hub=hub1")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if hs.Protocol != "json.webpubsub.azure.v1" {
			t.Fatalf("protocol %q", hs.Protocol)
		}
	})
	t.Run("simple/no-protocol", func(t *testing.T) {
		tok := clientToken(t, s, "hub1", "u", nil, nil)
		c, err := dial(t, s, "/client/hubs/hub1?access_token="+tok)
		if err != nil {
			t.Fatal(err)
		}
		if c.protocol != "" {
			t.Fatalf("protocol %q, want none", c.protocol)
		}
		c.expectSilence(200 * time.Millisecond)
	})
	t.Run("unknown-protocol-echoed", func(t *testing.T) {
		tok := clientToken(t, s, "hub1", "u", nil, nil)
		c, err := dial(t, s, "/client/hubs/hub1?access_token="+tok, "chat.v2")
		if err != nil {
			t.Fatal(err)
		}
		if c.protocol != "chat.v2" {
			t.Fatalf("protocol %q, want chat.v2", c.protocol)
		}
	})
	t.Run("anonymous-hub-allows-no-token", func(t *testing.T) {
		if _, err := dial(t, s, "/client/hubs/anon", "json.webpubsub.azure.v1"); err != nil {
			t.Fatal(err)
		}
	})
	rejections := []struct {
		name, path string
		status     int
	}{
		{"no-token", "/client/hubs/hub1", 401},
		{"bad-token", "/client/hubs/hub1?access_token=abc.def.ghi", 401},
		{"wrong-hub-token", "/client/hubs/hub2?access_token=" + clientToken(t, s, "hub1", "u", nil, nil), 401},
		{"bad-hub-name", "/client/hubs/1hub?access_token=x", 400},
		{"unknown-client-path", "/client/nope/hub1", 404},
		{"bad-group-claim", "/client/hubs/hub1?access_token=" + clientToken(t, s, "hub1", "u", nil, []string{"   "}), 400},
	}
	for _, tc := range rejections {
		t.Run("reject/"+tc.name, func(t *testing.T) {
			_, err := dial(t, s, tc.path, "json.webpubsub.azure.v1")
			var se ws.StatusError
			if !errors.As(err, &se) || int(se) != tc.status {
				t.Fatalf("err = %v, want HTTP %d", err, tc.status)
			}
		})
	}
	t.Run("recovery-refused-with-1008", func(t *testing.T) {
		c, err := dial(t, s, "/client/hubs/hub1?awps_connection_id=abc&awps_reconnection_token=x", "json.reliable.webpubsub.azure.v1")
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := c.expectClose(); code != ws.StatusPolicyViolation {
			t.Fatalf("close %d, want 1008", code)
		}
	})
	t.Run("reject/not-an-upgrade", func(t *testing.T) {
		tok := clientToken(t, s, "hub1", "u", nil, nil)
		resp, err := http.Get(s.testURL() + "/client/hubs/hub1?access_token=" + tok)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
}

// TestJSONProtocol walks client-examples.md E3 with two clients.
func TestJSONProtocol(t *testing.T) {
	s := testServer(t, nil)
	a, _ := mustJSONClient(t, s, "hub1", "user1", []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.group1"}, []string{"group1"})
	b, _ := mustJSONClient(t, s, "hub1", "user2", []string{"webpubsub.joinLeaveGroup"}, []string{"group1"})

	// E3.1
	a.send(`{"type":"joinGroup","group":"group2","ackId":1}`)
	jsonEq(t, a.readJSON(), `{"type":"ack","ackId":1,"success":true}`)
	a.send(`{"type":"sendToGroup","group":"group2","ackId":2,"dataType":"text","data":"hi","noEcho":false}`)
	m := a.readJSON()
	if m["success"] != false || m["error"].(map[string]any)["name"] != "Forbidden" {
		t.Fatalf("E3.1 forbidden: %v", m)
	}
	a.send(`{"type":"sendToGroup","group":"group1","ackId":3,"dataType":"json","data":{"hello":"world"},"noEcho":false}`)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"group","group":"group1","fromUserId":"user1","dataType":"json","data":{"hello":"world"}}`)
	got := []map[string]any{a.readJSON(), a.readJSON()}
	if got[0]["type"] != "message" || got[1]["type"] != "ack" || got[1]["success"] != true {
		t.Fatalf("E3.1 echo then ack: %v", got)
	}
	// E3.2 noEcho
	a.send(`{"type":"sendToGroup","group":"group1","ackId":4,"dataType":"text","data":"quiet","noEcho":true}`)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"group","group":"group1","fromUserId":"user1","dataType":"text","data":"quiet"}`)
	jsonEq(t, a.readJSON(), `{"type":"ack","ackId":4,"success":true}`)
	// E3.3 duplicate
	a.send(`{"type":"sendToGroup","group":"group1","ackId":3,"dataType":"text","data":"again","noEcho":false}`)
	m = a.readJSON()
	if m["error"].(map[string]any)["name"] != "Duplicate" {
		t.Fatalf("E3.3: %v", m)
	}
	// E3.4 binary, E3.5 casing, E3.6 default json
	a.send(`{"type":"sendToGroup","group":"group1","dataType":"binary","data":"AQID","noEcho":true}`)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"group","group":"group1","fromUserId":"user1","dataType":"binary","data":"AQID"}`)
	a.send(`{"type":"sendToGroup","group":"group1","ackId":5,"noEcho":true,"dataType":"Text","data":"from dotnet"}`)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"group","group":"group1","fromUserId":"user1","dataType":"text","data":"from dotnet"}`)
	jsonEq(t, a.readJSON(), `{"type":"ack","ackId":5,"success":true}`)
	a.send(`{"type":"sendToGroup","group":"group1","data":[1,2,3],"noEcho":true}`)
	jsonEq(t, b.readJSON(), `{"type":"message","from":"group","group":"group1","fromUserId":"user1","dataType":"json","data":[1,2,3]}`)
	// E3.8 ping
	a.send(`{"type":"ping"}`)
	jsonEq(t, a.readJSON(), `{"type":"pong"}`)
	// E3.10 validation failure with ackId keeps the connection
	a.send(`{"type":"sendToGroup","group":"group1","ackId":7,"dataType":"text","data":{"not":"a string"}}`)
	m = a.readJSON()
	if m["ackId"] != float64(7) || m["error"].(map[string]any)["name"] != "BadRequest" {
		t.Fatalf("E3.10: %v", m)
	}
	// event without an upstream handler, with ackId
	a.send(`{"type":"event","event":"echo","ackId":8,"dataType":"text","data":"x"}`)
	m = a.readJSON()
	if m["error"].(map[string]any)["name"] != "InvocationFailed" {
		t.Fatalf("event ack: %v", m)
	}
	// leave: B no longer receives group1
	b.send(`{"type":"leaveGroup","group":"group1","ackId":1}`)
	jsonEq(t, b.readJSON(), `{"type":"ack","ackId":1,"success":true}`)
	a.send(`{"type":"sendToGroup","group":"group1","ackId":9,"dataType":"text","data":"after leave","noEcho":true}`)
	jsonEq(t, a.readJSON(), `{"type":"ack","ackId":9,"success":true}`)
	b.expectSilence(200 * time.Millisecond)
}

func TestJSONFireAndForgetFailure(t *testing.T) {
	s := testServer(t, nil)
	c, _ := mustJSONClient(t, s, "hub1", "", nil, nil)
	c.send(`{"type":"joinGroup","group":"secret"}`) // E3.9: no permission, no ackId
	c.send(`{"type":"ping"}`)
	jsonEq(t, c.readJSON(), `{"type":"pong"}`) // still open, nothing else sent
	resp := restReq(t, s, "HEAD", "/api/hubs/hub1/groups/secret", "", nil)
	wantStatus(t, resp, 404)
}

func TestJSONProtocolViolation(t *testing.T) {
	s := testServer(t, nil)
	for _, bad := range []string{"this is not json", `{"type":"nope"}`, `[1,2]`, `{"type":"joinGroup","group":"g","ackId":-1}`} {
		t.Run(bad, func(t *testing.T) {
			c, _ := mustJSONClient(t, s, "hub1", "u", nil, nil)
			other, _ := mustJSONClient(t, s, "hub1", "v", nil, nil)
			c.send(bad)
			code, before := c.expectClose()
			if code != ws.StatusPolicyViolation {
				t.Fatalf("close code %d, want 1008", code)
			}
			if len(before) != 1 || before[0]["event"] != "disconnected" || !strings.HasPrefix(before[0]["message"].(string), "BadRequest") {
				t.Fatalf("before close: %v", before)
			}
			other.send(`{"type":"ping"}`)
			jsonEq(t, other.readJSON(), `{"type":"pong"}`)
		})
	}
}

func TestOversizeMessage(t *testing.T) {
	s := testServer(t, func(c *Config) { c.Limits.MaxMessageBytes = 1024 })
	c, _ := mustJSONClient(t, s, "hub1", "u", nil, nil)
	c.send(`{"type":"event","event":"e","data":"` + strings.Repeat("x", 2000) + `"}`)
	code, before := c.expectClose()
	if code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	if len(before) != 1 || before[0]["event"] != "disconnected" {
		t.Fatalf("before close: %v", before)
	}
}

func TestFragmentedMessage(t *testing.T) {
	s := testServer(t, nil)
	c, _ := mustJSONClient(t, s, "hub1", "u", nil, nil)
	msg := []byte(`{"type":"ping"}`)
	frames := []ws.Frame{ws.NewFrame(ws.OpText, false, msg[:5]), ws.NewFrame(ws.OpContinuation, false, msg[5:9]), ws.NewFrame(ws.OpContinuation, true, msg[9:])}
	for _, f := range frames {
		if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
			t.Fatal(err)
		}
	}
	jsonEq(t, c.readJSON(), `{"type":"pong"}`)
}

func TestClientClose(t *testing.T) {
	s := testServer(t, nil)
	c, m := mustJSONClient(t, s, "hub1", "u", nil, nil)
	id := m["connectionId"].(string)
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))); err != nil {
		t.Fatal(err)
	}
	code, _ := c.expectClose()
	if code != ws.StatusNormalClosure {
		t.Fatalf("close reply %d, want 1000", code)
	}
	waitFor(t, func() bool {
		return restReq(t, s, "HEAD", "/api/hubs/hub1/connections/"+id, "", nil).StatusCode == 404
	})
}

func TestKeepAlivePing(t *testing.T) {
	s := testServer(t, func(c *Config) { c.DefaultHub.KeepAliveInterval = time.Second })
	c, _ := mustJSONClient(t, s, "hub1", "u", nil, nil)
	_ = c.conn.SetReadDeadline(time.Now().Add(4 * time.Second))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		t.Fatal(err)
	}
	if h.OpCode != ws.OpPing {
		t.Fatalf("opcode %v, want ping", h.OpCode)
	}
}

func TestShutdownClosesClients(t *testing.T) {
	s := testServer(t, nil)
	c, _ := mustJSONClient(t, s, "hub1", "u", nil, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	code, before := c.expectClose()
	if code != ws.StatusGoingAway || len(before) != 1 || before[0]["event"] != "disconnected" {
		t.Fatalf("close %d after %v", code, before)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
