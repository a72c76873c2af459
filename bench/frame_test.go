package bench

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/webpubsub/webpubsub/wsproto"
)

// frameBits turns a readable bit string ("1000_0001 0000_0010", spaces and underscores ignored)
// into bytes, followed by tail.
func frameBits(t testing.TB, s string, tail ...byte) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "_", "").Replace(s)
	if len(s)%8 != 0 {
		t.Fatalf("bit string %q is not whole bytes", s)
	}
	var out []byte
	for i := 0; i < len(s); i += 8 {
		v, err := strconv.ParseUint(s[i:i+8], 2, 8)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, byte(v))
	}
	return append(out, tail...)
}

func TestParseServerFrame(t *testing.T) {
	long := bytes.Repeat([]byte{'a'}, 300)
	for _, tc := range []struct {
		name    string
		in      []byte
		fin     bool
		op      ws.OpCode
		payload []byte
		err     error // errNeedMore, a *frameError (any), or nil
	}{
		{"text/len=2", frameBits(t, "1000_0001 0000_0010", 'h', 'i'), true, ws.OpText, []byte("hi"), nil},
		{"binary/len=0", frameBits(t, "1000_0010 0000_0000"), true, ws.OpBinary, []byte{}, nil},
		{"text/not-fin", frameBits(t, "0000_0001 0000_0001", 'x'), false, ws.OpText, []byte("x"), nil},
		{"ping/len=1", frameBits(t, "1000_1001 0000_0001", 'p'), true, ws.OpPing, []byte("p"), nil},
		{"close/len=2", frameBits(t, "1000_1000 0000_0010", 0x03, 0xe8), true, ws.OpClose, []byte{0x03, 0xe8}, nil},
		{"text/len=300/ext16", append(frameBits(t, "1000_0001 0111_1110 0000_0001 0010_1100"), long...), true, ws.OpText, long, nil},
		{"text/len=300/ext64", append(frameBits(t, "1000_0001 0111_1111"+strings.Repeat("0000_0000 ", 6)+"0000_0001 0010_1100"), long...), true, ws.OpText, long, nil},
		{"need-more/empty", nil, false, 0, nil, errNeedMore},
		{"need-more/one-byte", frameBits(t, "1000_0001"), false, 0, nil, errNeedMore},
		{"need-more/payload", frameBits(t, "1000_0001 0000_0011", 'h', 'i'), false, 0, nil, errNeedMore},
		{"need-more/ext16", frameBits(t, "1000_0001 0111_1110 0000_0001"), false, 0, nil, errNeedMore},
		{"need-more/ext64", frameBits(t, "1000_0001 0111_1111 0000_0000"), false, 0, nil, errNeedMore},
		{"rfc6455-5.1/masked", frameBits(t, "1000_0001 1000_0001 0000_0000 0000_0000 0000_0000 0000_0000", 'x'), false, 0, nil, errFrameMasked},
		{"rfc6455-5.2/rsv1", frameBits(t, "1100_0001 0000_0000"), false, 0, nil, errFrameRsv},
		{"rfc6455-5.2/opcode=3", frameBits(t, "1000_0011 0000_0000"), false, 0, nil, errFrameOpCode},
		{"rfc6455-5.2/opcode=11", frameBits(t, "1000_1011 0000_0000"), false, 0, nil, errFrameOpCode},
		{"rfc6455-5.2/len64-msb", frameBits(t, "1000_0010 0111_1111 1000_0000"+strings.Repeat(" 0000_0000", 7)), false, 0, nil, errFrameLengthMSB},
		{"rfc6455-5.5/ping-len=126", frameBits(t, "1000_1001 0111_1110 0000_0000 0111_1110"), false, 0, nil, errFrameControlLen},
		{"rfc6455-5.5/ping-not-fin", frameBits(t, "0000_1001 0000_0000"), false, 0, nil, errFrameControlFin},
		{"too-big", frameBits(t, "1000_0010 0111_1111 0000_0000 0000_0000 0000_0000 0000_0000 0000_0001 0000_0000 0000_0000 0000_0001"), false, 0, nil, &frameError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, n, err := parseServerFrame(tc.in, maxFrameBytes)
			switch {
			case tc.err == nil:
				if err != nil || n != len(tc.in) || f.fin != tc.fin || f.op != tc.op || !bytes.Equal(f.payload, tc.payload) {
					t.Fatalf("got %+v n=%d err=%v", f, n, err)
				}
			case errors.Is(tc.err, errNeedMore):
				if !errors.Is(err, errNeedMore) || n != 0 {
					t.Fatalf("got n=%d err=%v, want errNeedMore", n, err)
				}
			default:
				var fe *frameError
				if !errors.As(err, &fe) || n != 0 {
					t.Fatalf("got n=%d err=%v, want a frame error", n, err)
				}
				if want, ok := tc.err.(*frameError); ok && want.reason != "" && err != tc.err {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			}
		})
	}
}

