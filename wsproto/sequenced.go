package wsproto

import "strconv"

// Per-recipient sequence ids for reliable broadcasts (client-protocol.md
// §7.2). Every reliable recipient of one message gets its own sequenceId, so
// its bytes differ; these helpers split a message into the part all
// recipients share, encoded once, and a tail of a few bytes written per
// recipient, so the payload is never re-encoded.
//
// JSON: the shared head ends with `"sequenceId":`, the last member of the
// object, and a recipient's body is
//
//	head + strconv.AppendUint(nil, seq, 10) + "}"
//
// which AppendJSONSequenceTail writes. JSON members are unordered; both SDKs
// read sequenceId by name. The frame payload length is
// len(head) + JSONSequenceTailLen(seq).
//
// Protobuf: see AppendProtobufGroupData and AppendProtobufSequenced.

// AppendGroupMessageHead appends the shared head of a reliable group message:
// what AppendGroupMessage writes, with `,"sequenceId":` in place of the
// closing brace.
func AppendGroupMessageHead(dst []byte, group, fromUserID string, dt DataType, data []byte) []byte {
	dst = AppendGroupMessage(dst, group, fromUserID, dt, data, 0)
	return append(dst[:len(dst)-1], `,"sequenceId":`...)
}

// AppendServerMessageHead is AppendGroupMessageHead for a server message.
func AppendServerMessageHead(dst []byte, dt DataType, data []byte) []byte {
	dst = AppendServerMessage(dst, dt, data, 0)
	return append(dst[:len(dst)-1], `,"sequenceId":`...)
}

// AppendJSONSequenceTail appends the per-recipient tail that completes a head
// from AppendGroupMessageHead or AppendServerMessageHead: the decimal
// sequenceID and the closing brace. Sequence ids start at 1 (§7.2); the caller
// never passes 0.
func AppendJSONSequenceTail(dst []byte, sequenceID uint64) []byte {
	dst = strconv.AppendUint(dst, sequenceID, 10)
	return append(dst, '}')
}

// JSONSequenceTailLen is the length AppendJSONSequenceTail appends.
func JSONSequenceTailLen(sequenceID uint64) int {
	n := 2
	for sequenceID >= 10 {
		sequenceID /= 10
		n++
	}
	return n
}
