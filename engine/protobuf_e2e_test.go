package engine_test

// A raw protobuf client against a real server over real sockets (client-protocol.md §8,
// client-examples.md E5): gobwas/ws on the client side, frames built and read with the types
// generated from webpubsub.proto (wsproto/pb), so what the server's hand-written codec writes is
// checked by google.golang.org/protobuf. Covers join, leave, send to group, event with no
// upstream, acks (success, Forbidden, Duplicate, InvocationFailed), messages to a protobuf and a
// JSON member from the same publish (both directions), REST messages, and the reliable variant:
// sequence ids, sequenceAck and recovery after a dropped socket.
//
// No build tag: it runs in `make test`. Run alone with
// go test -count=1 -v ./engine/ -run Protobuf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	"github.com/webpubsub/webpubsub/engine"
	"github.com/webpubsub/webpubsub/wsproto/pb"
)

const (
	pbProtocol         = "protobuf.webpubsub.azure.v1"
	pbReliableProtocol = "protobuf.reliable.webpubsub.azure.v1"
	pbJSONProtocol     = "json.webpubsub.azure.v1"
	pbKey              = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
	pbHub              = "pbhub"
	// pbWait bounds every single read or request.
	pbWait = 5 * time.Second
)

// pbServer is an in-process server on 127.0.0.1:0 with no event handlers.
type pbServer struct {
	srv *engine.Server
}

func startPBServer(t *testing.T) *pbServer {
	t.Helper()
	s, err := engine.New(engine.Config{Listen: "127.0.0.1:0", Keys: engine.Keys{Primary: pbKey}, Loops: 2,
		Shutdown: engine.Shutdown{DrainDelay: -1, CloseRatePerSecond: -1}}) // stop at once
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pbWait)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return &pbServer{srv: s}
}

func (s *pbServer) endpoint() string { return "http://" + s.srv.Addr().String() }

// clientPath is /client/hubs/pbhub with a signed access token.
func (s *pbServer) clientPath(t *testing.T, user string, roles []string) string {
	t.Helper()
	tok, err := engine.SignClientToken(pbKey, s.endpoint(), pbHub, user, roles, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return "/client/hubs/" + pbHub + "?access_token=" + url.QueryEscape(tok)
}

// rest sends one authorized REST request and checks the status.
func (s *pbServer) rest(t *testing.T, method, pathAndQuery, contentType string, body []byte, want int) {
	t.Helper()
	u := s.endpoint() + pathAndQuery
	tok, err := engine.SignRESTToken(pbKey, u, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pbWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, pathAndQuery, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, pathAndQuery, resp.StatusCode, want, b)
	}
}

// pbConn is one raw WebSocket client.
type pbConn struct {
	t        *testing.T
	name     string
	conn     net.Conn
	br       *bufio.Reader
	protocol string // what the server echoed
}

// dialPB opens a WebSocket to path offering protocol and requires the server to select it.
func (s *pbServer) dial(t *testing.T, name, path, protocol string) *pbConn {
	t.Helper()
	c, err := s.tryDial(t, name, path, protocol)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	if c.protocol != protocol {
		t.Fatalf("%s: server selected subprotocol %q, want %q", name, c.protocol, protocol)
	}
	return c
}

func (s *pbServer) tryDial(t *testing.T, name, path, protocol string) (*pbConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pbWait)
	defer cancel()
	d := ws.Dialer{Protocols: []string{protocol}, Timeout: pbWait}
	conn, br, hs, err := d.Dial(ctx, "ws://"+s.srv.Addr().String()+path)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &pbConn{t: t, name: name, conn: conn, br: br, protocol: hs.Protocol}, nil
}

// on returns c reporting failures to t, for use inside a subtest of the test that dialed c (a
// subtest must not fail its parent from its own goroutine).
func (c *pbConn) on(t *testing.T) *pbConn {
	cc := *c
	cc.t = t
	return &cc
}

// frame is one data message or close frame from the server.
type frame struct {
	op      ws.OpCode
	payload []byte
}

// next returns the next data message or close frame within d; pings are answered.
func (c *pbConn) next(d time.Duration) (frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	control := wsutil.ControlFrameHandler(c.conn, ws.StateClientSide)
	r := wsutil.Reader{Source: c.br, State: ws.StateClientSide, OnIntermediate: control}
	for {
		h, err := r.NextFrame()
		if err != nil {
			return frame{}, err
		}
		if h.OpCode == ws.OpClose {
			p, _ := io.ReadAll(&r)
			return frame{op: ws.OpClose, payload: p}, nil
		}
		if h.OpCode.IsControl() {
			if err := control(h, &r); err != nil {
				return frame{}, err
			}
			continue
		}
		p, err := io.ReadAll(&r)
		return frame{op: h.OpCode, payload: p}, err
	}
}

