package wsproto

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/gobwas/ws"
)

var benchSizes = []int{16, 128, 1024, 16 * 1024, 1 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1024:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkParseFrame parses one masked client frame and unmasks it in place.
// Unmasking the same bytes again each iteration is the same work.
func BenchmarkParseFrame(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+sizeName(size), func(b *testing.B) {
			in := AppendMaskedFrame(nil, true, ws.OpBinary, testMask, make([]byte, size))
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				if _, _, err := ParseFrame(in, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseFrameGobwas is the baseline: gobwas/ws.ReadHeader from a
// bytes.Reader plus ws.Cipher, the same work done with its blocking reader API.
func BenchmarkParseFrameGobwas(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+sizeName(size), func(b *testing.B) {
			in := AppendMaskedFrame(nil, true, ws.OpBinary, testMask, make([]byte, size))
			var r bytes.Reader
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for b.Loop() {
				r.Reset(in)
				h, err := ws.ReadHeader(&r)
				if err != nil {
					b.Fatal(err)
				}
				start := len(in) - r.Len()
				ws.Cipher(in[start:start+int(h.Length)], h.Mask, 0)
			}
		})
	}
}

// BenchmarkAppendGroupMessage is the broadcast encode path: one group message
// and its text frame into pre-sized buffers.
func BenchmarkAppendGroupMessage(b *testing.B) {
	for _, tc := range []struct {
		name string
		dt   DataType
		data []byte
	}{
		{"type=json/size=29B", DataJSON, []byte(`{"hello":"world","n":[1,2,3]}`)},
		{"type=text/size=1KiB", DataText, bytes.Repeat([]byte("hello wo"), 128)},
		{"type=text-escaped/size=1KiB", DataText, bytes.Repeat([]byte("say \"hi\"\n"), 114)},
		{"type=binary/size=1KiB", DataBinary, bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7}, 128)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			body := make([]byte, 0, 8192)
			frame := make([]byte, 0, 8192)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.data)))
			b.ResetTimer()
			for b.Loop() {
				body = AppendGroupMessage(body[:0], "group1", "user1", tc.dt, tc.data, 0)
				frame = AppendFrame(frame[:0], ws.OpText, body)
			}
		})
	}
}

var benchMessages = []struct {
	name string
	in   string
}{
	{"type=ping", `{"type":"ping"}`},
	{"type=joinGroup", `{"type":"joinGroup","group":"group1","ackId":1}`},
	{"type=sendToGroup/data=json", `{"type":"sendToGroup","group":"group1","ackId":3,"dataType":"json","data":{"hello":"world"},"noEcho":false}`},
	{"type=sendToGroup/data=text", `{"type":"sendToGroup","group":"group1","ackId":3,"dataType":"text","data":"hi","noEcho":false}`},
	{"type=sendToGroup/data=binary", `{"type":"sendToGroup","group":"group1","dataType":"binary","data":"AQID","noEcho":true}`},
	{"type=event/data=json-1KiB", `{"type":"event","event":"ev","ackId":4,"dataType":"json","data":{"k":"` + string(bytes.Repeat([]byte("x"), 1024)) + `"}}`},
	{"type=sequenceAck", `{"type":"sequenceAck","sequenceId":5}`},
}

func BenchmarkDecodeJSONMessage(b *testing.B) {
	for _, tc := range benchMessages {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.in)
			var m ClientMessage
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			b.ResetTimer()
			for b.Loop() {
				if err := DecodeJSONMessage(&m, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeJSONMessageStdlib is the baseline: encoding/json into a struct
// with the same fields, data kept raw, no validation.
func BenchmarkDecodeJSONMessageStdlib(b *testing.B) {
	type wire struct {
		Type         string          `json:"type"`
		AckID        *uint64         `json:"ackId"`
		Group        string          `json:"group"`
		Event        string          `json:"event"`
		NoEcho       bool            `json:"noEcho"`
		DataType     string          `json:"dataType"`
		Data         json.RawMessage `json:"data"`
		SequenceID   uint64          `json:"sequenceId"`
		InvocationID string          `json:"invocationId"`
		Target       string          `json:"target"`
	}
	for _, tc := range benchMessages {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.in)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			b.ResetTimer()
			for b.Loop() {
				var w wire
				if err := json.Unmarshal(in, &w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
