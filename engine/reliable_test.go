package engine

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

const reliableProtocol = "json.reliable.webpubsub.azure.v1"

// reliableClient dials a json.reliable client and returns it with its connected message.
func reliableClient(t *testing.T, s *Server, hub, user string, groups []string) (*wsClient, map[string]any) {
	t.Helper()
	tok := clientToken(t, s, hub, user, nil, groups)
	c, err := dial(t, s, "/client/hubs/"+hub+"?access_token="+tok, reliableProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if c.protocol != reliableProtocol {
		t.Fatalf("protocol %q", c.protocol)
	}
	m := c.readJSON()
	if m["event"] != "connected" || m["reconnectionToken"] == nil || m["reconnectionToken"] == "" {
		t.Fatalf("connected %v", m)
	}
	return c, m
}

func recoverPath(hub string, m map[string]any) string {
	return fmt.Sprintf("/client/hubs/%s?awps_connection_id=%s&awps_reconnection_token=%s", hub,
		url.QueryEscape(m["connectionId"].(string)), url.QueryEscape(m["reconnectionToken"].(string)))
}

func groupSend(t *testing.T, s *Server, hub, group, text string) {
	t.Helper()
	wantStatus(t, restReq(t, s, "POST", "/api/hubs/"+hub+"/groups/"+group+"/:send", "text/plain", []byte(text)), 202)
}

func wantSeq(t *testing.T, m map[string]any, seq int, data string) {
	t.Helper()
	if m["type"] != "message" || m["sequenceId"] != float64(seq) || m["data"] != data {
		t.Fatalf("got %v, want message %q with sequenceId %d", m, data, seq)
	}
}

// TestReliableRecovery: a dropped reliable connection keeps its id, groups and
// unacked messages; recovering redelivers exactly what was not acked, in order,
// with the original sequence ids, then new traffic continues the sequence.
func TestReliableRecovery(t *testing.T) {
	s := testServer(t, nil)
	c, m := reliableClient(t, s, "hub1", "u", []string{"g"})
	for i := 1; i <= 3; i++ {
		groupSend(t, s, "hub1", "g", fmt.Sprint("m", i))
		wantSeq(t, c.readJSON(), i, fmt.Sprint("m", i))
	}
	c.send(`{"type":"joinGroup","group":"other","ackId":9}`) // no role: Forbidden, but the ackId is used
	if a := c.readJSON(); a["type"] != "ack" || a["success"] != false {
		t.Fatalf("ack %v", a)
	}
	c.send(`{"type":"sequenceAck","sequenceId":2}`)
	c.send(`{"type":"ping"}`)
	jsonEq(t, c.readJSON(), `{"type":"pong"}`) // the ack was processed before the ping
	c.conn.Close()                             // network loss: no close frame
	id := m["connectionId"].(string)
	waitFor(t, func() bool { return s.wsConns.Load() == 0 })
	wantStatus(t, restReq(t, s, "HEAD", "/api/hubs/hub1/connections/"+id, "", nil), 200) // kept for recovery
	groupSend(t, s, "hub1", "g", "m4")                                                   // buffered while detached

	r, err := dial(t, s, recoverPath("hub1", m), reliableProtocol)
	if err != nil {
		t.Fatal(err)
	}
	again := r.readJSON()
	if again["event"] != "connected" || again["connectionId"] != id || again["reconnectionToken"] != m["reconnectionToken"] {
		t.Fatalf("connected after recovery %v", again)
	}
	wantSeq(t, r.readJSON(), 3, "m3") // unacked, original id
	wantSeq(t, r.readJSON(), 4, "m4")
	groupSend(t, s, "hub1", "g", "m5")
	wantSeq(t, r.readJSON(), 5, "m5")
	// ackIds are per logical connection: a duplicate across the recovery is caught.
	r.send(`{"type":"joinGroup","group":"other","ackId":9}`)
	if a := r.readJSON(); a["error"].(map[string]any)["name"] != "Duplicate" {
		t.Fatalf("ack after recovery %v, want Duplicate", a)
	}
}

func TestReliableRecoveryRefused(t *testing.T) {
	s := testServer(t, func(c *Config) { c.Limits.RecoveryWindow = 500 * time.Millisecond })
	_, m := reliableClient(t, s, "hub1", "u", nil)
	bad := map[string]any{"connectionId": m["connectionId"], "reconnectionToken": "forged"}
	c, err := dial(t, s, recoverPath("hub1", bad), reliableProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := c.expectClose(); code != ws.StatusPolicyViolation {
		t.Fatalf("forged token: close %d, want 1008", code)
	}

	c2, m2 := reliableClient(t, s, "hub1", "v", nil)
	c2.conn.Close()
	id := m2["connectionId"].(string)
	waitFor(t, func() bool { // the window expires: the logical connection is removed
		return restReq(t, s, "HEAD", "/api/hubs/hub1/connections/"+id, "", nil).StatusCode == 404
	})
	late, err := dial(t, s, recoverPath("hub1", m2), reliableProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := late.expectClose(); code != ws.StatusPolicyViolation {
		t.Fatalf("expired: close %d, want 1008", code)
	}
}

// TestReliableServerCloseIsTerminal: a REST close ends the logical connection.
func TestReliableServerCloseIsTerminal(t *testing.T) {
	s := testServer(t, nil)
	c, m := reliableClient(t, s, "hub1", "u", nil)
	id := m["connectionId"].(string)
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/hub1/connections/"+id+"?reason=kicked", "", nil), 204)
	code, before := c.expectClose()
	if code != ws.StatusPolicyViolation || len(before) != 1 || before[0]["message"] != "kicked" {
		t.Fatalf("close %d after %v", code, before)
	}
	waitFor(t, func() bool {
		return restReq(t, s, "HEAD", "/api/hubs/hub1/connections/"+id, "", nil).StatusCode == 404
	})
	r, err := dial(t, s, recoverPath("hub1", m), reliableProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := r.expectClose(); code != ws.StatusPolicyViolation {
		t.Fatalf("recovery after REST close: %d, want 1008", code)
	}
}

// TestReliableSequenceAckClamp: an ack beyond what was sent is clamped, not fatal.
func TestReliableSequenceAckClamp(t *testing.T) {
	s := testServer(t, nil)
	c, _ := reliableClient(t, s, "hub1", "u", []string{"g"})
	groupSend(t, s, "hub1", "g", "a")
	wantSeq(t, c.readJSON(), 1, "a")
	c.send(`{"type":"sequenceAck","sequenceId":99}`)
	groupSend(t, s, "hub1", "g", "b")
	wantSeq(t, c.readJSON(), 2, "b")
}

// TestReliableBufferOverflow: more than 1000 unacknowledged messages end the logical
// connection for good (client-protocol.md §7.4).
func TestReliableBufferOverflow(t *testing.T) {
	s := testServer(t, nil)
	c, m := reliableClient(t, s, "hub1", "u", []string{"g"})
	id := m["connectionId"].(string)
	c.conn.Close() // detached: nothing is acknowledged any more
	waitFor(t, func() bool { return s.wsConns.Load() == 0 })
	rc := s.reg.Conn("hub1", id)
	if rc == nil {
		t.Fatal("detached reliable connection was not kept")
	}
	rel := rc.Handle.(*conn).rel
	for i := 0; i <= maxUnackedMessages; i++ {
		rel.send(func(seq uint64) []byte { return []byte("x") }, nil, 0)
	}
	waitFor(t, func() bool { return s.reg.Conn("hub1", id) == nil })
	r, err := dial(t, s, recoverPath("hub1", m), reliableProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := r.expectClose(); code != ws.StatusPolicyViolation {
		t.Fatalf("recovery after overflow: close %d, want 1008", code)
	}
}

// TestReliableAckTrimsBuffer: acknowledged messages leave the buffer; an ack at or
// below the current one changes nothing.
func TestReliableAckTrimsBuffer(t *testing.T) {
	r := &reliable{}
	for i := 0; i < 5; i++ {
		r.send(func(seq uint64) []byte { return []byte{byte(seq)} }, nil, 0)
	}
	r.ack(3)
	r.ack(2)
	if len(r.unacked) != 2 || r.unacked[0].seq != 4 || r.bytes != 2 {
		t.Fatalf("after ack 3: %v (%d bytes)", r.unacked, r.bytes)
	}
	r.ack(100) // clamped to the last id sent
	if len(r.unacked) != 0 || r.acked != 5 || r.bytes != 0 {
		t.Fatalf("after ack 100: acked %d, %v", r.acked, r.unacked)
	}
}

// TestReliableMessageTTL: a REST message with messageTtlSeconds that expires while a
// reliable client is away is not redelivered on recovery; messages without a TTL or
// with one still running are, in order.
func TestReliableMessageTTL(t *testing.T) {
	s := testServer(t, nil)
	c, m := reliableClient(t, s, "hub1", "u", []string{"g"})
	c.conn.Close()
	waitFor(t, func() bool { return s.wsConns.Load() == 0 })
	send := func(text, query string) {
		t.Helper()
		wantStatus(t, restReq(t, s, "POST", "/api/hubs/hub1/groups/g/:send"+query, "text/plain", []byte(text)), 202)
	}
	send("short", "?messageTtlSeconds=1")
	send("forever", "")
	send("zero-is-forever", "?messageTtlSeconds=0")
	send("long", "?messageTtlSeconds=300")
	time.Sleep(1100 * time.Millisecond) // past the 1 s TTL; this test measures nothing

	r, err := dial(t, s, recoverPath("hub1", m), reliableProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if again := r.readJSON(); again["event"] != "connected" {
		t.Fatalf("recovery: %v", again)
	}
	wantSeq(t, r.readJSON(), 2, "forever") // 1 ("short") expired: a gap, as allowed
	wantSeq(t, r.readJSON(), 3, "zero-is-forever")
	wantSeq(t, r.readJSON(), 4, "long")
	send("after", "?messageTtlSeconds=1")
	wantSeq(t, r.readJSON(), 5, "after")
}