// down reads the next DownstreamMessage, which must come in a binary frame.
func (c *pbConn) down() *pb.DownstreamMessage {
	c.t.Helper()
	f, err := c.next(pbWait)
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	if f.op != ws.OpBinary {
		c.t.Fatalf("%s: got opcode %v (% x), want a binary frame", c.name, f.op, f.payload)
	}
	m := &pb.DownstreamMessage{}
	if err := proto.Unmarshal(f.payload, m); err != nil {
		c.t.Fatalf("%s: DownstreamMessage % x: %v", c.name, f.payload, err)
	}
	if m.GetMessage() == nil {
		c.t.Fatalf("%s: DownstreamMessage % x has no oneof case set", c.name, f.payload)
	}
	return m
}

// jsonMsg reads the next JSON-protocol message, which must come in a text frame.
func (c *pbConn) jsonMsg() map[string]any {
	c.t.Helper()
	f, err := c.next(pbWait)
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	if f.op != ws.OpText {
		c.t.Fatalf("%s: got opcode %v (%q), want a text frame", c.name, f.op, f.payload)
	}
	var m map[string]any
	if err := json.Unmarshal(f.payload, &m); err != nil {
		c.t.Fatalf("%s: %q: %v", c.name, f.payload, err)
	}
	return m
}

