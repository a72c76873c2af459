package wsproto

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// Encoders for service → client messages of the protobuf subprotocols
// (client-protocol.md §8.4). Each appends one whole serialized
// DownstreamMessage to dst; the caller wraps it in a binary frame (§8.1).
// Output is byte-for-byte what proto.Marshal writes for the same message
// (fields in number order, proto3 defaults omitted), which the tests check
// against the generated code in wsproto/pb. Sizes are computed before writing,
// so nothing is buffered: they allocate only when dst must grow.

// AppendProtobufAck appends an AckMessage (§8.4). errName == "" means
// success (success = true, no error); otherwise success is left false (the
// proto3 default, omitted) and error carries errName and errMessage.
func AppendProtobufAck(dst []byte, ackID uint64, errName, errMessage string) []byte {
	size := pbSizeVarintField(ackID)
	errSize := 0
	if errName == "" {
		size += 2 // success = true
	} else {
		errSize = pbSizeStringField(errName) + pbSizeStringField(errMessage)
		size += pbSizeLen(errSize)
	}
	dst = pbAppendLenHeader(dst, pbDownAck, size)
	dst = pbAppendVarintField(dst, 1, ackID)
	if errName == "" {
		return append(dst, byte(protowire.EncodeTag(2, protowire.VarintType)), 1)
	}
	dst = pbAppendLenHeader(dst, 3, errSize)
	dst = pbAppendStringField(dst, 1, errName)
	return pbAppendStringField(dst, 2, errMessage)
}

// AppendProtobufPong appends a PongMessage, the answer to a ping (§8.4).
func AppendProtobufPong(dst []byte) []byte {
	return append(dst, byte(protowire.EncodeTag(pbDownPong, protowire.BytesType)), 0)
}

// AppendProtobufConnected appends SystemMessage.ConnectedMessage (§8.4).
// userID is "" when the connection has no user; reconnectionToken is ""
// except on the reliable subprotocol. Empty strings are omitted.
func AppendProtobufConnected(dst []byte, userID, connectionID, reconnectionToken string) []byte {
	inner := pbSizeStringField(connectionID) + pbSizeStringField(userID) + pbSizeStringField(reconnectionToken)
	dst = pbAppendLenHeader(dst, pbDownSystem, pbSizeLen(inner))
	dst = pbAppendLenHeader(dst, 1, inner)
	dst = pbAppendStringField(dst, 1, connectionID)
	dst = pbAppendStringField(dst, 2, userID)
	return pbAppendStringField(dst, 3, reconnectionToken)
}

// AppendProtobufDisconnected appends SystemMessage.DisconnectedMessage, sent
// right before the service closes the connection (§8.4). reason is field 2.
func AppendProtobufDisconnected(dst []byte, reason string) []byte {
	inner := pbSizeStringField(reason)
	dst = pbAppendLenHeader(dst, pbDownSystem, pbSizeLen(inner))
	dst = pbAppendLenHeader(dst, 2, inner)
	return pbAppendStringField(dst, 2, reason)
}

// AppendProtobufGroupMessage appends a DataMessage from a group (§8.4):
// from = "group", group, data. There is no from_user_id in the protobuf
// schema. data is canonical as in ClientMessage.Data and maps to MessageData
// as §8.3 says for outbound: text and json → text_data (json as its JSON
// text), binary → binary_data, protobuf → protobuf_data (the Any bytes as
// they are). sequenceID > 0 sets sequence_id (reliable subprotocol, §7.2);
// 0 leaves it absent.
//
// For per-recipient sequence ids without re-encoding the payload, encode once
// with AppendProtobufGroupData and finish each copy with
// AppendProtobufSequenced.
func AppendProtobufGroupMessage(dst []byte, group string, dt DataType, data []byte, sequenceID uint64) []byte {
	size := pbSizeDataMessage(true, group, len(data)) + pbSizeSequenceID(sequenceID)
	dst = pbAppendLenHeader(dst, pbDownData, size)
	dst = pbAppendDataMessage(dst, true, group, dt, data)
	return pbAppendSequenceID(dst, sequenceID)
}

// AppendProtobufServerMessage appends a DataMessage from the server (§8.4):
// from = "server", no group. dt, data and sequenceID are as in
// AppendProtobufGroupMessage.
func AppendProtobufServerMessage(dst []byte, dt DataType, data []byte, sequenceID uint64) []byte {
	size := pbSizeDataMessage(false, "", len(data)) + pbSizeSequenceID(sequenceID)
	dst = pbAppendLenHeader(dst, pbDownData, size)
	dst = pbAppendDataMessage(dst, false, "", dt, data)
	return pbAppendSequenceID(dst, sequenceID)
}

// AppendProtobufGroupData appends the body of the DataMessage that
// AppendProtobufGroupMessage would write, without sequence_id and without the
// enclosing DownstreamMessage: the part every recipient of a reliable
// broadcast shares. Pass it to AppendProtobufSequenced per recipient.
func AppendProtobufGroupData(dst []byte, group string, dt DataType, data []byte) []byte {
	return pbAppendDataMessage(dst, true, group, dt, data)
}

