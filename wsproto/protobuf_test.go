package wsproto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/webpubsub/webpubsub/wsproto/pb"
)

// unhex decodes the spaced hex of client-examples.md E5 ("32 0A 0A …").
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func spacedHex(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%02X", c)
	}
	return sb.String()
}

// describePB renders what proto.Unmarshal makes of an UpstreamMessage in the
// "out:" form of describe, for the message kinds DecodeProtobufMessage serves.
// ok is false for cases it does not serve (none, streams).
func describePB(u *pb.UpstreamMessage) (out string, ok bool) {
	var m ClientMessage
	var d *pb.MessageData
	switch x := u.GetMessage().(type) {
	case *pb.UpstreamMessage_JoinGroupMessage_:
		m.Type, m.Group = MsgJoinGroup, x.JoinGroupMessage.GetGroup()
		m.AckID, m.HasAckID = x.JoinGroupMessage.GetAckId(), x.JoinGroupMessage.AckId != nil
	case *pb.UpstreamMessage_LeaveGroupMessage_:
		m.Type, m.Group = MsgLeaveGroup, x.LeaveGroupMessage.GetGroup()
		m.AckID, m.HasAckID = x.LeaveGroupMessage.GetAckId(), x.LeaveGroupMessage.AckId != nil
	case *pb.UpstreamMessage_SendToGroupMessage_:
		s := x.SendToGroupMessage
		m.Type, m.Group, m.NoEcho = MsgSendToGroup, s.GetGroup(), s.GetNoEcho()
		m.AckID, m.HasAckID = s.GetAckId(), s.AckId != nil
		d = s.GetData()
	case *pb.UpstreamMessage_EventMessage_:
		e := x.EventMessage
		m.Type, m.Event = MsgEvent, e.GetEvent()
		m.AckID, m.HasAckID = e.GetAckId(), e.AckId != nil
		d = e.GetData()
	case *pb.UpstreamMessage_SequenceAckMessage_:
		m.Type, m.SequenceID = MsgSequenceAck, x.SequenceAckMessage.GetSequenceId()
	case *pb.UpstreamMessage_PingMessage_:
		m.Type = MsgPing
	default:
		return "", false
	}
	switch v := d.GetData().(type) {
	case *pb.MessageData_TextData:
		m.HasData, m.DataType, m.Data = true, DataText, []byte(v.TextData)
	case *pb.MessageData_BinaryData:
		m.HasData, m.DataType, m.Data = true, DataBinary, v.BinaryData
	case *pb.MessageData_ProtobufData:
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v.ProtobufData)
		if err != nil {
			panic(err)
		}
		m.HasData, m.DataType, m.Data = true, DataProtobuf, b
	case *pb.MessageData_JsonData:
		m.HasData, m.DataType, m.Data = true, DataJSON, trimJSONSpace([]byte(v.JsonData))
	}
	return describe(&m), true
}

// checkAgainstProto compares one DecodeProtobufMessage result with
// proto.Unmarshal into the generated types:
//   - proto.Unmarshal fails exactly when we report ErrInvalidMessage for a
//     case we serve;
//   - on success (or a MessageError) the fields agree.
//
// Data of a protobuf case is compared after re-marshalling the Any, since the
// decoder keeps the bytes as sent.
func checkAgainstProto(t testing.TB, in []byte, m *ClientMessage, err error) {
	t.Helper()
	var u pb.UpstreamMessage
	perr := proto.Unmarshal(in, &u)
	want, served := describePB(&u)
	if perr != nil || !served {
		if !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("% x: proto.Unmarshal: %v (served %v), but DecodeProtobufMessage: %v", in, perr, served, err)
		}
		return
	}
	if errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("% x: proto.Unmarshal accepts %s, DecodeProtobufMessage: %v", in, want, err)
	}
	var me *MessageError
	if err != nil && !errors.As(err, &me) {
		t.Fatalf("% x: unexpected error %v", in, err)
	}
	if err != nil {
		if me.HasAckID != m.HasAckID || me.AckID != m.AckID || !strings.Contains(want, "type="+m.Type.String()) {
			t.Fatalf("% x: %v, but proto.Unmarshal gives %s", in, err, want)
		}
		return
	}
	got := *m
	if got.DataType == DataProtobuf {
		var a anypb.Any
		if e := proto.Unmarshal(got.Data, &a); e != nil {
			t.Fatalf("% x: Any %q: %v", in, got.Data, e)
		}
		got.Data, _ = proto.MarshalOptions{Deterministic: true}.Marshal(&a)
	}
	if g := describe(&got); g != want {
		t.Fatalf("% x:\n got %s\nwant %s (proto.Unmarshal)", in, g, want)
	}
}