func (c *pbConn) up(m *pb.UpstreamMessage) {
	c.t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := wsutil.WriteClientMessage(c.conn, ws.OpBinary, b); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *pbConn) sendJSON(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientMessage(c.conn, ws.OpText, []byte(s)); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// collect reads DownstreamMessages until have reports everything wanted was seen, failing on a
// message that have rejects (have returns an error) and after pbWait in total.
func (c *pbConn) collect(what string, have func(m *pb.DownstreamMessage) (done bool, err error)) {
	c.t.Helper()
	deadline := time.Now().Add(pbWait)
	for {
		f, err := c.next(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("%s: waiting for %s: %v", c.name, what, err)
		}
		if f.op != ws.OpBinary {
			c.t.Fatalf("%s: waiting for %s: opcode %v (% x), want binary", c.name, what, f.op, f.payload)
		}
		m := &pb.DownstreamMessage{}
		if err := proto.Unmarshal(f.payload, m); err != nil {
			c.t.Fatalf("%s: waiting for %s: % x: %v", c.name, what, f.payload, err)
		}
		done, err := have(m)
		if err != nil {
			c.t.Fatalf("%s: waiting for %s: %v (message %v)", c.name, what, err, m)
		}
		if done {
			return
		}
	}
}

// pingPong sends a ping and requires the next message to be the pong, proving that nothing
// else was queued for c before it (messages to one connection keep their order, §5.5).
func (c *pbConn) pingPong(why string) {
	c.t.Helper()
	c.up(pingMsg())
	if m := c.down(); m.GetPongMessage() == nil {
		c.t.Fatalf("%s: %s: got %v, want only a pong", c.name, why, m)
	}
}

// expectClose reads until the close frame (the messages before it are returned) and checks
// its code.
func (c *pbConn) expectClose(want ws.StatusCode) []*pb.DownstreamMessage {
	c.t.Helper()
	var before []*pb.DownstreamMessage
	for {
		f, err := c.next(pbWait)
		if err != nil {
			c.t.Fatalf("%s: waiting for close %d: %v", c.name, want, err)
		}
		if f.op == ws.OpClose {
			code := ws.StatusNoStatusRcvd
			if len(f.payload) >= 2 {
				code = ws.StatusCode(uint16(f.payload[0])<<8 | uint16(f.payload[1]))
			}
			if code != want {
				c.t.Fatalf("%s: close code %d (%q), want %d", c.name, code, f.payload[min(2, len(f.payload)):], want)
			}
			return before
		}
		m := &pb.DownstreamMessage{}
		if f.op != ws.OpBinary || proto.Unmarshal(f.payload, m) != nil {
			c.t.Fatalf("%s: before the close: opcode %v % x", c.name, f.op, f.payload)
		}
		before = append(before, m)
	}
}

// connected reads the first message and checks it is the connected system message.
func (c *pbConn) connected(user string, reliable bool) *pb.DownstreamMessage_SystemMessage_ConnectedMessage {
	c.t.Helper()
	m := c.down()
	cm := m.GetSystemMessage().GetConnectedMessage()
	if cm == nil {
		c.t.Fatalf("%s: first message %v, want system connected", c.name, m)
	}
	if cm.GetConnectionId() == "" || cm.GetUserId() != user {
		c.t.Fatalf("%s: connected %v, want a connection id and user %q", c.name, cm, user)
	}
	if reliable != (cm.GetReconnectionToken() != "") {
		c.t.Fatalf("%s: connected reconnection_token %q; reliable=%v (§8.4: reliable only)", c.name, cm.GetReconnectionToken(), reliable)
	}
	return cm
}

// Builders of UpstreamMessages.

func joinMsg(group string, ack uint64) *pb.UpstreamMessage {
	return &pb.UpstreamMessage{Message: &pb.UpstreamMessage_JoinGroupMessage_{
		JoinGroupMessage: &pb.UpstreamMessage_JoinGroupMessage{Group: group, AckId: proto.Uint64(ack)}}}
}

func leaveMsg(group string, ack uint64) *pb.UpstreamMessage {
	return &pb.UpstreamMessage{Message: &pb.UpstreamMessage_LeaveGroupMessage_{
		LeaveGroupMessage: &pb.UpstreamMessage_LeaveGroupMessage{Group: group, AckId: proto.Uint64(ack)}}}
}

func sendMsg(group string, ack *uint64, noEcho bool, data *pb.MessageData) *pb.UpstreamMessage {
	return &pb.UpstreamMessage{Message: &pb.UpstreamMessage_SendToGroupMessage_{
		SendToGroupMessage: &pb.UpstreamMessage_SendToGroupMessage{Group: group, AckId: ack, NoEcho: proto.Bool(noEcho), Data: data}}}
}

func eventMsg(event string, ack *uint64, data *pb.MessageData) *pb.UpstreamMessage {
	return &pb.UpstreamMessage{Message: &pb.UpstreamMessage_EventMessage_{
		EventMessage: &pb.UpstreamMessage_EventMessage{Event: event, AckId: ack, Data: data}}}
}

func seqAckMsg(id uint64) *pb.UpstreamMessage {
	return &pb.UpstreamMessage{Message: &pb.UpstreamMessage_SequenceAckMessage_{
		SequenceAckMessage: &pb.UpstreamMessage_SequenceAckMessage{SequenceId: id}}}
}

func pingMsg() *pb.UpstreamMessage {
	return &pb.UpstreamMessage{Message: &pb.UpstreamMessage_PingMessage_{PingMessage: &pb.UpstreamMessage_PingMessage{}}}
}

func textData(s string) *pb.MessageData {
	return &pb.MessageData{Data: &pb.MessageData_TextData{TextData: s}}
}

func binaryData(b []byte) *pb.MessageData {
	return &pb.MessageData{Data: &pb.MessageData_BinaryData{BinaryData: b}}
}

// Matchers for collect.

// isAck reports whether m is the ack for id, and checks it against the wanted error name
// ("" = success).
func isAck(m *pb.DownstreamMessage, id uint64, errName string) (bool, error) {
	a := m.GetAckMessage()
	if a == nil || a.GetAckId() != id {
		return false, nil
	}
	if errName == "" {
		if !a.GetSuccess() || a.GetError() != nil {
			return true, fmt.Errorf("ack %d: success=%v error=%v, want success", id, a.GetSuccess(), a.GetError())
		}
		return true, nil
	}
	if a.GetSuccess() || a.GetError().GetName() != errName {
		return true, fmt.Errorf("ack %d: success=%v error=%v, want failure %s", id, a.GetSuccess(), a.GetError(), errName)
	}
	return true, nil
}

// expectAck reads until the ack for id; any other message fails.
func (c *pbConn) expectAck(id uint64, errName string) {
	c.t.Helper()
	c.collect(fmt.Sprintf("ack %d", id), func(m *pb.DownstreamMessage) (bool, error) {
		ok, err := isAck(m, id, errName)
		if !ok && err == nil {
			return false, errors.New("unexpected message before the ack")
		}
		return ok, err
	})
}

// checkData compares a data message with what is wanted; seq 0 means no sequence_id allowed.
func checkData(m *pb.DownstreamMessage_DataMessage, from, group string, data *pb.MessageData, seq uint64) error {
	if m.GetFrom() != from {
		return fmt.Errorf("from %q, want %q", m.GetFrom(), from)
	}
	if (group == "") != (m.Group == nil) || m.GetGroup() != group {
		return fmt.Errorf("group %v, want %q (absent for server messages)", m.Group, group)
	}
	if !proto.Equal(m.GetData(), data) {
		return fmt.Errorf("data %v, want %v", m.GetData(), data)
	}
	if seq == 0 && m.SequenceId != nil {
		return fmt.Errorf("sequence_id %d on a non-reliable connection", m.GetSequenceId())
	}
	if seq != 0 && m.GetSequenceId() != seq {
		return fmt.Errorf("sequence_id %v, want %d", m.SequenceId, seq)
	}
	return nil
}

// expectData reads the next message, which must be the given data message.
func (c *pbConn) expectData(from, group string, data *pb.MessageData, seq uint64) {
	c.t.Helper()
	m := c.down()
	if m.GetDataMessage() == nil {
		c.t.Fatalf("%s: got %v, want a data message", c.name, m)
	}
	if err := checkData(m.GetDataMessage(), from, group, data, seq); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
}

// expectJSON reads the next JSON message and compares it with want (a JSON object).
func (c *pbConn) expectJSON(want string) {
	c.t.Helper()
	got := c.jsonMsg()
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		c.t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(g, wb) {
		c.t.Fatalf("%s: got  %s\nwant %s", c.name, g, wb)
	}
}

func TestProtobufClient(t *testing.T) {
	s := startPBServer(t)
	// P may join/leave any group and send to "room" only.
	p := s.dial(t, "protobuf", s.clientPath(t, "pb-user", []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.room"}), pbProtocol)
	pid := p.connected("pb-user", false).GetConnectionId()
	j := s.dial(t, "json", s.clientPath(t, "json-user", []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"}), pbJSONProtocol)
	if m := j.jsonMsg(); m["type"] != "system" || m["event"] != "connected" {
		t.Fatalf("json: first message %v, want system connected", m)
	}

	t.Run("join", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		p.up(joinMsg("room", 1))
		p.expectAck(1, "")
		j.sendJSON(`{"type":"joinGroup","group":"room","ackId":1}`)
		j.expectJSON(`{"type":"ack","ackId":1,"success":true}`)
	})

	t.Run("join/duplicate-ackId", func(t *testing.T) {
		p := p.on(t)
		p.up(joinMsg("room", 1))
		p.expectAck(1, "Duplicate")
	})

	t.Run("send/text-to-protobuf-and-json-members", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		p.up(sendMsg("room", proto.Uint64(2), false, textData("hello")))
		// The ack and the echo may come in either order; both exactly once.
		var acked, echoed bool
		p.collect("ack 2 and the echo", func(m *pb.DownstreamMessage) (bool, error) {
			if ok, err := isAck(m, 2, ""); ok {
				if err != nil || acked {
					return true, fmt.Errorf("ack twice or wrong: %v", err)
				}
				acked = true
			} else if d := m.GetDataMessage(); d != nil {
				if err := checkData(d, "group", "room", textData("hello"), 0); err != nil || echoed {
					return true, fmt.Errorf("echo: %v (twice: %v)", err, echoed)
				}
				echoed = true
			} else {
				return true, errors.New("unexpected message")
			}
			return acked && echoed, nil
		})
		j.expectJSON(`{"type":"message","from":"group","group":"room","fromUserId":"pb-user","dataType":"text","data":"hello"}`)
	})

	t.Run("send/binary-noEcho", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		p.up(sendMsg("room", proto.Uint64(3), true, binaryData([]byte{1, 2, 3})))
		p.expectAck(3, "")
		j.expectJSON(`{"type":"message","from":"group","group":"room","fromUserId":"pb-user","dataType":"binary","data":"AQID"}`)
		p.pingPong("noEcho: no copy for the sender")
	})

	t.Run("send/fire-and-forget", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		p.up(sendMsg("room", nil, false, textData("no ack")))
		p.expectData("group", "room", textData("no ack"), 0)
		j.expectJSON(`{"type":"message","from":"group","group":"room","fromUserId":"pb-user","dataType":"text","data":"no ack"}`)
		p.pingPong("no ack without ack_id")
	})

	t.Run("send/forbidden", func(t *testing.T) {
		p := p.on(t)
		p.up(sendMsg("other", proto.Uint64(4), false, textData("x")))
		p.expectAck(4, "Forbidden")
	})

	t.Run("messages/from-json-member", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		// E5 cross-protocol: JSON data reaches a protobuf member as text_data holding the JSON.
		j.sendJSON(`{"type":"sendToGroup","group":"room","dataType":"json","data":{"a":1},"ackId":2,"noEcho":true}`)
		j.expectJSON(`{"type":"ack","ackId":2,"success":true}`)
		p.expectData("group", "room", textData(`{"a":1}`), 0)
		j.sendJSON(`{"type":"sendToGroup","group":"room","dataType":"binary","data":"AQID","noEcho":true}`)
		p.expectData("group", "room", binaryData([]byte{1, 2, 3}), 0)
		j.sendJSON(`{"type":"sendToGroup","group":"room","dataType":"text","data":"plain","noEcho":true}`)
		p.expectData("group", "room", textData("plain"), 0)
	})

	t.Run("messages/rest", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		s.rest(t, "POST", "/api/hubs/"+pbHub+"/groups/room/:send", "text/plain", []byte("to the group"), 202)
		p.expectData("group", "room", textData("to the group"), 0)
		j.expectJSON(`{"type":"message","from":"group","group":"room","dataType":"text","data":"to the group"}`)
		s.rest(t, "POST", "/api/hubs/"+pbHub+"/connections/"+pid+"/:send", "application/json", []byte(`{"b":[1,2]}`), 202)
		p.expectData("server", "", textData(`{"b":[1,2]}`), 0)
		s.rest(t, "POST", "/api/hubs/"+pbHub+"/users/pb-user/:send", "application/octet-stream", []byte{0, 255}, 202)
		p.expectData("server", "", binaryData([]byte{0, 255}), 0)
	})

	t.Run("event/no-upstream", func(t *testing.T) {
		p := p.on(t)
		p.up(eventMsg("ev", proto.Uint64(5), textData("hi")))
		p.expectAck(5, "InvocationFailed")
		p.pingPong("the connection stays open after a failed event with an ack")
	})

	t.Run("leave", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		p.up(leaveMsg("room", 6))
		p.expectAck(6, "")
		j.sendJSON(`{"type":"sendToGroup","group":"room","dataType":"text","data":"after leave","noEcho":true}`)
		j.sendJSON(`{"type":"ping"}`)
		j.expectJSON(`{"type":"pong"}`)
		p.pingPong("no group traffic after leave")
	})

	t.Run("event/fire-and-forget-failure-closes", func(t *testing.T) {
		p, j := p.on(t), j.on(t)
		// §5.2: a failed event without an ack id drops the connection with 1008.
		p.up(eventMsg("ev", nil, textData("hi")))
		before := p.expectClose(ws.StatusPolicyViolation)
		for _, m := range before {
			if m.GetSystemMessage().GetDisconnectedMessage() == nil {
				t.Errorf("before the close: %v, want only system disconnected", m)
			}
		}
		// The JSON member is unaffected.
		j.sendJSON(`{"type":"ping"}`)
		j.expectJSON(`{"type":"pong"}`)
	})
}

