package wsproto

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// The fields DecodeJSONMessage reads (client-protocol.md §5.2). Others are
// ignored (§5.1).
const (
	fType = iota
	fAckID
	fGroup
	fEvent
	fNoEcho
	fDataType
	fData
	fSequenceID
	fInvocationID
	fTarget
	numFields
)

func fieldOf(key []byte) int {
	switch string(key) {
	case "type":
		return fType
	case "ackId":
		return fAckID
	case "group":
		return fGroup
	case "event":
		return fEvent
	case "noEcho":
		return fNoEcho
	case "dataType":
		return fDataType
	case "data":
		return fData
	case "sequenceId":
		return fSequenceID
	case "invocationId":
		return fInvocationID
	case "target":
		return fTarget
	}
	return -1
}

// jsonFields holds the value span of each known member; end == 0 means absent.
// A repeated member keeps its last value, as encoding/json does.
type jsonFields [numFields]span

func (fs *jsonFields) has(f int) bool { return fs[f].end != 0 }

// DecodeJSONMessage decodes payload, the body of one client message of the
// JSON subprotocol, into m (reset first). The payload must be a UTF-8 JSON
// object (client-protocol.md §5.1).
//
// Errors:
//   - ErrInvalidMessage (wrapped) when payload is not UTF-8 JSON, not an
//     object, has no or an unknown "type", or an "ackId" that is not a
//     non-negative integer fitting uint64: a protocol violation, close 1008.
//   - *MessageError ("BadRequest") when the type is known but a field is
//     invalid: a bad group name, "data" not matching "dataType", json "data"
//     null or absent, an empty or reserved event name, … With HasAckID the
//     caller acks the failure; without it the request is dropped (§5.4). m
//     then holds the fields decoded so far.
//
// Group, Event, InvocationID and Target are copies (one allocation each when
// present). Data is borrowed, see ClientMessage. Sonic validates the payload
// in one allocation-free pass; a scanner then slices the known members out of
// it. sonic's lazy ast.Node iterator cost 4 allocations (1.2 KB) and a sonic.Get
// per field 14 allocations for the same sendToGroup message.
func DecodeJSONMessage(m *ClientMessage, payload []byte) error {
	m.reset()
	if !utf8.Valid(payload) || !sonic.Valid(payload) {
		return fmt.Errorf("%w: not UTF-8 JSON", ErrInvalidMessage)
	}
	var fs jsonFields
	if !scanObject(payload, &fs) {
		return fmt.Errorf("%w: not a valid JSON object", ErrInvalidMessage)
	}

	if !fs.has(fType) {
		return fmt.Errorf("%w: missing \"type\"", ErrInvalidMessage)
	}
	typ, ok := rawString(payload, fs[fType])
	if ok {
		m.Type = messageTypeOf(typ)
	}
	if m.Type == 0 {
		return fmt.Errorf("%w: unknown \"type\"", ErrInvalidMessage)
	}

	if v := fs[fAckID]; fs.has(fAckID) && !isNull(payload, v) {
		id, ok := parseUint(payload[v.start:v.end])
		if !ok {
			return fmt.Errorf("%w: \"ackId\" is not a non-negative integer", ErrInvalidMessage)
		}
		m.AckID, m.HasAckID = id, true
	}

	switch m.Type {
	case MsgJoinGroup, MsgLeaveGroup:
		return m.decodeGroup(payload, &fs)
	case MsgSendToGroup:
		if err := m.decodeGroup(payload, &fs); err != nil {
			return err
		}
		if v := fs[fNoEcho]; fs.has(fNoEcho) && !isNull(payload, v) {
			switch string(payload[v.start:v.end]) {
			case "true":
				m.NoEcho = true
			case "false":
			default:
				return m.badRequest("'noEcho' must be a boolean.")
			}
		}
		return m.decodeData(payload, &fs, true)
	case MsgEvent:
		if err := m.decodeEvent(payload, &fs); err != nil {
			return err
		}
		return m.decodeData(payload, &fs, true)
	case MsgSequenceAck:
		// A number per the SDKs; the reference page shows a string (§5.2).
		v := fs[fSequenceID]
		if !fs.has(fSequenceID) {
			return m.badRequest("'sequenceId' is required.")
		}
		raw := payload[v.start:v.end]
		if s, ok := rawString(payload, v); ok {
			raw = s
		}
		id, ok := parseUint(raw)
		if !ok {
			return m.badRequest("'sequenceId' must be a non-negative integer.")
		}
		m.SequenceID = id
		return nil
	case MsgInvoke:
		if err := m.decodeInvocationID(payload, &fs); err != nil {
			return err
		}
		if v := fs[fTarget]; fs.has(fTarget) && !isNull(payload, v) {
			t, ok := m.stringField(payload, v)
			if !ok {
				return m.badRequest("'target' must be a string.")
			}
			m.Target = t
		}
		if err := m.decodeEvent(payload, &fs); err != nil {
			return err
		}
		// invoke may carry no payload at all (client-protocol.md §5.6).
		return m.decodeData(payload, &fs, false)
	case MsgCancelInvocation:
		return m.decodeInvocationID(payload, &fs)
	}
	return nil // MsgPing
}