// TestDecodeProtobufGolden runs testdata/protobuf/decode.golden: the E5
// vectors and the edge cases of §8, each also checked against proto.Unmarshal.
func TestDecodeProtobufGolden(t *testing.T) {
	path := filepath.Join("testdata", "protobuf", "decode.golden")
	var m ClientMessage // reused across cases, as an event loop does
	for _, tc := range readDecodeGolden(t, path) {
		t.Run(fmt.Sprintf("line=%d", tc.line), func(t *testing.T) {
			in := unhex(t, tc.in)
			err := DecodeProtobufMessage(&m, in)
			got := "out: " + describe(&m)
			if err != nil {
				got = "err: " + describeErr(err)
			}
			if got != tc.want {
				t.Fatalf("input %s\n got %s\nwant %s", tc.in, got, tc.want)
			}
			checkAgainstProto(t, in, &m, err)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func mdText(s string) *pb.MessageData {
	return &pb.MessageData{Data: &pb.MessageData_TextData{TextData: s}}
}

func mdBinary(b []byte) *pb.MessageData {
	return &pb.MessageData{Data: &pb.MessageData_BinaryData{BinaryData: b}}
}

func mdAny(typeURL string, v []byte) *pb.MessageData {
	return &pb.MessageData{Data: &pb.MessageData_ProtobufData{ProtobufData: &anypb.Any{TypeUrl: typeURL, Value: v}}}
}

func downData(from string, group *string, d *pb.MessageData, seq *uint64) *pb.DownstreamMessage {
	return &pb.DownstreamMessage{Message: &pb.DownstreamMessage_DataMessage_{DataMessage: &pb.DownstreamMessage_DataMessage{
		From: from, Group: group, Data: d, SequenceId: seq,
	}}}
}

func downConnected(conn, user, token string) *pb.DownstreamMessage {
	return &pb.DownstreamMessage{Message: &pb.DownstreamMessage_SystemMessage_{SystemMessage: &pb.DownstreamMessage_SystemMessage{
		Message: &pb.DownstreamMessage_SystemMessage_ConnectedMessage_{ConnectedMessage: &pb.DownstreamMessage_SystemMessage_ConnectedMessage{
			ConnectionId: conn, UserId: user, ReconnectionToken: token,
		}},
	}}}
}

func downDisconnected(reason string) *pb.DownstreamMessage {
	return &pb.DownstreamMessage{Message: &pb.DownstreamMessage_SystemMessage_{SystemMessage: &pb.DownstreamMessage_SystemMessage{
		Message: &pb.DownstreamMessage_SystemMessage_DisconnectedMessage_{DisconnectedMessage: &pb.DownstreamMessage_SystemMessage_DisconnectedMessage{
			Reason: reason,
		}},
	}}}
}

func downAck(id uint64, success bool, errName, errMsg string) *pb.DownstreamMessage {
	a := &pb.DownstreamMessage_AckMessage{AckId: id, Success: success}
	if errName != "" {
		a.Error = &pb.DownstreamMessage_AckMessage_ErrorMessage{Name: errName, Message: errMsg}
	}
	return &pb.DownstreamMessage{Message: &pb.DownstreamMessage_AckMessage_{AckMessage: a}}
}

// pbEncodeCases produce the lines of testdata/protobuf/encode.golden; want is
// the same message built with the generated types.
var pbEncodeCases = map[string]struct {
	fn   func([]byte) []byte
	want *pb.DownstreamMessage
}{
	"ack-success": {func(b []byte) []byte { return AppendProtobufAck(b, 1, "", "") }, downAck(1, true, "", "")},
	"ack-failure": {func(b []byte) []byte { return AppendProtobufAck(b, 3, "Forbidden", "x") }, downAck(3, false, "Forbidden", "x")},
	"ack-zero":    {func(b []byte) []byte { return AppendProtobufAck(b, 0, "", "") }, downAck(0, true, "", "")},
	"group-binary-reliable": {
		func(b []byte) []byte { return AppendProtobufGroupMessage(b, "group1", DataBinary, []byte{1, 2, 3}, 7) },
		downData("group", ptr("group1"), mdBinary([]byte{1, 2, 3}), ptr[uint64](7)),
	},
	"group-json": {
		func(b []byte) []byte { return AppendProtobufGroupMessage(b, "g", DataJSON, []byte(`{"a":1}`), 0) },
		downData("group", ptr("g"), mdText(`{"a":1}`), nil),
	},
	"group-text-empty": {
		func(b []byte) []byte { return AppendProtobufGroupMessage(b, "", DataText, nil, 0) },
		downData("group", ptr(""), mdText(""), nil),
	},
	"server-text": {
		func(b []byte) []byte { return AppendProtobufServerMessage(b, DataText, []byte("hi"), 0) },
		downData("server", nil, mdText("hi"), nil),
	},
	"server-protobuf-seq300": {
		func(b []byte) []byte {
			return AppendProtobufServerMessage(b, DataProtobuf, []byte{0x0A, 0x01, 't'}, 300)
		},
		downData("server", nil, mdAny("t", nil), ptr[uint64](300)),
	},
	"connected-reliable": {
		func(b []byte) []byte { return AppendProtobufConnected(b, "user1", "conn1", "tok") },
		downConnected("conn1", "user1", "tok"),
	},
	"connected": {
		func(b []byte) []byte { return AppendProtobufConnected(b, "user1", "conn1", "") },
		downConnected("conn1", "user1", ""),
	},
	"connected-anonymous": {
		func(b []byte) []byte { return AppendProtobufConnected(b, "", "conn1", "") },
		downConnected("conn1", "", ""),
	},
	"disconnected":       {func(b []byte) []byte { return AppendProtobufDisconnected(b, "bye") }, downDisconnected("bye")},
	"disconnected-empty": {func(b []byte) []byte { return AppendProtobufDisconnected(b, "") }, downDisconnected("")},
	"pong": {AppendProtobufPong, &pb.DownstreamMessage{Message: &pb.DownstreamMessage_PongMessage_{
		PongMessage: &pb.DownstreamMessage_PongMessage{},
	}}},
}

// TestAppendProtobufGolden checks every encoder byte for byte against
// testdata/protobuf/encode.golden (E5 S→C rows and more) and against
// proto.Marshal of the same message, and that proto.Unmarshal reads it back.
func TestAppendProtobufGolden(t *testing.T) {
	golden := readEncodeGolden(t, filepath.Join("testdata", "protobuf", "encode.golden"))
	for name, tc := range pbEncodeCases {
		t.Run(name, func(t *testing.T) {
			hexWant, ok := golden[name]
			if !ok {
				t.Fatalf("no golden line %q", name)
			}
			delete(golden, name)
			got := tc.fn([]byte("prefix"))
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatal("prefix overwritten")
			}
			got = got[len("prefix"):]
			if want := unhex(t, hexWant); !bytes.Equal(got, want) {
				t.Fatalf("\n got %s\nwant %s", spacedHex(got), spacedHex(want))
			}
			ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ref) {
				t.Fatalf("\n got %s\nproto.Marshal %s", spacedHex(got), spacedHex(ref))
			}
			var back pb.DownstreamMessage
			if err := proto.Unmarshal(got, &back); err != nil || !proto.Equal(&back, tc.want) {
				t.Fatalf("proto.Unmarshal: %v, %v", err, &back)
			}
		})
	}
	for name := range golden {
		t.Errorf("encode.golden: %q has no test case", name)
	}
}

var pbDataCases = []struct {
	name string
	dt   DataType
	data []byte
	md   *pb.MessageData // what a protobuf receiver gets (§8.3)
}{
	{"text", DataText, []byte("h\u00e9llo"), mdText("h\u00e9llo")},
	{"text-empty", DataText, []byte{}, mdText("")},
	{"json", DataJSON, []byte(`{"a":[1,2,{"b":null}]}`), mdText(`{"a":[1,2,{"b":null}]}`)},
	{"binary", DataBinary, []byte{0, 1, 2, 0xff}, mdBinary([]byte{0, 1, 2, 0xff})},
	{"binary-200", DataBinary, bytes.Repeat([]byte{7}, 200), mdBinary(bytes.Repeat([]byte{7}, 200))},
	{"protobuf", DataProtobuf, []byte("\n/type.googleapis.com/azure.webpubsub.TestMessage\x12\x02\b\x01"),
		mdAny("type.googleapis.com/azure.webpubsub.TestMessage", []byte{8, 1})},
}

// TestProtobufDownstreamRoundTrip encodes data messages of every data type,
// group and server, with and without a sequence id, through both the direct
// encoders and the shared-body + per-recipient path, and checks that
// proto.Unmarshal reads the intended message and proto.Marshal writes the
// same bytes.
func TestProtobufDownstreamRoundTrip(t *testing.T) {
	for _, dc := range pbDataCases {
		for _, seq := range []uint64{0, 1, 127, 128, 1 << 40, 1<<64 - 1} {
			for _, fromGroup := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/seq=%d/group=%v", dc.name, seq, fromGroup), func(t *testing.T) {
					var direct, body []byte
					want := downData("server", nil, dc.md, nil)
					if fromGroup {
						direct = AppendProtobufGroupMessage(nil, "gr\u00fcppe", dc.dt, dc.data, seq)
						body = AppendProtobufGroupData(nil, "gr\u00fcppe", dc.dt, dc.data)
						want = downData("group", ptr("gr\u00fcppe"), dc.md, nil)
					} else {
						direct = AppendProtobufServerMessage(nil, dc.dt, dc.data, seq)
						body = AppendProtobufServerData(nil, dc.dt, dc.data)
					}
					if seq != 0 {
						want.GetDataMessage().SequenceId = ptr(seq)
					}
					split := AppendProtobufSequenced(nil, body, seq)
					if !bytes.Equal(split, direct) {
						t.Fatalf("sequenced %s\n   direct %s", spacedHex(split), spacedHex(direct))
					}
					if n := ProtobufSequencedLen(len(body), seq); n != len(split) {
						t.Fatalf("ProtobufSequencedLen = %d, want %d", n, len(split))
					}
					writev := AppendProtobufSequencedHeader(nil, len(body), seq)
					writev = append(writev, body...)
					writev = AppendProtobufSequenceTail(writev, seq)
					if !bytes.Equal(writev, direct) {
						t.Fatal("header + body + tail differs")
					}
					ref, _ := proto.MarshalOptions{Deterministic: true}.Marshal(want)
					if !bytes.Equal(direct, ref) {
						t.Fatalf("\n got %s\nproto.Marshal %s", spacedHex(direct), spacedHex(ref))
					}
					var back pb.DownstreamMessage
					if err := proto.Unmarshal(direct, &back); err != nil || !proto.Equal(&back, want) {
						t.Fatalf("proto.Unmarshal: %v, %v", err, &back)
					}
				})
			}
		}
	}
}

