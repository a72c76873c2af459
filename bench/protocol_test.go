package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestParseProtocol(t *testing.T) {
	for _, tc := range []struct {
		in, name, sub      string
		reliable, protobuf bool
	}{
		{"", "json", "json.webpubsub.azure.v1", false, false},
		{"json", "json", "json.webpubsub.azure.v1", false, false},
		{"json.reliable", "json.reliable", "json.reliable.webpubsub.azure.v1", true, false},
		{"protobuf", "protobuf", "protobuf.webpubsub.azure.v1", false, true},
		{"protobuf.reliable", "protobuf.reliable", "protobuf.reliable.webpubsub.azure.v1", true, true},
	} {
		p, err := parseProtocol(tc.in)
		if err != nil || p.name != tc.name || p.subprotocol != tc.sub || p.reliable != tc.reliable || p.protobuf != tc.protobuf {
			t.Errorf("parseProtocol(%q) = %+v, %v", tc.in, p, err)
		}
	}
	if _, err := parseProtocol("json.webpubsub.azure.v1"); !errors.Is(err, ErrConfig) {
		t.Errorf("a full subprotocol name: err = %v, want ErrConfig", err)
	}
	o := Options{Service: Service{Endpoint: "http://127.0.0.1:1", AccessKey: "k"}, Protocol: "xml"}
	if err := o.setDefaults(); !errors.Is(err, ErrConfig) {
		t.Errorf("Options.Protocol xml: err = %v, want ErrConfig", err)
	}
}

// clientPayload unmasks one client frame.
func clientPayload(t *testing.T, frame []byte) ([]byte, ws.OpCode) {
	t.Helper()
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(frame), io.Discard}
	data, op, err := wsutil.ReadClientData(rw)
	if err != nil {
		t.Fatal(err)
	}
	return data, op
}

func TestSequenceAckFrame(t *testing.T) {
	p, _ := parseProtocol(ProtocolJSONReliable)
	data, op := clientPayload(t, sequenceAckFrame(p, 1234))
	if op != ws.OpText || string(data) != `{"type":"sequenceAck","sequenceId":1234}` {
		t.Errorf("json: %v %s", op, data)
	}
	p, _ = parseProtocol(ProtocolProtobufReliable)
	// UpstreamMessage field 8 (sequence_ack_message), length 3: field 1 varint 300 (0xac 0x02).
	data, op = clientPayload(t, sequenceAckFrame(p, 300))
	if op != ws.OpBinary || !bytes.Equal(data, []byte{0x42, 0x03, 0x08, 0xac, 0x02}) {
		t.Errorf("protobuf: %v % x", op, data)
	}
}

func TestSendToGroupFrameProtobuf(t *testing.T) {
	// UpstreamMessage{send_to_group_message (1): {group (1) "g", ack_id (2) 1,
	// data (3): MessageData{text_data (1) "hi"}}}
	want := []byte{0x0a, 0x0b, 0x0a, 0x01, 'g', 0x10, 0x01, 0x1a, 0x04, 0x0a, 0x02, 'h', 'i'}
	if got := appendPBSendToGroup(nil, "g", 1, []byte("hi")); !bytes.Equal(got, want) {
		t.Errorf("appendPBSendToGroup = % x, want % x", got, want)
	}
	p, _ := parseProtocol(ProtocolProtobuf)
	data, op := clientPayload(t, sendToGroupFrame(p, "chat-1", 1700000000000000000, 7, 40, 300))
	fc := &fakeConn{proto: p}
	m, ok := fc.decodeUpstream(data, op)
	if !ok || m.Type != "sendToGroup" || m.Group != "chat-1" || m.AckID != 300 || len(m.Data) != 40 ||
		!strings.HasPrefix(m.Data, "1700000000000000000 7 x") {
		t.Errorf("decoded %+v, %v", m, ok)
	}
}

