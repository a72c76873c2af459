package wsproto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// Conformance tests, one per RFC 6455 rule, named after its section. Where an
// Autobahn testsuite case exercises the same rule, its number is in the
// subtest name.

func wantProtocolError(t *testing.T, err error, status ws.StatusCode) {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ProtocolError %d", err, status)
	}
	if pe.Status != status {
		t.Fatalf("status = %d (%s), want %d", pe.Status, pe.Reason, status)
	}
}

func clientFrame(fin bool, op ws.OpCode, payload []byte) []byte {
	return AppendMaskedFrame(nil, fin, op, testMask, payload)
}

func TestRFC6455_5_1_ClientFramesMustBeMasked(t *testing.T) {
	_, _, err := ParseFrame(AppendFrame(nil, ws.OpText, []byte("hi")), 0)
	wantProtocolError(t, err, ws.StatusProtocolError)
}

func TestRFC6455_5_2_ReservedBitsMustBeZero(t *testing.T) {
	for i, rsv := range []byte{1, 2, 3, 4, 5, 6, 7} {
		t.Run("autobahn=3."+string(rune('1'+i)), func(t *testing.T) {
			in := clientFrame(true, ws.OpText, []byte("Hello"))
			in[0] |= rsv << 4
			_, _, err := ParseFrame(in, 0)
			wantProtocolError(t, err, ws.StatusProtocolError)
		})
	}
}

func TestRFC6455_5_2_ReservedOpcodes(t *testing.T) {
	for _, tc := range []struct {
		autobahn string
		op       ws.OpCode
	}{
		{"4.1.1", 3}, {"4.1.2", 4}, {"4.1.3", 5}, {"4.1.4", 6}, {"4.1.5", 7},
		{"4.2.1", 11}, {"4.2.2", 12}, {"4.2.3", 13}, {"4.2.4", 14}, {"4.2.5", 15},
	} {
		t.Run("autobahn="+tc.autobahn, func(t *testing.T) {
			_, _, err := ParseFrame(clientFrame(true, tc.op, nil), 0)
			wantProtocolError(t, err, ws.StatusProtocolError)
		})
	}
}

func TestRFC6455_5_2_PayloadLength(t *testing.T) {
	for _, tc := range []struct {
		autobahn string
		op       ws.OpCode
		n        int
	}{
		{"1.1.1", ws.OpText, 0}, {"1.1.2", ws.OpText, 125}, {"1.1.3", ws.OpText, 126},
		{"1.1.4", ws.OpText, 127}, {"1.1.5", ws.OpText, 128}, {"1.1.6", ws.OpText, 65535},
		{"1.1.7", ws.OpText, 65536}, {"1.2.1", ws.OpBinary, 0}, {"1.2.3", ws.OpBinary, 126},
		{"1.2.7", ws.OpBinary, 65536},
	} {
		t.Run("autobahn="+tc.autobahn, func(t *testing.T) {
			payload := bytes.Repeat([]byte{'*'}, tc.n)
			in := clientFrame(true, tc.op, payload)
			f, n, err := ParseFrame(in, 0)
			if err != nil || n != len(in) || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("n=%d err=%v len=%d", n, err, len(f.Payload))
			}
		})
	}
	t.Run("64-bit/most-significant-bit", func(t *testing.T) {
		in := bits(t, "1 000 0010 | 1 1111111 | 10000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000")
		_, _, err := ParseFrame(in, 0)
		wantProtocolError(t, err, ws.StatusProtocolError)
	})
}

func TestRFC6455_5_3_Unmasking(t *testing.T) {
	// The RFC's own example: a masked "Hello" from client to server.
	in := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	f, n, err := ParseFrame(in, 0)
	if err != nil || n != len(in) || string(f.Payload) != "Hello" {
		t.Fatalf("got %q n=%d err=%v", f.Payload, n, err)
	}
}

func TestRFC6455_5_4_ControlFramesBetweenFragments(t *testing.T) {
	// autobahn=5.6: text fragment, ping, final fragment.
	var in []byte
	in = append(in, clientFrame(false, ws.OpText, []byte("frag1"))...)
	in = append(in, clientFrame(true, ws.OpPing, []byte("ping"))...)
	in = append(in, clientFrame(true, ws.OpContinuation, []byte("frag2"))...)
	var ops []ws.OpCode
	for len(in) > 0 {
		f, n, err := ParseFrame(in, 0)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, f.OpCode)
		in = in[n:]
	}
	if len(ops) != 3 || ops[1] != ws.OpPing {
		t.Fatalf("ops = %v", ops)
	}
}

