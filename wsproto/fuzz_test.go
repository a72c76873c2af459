package wsproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// parsed is a frame copied out of its buffer, so results from different
// buffers can be compared.
type parsed struct {
	fin     bool
	op      ws.OpCode
	payload string
}

// parseAll parses frames from buf until it is used up, needs more bytes, or
// fails. buf is modified (unmasked in place).
func parseAll(buf []byte, maxPayload int) (frames []parsed, rest int, err error) {
	for {
		f, n, err := ParseFrame(buf, maxPayload)
		if err != nil {
			return frames, len(buf), err
		}
		frames = append(frames, parsed{f.Fin, f.OpCode, string(f.Payload)})
		buf = buf[n:]
	}
}

// parseChunked feeds data to ParseFrame the way an event loop receives it: in
// chunks of 1..chunk bytes appended to a buffer, parsing after each chunk and
// discarding what was consumed.
func parseChunked(data []byte, maxPayload, chunk int) (frames []parsed, rest int, err error) {
	var buf []byte
	for off := 0; ; {
		step := min(chunk, len(data)-off)
		buf = append(buf, data[off:off+step]...)
		off += step
		for {
			f, n, perr := ParseFrame(buf, maxPayload)
			if perr == ErrNeedMore {
				break
			}
			if perr != nil {
				return frames, len(buf) + len(data) - off, perr
			}
			frames = append(frames, parsed{f.Fin, f.OpCode, string(f.Payload)})
			buf = buf[n:]
		}
		if off == len(data) {
			return frames, len(buf), ErrNeedMore
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	mask := [4]byte{1, 2, 3, 4}
	// One seed per frame kind.
	f.Add(AppendMaskedFrame(nil, true, ws.OpText, mask, []byte("Hello")), uint16(0), uint8(1))
	f.Add(AppendMaskedFrame(nil, true, ws.OpBinary, mask, bytes.Repeat([]byte{0xff}, 300)), uint16(200), uint8(7))
	f.Add(AppendMaskedFrame(AppendMaskedFrame(nil, false, ws.OpText, mask, []byte("a")), true, ws.OpContinuation, mask, []byte("b")), uint16(0), uint8(3))
	f.Add(AppendMaskedFrame(nil, true, ws.OpPing, mask, []byte("ping")), uint16(0), uint8(2))
	f.Add(AppendMaskedFrame(nil, true, ws.OpPong, mask, nil), uint16(0), uint8(1))
	f.Add(AppendMaskedFrame(nil, true, ws.OpClose, mask, []byte{0x03, 0xe8, 'b', 'y', 'e'}), uint16(0), uint8(4))
	// 64-bit length field holding a small length: legal to parse, and keeps the
	// seed small enough for the fuzzer to mutate quickly.
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7}, uint16(0), uint8(5))
	f.Add([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, uint16(0), uint8(1))
	f.Add([]byte{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, uint16(0), uint8(1))

	f.Fuzz(func(t *testing.T, data []byte, maxPayload uint16, chunk uint8) {
		limit := int(maxPayload)
		whole := append([]byte(nil), data...)
		frames, _, err := parseAll(whole, limit)
		if err != ErrNeedMore {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is neither ErrNeedMore nor *ProtocolError", err)
			}
		}
		for _, fr := range frames {
			if limit > 0 && len(fr.payload) > limit {
				t.Fatalf("payload %d over maxPayload %d", len(fr.payload), limit)
			}
			if fr.op.IsControl() && (len(fr.payload) > 125 || !fr.fin) {
				t.Fatalf("bad control frame accepted: %+v", fr)
			}
			// Encode then parse gives the same frame back.
			enc := AppendMaskedFrame(nil, fr.fin, fr.op, [4]byte{9, 8, 7, 6}, []byte(fr.payload))
			back, n, err := ParseFrame(enc, limit)
			if err != nil || n != len(enc) || back.Fin != fr.fin || back.OpCode != fr.op || string(back.Payload) != fr.payload {
				t.Fatalf("round trip of %+v: %+v n=%d err=%v", fr, back, n, err)
			}
		}
		// The same bytes in chunks parse to the same frames and error.
		cframes, _, cerr := parseChunked(append([]byte(nil), data...), limit, int(chunk)+1)
		if cerr != err || len(cframes) != len(frames) {
			t.Fatalf("chunked: %d frames, err %v; whole: %d frames, err %v", len(cframes), cerr, len(frames), err)
		}
		for i := range frames {
			if frames[i] != cframes[i] {
				t.Fatalf("frame %d differs: %+v vs %+v", i, frames[i], cframes[i])
			}
		}
	})
}

func FuzzDecodeJSONMessage(f *testing.F) {
	// One seed per message kind (client-examples.md E8), plus invalid shapes.
	for _, s := range []string{
		`{"type":"joinGroup","group":"group1","ackId":1}`,
		`{"type":"leaveGroup","group":"group1","ackId":2}`,
		`{"type":"sendToGroup","group":"group1","ackId":3,"dataType":"text","data":"hi","noEcho":false}`,
		`{"type":"sendToGroup","group":"group1","dataType":"binary","data":"AQID","noEcho":true}`,
		`{"type":"sendToGroup","group":"group1","ackId":2,"noEcho":false,"dataType":"Json","data":{"a":1}}`,
		`{"type":"event","event":"ev","ackId":4,"dataType":"json","data":{"a":1}}`,
		`{"type":"event","event":"ev","ackId":3,"dataType":"Binary","data":"AQID"}`,
		`{"type":"sequenceAck","sequenceId":5}`,
		`{"type":"ping"}`,
		`{"type":"invoke","invocationId":"1","target":"event","event":"ev","dataType":"text","data":"hi"}`,
		`{"type":"cancelInvocation","invocationId":"1"}`,
		`{"type":"sendToGroup","group":"g\u00e9","dataType":"text","data":"\ud83d\ude00\n\"","ackId":18446744073709551615}`,
		`this is not json`,
		`{"type":"joinGroup","ackId":-1}`,
	} {
		f.Add([]byte(s))
	}
	var m ClientMessage
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(nil), data...)
		err := DecodeJSONMessage(&m, in)
		var me *MessageError
		switch {
		case err == nil:
		case errors.As(err, &me):
			if me.Name == "" || me.Message == "" || me.HasAckID != m.HasAckID || me.AckID != m.AckID {
				t.Fatalf("bad MessageError %+v", me)
			}
		case errors.Is(err, ErrInvalidMessage):
			return
		default:
			t.Fatalf("unexpected error %v", err)
		}
		if !bytes.Equal(in, data) {
			t.Fatal("DecodeJSONMessage modified its input")
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if m.Type < MsgJoinGroup || m.Type > MsgCancelInvocation {
			t.Fatalf("type %v", m.Type)
		}
		if err != nil {
			return
		}
		switch m.Type {
		case MsgJoinGroup, MsgLeaveGroup, MsgSendToGroup:
			if !ValidGroupName(m.Group) {
				t.Fatalf("invalid group %q accepted", m.Group)
			}
		}
		if m.HasData {
			if m.DataType == DataJSON && (!json.Valid(m.Data) || string(m.Data) == "null") {
				t.Fatalf("json data %q", m.Data)
			}
			// What we accept re-encodes to JSON that encoding/json reads.
			out := AppendGroupMessage(nil, m.Group, "u", m.DataType, m.Data, 1)
			var v struct {
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("re-encoded %q: %v", out, err)
			}
			if m.DataType == DataText {
				var s string
				if err := json.Unmarshal(v.Data, &s); err != nil || s != string(m.Data) {
					t.Fatalf("text %q re-encoded as %s", m.Data, v.Data)
				}
			}
		}
	})
}