func TestProtobufDownstream(t *testing.T) {
	connected := []byte{0x1a, 0x07, 0x0a, 0x05, 0x0a, 0x01, 'c', 0x12, 0x00}
	disconnected := []byte{0x1a, 0x04, 0x12, 0x02, 0x12, 0x00}
	if !isPBConnected(connected) || isPBConnected(disconnected) || isPBConnected([]byte(`{"type":"system"}`)) {
		t.Error("isPBConnected")
	}
	// data_message: from "group", group "g", data {text_data "12 x"}, sequence_id 300,
	// then an unknown fixed32 field 9 to skip.
	dm := []byte{0x0a, 0x05, 'g', 'r', 'o', 'u', 'p', 0x12, 0x01, 'g', 0x1a, 0x06, 0x0a, 0x04, '1', '2', ' ', 'x', 0x20, 0xac, 0x02}
	msg := append([]byte{0x12, byte(len(dm))}, dm...)
	msg = append(msg, 0x4d, 1, 2, 3, 4)
	kind, body, ok := pbDownstream(msg)
	if !ok || kind != pbDownData {
		t.Fatalf("pbDownstream = %d, %v", kind, ok)
	}
	data, seq, ok := pbData(body)
	if !ok || string(data) != "12 x" || seq != 300 {
		t.Errorf("pbData = %q, %d, %v", data, seq, ok)
	}
	id, success, ok := pbAck([]byte{0x08, 0x03, 0x10, 0x01})
	if !ok || id != 3 || !success {
		t.Errorf("pbAck = %d, %v, %v", id, success, ok)
	}
	for _, bad := range [][]byte{{0x12, 0x05, 0x0a}, {0x12}, {0x0b, 0x00}, {0x4d, 1}, {0x80}} {
		if _, _, ok := pbDownstream(bad); ok {
			t.Errorf("pbDownstream(% x) ok", bad)
		}
	}
}

func TestJSONSequenceID(t *testing.T) {
	for in, want := range map[string]uint64{
		`{"type":"message","from":"group","group":"g","dataType":"text","data":"1 2 x","sequenceId":42}`: 42,
		`{"sequenceId":7,"type":"message"}`: 7,
		`{"type":"message","data":"1 2 x"}`: 0,
	} {
		if got := jsonSequenceID([]byte(in)); got != want {
			t.Errorf("jsonSequenceID(%s) = %d, want %d", in, got, want)
		}
	}
}

// TestSequencedCadence checks the JS SDK's rule: no ack before the timer unless a message
// is more than 300 ids past the last ack, and numbering faults are counted.
func TestSequencedCadence(t *testing.T) {
	p, _ := parseProtocol(ProtocolJSONReliable)
	f := &fleet{cfg: fleetConfig{proto: p}}
	cl := &client{f: f}
	for seq := uint64(1); seq <= 300; seq++ {
		cl.sequenced(seq)
	}
	if cl.seqSeen.Load() != 300 || cl.seqAcked.Load() != 0 {
		t.Fatalf("after 300: seen %d acked %d", cl.seqSeen.Load(), cl.seqAcked.Load())
	}
	cl.sequenced(301)
	if cl.seqAcked.Load() != 301 {
		t.Fatalf("after 301: acked %d, want an immediate ack", cl.seqAcked.Load())
	}
	cl.ackSequence(200) // lower than acked: nothing
	if cl.seqAcked.Load() != 301 {
		t.Fatalf("acked went back to %d", cl.seqAcked.Load())
	}
	cl.sequenced(303)
	cl.sequenced(302)
	cl.sequenced(0)
	if f.seqGaps.Load() != 2 || f.unsequenced.Load() != 1 || cl.seqSeen.Load() != 303 {
		t.Fatalf("gaps %d unsequenced %d seen %d", f.seqGaps.Load(), f.unsequenced.Load(), cl.seqSeen.Load())
	}
}