// TestProtobufUpstreamRoundTrip marshals every served message kind with the
// generated types and decodes it with DecodeProtobufMessage.
func TestProtobufUpstreamRoundTrip(t *testing.T) {
	cases := []*pb.UpstreamMessage{
		{Message: &pb.UpstreamMessage_JoinGroupMessage_{JoinGroupMessage: &pb.UpstreamMessage_JoinGroupMessage{Group: "g1"}}},
		{Message: &pb.UpstreamMessage_JoinGroupMessage_{JoinGroupMessage: &pb.UpstreamMessage_JoinGroupMessage{Group: "g1", AckId: ptr[uint64](0)}}},
		{Message: &pb.UpstreamMessage_LeaveGroupMessage_{LeaveGroupMessage: &pb.UpstreamMessage_LeaveGroupMessage{Group: "g\u00e9", AckId: ptr[uint64](1 << 63)}}},
		{Message: &pb.UpstreamMessage_SequenceAckMessage_{SequenceAckMessage: &pb.UpstreamMessage_SequenceAckMessage{SequenceId: 1 << 33}}},
		{Message: &pb.UpstreamMessage_PingMessage_{PingMessage: &pb.UpstreamMessage_PingMessage{}}},
		{Message: &pb.UpstreamMessage_EventMessage_{EventMessage: &pb.UpstreamMessage_EventMessage{
			Event: "ev", AckId: ptr[uint64](9),
			Data: &pb.MessageData{Data: &pb.MessageData_JsonData{JsonData: `{"k":"v"}`}},
		}}},
	}
	for _, dc := range pbDataCases {
		for _, noEcho := range []*bool{nil, ptr(false), ptr(true)} {
			cases = append(cases, &pb.UpstreamMessage{Message: &pb.UpstreamMessage_SendToGroupMessage_{SendToGroupMessage: &pb.UpstreamMessage_SendToGroupMessage{
				Group: "group1", AckId: ptr[uint64](3), Data: dc.md, NoEcho: noEcho,
			}}})
		}
		cases = append(cases, &pb.UpstreamMessage{Message: &pb.UpstreamMessage_EventMessage_{EventMessage: &pb.UpstreamMessage_EventMessage{
			Event: "ev", Data: dc.md,
		}}})
	}
	var m ClientMessage
	for _, u := range cases {
		in, err := proto.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		err = DecodeProtobufMessage(&m, in)
		if err != nil {
			t.Fatalf("%v: %v", u, err)
		}
		checkAgainstProto(t, in, &m, err)
	}
}

