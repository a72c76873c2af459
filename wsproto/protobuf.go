package wsproto

import (
	"fmt"
	"unicode/utf8"

	"github.com/bytedance/sonic"
	"google.golang.org/protobuf/encoding/protowire"
)

// The protobuf subprotocols, protobuf.webpubsub.azure.v1 and
// protobuf.reliable.webpubsub.azure.v1 (client-protocol.md §8). The schema is
// pb/webpubsub.proto; this file decodes UpstreamMessage by hand with
// protowire, straight into a ClientMessage, so the engine dispatches on the
// same struct as for JSON and the steady state does not allocate. The
// generated types in wsproto/pb are used only by tests, as the reference.

// Field numbers of pb/webpubsub.proto. All are below 16, so every tag this
// package writes is one byte.
const (
	// UpstreamMessage oneof message (§8.2).
	pbUpSendToGroup protowire.Number = 1
	pbUpEvent       protowire.Number = 5
	pbUpJoinGroup   protowire.Number = 6
	pbUpLeaveGroup  protowire.Number = 7
	pbUpSequenceAck protowire.Number = 8
	pbUpPing        protowire.Number = 9
	pbUpStreamData  protowire.Number = 13 // 2026 extension (§10), not served
	pbUpStreamEnd   protowire.Number = 14 // 2026 extension (§10), not served

	// MessageData oneof data (§8.3).
	pbTextData     protowire.Number = 1
	pbBinaryData   protowire.Number = 2
	pbProtobufData protowire.Number = 3
	pbJSONData     protowire.Number = 4

	// DownstreamMessage oneof message (§8.4).
	pbDownAck    protowire.Number = 1
	pbDownData   protowire.Number = 2
	pbDownSystem protowire.Number = 3
	pbDownPong   protowire.Number = 4

	// DownstreamMessage.DataMessage (§8.4).
	pbDataFrom       protowire.Number = 1
	pbDataGroup      protowire.Number = 2
	pbDataData       protowire.Number = 3
	pbDataSequenceID protowire.Number = 4
)

// pbShape lists, for one message type, which fields are proto3 strings (their
// bytes must be UTF-8, as google.golang.org/protobuf requires) and which are
// messages with a shape of their own. pbValid checks a message against it so
// that this decoder rejects exactly the fields proto.Unmarshal rejects, also
// in parts of a message it otherwise skips.
type pbShape struct {
	strings uint32 // bit n set: field n is a string
	subs    []pbSub
}

type pbSub struct {
	num   protowire.Number
	shape *pbShape
}

var (
	// google.protobuf.Any: type_url = 1 (string), value = 2 (bytes).
	pbShapeAny = pbShape{strings: 1 << 1}
	// MessageData: text_data = 1, json_data = 4, protobuf_data = 3 (Any).
	pbShapeMessageData = pbShape{strings: 1<<1 | 1<<4, subs: []pbSub{{3, &pbShapeAny}}}
	// UpstreamMessage.StreamStartInfo: stream_id = 1.
	pbShapeStreamStart = pbShape{strings: 1 << 1}
	// UpstreamMessage.StreamDataMessage: stream_id = 1, data = 3.
	pbShapeStreamData = pbShape{strings: 1 << 1, subs: []pbSub{{3, &pbShapeMessageData}}}
	// UpstreamMessage.StreamEndError: message = 1, user_error_code = 2.
	pbShapeStreamEndError = pbShape{strings: 1<<1 | 1<<2}
	// UpstreamMessage.StreamEndMessage: stream_id = 1, error = 2.
	pbShapeStreamEnd = pbShape{strings: 1 << 1, subs: []pbSub{{2, &pbShapeStreamEndError}}}
)