func TestRunFanoutProtocols(t *testing.T) {
	for _, proto := range Protocols {
		for _, pub := range []string{PublisherREST, PublisherClient} {
			t.Run(fmt.Sprintf("protocol=%s/publisher=%s", proto, pub), func(t *testing.T) {
				fs := newFakeService(t)
				o := testOptions(t, fs)
				o.ConnsPerWorker = 60
				o.Protocol = proto
				r, err := RunFanout(context.Background(), FanoutConfig{Options: o, Members: 100, Messages: 5, Rate: 50, Publisher: pub})
				if err != nil {
					t.Fatal(err)
				}
				if metric(r, "deliveries") != 500 || metric(r, "ratio") != 1 || metric(r, "sends") != 5 ||
					r.FailureTotal() != 0 || len(r.Notes) > 3 {
					t.Fatalf("result %+v", r)
				}
				if want := "BenchmarkFanout/members=100/messages=5/rate=50/size=31/publisher=" + pub + "/protocol=" + proto + "\t1\t"; !strings.HasPrefix(benchLine(t, r), want) {
					t.Fatalf("benchmark line %q, want prefix %q", benchLine(t, r), want)
				}
				sent, acked := fs.sequences()
				p, _ := parseProtocol(proto)
				if !p.reliable {
					if fs.seqAcks.Load() != 0 || sent != 0 {
						t.Fatalf("plain protocol: %d sequence acks, %d numbered", fs.seqAcks.Load(), sent)
					}
					return
				}
				// Every member (the publisher receives nothing) acknowledged all 5 within the
				// settle time after the drain.
				if pub == PublisherREST && (sent != 5 || acked != 5) {
					t.Fatalf("members: fewest numbered %d, lowest ack %d; want 5 and 5", sent, acked)
				}
				if n := metric(r, "seqacks"); n < 100 || float64(fs.seqAcks.Load()) < n {
					t.Fatalf("seqacks metric %v, server got %d", n, fs.seqAcks.Load())
				}
			})
		}
	}
}

func TestRunChatProtobufReliable(t *testing.T) {
	fs := newFakeService(t)
	o := testOptions(t, fs)
	o.ConnsPerWorker = 35
	o.Protocol = ProtocolProtobufReliable
	r, err := RunChat(context.Background(), ChatConfig{Options: o, Groups: 10, MembersPerGroup: 7, Messages: 3, Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	if metric(r, "sends") != 210 || metric(r, "acked") != 210 || metric(r, "deliveries") != 210*7 ||
		metric(r, "ratio") != 1 || r.FailureTotal() != 0 || metric(r, "seqacks") < 70 {
		t.Fatalf("result %+v", r)
	}
	if sent, acked := fs.sequences(); sent != 21 || acked != 21 {
		t.Fatalf("fewest numbered %d, lowest ack %d; want 21 and 21", sent, acked)
	}
}

func TestRunConnectIdleProtocols(t *testing.T) {
	for _, proto := range []string{ProtocolJSONReliable, ProtocolProtobuf} {
		t.Run("protocol="+proto, func(t *testing.T) {
			fs := newFakeService(t)
			o := testOptions(t, fs)
			o.Protocol = proto
			r, err := RunConnect(context.Background(), ConnectConfig{Options: o, Conns: 50})
			if err != nil || r.FailureTotal() != 0 || metric(r, "conns") != 50 {
				t.Fatalf("connect: %+v, %v", r, err)
			}
			if want := "BenchmarkConnect/conns=50/concurrency=16/protocol=" + proto + "\t"; !strings.HasPrefix(benchLine(t, r), want) {
				t.Fatalf("benchmark line %q", benchLine(t, r))
			}
			r, err = RunIdle(context.Background(), IdleConfig{Options: o, Conns: 50, Hold: 100e6})
			if err != nil || r.FailureTotal() != 0 || metric(r, "conns") != 50 {
				t.Fatalf("idle: %+v, %v", r, err)
			}
			if want := "BenchmarkIdle/conns=50/protocol=" + proto + "\t"; !strings.HasPrefix(benchLine(t, r), want) {
				t.Fatalf("benchmark line %q", benchLine(t, r))
			}
		})
	}
}

func TestRunEchoRejectsProtocol(t *testing.T) {
	fs := newFakeService(t)
	o := testOptions(t, fs)
	o.Protocol = ProtocolProtobuf
	if _, err := RunEcho(context.Background(), EchoConfig{Options: o, Conns: 1, Messages: 1, Rate: 1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
}