func TestProtobufMalformed(t *testing.T) {
	s := startPBServer(t)
	other := s.dial(t, "bystander", s.clientPath(t, "bystander", nil), pbProtocol)
	other.connected("bystander", false)
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"truncated-varint", []byte{0x32, 0x80}},
		{"no-oneof-case", []byte{}},
		{"length-past-end", []byte{0x32, 0x0A, 0x0A}},
		{"text-frame", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dial(t, tc.name, s.clientPath(t, "m", nil), pbProtocol)
			c.connected("m", false)
			var err error
			if tc.payload == nil {
				err = wsutil.WriteClientMessage(c.conn, ws.OpText, []byte(`{"type":"ping"}`))
			} else {
				err = wsutil.WriteClientMessage(c.conn, ws.OpBinary, tc.payload)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.payload == nil {
				// A text frame on a protobuf connection: refused by closing, or ignored; never a
				// JSON answer. Either way the connection must not be left half-broken.
				f, err := c.next(500 * time.Millisecond)
				if err == nil && f.op != ws.OpClose && f.op != ws.OpBinary {
					t.Fatalf("text frame on a protobuf connection answered with opcode %v %q", f.op, f.payload)
				}
				return
			}
			c.expectClose(ws.StatusPolicyViolation)
		})
	}
	other.pingPong("other clients are unaffected by malformed input")
}