// TestDecodeProtobufDataAliasing pins the lifetime contract of Data: a view
// into the payload, or into scratch for an Any split over repeated fields.
func TestDecodeProtobufDataAliasing(t *testing.T) {
	var m ClientMessage
	in := unhex(t, "0A 12 0A 06 67 72 6F 75 70 31 10 03 1A 04 0A 02 68 69 20 01")
	if err := DecodeProtobufMessage(&m, in); err != nil {
		t.Fatal(err)
	}
	in[bytes.Index(in, []byte("hi"))] = 'H'
	if string(m.Data) != "Hi" {
		t.Fatalf("text should alias the payload, got %q", m.Data)
	}
	// protobuf_data twice: the Any fields merge, so Data is both encodings.
	in = unhex(t, "0A 10 0A 01 67 1A 05 1A 03 0A 01 74 1A 04 1A 02 10 05")
	if err := DecodeProtobufMessage(&m, in); err != nil {
		t.Fatal(err)
	}
	checkAgainstProto(t, in, &m, nil)
	if want := "\x0a\x01t\x10\x05"; string(m.Data) != want {
		t.Fatalf("merged Any %q, want %q", m.Data, want)
	}
}

// TestProtobufWireErrors cuts every E5 vector at every length: each prefix
// either decodes to what proto.Unmarshal reads or is rejected the same way.
func TestProtobufWireErrors(t *testing.T) {
	var m ClientMessage
	for _, h := range []string{
		"32 0A 0A 06 67 72 6F 75 70 31 10 01",
		"0A 12 0A 06 67 72 6F 75 70 31 10 03 1A 04 0A 02 68 69 20 01",
		"2A 11 0A 02 65 76 12 09 22 07 7B 22 61 22 3A 31 7D 18 05",
		"32 0E 0A 01 67 10 FF FF FF FF FF FF FF FF FF 01",
		"0A 0E 0A 01 67 1A 09 1A 07 0A 01 74 12 02 08 01",
	} {
		full := unhex(t, h)
		for n := 0; n < len(full); n++ {
			in := full[:n]
			err := DecodeProtobufMessage(&m, in)
			checkAgainstProto(t, in, &m, err)
		}
	}
	// Every varint with an 11th byte, or a 10th byte above 1, overflows.
	for _, v := range []string{"FF FF FF FF FF FF FF FF FF 02", "80 80 80 80 80 80 80 80 80 80 00"} {
		in := append([]byte{0x42, byte(1 + len(unhex(t, v))), 0x08}, unhex(t, v)...)
		if err := DecodeProtobufMessage(&m, in); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("% x: err = %v", in, err)
		}
	}
	// Deeply nested unknown groups are skipped without running out of stack.
	deep := []byte{}
	for range 5000 {
		deep = protowire.AppendTag(deep, 15, protowire.StartGroupType)
	}
	for range 5000 {
		deep = protowire.AppendTag(deep, 15, protowire.EndGroupType)
	}
	deep = append(deep, 0x4A, 0x00)
	err := DecodeProtobufMessage(&m, deep)
	checkAgainstProto(t, deep, &m, err)
}