func (m *ClientMessage) badRequest(msg string) error {
	return &MessageError{AckID: m.AckID, HasAckID: m.HasAckID, Name: "BadRequest", Message: msg}
}

func (m *ClientMessage) badBase64() error {
	return m.badRequest("'data' must be a base64 string when 'dataType' is '" + m.DataType.String() + "'.")
}

func (m *ClientMessage) decodeGroup(payload []byte, fs *jsonFields) error {
	if !fs.has(fGroup) {
		return m.badRequest("'group' is required.")
	}
	g, ok := m.stringField(payload, fs[fGroup])
	if !ok {
		return m.badRequest("'group' must be a string.")
	}
	m.Group = g
	return m.checkGroup()
}

// checkGroup validates m.Group (client-protocol.md §4.4). Shared by the JSON
// and protobuf decoders.
func (m *ClientMessage) checkGroup() error {
	if !ValidGroupName(m.Group) {
		return m.badRequest("'group' must be 1 to 1024 characters and not only whitespace.")
	}
	return nil
}

func (m *ClientMessage) decodeEvent(payload []byte, fs *jsonFields) error {
	if !fs.has(fEvent) {
		return m.badRequest("'event' is required.")
	}
	e, ok := m.stringField(payload, fs[fEvent])
	if !ok {
		return m.badRequest("'event' must be a string.")
	}
	m.Event = e
	return m.checkEvent()
}

// checkEvent validates m.Event. Shared by the JSON and protobuf decoders.
func (m *ClientMessage) checkEvent() error {
	e := m.Event
	if e == "" {
		return m.badRequest("'event' must not be empty.")
	}
	// client-protocol.md §5.2: these name system events. Compared without
	// case because upstream handlers match event names that way.
	for _, reserved := range [...]string{"connect", "connected", "disconnected"} {
		if strings.EqualFold(e, reserved) {
			return m.badRequest("'event' name '" + e + "' is reserved.")
		}
	}
	return nil
}

func (m *ClientMessage) decodeInvocationID(payload []byte, fs *jsonFields) error {
	if !fs.has(fInvocationID) {
		return m.badRequest("'invocationId' is required.")
	}
	id, ok := m.stringField(payload, fs[fInvocationID])
	if !ok || id == "" {
		return m.badRequest("'invocationId' must be a non-empty string.")
	}
	m.InvocationID = id
	return nil
}