// pbValid reports whether b is well-formed wire data for a message of shape s.
// Nesting follows the static shapes, not the input, so depth is bounded. A
// known field with an unexpected wire type is an unknown field, as in
// google.golang.org/protobuf.
func pbValid(b []byte, s *pbShape) bool {
	for len(b) > 0 {
		num, typ, n := pbConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			if num < 32 && s.strings&(1<<num) != 0 && !utf8.Valid(v) {
				return false
			}
			for _, sub := range s.subs {
				if sub.num == num && !pbValid(v, sub.shape) {
					return false
				}
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// pbConsumeTag is protowire.ConsumeTag that also rejects field numbers above
// protowire.MaxValidNumber (2^29-1), as proto.Unmarshal does; ConsumeTag
// alone only rejects those below 1.
func pbConsumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -2 // protowire's code for an invalid field number
	}
	return num, typ, n
}

// pbUpstream collects the fields of the UpstreamMessage oneof case being
// decoded. proto3 merges repeated occurrences of a message field, and a oneof
// field of another case replaces the current one; decoding every occurrence
// into the same pbUpstream, and resetting it when the case changes, gives the
// same result as proto.Unmarshal without buffering anything.
type pbUpstream struct {
	kind       protowire.Number
	name       []byte // group or event
	ackID      uint64
	hasAckID   bool
	noEcho     bool
	sequenceID uint64
	hasData    bool             // a MessageData field was present
	dataKind   protowire.Number // its oneof case; 0 = none
	data       []byte
	// dataInScratch: data is the tail of m.scratch, where repeated
	// protobuf_data occurrences are concatenated (§8.3: merged Any).
	dataInScratch bool
}

// DecodeProtobufMessage decodes payload, one binary message of a protobuf
// subprotocol (a serialized UpstreamMessage, client-protocol.md §8.2), into m
// (reset first). It fills the same fields as DecodeJSONMessage for
// joinGroup, leaveGroup, sendToGroup, event, sequenceAck and ping. Unknown
// fields are skipped (§8.1).
//
// MessageData (§8.3) becomes DataType and Data: text_data → DataText,
// binary_data → DataBinary, protobuf_data → DataProtobuf with Data the
// serialized google.protobuf.Any bytes, json_data → DataJSON with Data the
// JSON value (valid, never null, surrounding whitespace trimmed).
//
// Errors, the contract of DecodeJSONMessage:
//   - ErrInvalidMessage (wrapped) when payload is not a well-formed
//     UpstreamMessage (truncated or overlong varint or length, bad tag, a
//     string that is not UTF-8: whatever proto.Unmarshal rejects), or sets no
//     oneof case, or a case this server does not serve (stream_data_message,
//     stream_end_message, or a number the schema lacks): protocol violation,
//     close 1008.
//   - *MessageError ("BadRequest") when the case is known but a field is
//     invalid: a bad group name, an empty or reserved event name, missing
//     data or data with no case set, json_data that is not JSON or is null.
//     With HasAckID the caller acks the failure; without it the request is
//     dropped (§5.4).
//
// Group and Event are copies (one allocation each). Data is borrowed: it
// aliases payload (or, only for an Any split over repeated protobuf_data
// fields, m's scratch space) and is valid until payload changes or m is
// decoded into again. It never panics.
func DecodeProtobufMessage(m *ClientMessage, payload []byte) error {
	m.reset()
	var u pbUpstream
	for b := payload; len(b) > 0; {
		num, typ, n := pbConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: malformed protobuf: %v", ErrInvalidMessage, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			// Unknown field, or a case field with the wrong wire type, which
			// proto3 also treats as unknown.
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("%w: malformed protobuf: %v", ErrInvalidMessage, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("%w: malformed protobuf: %v", ErrInvalidMessage, protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case pbUpSendToGroup, pbUpEvent, pbUpJoinGroup, pbUpLeaveGroup, pbUpSequenceAck, pbUpPing:
		case pbUpStreamData, pbUpStreamEnd:
			shape := &pbShapeStreamData
			if num == pbUpStreamEnd {
				shape = &pbShapeStreamEnd
			}
			if !pbValid(v, shape) {
				return fmt.Errorf("%w: malformed protobuf", ErrInvalidMessage)
			}
		default:
			continue // unknown field
		}
		if num != u.kind {
			u = pbUpstream{kind: num}
			m.scratch = m.scratch[:0]
		}
		if !u.merge(m, v) {
			return fmt.Errorf("%w: malformed protobuf", ErrInvalidMessage)
		}
	}

	switch u.kind {
	case 0:
		return fmt.Errorf("%w: no UpstreamMessage case set", ErrInvalidMessage)
	case pbUpJoinGroup, pbUpLeaveGroup:
		m.Type = MsgJoinGroup
		if u.kind == pbUpLeaveGroup {
			m.Type = MsgLeaveGroup
		}
		m.AckID, m.HasAckID = u.ackID, u.hasAckID
		m.Group = string(u.name)
		return m.checkGroup()
	case pbUpSendToGroup:
		m.Type = MsgSendToGroup
		m.AckID, m.HasAckID = u.ackID, u.hasAckID
		m.Group = string(u.name)
		if err := m.checkGroup(); err != nil {
			return err
		}
		m.NoEcho = u.noEcho
		return m.setProtobufData(&u)
	case pbUpEvent:
		m.Type = MsgEvent
		m.AckID, m.HasAckID = u.ackID, u.hasAckID
		m.Event = string(u.name)
		if err := m.checkEvent(); err != nil {
			return err
		}
		return m.setProtobufData(&u)
	case pbUpSequenceAck:
		m.Type = MsgSequenceAck
		m.SequenceID = u.sequenceID
		return nil
	case pbUpPing:
		m.Type = MsgPing
		return nil
	}
	return fmt.Errorf("%w: UpstreamMessage case %d is not served", ErrInvalidMessage, u.kind)
}

// merge decodes one occurrence of the case message u.kind from b.
func (u *pbUpstream) merge(m *ClientMessage, b []byte) bool {
	for len(b) > 0 {
		num, typ, n := pbConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			u.varint(num, v)
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			if !u.bytes(m, num, v) {
				return false
			}
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
			b = b[n:]
		}
	}
	return true
}

// varint records a varint field of the case message (§8.2 tables).
func (u *pbUpstream) varint(num protowire.Number, v uint64) {
	switch u.kind {
	case pbUpSendToGroup:
		switch num {
		case 2:
			u.ackID, u.hasAckID = v, true
		case 4:
			u.noEcho = protowire.DecodeBool(v)
		}
	case pbUpEvent:
		if num == 3 {
			u.ackID, u.hasAckID = v, true
		}
	case pbUpJoinGroup, pbUpLeaveGroup:
		if num == 2 {
			u.ackID, u.hasAckID = v, true
		}
	case pbUpSequenceAck:
		if num == 1 {
			u.sequenceID = v
		}
	}
}

// bytes records a length-delimited field of the case message (§8.2 tables)
// and reports whether it is well formed.
func (u *pbUpstream) bytes(m *ClientMessage, num protowire.Number, v []byte) bool {
	switch u.kind {
	case pbUpSendToGroup:
		switch num {
		case 1: // group
			u.name = v
			return utf8.Valid(v)
		case 3: // data
			return u.mergeData(m, v)
		case 7: // stream: a stream start, not served; data stays required
			return pbValid(v, &pbShapeStreamStart)
		}
	case pbUpEvent:
		switch num {
		case 1: // event
			u.name = v
			return utf8.Valid(v)
		case 2: // data
			return u.mergeData(m, v)
		}
	case pbUpJoinGroup, pbUpLeaveGroup:
		if num == 1 { // group
			u.name = v
			return utf8.Valid(v)
		}
	case pbUpStreamData, pbUpStreamEnd:
		// Validated as a whole by the caller.
	}
	return true // unknown field
}

// mergeData decodes one occurrence of a MessageData field (§8.3).
func (u *pbUpstream) mergeData(m *ClientMessage, b []byte) bool {
	u.hasData = true
	for len(b) > 0 {
		num, typ, n := pbConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ != protowire.BytesType || num < pbTextData || num > pbJSONData {
			// Unknown field, or a case with the wrong wire type.
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case pbTextData, pbJSONData:
			if !utf8.Valid(v) {
				return false
			}
		case pbProtobufData:
			if !pbValid(v, &pbShapeAny) {
				return false
			}
			if u.dataKind == pbProtobufData {
				// A repeated message field merges; for Any that is the
				// concatenation of the encodings.
				if !u.dataInScratch {
					m.scratch = append(m.scratch[:0], u.data...)
					u.dataInScratch = true
				}
				m.scratch = append(m.scratch, v...)
				u.data = m.scratch[:len(m.scratch):len(m.scratch)]
				continue
			}
		}
		u.dataKind, u.data, u.dataInScratch = num, v, false
	}
	return true
}

// setProtobufData moves u's MessageData into m (§8.3).
func (m *ClientMessage) setProtobufData(u *pbUpstream) error {
	if !u.hasData || u.dataKind == 0 {
		return m.badRequest("'data' is required.")
	}
	m.HasData = true
	m.Data = u.data
	switch u.dataKind {
	case pbTextData:
		m.DataType = DataText
	case pbBinaryData:
		m.DataType = DataBinary
	case pbProtobufData:
		m.DataType = DataProtobuf
	case pbJSONData:
		m.DataType = DataJSON
		v := trimJSONSpace(u.data)
		m.Data = v
		if len(v) == 0 || !sonic.Valid(v) || !jsonStringsValid(v) {
			m.HasData = false
			return m.badRequest("'data' must be valid JSON when 'dataType' is 'json'.")
		}
		// Never relay json null: the .NET client throws on it (§4.1).
		if string(v) == "null" {
			m.HasData = false
			return m.badRequest("'data' must not be null when 'dataType' is 'json'.")
		}
	}
	return nil
}

func trimJSONSpace(b []byte) []byte {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// jsonStringsValid completes sonic.Valid on a single value: sonic accepts
// some bad string escapes and raw control characters (see scanString), which
// skipValue's string scanning rejects.
func jsonStringsValid(b []byte) bool {
	end, ok := skipValue(b, 0)
	return ok && end == len(b)
}
