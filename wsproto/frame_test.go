package wsproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// bits turns a readable bit string into bytes: '0' and '1' are bits, most
// significant first; spaces, '|' and '_' only group them for the reader.
// "x" followed by hex digits inserts raw bytes, for payloads. Each byte must
// be complete.
func bits(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	var cur byte
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '0', '1':
			cur = cur<<1 | (c - '0')
			n++
			if n == 8 {
				out = append(out, cur)
				cur, n = 0, 0
			}
		case ' ', '|', '_', '\n', '\t':
		default:
			t.Fatalf("bits: unexpected %q at %d in %q", c, i, s)
		}
	}
	if n != 0 {
		t.Fatalf("bits: %d trailing bits in %q", n, s)
	}
	return out
}

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frameCase is shared by the encode and decode tests: the header of the
// unmasked server frame as bits, and the operation that produces it. The
// decode side masks the same frame as a client would.
type frameCase struct {
	name    string
	op      ws.OpCode
	payload []byte
	header  string // FIN RSV OPCODE | MASK LEN7 | extended length
}

var frameCases = []frameCase{
	{"text/len=0", ws.OpText, nil,
		"1 000 0001 | 0 0000000"},
	{"text/len=5", ws.OpText, []byte("Hello"),
		"1 000 0001 | 0 0000101"},
	{"binary/len=125", ws.OpBinary, bytes.Repeat([]byte{0xab}, 125),
		"1 000 0010 | 0 1111101"},
	{"binary/len=126", ws.OpBinary, bytes.Repeat([]byte{1}, 126),
		"1 000 0010 | 0 1111110 | 00000000 01111110"},
	{"binary/len=65535", ws.OpBinary, bytes.Repeat([]byte{2}, 65535),
		"1 000 0010 | 0 1111110 | 11111111 11111111"},
	{"binary/len=65536", ws.OpBinary, bytes.Repeat([]byte{3}, 65536),
		"1 000 0010 | 0 1111111 | 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000"},
	{"ping/len=4", ws.OpPing, []byte("ping"),
		"1 000 1001 | 0 0000100"},
	{"pong/len=0", ws.OpPong, nil,
		"1 000 1010 | 0 0000000"},
	{"close/len=2", ws.OpClose, []byte{0x03, 0xe8},
		"1 000 1000 | 0 0000010"},
}

// maskedFrame turns an unmasked frame into the client form: MASK bit, key,
// masked payload.
func maskedFrame(t testing.TB, unmasked []byte, key [4]byte) []byte {
	t.Helper()
	f, n, err := parseServerFrame(unmasked)
	if err != nil || n != len(unmasked) {
		t.Fatalf("maskedFrame: %v (n=%d of %d)", err, n, len(unmasked))
	}
	return AppendMaskedFrame(nil, f.Fin, f.OpCode, key, f.Payload)
}

// parseServerFrame reads an unmasked frame through gobwas/ws, an independent
// decoder, so the encode test does not only check us against ourselves.
func parseServerFrame(b []byte) (Frame, int, error) {
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	if err != nil {
		return Frame{}, 0, err
	}
	if h.Masked {
		return Frame{}, 0, errors.New("masked")
	}
	hl := len(b) - r.Len()
	end := hl + int(h.Length)
	if end > len(b) {
		return Frame{}, 0, ErrNeedMore
	}
	return Frame{Fin: h.Fin, OpCode: h.OpCode, Payload: b[hl:end]}, end, nil
}

func TestAppendFrame(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			want := append(bits(t, tc.header), tc.payload...)
			got := AppendFrame(nil, tc.op, tc.payload)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendFrame:\n got % x\nwant % x", head(got), head(want))
			}
			hdr := AppendFrameHeader([]byte("keep"), tc.op, len(tc.payload))
			if !bytes.Equal(hdr, append([]byte("keep"), bits(t, tc.header)...)) {
				t.Fatalf("AppendFrameHeader: got % x", hdr)
			}
		})
	}
}

func TestParseFrame(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name+"/masked", func(t *testing.T) {
			unmasked := append(bits(t, tc.header), tc.payload...)
			in := maskedFrame(t, unmasked, testMask)
			// The masked header is the unmasked one with the MASK bit set.
			wantHdr := bits(t, tc.header)
			wantHdr[1] |= 0x80
			if !bytes.HasPrefix(in, wantHdr) {
				t.Fatalf("masked header % x, want prefix % x", head(in), wantHdr)
			}
			in = append(in, "next frame"...)
			f, n, err := ParseFrame(in, 0)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(in)-len("next frame") {
				t.Fatalf("n = %d, want %d", n, len(in)-len("next frame"))
			}
			if !f.Fin || f.OpCode != tc.op || !bytes.Equal(f.Payload, tc.payload) {
				t.Fatalf("got fin=%v op=%v payload % x", f.Fin, f.OpCode, head(f.Payload))
			}
		})
	}
}