// AppendProtobufServerData is AppendProtobufGroupData for a server message.
func AppendProtobufServerData(dst []byte, dt DataType, data []byte) []byte {
	return pbAppendDataMessage(dst, false, "", dt, data)
}

// AppendProtobufSequenced appends a whole DownstreamMessage whose data_message
// is dataMessage (from AppendProtobufGroupData or AppendProtobufServerData)
// plus sequence_id = sequenceID (absent when 0). sequence_id (DataMessage
// field 4) sits inside the length-delimited field 2 of DownstreamMessage, so
// only that small header and the trailing varint are encoded per recipient;
// the payload is copied, not re-encoded. The result equals
// AppendProtobufGroupMessage (or …ServerMessage) with the same arguments.
//
// To send without copying dataMessage at all (writev), the frame is
// AppendProtobufSequencedHeader + dataMessage + AppendProtobufSequenceTail.
func AppendProtobufSequenced(dst, dataMessage []byte, sequenceID uint64) []byte {
	dst = AppendProtobufSequencedHeader(dst, len(dataMessage), sequenceID)
	dst = append(dst, dataMessage...)
	return AppendProtobufSequenceTail(dst, sequenceID)
}

// AppendProtobufSequencedHeader appends the DownstreamMessage field 2 tag and
// length for a DataMessage body of dataMessageLen bytes followed by
// sequence_id = sequenceID (at most 11 bytes). See AppendProtobufSequenced.
func AppendProtobufSequencedHeader(dst []byte, dataMessageLen int, sequenceID uint64) []byte {
	return pbAppendLenHeader(dst, pbDownData, dataMessageLen+pbSizeSequenceID(sequenceID))
}

// AppendProtobufSequenceTail appends sequence_id = sequenceID, DataMessage
// field 4 (at most 11 bytes), or nothing when sequenceID is 0. See
// AppendProtobufSequenced.
func AppendProtobufSequenceTail(dst []byte, sequenceID uint64) []byte {
	return pbAppendSequenceID(dst, sequenceID)
}

// ProtobufSequencedLen is the length of what AppendProtobufSequenced appends
// for a DataMessage body of dataMessageLen bytes: the payload length of the
// binary frame, for writing the frame header first.
func ProtobufSequencedLen(dataMessageLen int, sequenceID uint64) int {
	return pbSizeLen(dataMessageLen + pbSizeSequenceID(sequenceID))
}

// pbFrom is DataMessage.from (§8.4).
func pbFrom(fromGroup bool) string {
	if fromGroup {
		return "group"
	}
	return "server"
}

// pbDataField is the MessageData oneof case for outbound data (§8.3).
func pbDataField(dt DataType) protowire.Number {
	switch dt {
	case DataBinary:
		return pbBinaryData
	case DataProtobuf:
		return pbProtobufData
	}
	return pbTextData // text, and json as its JSON text
}

func pbSizeDataMessage(fromGroup bool, group string, dataLen int) int {
	size := pbSizeStringField(pbFrom(fromGroup))
	if fromGroup {
		size += pbSizeLen(len(group)) // optional: present even when empty
	}
	// data = MessageData{one oneof field}; a set oneof field is written even
	// when empty.
	return size + pbSizeLen(pbSizeLen(dataLen))
}

func pbAppendDataMessage(dst []byte, fromGroup bool, group string, dt DataType, data []byte) []byte {
	dst = pbAppendStringField(dst, pbDataFrom, pbFrom(fromGroup))
	if fromGroup {
		dst = pbAppendLenHeader(dst, pbDataGroup, len(group))
		dst = append(dst, group...)
	}
	dst = pbAppendLenHeader(dst, pbDataData, pbSizeLen(len(data)))
	dst = pbAppendLenHeader(dst, pbDataField(dt), len(data))
	return append(dst, data...)
}

func pbSizeSequenceID(seq uint64) int {
	if seq == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(seq)
}

func pbAppendSequenceID(dst []byte, seq uint64) []byte {
	if seq == 0 {
		return dst
	}
	dst = append(dst, byte(protowire.EncodeTag(pbDataSequenceID, protowire.VarintType)))
	return protowire.AppendVarint(dst, seq)
}

// pbSizeLen is the size of a length-delimited field with a one-byte tag.
func pbSizeLen(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// pbSizeStringField is the size of a proto3 string field: 0 when empty.
func pbSizeStringField(s string) int {
	if s == "" {
		return 0
	}
	return pbSizeLen(len(s))
}

// pbSizeVarintField is the size of a proto3 uint64 field: 0 when zero.
func pbSizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func pbAppendLenHeader(dst []byte, num protowire.Number, n int) []byte {
	dst = append(dst, byte(protowire.EncodeTag(num, protowire.BytesType)))
	return protowire.AppendVarint(dst, uint64(n))
}

func pbAppendStringField(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = pbAppendLenHeader(dst, num, len(s))
	return append(dst, s...)
}

func pbAppendVarintField(dst []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, byte(protowire.EncodeTag(num, protowire.VarintType)))
	return protowire.AppendVarint(dst, v)
}
