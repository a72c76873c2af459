//go:build !race

package wsproto

import (
	"testing"

	"github.com/gobwas/ws"
)

// Allocation tests for the hot paths STYLE §4 promises are free: frame
// decode, message decode and broadcast encode. The race detector allocates,
// hence the build tag.

func TestParseFrameAllocs(t *testing.T) {
	frames := [][]byte{
		AppendMaskedFrame(nil, true, ws.OpText, testMask, []byte(`{"type":"ping"}`)),
		AppendMaskedFrame(nil, true, ws.OpBinary, testMask, make([]byte, 70000)),
		AppendMaskedFrame(nil, true, ws.OpPing, testMask, []byte("x")),
		{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'},                 // unmasked: error path
		bits(t, "1 000 0010 | 1 1111110 | 00000011 11101000"), // 1009 path
	}
	for _, in := range frames {
		if n := testing.AllocsPerRun(100, func() { _, _, _ = ParseFrame(in, 999) }); n != 0 {
			t.Errorf("ParseFrame(% x…): %v allocs", in[:2], n)
		}
	}
}

func TestDecodeJSONMessageAllocs(t *testing.T) {
	var m ClientMessage
	for _, tc := range []struct {
		in   string
		want float64
	}{
		{`{"type":"ping"}`, 0},
		{`{"type":"sequenceAck","sequenceId":5}`, 0},
		// The group name is copied into a string the engine may keep.
		{`{"type":"sendToGroup","group":"group1","ackId":3,"dataType":"json","data":{"hello":"world"},"noEcho":false}`, 1},
		{`{"type":"sendToGroup","group":"group1","ackId":3,"dataType":"text","data":"h\u00e9llo","noEcho":false}`, 1},
		{`{"type":"sendToGroup","group":"group1","dataType":"binary","data":"AQID","noEcho":true}`, 1},
	} {
		in := []byte(tc.in)
		if err := DecodeJSONMessage(&m, in); err != nil { // warm the scratch space
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = DecodeJSONMessage(&m, in) }); n != tc.want {
			t.Errorf("%s: %v allocs, want %v", tc.in, n, tc.want)
		}
	}
}

func TestBroadcastEncodeAllocs(t *testing.T) {
	body := make([]byte, 0, 4096)
	frame := make([]byte, 0, 4096)
	data := []byte(`{"hello":"world","n":[1,2,3]}`)
	bin := make([]byte, 1024)
	n := testing.AllocsPerRun(100, func() {
		body = AppendGroupMessage(body[:0], "group1", "user1", DataJSON, data, 0)
		frame = AppendFrame(frame[:0], ws.OpText, body)
		body = AppendGroupMessage(body[:0], "group1", "user1", DataBinary, bin, 42)
		frame = AppendFrame(frame[:0], ws.OpText, body)
		body = AppendGroupMessage(body[:0], "group1", "", DataText, data, 0)
		frame = AppendFrameHeader(frame[:0], ws.OpText, len(body))
		frame = append(frame, body...)
	})
	if n != 0 {
		t.Fatalf("broadcast encode: %v allocs", n)
	}
}
