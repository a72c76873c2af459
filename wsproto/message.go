package wsproto

import (
	"strconv"
	"strings"
)

// MessageType is the "type" of a client → service message of the JSON
// subprotocol (client-protocol.md §5.2).
type MessageType uint8

// Message types; the zero value is no valid type.
const (
	MsgJoinGroup MessageType = iota + 1
	MsgLeaveGroup
	MsgSendToGroup
	MsgEvent
	MsgPing
	MsgSequenceAck
	MsgInvoke
	MsgCancelInvocation
)

// String returns the wire name, e.g. "joinGroup".
func (t MessageType) String() string {
	switch t {
	case MsgJoinGroup:
		return "joinGroup"
	case MsgLeaveGroup:
		return "leaveGroup"
	case MsgSendToGroup:
		return "sendToGroup"
	case MsgEvent:
		return "event"
	case MsgPing:
		return "ping"
	case MsgSequenceAck:
		return "sequenceAck"
	case MsgInvoke:
		return "invoke"
	case MsgCancelInvocation:
		return "cancelInvocation"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// messageTypeOf maps a wire name to its type, 0 when unknown. Names are
// case-sensitive (client-protocol.md §5.1). Comparing string(b) does not
// allocate.
func messageTypeOf(b []byte) MessageType {
	switch string(b) {
	case "joinGroup":
		return MsgJoinGroup
	case "leaveGroup":
		return MsgLeaveGroup
	case "sendToGroup":
		return MsgSendToGroup
	case "event":
		return MsgEvent
	case "ping":
		return MsgPing
	case "sequenceAck":
		return MsgSequenceAck
	case "invoke":
		return MsgInvoke
	case "cancelInvocation":
		return MsgCancelInvocation
	}
	return 0
}

// DataType is the "dataType" of a payload (client-protocol.md §4.1). The zero
// value is DataJSON, the default when "dataType" is absent.
type DataType uint8

// Data types, client-protocol.md §4.1.
const (
	DataJSON DataType = iota
	DataText
	DataBinary
	DataProtobuf
)

var dataTypeNames = [...]string{
	DataJSON:     "json",
	DataText:     "text",
	DataBinary:   "binary",
	DataProtobuf: "protobuf",
}

// String returns the lower-case wire name; outbound dataType is always lower
// case because the JS client drops anything else (client-protocol.md §4.1).
func (d DataType) String() string {
	if int(d) < len(dataTypeNames) {
		return dataTypeNames[d]
	}
	return "DataType(" + strconv.Itoa(int(d)) + ")"
}

// ParseDataType maps a wire name to its DataType, ignoring case: the .NET
// client sends "Json", "Text", … (client-protocol.md §4.1).
func ParseDataType(s string) (DataType, bool) {
	for i, name := range dataTypeNames {
		if strings.EqualFold(s, name) {
			return DataType(i), true
		}
	}
	return 0, false
}

// ClientMessage is one decoded client → service message of a PubSub
// subprotocol: JSON (client-protocol.md §5.2, DecodeJSONMessage) or protobuf
// (§8.2, DecodeProtobufMessage). Reuse one per event loop: decoding
// resets it but keeps its scratch space, so the steady state does not allocate.
type ClientMessage struct {
	Type     MessageType
	AckID    uint64
	HasAckID bool
	Group    string // joinGroup, leaveGroup, sendToGroup; a copy, safe to keep
	Event    string // event, invoke; a copy, safe to keep
	NoEcho   bool   // sendToGroup
	DataType DataType
	// HasData reports whether the message carried "data". Only invoke may
	// omit it (client-protocol.md §5.6).
	HasData bool
	// Data is the payload in canonical form: DataText → the unescaped UTF-8
	// text; DataJSON → the JSON value as sent (valid, never null);
	// DataBinary, DataProtobuf → the base64-decoded bytes (JSON) or the
	// bytes as sent (protobuf; for DataProtobuf a serialized Any).
	//
	// Data is borrowed: it aliases the decoded payload or the message's own
	// scratch space, and is valid until the payload buffer changes or m is
	// decoded into again. Copy it to keep it.
	Data         []byte
	SequenceID   uint64 // sequenceAck
	InvocationID string // invoke, cancelInvocation; a copy, safe to keep
	Target       string // invoke

	// scratch holds unescaped strings and decoded base64 that Data points at.
	scratch []byte
}

// reset clears m for a new decode, keeping the scratch capacity.
func (m *ClientMessage) reset() {
	scratch := m.scratch[:0]
	*m = ClientMessage{scratch: scratch}
}