func TestCheckUpgradeResponse(t *testing.T) {
	req, accept := upgradeRequest("h:1", "/client/hubs/x?access_token=t", JSONProtocol)
	if !bytes.HasPrefix(req, []byte("GET /client/hubs/x?access_token=t HTTP/1.1\r\nHost: h:1\r\n")) || !bytes.HasSuffix(req, []byte("\r\n\r\n")) ||
		!bytes.Contains(req, []byte("\r\nSec-WebSocket-Protocol: "+JSONProtocol+"\r\n")) {
		t.Fatalf("request %q", req)
	}
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: " + accept + "\r\nSec-WebSocket-Protocol: " + JSONProtocol
	for _, tc := range []struct{ name, head, kind string }{
		{"ok", ok, ""},
		{"status-401", "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0", "handshake-http-401"},
		{"not-http", "SSH-2.0", failHSBad},
		{"bad-accept", strings.Replace(ok, accept, "x", 1), failHSBad},
		{"no-protocol", strings.Replace(ok, JSONProtocol, "", 1), failHSBad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkUpgradeResponse([]byte(tc.head), accept, JSONProtocol); got != tc.kind {
				t.Fatalf("kind %q, want %q", got, tc.kind)
			}
		})
	}
}

// TestCheckUpgradeResponsePlain: a plain client offers no subprotocol, and a server that
// selects one anyway fails the handshake (RFC 6455 §4.1).
func TestCheckUpgradeResponsePlain(t *testing.T) {
	req, accept := upgradeRequest("h:1", "/client/hubs/x?access_token=t", "")
	if bytes.Contains(bytes.ToLower(req), []byte("sec-websocket-protocol")) || !bytes.HasSuffix(req, []byte("\r\n\r\n")) {
		t.Fatalf("request %q", req)
	}
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept
	for _, tc := range []struct{ name, head, kind string }{
		{"ok", ok, ""},
		{"protocol-not-offered", ok + "\r\nSec-WebSocket-Protocol: " + JSONProtocol, failHSBad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkUpgradeResponse([]byte(tc.head), accept, ""); got != tc.kind {
				t.Fatalf("kind %q, want %q", got, tc.kind)
			}
		})
	}
}

// FuzzServerFrame checks parseServerFrame on arbitrary bytes: no panic, n within the
// buffer, payload within the limit, every shorter prefix of a whole frame asks for more
// bytes (never an error or another frame), and a whole final frame re-encodes to a frame
// that parses to the same opcode and payload.
func FuzzServerFrame(f *testing.F) {
	for _, seed := range [][]byte{
		wsproto.AppendFrame(nil, ws.OpText, []byte(`{"type":"system","event":"connected"}`)),
		wsproto.AppendFrame(nil, ws.OpBinary, bytes.Repeat([]byte{1}, 200)),
		wsproto.AppendFrame(nil, ws.OpPing, []byte("p")),
		wsproto.AppendFrame(nil, ws.OpClose, []byte{0x03, 0xe8}),
		wsproto.AppendMaskedFrame(nil, true, ws.OpText, [4]byte{1, 2, 3, 4}, []byte("masked")),
		{0x81, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{0x01, 0x01, 'a', 0x80, 0x01, 'b'},
	} {
		f.Add(seed)
	}
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, buf []byte) {
		fr, n, err := parseServerFrame(buf, limit)
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			var fe *frameError
			if !errors.Is(err, errNeedMore) && !errors.As(err, &fe) {
				t.Fatalf("unexpected error type %T", err)
			}
			return
		}
		if n < 2 || n > len(buf) || len(fr.payload) > limit || len(fr.payload) > n {
			t.Fatalf("n = %d, payload %d, buffer %d", n, len(fr.payload), len(buf))
		}
		for k := range n {
			if _, _, err := parseServerFrame(buf[:k], limit); !errors.Is(err, errNeedMore) {
				t.Fatalf("prefix %d of %d: err = %v, want errNeedMore", k, n, err)
			}
		}
		if fr.fin {
			again := wsproto.AppendFrame(nil, fr.op, fr.payload)
			fr2, n2, err := parseServerFrame(again, limit)
			if err != nil || n2 != len(again) || fr2.op != fr.op || !bytes.Equal(fr2.payload, fr.payload) {
				t.Fatalf("re-encoded frame parses to %+v, %d, %v", fr2, n2, err)
			}
		}
	})
}