// TestParseFrameErrors lists client frames ParseFrame must reject, written as
// bits so the offending bit is visible. The RFC 6455 tests below name the rule
// each one comes from.
func TestParseFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		frame      string
		maxPayload int
		want       ws.StatusCode
	}{
		{"unmasked", "1 000 0001 | 0 0000000", 0, ws.StatusProtocolError},
		{"rsv1", "1 100 0001 | 1 0000000", 0, ws.StatusProtocolError},
		{"rsv2", "1 010 0001 | 1 0000000", 0, ws.StatusProtocolError},
		{"rsv3", "1 001 0001 | 1 0000000", 0, ws.StatusProtocolError},
		{"opcode=3", "1 000 0011 | 1 0000000", 0, ws.StatusProtocolError},
		{"opcode=7", "1 000 0111 | 1 0000000", 0, ws.StatusProtocolError},
		{"opcode=11", "1 000 1011 | 1 0000000", 0, ws.StatusProtocolError},
		{"opcode=15", "1 000 1111 | 1 0000000", 0, ws.StatusProtocolError},
		{"ping/len=126", "1 000 1001 | 1 1111110", 0, ws.StatusProtocolError},
		{"close/not-fin", "0 000 1000 | 1 0000000", 0, ws.StatusProtocolError},
		{"len64/msb", "1 000 0010 | 1 1111111 | 10000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001", 0, ws.StatusProtocolError},
		{"len7=6/max=5", "1 000 0010 | 1 0000110", 5, ws.StatusMessageTooBig},
		{"len16=1000/max=999", "1 000 0010 | 1 1111110 | 00000011 11101000", 999, ws.StatusMessageTooBig},
		{"len64=2^40/max=1MiB", "1 000 0010 | 1 1111111 | 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000", 1 << 20, ws.StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Only the header is present: errors must not wait for the payload.
			_, n, err := ParseFrame(bits(t, tc.frame), tc.maxPayload)
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ProtocolError", err)
			}
			if pe.Status != tc.want || n != 0 {
				t.Fatalf("status %d n %d, want %d", pe.Status, n, tc.want)
			}
			if !strings.HasPrefix(pe.Error(), "wsproto: ") {
				t.Fatalf("Error() = %q", pe.Error())
			}
		})
	}
}

func TestParseFrameNeedMore(t *testing.T) {
	full := AppendMaskedFrame(nil, true, ws.OpBinary, testMask, bytes.Repeat([]byte{7}, 300))
	orig := append([]byte(nil), full...)
	for i := 0; i < len(full); i++ {
		_, n, err := ParseFrame(full[:i], 0)
		if err != ErrNeedMore || n != 0 {
			t.Fatalf("prefix %d: n=%d err=%v, want ErrNeedMore", i, n, err)
		}
	}
	if !bytes.Equal(full, orig) {
		t.Fatal("ParseFrame changed an incomplete frame")
	}
}

func TestParseFrameFragments(t *testing.T) {
	var in []byte
	in = AppendMaskedFrame(in, false, ws.OpText, testMask, []byte("Hel"))
	in = AppendMaskedFrame(in, true, ws.OpPing, testMask, []byte("p"))
	in = AppendMaskedFrame(in, true, ws.OpContinuation, testMask, []byte("lo"))
	want := []Frame{
		{false, ws.OpText, []byte("Hel")},
		{true, ws.OpPing, []byte("p")},
		{true, ws.OpContinuation, []byte("lo")},
	}
	for i, w := range want {
		f, n, err := ParseFrame(in, 0)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Fin != w.Fin || f.OpCode != w.OpCode || string(f.Payload) != string(w.Payload) {
			t.Fatalf("frame %d: got %+v, want %+v", i, f, w)
		}
		in = in[n:]
	}
	if len(in) != 0 {
		t.Fatalf("%d bytes left", len(in))
	}
}

func TestAppendCloseFrame(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes; 123 would split the 62nd rune
	for _, tc := range []struct {
		name   string
		code   ws.StatusCode
		reason string
		want   string // header bits
		body   string
	}{
		{"code=1000", 1000, "", "1 000 1000 | 0 0000010 | 00000011 11101000", ""},
		{"code=1008/reason", 1008, "BadRequest", "1 000 1000 | 0 0001100 | 00000011 11110000", "BadRequest"},
		{"code=0", 0, "ignored", "1 000 1000 | 0 0000000", ""},
		{"code=1005", ws.StatusNoStatusRcvd, "ignored", "1 000 1000 | 0 0000000", ""},
		{"reason=utf8-cut", 1009, long, "1 000 1000 | 0 1111100 | 00000011 11110001", long[:122]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendCloseFrame(nil, tc.code, tc.reason)
			want := append(bits(t, tc.want), tc.body...)
			if !bytes.Equal(got, want) {
				t.Fatalf("got % x\nwant % x", got, want)
			}
			if len(got)-2 > 125 {
				t.Fatalf("control payload %d > 125", len(got)-2)
			}
		})
	}
}

func TestTruncateUTF8(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"aé", 2, "a"},
		{"a€", 3, "a"},
		{"a😀", 4, "a"},
		{"a😀", 5, "a😀"},
		{"\xff\xff\xff\xff\xff", 3, "\xff\xff\xff"},
	} {
		if got := truncateUTF8(tc.s, tc.max); got != tc.want {
			t.Errorf("truncateUTF8(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
		}
	}
}

// head shortens long byte slices in failure messages.
func head(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