func TestProtobufReliable(t *testing.T) {
	s := startPBServer(t)
	path := s.clientPath(t, "rel-user", []string{"webpubsub.joinLeaveGroup"})
	r := s.dial(t, "reliable", path, pbReliableProtocol)
	cm := r.connected("rel-user", true)
	id, token := cm.GetConnectionId(), cm.GetReconnectionToken()
	r.up(joinMsg("rg", 1))
	r.expectAck(1, "")

	for i := 1; i <= 3; i++ {
		s.rest(t, "POST", "/api/hubs/"+pbHub+"/groups/rg/:send", "text/plain", []byte(fmt.Sprint("m", i)), 202)
		r.expectData("group", "rg", textData(fmt.Sprint("m", i)), uint64(i))
	}
	r.up(seqAckMsg(2))
	r.pingPong("sequenceAck gets no answer; pong carries no sequence id")

	// Drop the socket without a close frame, publish while it is gone, recover.
	_ = r.conn.Close()
	s.rest(t, "POST", "/api/hubs/"+pbHub+"/groups/rg/:send", "text/plain", []byte("m4"), 202)
	s.rest(t, "POST", "/api/hubs/"+pbHub+"/connections/"+id+"/:send", "application/octet-stream", []byte{4}, 202)
	recovery := path + "&awps_connection_id=" + url.QueryEscape(id) + "&awps_reconnection_token=" + url.QueryEscape(token)

	// rc, the recovered socket, belongs to the whole test: later subtests use it.
	var rc *pbConn
	parent := t
	t.Run("recover", func(t *testing.T) {
		// The server may not have noticed the drop yet; then it detaches the old socket
		// (§7.5 step 3) or refuses. Retry a refused attempt a few times within the deadline.
		deadline := time.Now().Add(pbWait)
		for rc == nil {
			c := s.dial(parent, "recovered", recovery, pbReliableProtocol).on(t)
			m := c.down()
			if cm := m.GetSystemMessage().GetConnectedMessage(); cm != nil {
				if cm.GetConnectionId() != id {
					t.Fatalf("connected after recovery names %q, want %q", cm.GetConnectionId(), id)
				}
				m = c.down()
			}
			if m.GetSystemMessage().GetDisconnectedMessage() != nil {
				if time.Now().After(deadline) {
					t.Fatalf("recovery refused until the deadline: %v", m)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			// Redelivery: what was not acknowledged, with the original ids, then the new ones.
			if d := m.GetDataMessage(); d == nil {
				t.Fatalf("after recovery: %v, want data m3 (sequence 3)", m)
			} else if err := checkData(d, "group", "rg", textData("m3"), 3); err != nil {
				t.Fatalf("first redelivered message: %v", err)
			}
			rc = c
		}
		rc.expectData("group", "rg", textData("m4"), 4)
		rc.expectData("server", "", binaryData([]byte{4}), 5)
		s.rest(t, "POST", "/api/hubs/"+pbHub+"/groups/rg/:send", "text/plain", []byte("m6"), 202)
		rc.expectData("group", "rg", textData("m6"), 6)
		rc.up(seqAckMsg(6))
		rc.pingPong("recovered connection answers")
	})

	t.Run("bad-token", func(t *testing.T) {
		bad := path + "&awps_connection_id=" + url.QueryEscape(id) + "&awps_reconnection_token=" + url.QueryEscape(base64.RawURLEncoding.EncodeToString([]byte("not the token")))
		c := s.dial(t, "bad-token", bad, pbReliableProtocol)
		for _, m := range c.expectClose(ws.StatusPolicyViolation) {
			if m.GetSystemMessage().GetDisconnectedMessage() == nil {
				t.Errorf("before the close: %v, want only system disconnected", m)
			}
		}
		if rc != nil {
			rc := rc.on(t)
			rc.pingPong("a bad token leaves the recovered connection alone")
			s.rest(t, "POST", "/api/hubs/"+pbHub+"/groups/rg/:send", "text/plain", []byte("m7"), 202)
			rc.expectData("group", "rg", textData("m7"), 7)
		}
	})

	t.Run("unknown-connection", func(t *testing.T) {
		c := s.dial(t, "unknown", path+"&awps_connection_id=nosuchconnection&awps_reconnection_token="+url.QueryEscape(token), pbReliableProtocol)
		c.expectClose(ws.StatusPolicyViolation)
	})
}