// decodeData reads "dataType" and "data" (client-protocol.md §4.1) into
// DataType, HasData and Data. required is false only for invoke, where both
// may be absent.
func (m *ClientMessage) decodeData(payload []byte, fs *jsonFields, required bool) error {
	hasType := fs.has(fDataType) && !isNull(payload, fs[fDataType])
	if hasType {
		name, ok := rawString(payload, fs[fDataType])
		var dt DataType
		if ok {
			dt, ok = parseDataTypeBytes(name)
		}
		if !ok {
			return m.badRequest("'dataType' must be one of json, text, binary, protobuf.")
		}
		m.DataType = dt
	}
	v := fs[fData]
	m.HasData = fs.has(fData)
	if !m.HasData {
		if !required && !hasType {
			return nil
		}
		return m.badRequest("'data' is required.")
	}
	switch m.DataType {
	case DataJSON:
		// Never relay json null: the .NET client throws on it (§4.1).
		if isNull(payload, v) {
			m.HasData = false
			return m.badRequest("'data' must not be null when 'dataType' is 'json'.")
		}
		m.Data = payload[v.start:v.end]
	case DataText:
		text, ok := m.stringBytes(payload, v)
		if !ok {
			return m.badRequest("'data' must be a string when 'dataType' is 'text'.")
		}
		m.Data = text
	case DataBinary, DataProtobuf:
		enc, ok := m.stringBytes(payload, v)
		if !ok {
			return m.badBase64()
		}
		// Standard alphabet; padding optional on input (§4.1).
		codec := base64.StdEncoding
		if len(enc)%4 != 0 {
			codec = base64.RawStdEncoding
		}
		start := len(m.scratch)
		out, err := codec.AppendDecode(m.scratch, enc)
		if err != nil {
			return m.badBase64()
		}
		m.scratch = out
		m.Data = out[start:len(out):len(out)]
	}
	return nil
}

func parseDataTypeBytes(b []byte) (DataType, bool) {
	for i, name := range dataTypeNames {
		if asciiEqualFold(b, name) {
			return DataType(i), true
		}
	}
	return 0, false
}

// asciiEqualFold compares b with the lower-case ASCII name, ignoring case.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// rawString returns the body of the string literal at v without resolving
// escapes, for comparing against plain ASCII names.
func rawString(payload []byte, v span) ([]byte, bool) {
	if v.end-v.start < 2 || payload[v.start] != '"' {
		return nil, false
	}
	return payload[v.start+1 : v.end-1], true
}

// stringBytes returns the text of the string literal at v: a view into the
// payload when it has no escapes, else unescaped into m.scratch. Earlier views
// into m.scratch stay intact: appending never rewrites bytes already there.
func (m *ClientMessage) stringBytes(payload []byte, v span) ([]byte, bool) {
	raw, ok := rawString(payload, v)
	if !ok {
		return nil, false
	}
	if _, escaped, _ := scanString(payload, v.start); !escaped {
		return raw, true
	}
	start := len(m.scratch)
	out, ok := appendUnescaped(m.scratch, raw)
	if !ok {
		return nil, false
	}
	m.scratch = out
	return out[start:len(out):len(out)], true
}

// stringField is stringBytes copied into a string the caller may keep.
func (m *ClientMessage) stringField(payload []byte, v span) (string, bool) {
	b, ok := m.stringBytes(payload, v)
	return string(b), ok
}

func isNull(payload []byte, v span) bool { return string(payload[v.start:v.end]) == "null" }

// scanObject records the members of the top-level object of validated JSON.
func scanObject(b []byte, fs *jsonFields) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for {
		kEnd, escaped, ok := scanString(b, i)
		if !ok {
			return false
		}
		key := b[i+1 : kEnd-1]
		if escaped {
			// Rare: a key spelled with escapes. Resolve it to match names.
			var buf [16]byte
			if key, ok = appendUnescaped(buf[:0], key); !ok {
				return false
			}
		}
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vEnd, ok := skipValue(b, i)
		if !ok {
			return false
		}
		if f := fieldOf(key); f >= 0 {
			fs[f] = span{i, vEnd}
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
}