func TestRFC6455_5_5_ControlFrames(t *testing.T) {
	t.Run("autobahn=2.4/ping-125", func(t *testing.T) {
		_, _, err := ParseFrame(clientFrame(true, ws.OpPing, bytes.Repeat([]byte{1}, 125)), 0)
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("autobahn=2.5/ping-126", func(t *testing.T) {
		_, _, err := ParseFrame(clientFrame(true, ws.OpPing, bytes.Repeat([]byte{1}, 126)), 0)
		wantProtocolError(t, err, ws.StatusProtocolError)
	})
	t.Run("autobahn=5.1/fragmented-ping", func(t *testing.T) {
		_, _, err := ParseFrame(clientFrame(false, ws.OpPing, []byte("a")), 0)
		wantProtocolError(t, err, ws.StatusProtocolError)
	})
	t.Run("autobahn=5.2/fragmented-pong", func(t *testing.T) {
		_, _, err := ParseFrame(clientFrame(false, ws.OpPong, []byte("a")), 0)
		wantProtocolError(t, err, ws.StatusProtocolError)
	})
	t.Run("autobahn=7.3.6/close-reason-124", func(t *testing.T) {
		body := append([]byte{0x03, 0xe8}, bytes.Repeat([]byte{'a'}, 124)...)
		_, _, err := ParseFrame(clientFrame(true, ws.OpClose, body), 0)
		wantProtocolError(t, err, ws.StatusProtocolError)
	})
}

func TestRFC6455_5_5_1_ClosePayload(t *testing.T) {
	t.Run("autobahn=7.3.1/empty", func(t *testing.T) {
		code, reason, err := ParseClosePayload(nil)
		if err != nil || code != ws.StatusNoStatusRcvd || reason != "" {
			t.Fatalf("got %d %q %v", code, reason, err)
		}
	})
	t.Run("autobahn=7.3.2/one-byte", func(t *testing.T) {
		_, _, err := ParseClosePayload([]byte{0x03})
		wantProtocolError(t, err, ws.StatusProtocolError)
	})
	t.Run("autobahn=7.3.3/code-only", func(t *testing.T) {
		code, reason, err := ParseClosePayload([]byte{0x03, 0xe8})
		if err != nil || code != 1000 || reason != "" {
			t.Fatalf("got %d %q %v", code, reason, err)
		}
	})
	t.Run("autobahn=7.3.4/code-and-reason", func(t *testing.T) {
		code, reason, err := ParseClosePayload([]byte("\x03\xe8Hello"))
		if err != nil || code != 1000 || reason != "Hello" {
			t.Fatalf("got %d %q %v", code, reason, err)
		}
	})
	t.Run("round-trip", func(t *testing.T) {
		frame := AppendCloseFrame(nil, ws.StatusPolicyViolation, "SlowClient")
		code, reason, err := ParseClosePayload(frame[2:])
		if err != nil || code != ws.StatusPolicyViolation || reason != "SlowClient" {
			t.Fatalf("got %d %q %v", code, reason, err)
		}
	})
}

func TestRFC6455_7_4_CloseCodes(t *testing.T) {
	valid := []struct {
		autobahn string
		code     ws.StatusCode
	}{
		{"7.7.1", 1000}, {"7.7.2", 1001}, {"7.7.3", 1002}, {"7.7.4", 1003}, {"7.7.5", 1007},
		{"7.7.6", 1008}, {"7.7.7", 1009}, {"7.7.8", 1010}, {"7.7.9", 1011}, {"7.7.10", 3000},
		{"7.7.11", 3999}, {"7.7.12", 4000}, {"7.7.13", 4999},
	}
	for _, tc := range valid {
		t.Run("autobahn="+tc.autobahn, func(t *testing.T) {
			body := []byte{byte(tc.code >> 8), byte(tc.code)}
			if code, _, err := ParseClosePayload(body); err != nil || code != tc.code {
				t.Fatalf("code %d: got %d %v", tc.code, code, err)
			}
		})
	}
	invalid := []struct {
		autobahn string
		code     ws.StatusCode
	}{
		{"7.9.1", 0}, {"7.9.2", 999}, {"7.9.3", 1004}, {"7.9.4", 1005}, {"7.9.5", 1006},
		{"7.9.9", 1015}, {"7.9.10", 1016}, {"7.9.11", 1100}, {"7.9.12", 2000}, {"7.9.13", 2999},
		{"above-4999", 5000},
	}
	for _, tc := range invalid {
		t.Run("autobahn="+tc.autobahn, func(t *testing.T) {
			body := []byte{byte(tc.code >> 8), byte(tc.code)}
			_, _, err := ParseClosePayload(body)
			wantProtocolError(t, err, ws.StatusProtocolError)
		})
	}
}

func TestRFC6455_8_1_CloseReasonMustBeUTF8(t *testing.T) {
	// autobahn=7.5.1
	_, _, err := ParseClosePayload([]byte("\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"))
	wantProtocolError(t, err, ws.StatusInvalidFramePayloadData)
}
