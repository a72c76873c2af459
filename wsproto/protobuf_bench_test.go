package wsproto

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/webpubsub/webpubsub/wsproto/pb"
)

var pbBenchData = []struct {
	name string
	dt   DataType
	data []byte
	md   *pb.MessageData
}{
	{"type=json/size=29B", DataJSON, []byte(`{"hello":"world","n":[1,2,3]}`), mdText(`{"hello":"world","n":[1,2,3]}`)},
	{"type=text/size=1KiB", DataText, bytes.Repeat([]byte("hello wo"), 128), mdText(string(bytes.Repeat([]byte("hello wo"), 128)))},
	{"type=binary/size=1KiB", DataBinary, bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7}, 128), mdBinary(bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7}, 128))},
	{"type=binary/size=16KiB", DataBinary, make([]byte, 16<<10), mdBinary(make([]byte, 16<<10))},
}

// BenchmarkAppendProtobufGroupMessage is the protobuf broadcast encode path:
// one DataMessage (reliable: with sequence_id) and its binary frame into
// pre-sized buffers.
func BenchmarkAppendProtobufGroupMessage(b *testing.B) {
	for _, tc := range pbBenchData {
		for _, seq := range []uint64{0, 1000} {
			b.Run(tc.name+"/seq="+strconv.FormatUint(seq, 10), func(b *testing.B) {
				body := make([]byte, 0, 20<<10)
				frame := make([]byte, 0, 20<<10)
				b.ReportAllocs()
				b.SetBytes(int64(len(tc.data)))
				for b.Loop() {
					body = AppendProtobufGroupMessage(body[:0], "group1", tc.dt, tc.data, seq)
					frame = AppendFrame(frame[:0], ws.OpBinary, body)
				}
			})
		}
	}
}

// BenchmarkAppendProtobufGroupMessageProtoMarshal is the baseline: the same
// message built with the generated types and proto.MarshalAppend into the same
// buffer, then framed.
func BenchmarkAppendProtobufGroupMessageProtoMarshal(b *testing.B) {
	for _, tc := range pbBenchData {
		for _, seq := range []uint64{0, 1000} {
			b.Run(tc.name+"/seq="+strconv.FormatUint(seq, 10), func(b *testing.B) {
				body := make([]byte, 0, 20<<10)
				frame := make([]byte, 0, 20<<10)
				var sp *uint64
				if seq != 0 {
					sp = &seq
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(tc.data)))
				for b.Loop() {
					m := downData("group", ptr("group1"), tc.md, sp)
					var err error
					body, err = proto.MarshalOptions{}.MarshalAppend(body[:0], m)
					if err != nil {
						b.Fatal(err)
					}
					frame = AppendFrame(frame[:0], ws.OpBinary, body)
				}
			})
		}
	}
}

// BenchmarkProtobufSequencedFanout is the reliable per-recipient cost: the
// shared DataMessage is encoded once outside the loop; each iteration is one
// recipient's frame (header, outer DownstreamMessage header, the shared bytes
// copied, sequence_id). Compare with BenchmarkAppendProtobufGroupMessage,
// which re-encodes per recipient.
func BenchmarkProtobufSequencedFanout(b *testing.B) {
	for _, tc := range pbBenchData {
		b.Run(tc.name, func(b *testing.B) {
			shared := AppendProtobufGroupData(nil, "group1", tc.dt, tc.data)
			frame := make([]byte, 0, 20<<10)
			seq := uint64(1000)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				seq++
				frame = AppendFrameHeader(frame[:0], ws.OpBinary, ProtobufSequencedLen(len(shared), seq))
				frame = AppendProtobufSequenced(frame, shared, seq)
			}
		})
	}
}

// BenchmarkJSONSequencedFanout is the same for reliable JSON: shared head
// encoded once, per recipient frame header + head + digits + "}".
func BenchmarkJSONSequencedFanout(b *testing.B) {
	for _, tc := range pbBenchData {
		b.Run(tc.name, func(b *testing.B) {
			head := AppendGroupMessageHead(nil, "group1", "user1", tc.dt, tc.data)
			frame := make([]byte, 0, 40<<10)
			seq := uint64(1000)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				seq++
				frame = AppendFrameHeader(frame[:0], ws.OpText, len(head)+JSONSequenceTailLen(seq))
				frame = append(frame, head...)
				frame = AppendJSONSequenceTail(frame, seq)
			}
		})
	}
}

// BenchmarkJSONReencodeFanout is what BenchmarkJSONSequencedFanout saves: a
// full AppendGroupMessage per recipient.
func BenchmarkJSONReencodeFanout(b *testing.B) {
	for _, tc := range pbBenchData {
		b.Run(tc.name, func(b *testing.B) {
			body := make([]byte, 0, 40<<10)
			frame := make([]byte, 0, 40<<10)
			seq := uint64(1000)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				seq++
				body = AppendGroupMessage(body[:0], "group1", "user1", tc.dt, tc.data, seq)
				frame = AppendFrame(frame[:0], ws.OpText, body)
			}
		})
	}
}

var pbBenchMessages = []struct{ name, hex string }{
	{"type=ping", "4A 00"},
	{"type=joinGroup", "32 0A 0A 06 67 72 6F 75 70 31 10 01"},
	{"type=sendToGroup/data=text", "0A 12 0A 06 67 72 6F 75 70 31 10 03 1A 04 0A 02 68 69 20 01"},
	{"type=event/data=json", "2A 11 0A 02 65 76 12 09 22 07 7B 22 61 22 3A 31 7D 18 05"},
	{"type=sequenceAck", "42 02 08 05"},
}

func BenchmarkDecodeProtobufMessage(b *testing.B) {
	for _, tc := range pbBenchMessages {
		b.Run(tc.name, func(b *testing.B) {
			in := unhex(b, tc.hex)
			var m ClientMessage
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if err := DecodeProtobufMessage(&m, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeProtobufMessageProtoUnmarshal is the baseline: proto.Unmarshal
// into the generated UpstreamMessage (no validation beyond the wire format).
func BenchmarkDecodeProtobufMessageProtoUnmarshal(b *testing.B) {
	for _, tc := range pbBenchMessages {
		b.Run(tc.name, func(b *testing.B) {
			in := unhex(b, tc.hex)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				var u pb.UpstreamMessage
				if err := proto.Unmarshal(in, &u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
