//go:build !race

package wsproto

import (
	"testing"

	"github.com/gobwas/ws"
)

// Allocation tests for the protobuf hot paths (STYLE §4): broadcast encode,
// the per-recipient sequence id, and message decode.

func TestProtobufBroadcastEncodeAllocs(t *testing.T) {
	body := make([]byte, 0, 4096)
	shared := make([]byte, 0, 4096)
	frame := make([]byte, 0, 4096)
	data := []byte(`{"hello":"world","n":[1,2,3]}`)
	bin := make([]byte, 1024)
	anyBytes := []byte("\n/type.googleapis.com/azure.webpubsub.TestMessage\x12\x02\b\x01")
	cases := map[string]func(){
		"group": func() {
			body = AppendProtobufGroupMessage(body[:0], "group1", DataJSON, data, 0)
			body = AppendProtobufGroupMessage(body[:0], "group1", DataBinary, bin, 42)
			body = AppendProtobufGroupMessage(body[:0], "group1", DataProtobuf, anyBytes, 1<<40)
			frame = AppendFrame(frame[:0], ws.OpBinary, body)
		},
		"server": func() {
			body = AppendProtobufServerMessage(body[:0], DataText, data, 7)
			frame = AppendFrame(frame[:0], ws.OpBinary, body)
		},
		"sequenced": func() {
			shared = AppendProtobufGroupData(shared[:0], "group1", DataBinary, bin)
			for seq := uint64(1); seq < 300; seq += 100 {
				frame = AppendFrameHeader(frame[:0], ws.OpBinary, ProtobufSequencedLen(len(shared), seq))
				frame = AppendProtobufSequenced(frame, shared, seq)
			}
			shared = AppendProtobufServerData(shared[:0], DataText, data)
			frame = AppendProtobufSequencedHeader(frame[:0], len(shared), 9)
			frame = AppendProtobufSequenceTail(frame, 9)
		},
		"control": func() {
			body = AppendProtobufAck(body[:0], 3, "Forbidden", "x")
			body = AppendProtobufAck(body[:0], 3, "", "")
			body = AppendProtobufPong(body[:0])
			body = AppendProtobufConnected(body[:0], "user1", "conn1", "tok")
			body = AppendProtobufDisconnected(body[:0], "bye")
		},
		"json-sequenced": func() {
			shared = AppendGroupMessageHead(shared[:0], "group1", "user1", DataJSON, data)
			for seq := uint64(1); seq < 300; seq += 100 {
				frame = AppendFrameHeader(frame[:0], ws.OpText, len(shared)+JSONSequenceTailLen(seq))
				frame = append(frame, shared...)
				frame = AppendJSONSequenceTail(frame, seq)
			}
			shared = AppendServerMessageHead(shared[:0], DataBinary, bin)
		},
	}
	for name, fn := range cases {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocs", name, n)
		}
	}
}

func TestDecodeProtobufMessageAllocs(t *testing.T) {
	var m ClientMessage
	for _, tc := range []struct {
		name, in string
		want     float64
	}{
		{"ping", "4A 00", 0},
		{"sequenceAck", "42 02 08 05", 0},
		// The group or event name is copied into a string the engine may keep.
		{"sendToGroup-text", "0A 12 0A 06 67 72 6F 75 70 31 10 03 1A 04 0A 02 68 69 20 01", 1},
		// A one-byte name ("g") comes from the runtime's static table.
		{"sendToGroup-binary", "0A 0A 0A 01 67 1A 05 12 03 01 02 03", 0},
		{"sendToGroup-protobuf", "0A 0E 0A 01 67 1A 09 1A 07 0A 01 74 12 02 08 01", 0},
		{"event-json", "2A 11 0A 02 65 76 12 09 22 07 7B 22 61 22 3A 31 7D 18 05", 1},
		{"joinGroup", "32 0A 0A 06 67 72 6F 75 70 31 10 01", 1},
	} {
		in := unhex(t, tc.in)
		if err := DecodeProtobufMessage(&m, in); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = DecodeProtobufMessage(&m, in) }); n != tc.want {
			t.Errorf("%s: %v allocs, want %v", tc.name, n, tc.want)
		}
	}
}