// TestSequencedJSON checks the reliable JSON head + tail against the whole
// message: the same members, with sequenceId last.
func TestSequencedJSON(t *testing.T) {
	for _, dc := range pbDataCases {
		for _, seq := range []uint64{1, 9, 10, 99, 100, 1<<64 - 1} {
			head := AppendGroupMessageHead([]byte("x"), "group1", "user1", dc.dt, dc.data)[1:]
			got := AppendJSONSequenceTail(append([]byte(nil), head...), seq)
			if len(got) != len(head)+JSONSequenceTailLen(seq) {
				t.Fatalf("JSONSequenceTailLen(%d) = %d", seq, JSONSequenceTailLen(seq))
			}
			whole := AppendGroupMessage(nil, "group1", "user1", dc.dt, dc.data, seq)
			assertSameJSON(t, got, whole)
			head = AppendServerMessageHead(nil, dc.dt, dc.data)
			got = AppendJSONSequenceTail(head, seq)
			assertSameJSON(t, got, AppendServerMessage(nil, dc.dt, dc.data, seq))
			if !bytes.HasSuffix(got, fmt.Appendf(nil, `,"sequenceId":%d}`, seq)) {
				t.Fatalf("sequenceId not last: %s", got)
			}
		}
	}
	if got := string(AppendJSONSequenceTail(AppendServerMessageHead(nil, DataText, []byte("m2")), 2)); got != `{"type":"message","from":"server","dataType":"text","data":"m2","sequenceId":2}` {
		t.Fatal(got)
	}
}

func assertSameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}
