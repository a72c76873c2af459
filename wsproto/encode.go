package wsproto

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// Encoders for service → client messages of the JSON subprotocol
// (client-protocol.md §5.3). Each appends the JSON text of one message to dst;
// the caller wraps it in a text frame (§5.1). They allocate only when dst must
// grow.

// AppendAck appends an ack (§5.3.1). errName == "" means success:
// {"type":"ack","ackId":N,"success":true}; otherwise success is false and
// "error" carries errName and errMessage.
func AppendAck(dst []byte, ackID uint64, errName, errMessage string) []byte {
	dst = append(dst, `{"type":"ack","ackId":`...)
	dst = strconv.AppendUint(dst, ackID, 10)
	if errName == "" {
		return append(dst, `,"success":true}`...)
	}
	dst = append(dst, `,"success":false,"error":{"name":`...)
	dst = appendJSONString(dst, errName)
	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, errMessage)
	return append(dst, "}}"...)
}

// AppendPong appends {"type":"pong"}, the answer to a ping (§5.3.5).
func AppendPong(dst []byte) []byte {
	return append(dst, `{"type":"pong"}`...)
}

// AppendConnected appends the system/connected message (§5.3.3). userId is
// null when hasUser is false; reconnectionToken is added when non-empty
// (reliable subprotocols).
func AppendConnected(dst []byte, userID string, hasUser bool, connectionID string, reconnectionToken string) []byte {
	dst = append(dst, `{"type":"system","event":"connected","userId":`...)
	if hasUser {
		dst = appendJSONString(dst, userID)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"connectionId":`...)
	dst = appendJSONString(dst, connectionID)
	if reconnectionToken != "" {
		dst = append(dst, `,"reconnectionToken":`...)
		dst = appendJSONString(dst, reconnectionToken)
	}
	return append(dst, '}')
}

// AppendDisconnected appends the system/disconnected message sent right before
// the service closes a PubSub connection (§5.3.4).
func AppendDisconnected(dst []byte, message string) []byte {
	dst = append(dst, `{"type":"system","event":"disconnected","message":`...)
	dst = appendJSONString(dst, message)
	return append(dst, '}')
}

// AppendGroupMessage appends a message from a group (§5.3.2):
// {"type":"message","from":"group","group":G,["fromUserId":U,]"dataType":dt,"data":…}.
// fromUserID "" omits fromUserId (publisher without a user, or REST). data is
// canonical as in ClientMessage.Data. sequenceID > 0 adds "sequenceId" first,
// as the reliable subprotocol sends it (§7, client-examples.md E4.1).
func AppendGroupMessage(dst []byte, group, fromUserID string, dt DataType, data []byte, sequenceID uint64) []byte {
	dst = appendSequenceID(dst, sequenceID)
	dst = append(dst, `"type":"message","from":"group","group":`...)
	dst = appendJSONString(dst, group)
	if fromUserID != "" {
		dst = append(dst, `,"fromUserId":`...)
		dst = appendJSONString(dst, fromUserID)
	}
	return appendData(dst, dt, data)
}

// AppendServerMessage appends a message from the server (§5.3.2):
// {"type":"message","from":"server","dataType":dt,"data":…}. data and
// sequenceID are as in AppendGroupMessage.
func AppendServerMessage(dst []byte, dt DataType, data []byte, sequenceID uint64) []byte {
	dst = appendSequenceID(dst, sequenceID)
	dst = append(dst, `"type":"message","from":"server"`...)
	return appendData(dst, dt, data)
}

// appendSequenceID opens the object, with "sequenceId" when it is set.
func appendSequenceID(dst []byte, sequenceID uint64) []byte {
	if sequenceID == 0 {
		return append(dst, '{')
	}
	dst = append(dst, `{"sequenceId":`...)
	dst = strconv.AppendUint(dst, sequenceID, 10)
	return append(dst, ',')
}

// appendData appends ,"dataType":…,"data":…} for canonical data (§4.1): text
// as a JSON string, json inlined, binary and protobuf as padded standard
// base64 (the .NET client's base64 reader is strict).
func appendData(dst []byte, dt DataType, data []byte) []byte {
	dst = append(dst, `,"dataType":"`...)
	dst = append(dst, dt.String()...)
	dst = append(dst, `","data":`...)
	switch dt {
	case DataText:
		dst = appendJSONBytes(dst, data)
	case DataBinary, DataProtobuf:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, data)
		dst = append(dst, '"')
	default:
		// json: the caller's value, already valid JSON. Empty would make the
		// message invalid; null is the least bad stand-in.
		if len(data) == 0 {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, data...)
		}
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. Quotes, backslashes and
// control characters are escaped; invalid UTF-8 becomes U+FFFD; U+2028 and
// U+2029 are escaped because JavaScript source cannot hold them raw.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedASCII(dst, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONBytes is appendJSONString for a byte slice. Written out twice
// rather than converting, which would copy the payload.
func appendJSONBytes(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedASCII(dst, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendEscapedASCII(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}
