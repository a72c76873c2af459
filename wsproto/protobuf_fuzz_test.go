package wsproto

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/webpubsub/webpubsub/wsproto/pb"
)

func FuzzDecodeProtobufMessage(f *testing.F) {
	// One seed per message kind and data case (client-examples.md E5 and
	// testdata/protobuf/decode.golden), plus bad wire data.
	for _, s := range []string{
		"32 0A 0A 06 67 72 6F 75 70 31 10 01",                         // joinGroup
		"3A 0A 0A 06 67 72 6F 75 70 31 10 02",                         // leaveGroup
		"0A 12 0A 06 67 72 6F 75 70 31 10 03 1A 04 0A 02 68 69 20 01", // sendToGroup text
		"0A 0A 0A 01 67 1A 05 12 03 01 02 03",                         // sendToGroup binary
		"0A 10 0A 01 67 1A 05 1A 03 0A 01 74 1A 04 1A 02 10 05",       // sendToGroup protobuf, merged Any
		"2A 0C 0A 02 65 76 12 04 0A 02 68 69 18 04",                   // event text
		"2A 11 0A 02 65 76 12 09 22 07 7B 22 61 22 3A 31 7D 18 05",    // event json_data
		"42 02 08 05",          // sequenceAck
		"4A 00",                // ping
		"6A 05 0A 01 73 10 01", // stream data (not served)
		"A5 01 01 02 03 04 32 0C 0A 06 67 72 6F 75 70 31 78 2A 10 01", // unknown fields
		"42 0B 08 FF FF FF FF FF FF FF FF FF 02",                      // overlong varint
		"0B 0B 0C 0C 4A 00",                                           // groups
	} {
		f.Add(unhex(f, s))
	}
	var m ClientMessage
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(nil), data...)
		err := DecodeProtobufMessage(&m, in)
		var me *MessageError
		switch {
		case err == nil:
		case errors.As(err, &me):
			if me.Name != "BadRequest" || me.Message == "" || me.HasAckID != m.HasAckID || me.AckID != m.AckID {
				t.Fatalf("bad MessageError %+v", me)
			}
		case errors.Is(err, ErrInvalidMessage):
		default:
			t.Fatalf("unexpected error %v", err)
		}
		if !bytes.Equal(in, data) {
			t.Fatal("DecodeProtobufMessage modified its input")
		}
		// No growth past the input: Data and scratch are views or copies of it.
		if len(m.Data) > len(data) || len(m.scratch) > len(data) {
			t.Fatalf("data %d, scratch %d bytes from a %d-byte input", len(m.Data), len(m.scratch), len(data))
		}
		// The generated code agrees on validity and on every field.
		checkAgainstProto(t, data, &m, err)
		if err != nil {
			return
		}
		if m.HasData && m.DataType == DataJSON && (!jsonStringsValid(m.Data) || string(m.Data) == "null") {
			t.Fatalf("json data %q", m.Data)
		}
		// Encode then decode returns the input's meaning: the message
		// rebuilt with the generated types decodes to the same fields...
		want := describe(&m)
		if m.Type == MsgSendToGroup {
			u := &pb.UpstreamMessage{Message: &pb.UpstreamMessage_SendToGroupMessage_{SendToGroupMessage: &pb.UpstreamMessage_SendToGroupMessage{
				Group: m.Group, NoEcho: &m.NoEcho, Data: &pb.MessageData{Data: &pb.MessageData_BinaryData{BinaryData: m.Data}},
			}}}
			b, _ := proto.Marshal(u)
			var back ClientMessage
			if err := DecodeProtobufMessage(&back, b); err != nil || back.Group != m.Group || !bytes.Equal(back.Data, m.Data) || back.NoEcho != m.NoEcho {
				t.Fatalf("re-decoded %s: %v", describe(&back), err)
			}
			// ...and the broadcast a protobuf receiver gets carries the data.
			out := AppendProtobufGroupMessage(nil, m.Group, m.DataType, m.Data, 5)
			var d pb.DownstreamMessage
			if err := proto.Unmarshal(out, &d); err != nil {
				t.Fatalf("broadcast of %s: %v", want, err)
			}
			dm := d.GetDataMessage()
			if dm.GetGroup() != m.Group || dm.GetSequenceId() != 5 {
				t.Fatalf("broadcast of %s: %v", want, dm)
			}
			switch m.DataType {
			case DataText, DataJSON:
				if dm.GetData().GetTextData() != string(m.Data) {
					t.Fatalf("broadcast of %s: %v", want, dm)
				}
			case DataBinary:
				if !bytes.Equal(dm.GetData().GetBinaryData(), m.Data) {
					t.Fatalf("broadcast of %s: %v", want, dm)
				}
			case DataProtobuf:
				if dm.GetData().GetProtobufData() == nil {
					t.Fatalf("broadcast of %s: %v", want, dm)
				}
			}
		}
	})
}
