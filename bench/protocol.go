package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/gobwas/ws"
)

// Protocols the clients of the idle, connect, fanout and chat scenarios can speak
// (Options.Protocol, --protocol): the Web PubSub subprotocols of client-protocol.md §5
// (json), §7 (json.reliable) and §8 (protobuf, protobuf.reliable).
const (
	ProtocolJSON             = "json"
	ProtocolJSONReliable     = "json.reliable"
	ProtocolProtobuf         = "protobuf"
	ProtocolProtobufReliable = "protobuf.reliable"
)

// Protocols lists the values Options.Protocol accepts, in the order --help shows them.
var Protocols = []string{ProtocolJSON, ProtocolJSONReliable, ProtocolProtobuf, ProtocolProtobufReliable}

// protocol is what a client needs to know about the subprotocol it speaks.
type protocol struct {
	name        string // one of Protocols
	subprotocol string // Sec-WebSocket-Protocol
	reliable    bool   // messages carry sequence ids the client acknowledges (§7)
	protobuf    bool   // binary frames of DownstreamMessage / UpstreamMessage (§8)
}

// parseProtocol maps a Protocols name ("" means json) to its protocol.
func parseProtocol(name string) (protocol, error) {
	switch name {
	case "", ProtocolJSON:
		return protocol{ProtocolJSON, JSONProtocol, false, false}, nil
	case ProtocolJSONReliable:
		return protocol{name, "json.reliable.webpubsub.azure.v1", true, false}, nil
	case ProtocolProtobuf:
		return protocol{name, "protobuf.webpubsub.azure.v1", false, true}, nil
	case ProtocolProtobufReliable:
		return protocol{name, "protobuf.reliable.webpubsub.azure.v1", true, true}, nil
	}
	return protocol{}, fmt.Errorf("%w: protocol %q: use one of %v", ErrConfig, name, Protocols)
}

// Sequence acknowledgement cadence of the JS SDK (client-protocol.md §7.3): the highest
// sequenceId seen, once per second when it changed, and at once when a message arrives
// more than seqAckAhead ids past the last value acknowledged. Without acks the server's
// redelivery buffer fills (1000 messages, §7.4) and it closes the connection.
const (
	seqAckInterval = time.Second
	seqAckAhead    = 300
	// seqAckSlots spreads the clients' once-a-second acks over the second: the acker wakes
	// seqAckSlots times per interval and visits one slot of the clients each time, as
	// independent SDK clients with their own timers would, instead of a burst per second.
	seqAckSlots = 10
)

// sequenced records sequence id seq of a message cl received; it runs on cl's loop. It
// acknowledges at once when seq is more than seqAckAhead past the last acknowledgement.
func (cl *client) sequenced(seq uint64) {
	f := cl.f
	if seq == 0 {
		f.unsequenced.Add(1) // §7.2: every message carries a non-zero sequenceId
		return
	}
	last := cl.seqSeen.Load()
	if seq != last+1 {
		// §7.2: per connection, each message gets the previous id + 1. Without recovery
		// there is no redelivery, so anything else is a server fault.
		f.seqGaps.Add(1)
	}
	if seq <= last {
		return
	}
	cl.seqSeen.Store(seq)
	if seq-cl.seqAcked.Load() > seqAckAhead {
		cl.ackSequence(seq)
	}
}

// ackSequence sends a sequenceAck for seq unless one at least as high was sent. Loop and
// acker may race; the compare-and-swap lets one of them send each value, and the server
// ignores an ack lower than one it has (§7.3) should two frames cross.
func (cl *client) ackSequence(seq uint64) {
	for {
		last := cl.seqAcked.Load()
		if seq <= last {
			return
		}
		if cl.seqAcked.CompareAndSwap(last, seq) {
			break
		}
	}
	c := cl.conn.Load()
	if c == nil || cl.state.Load() != stateUp {
		return
	}
	if c.AsyncWrite(sequenceAckFrame(cl.f.cfg.proto, seq), nil) == nil {
		cl.f.seqAcks.Add(1)
	}
}

// ackLoop acknowledges, for every client up, the highest sequence id it has seen if that
// changed, once per seqAckInterval per client. It runs until the fleet closes.
func (f *fleet) ackLoop() {
	t := time.NewTicker(seqAckInterval / seqAckSlots)
	defer t.Stop()
	for slot := 0; ; slot = (slot + 1) % seqAckSlots {
		select {
		case <-f.sweep:
			return
		case <-t.C:
		}
		for i := slot; i < len(f.clients); i += seqAckSlots {
			cl := f.clients[i]
			if cl.state.Load() == stateUp {
				cl.ackSequence(cl.seqSeen.Load())
			}
		}
	}
}

// settleAcks, on the reliable subprotocols, lets the members' last sequenceAck (at most
// one interval after the last delivery) reach the server before the CPU window ends, so
// that the server's CPU per delivery includes the acks of every delivery.
func settleAcks(ctx context.Context, r *Result, p protocol) {
	if !p.reliable {
		return
	}
	wait := seqAckInterval + 2*seqAckInterval/seqAckSlots
	select {
	case <-time.After(wait):
	case <-ctx.Done():
	}
	r.notef("the CPU window ends %s after the drain, for the members' last sequenceAck", wait)
}

// sequenceAckFrame returns a masked frame acknowledging seq (client-protocol.md §7.3,
// §8.2 SequenceAckMessage). Each call allocates the frame, which belongs to gnet's
// AsyncWrite from then on.
func sequenceAckFrame(p protocol, seq uint64) []byte {
	if p.protobuf {
		// UpstreamMessage{sequence_ack_message (8): {sequence_id (1): seq}}
		inner := 1 + pbVarintLen(seq)
		msg := make([]byte, 0, 2+inner)
		msg = pbAppendTag(msg, pbUpSequenceAck, pbBytes)
		msg = binary.AppendUvarint(msg, uint64(inner))
		msg = pbAppendTag(msg, 1, pbVarint)
		msg = binary.AppendUvarint(msg, seq)
		return appendMasked(make([]byte, 0, len(msg)+14), ws.OpBinary, msg)
	}
	msg := make([]byte, 0, 56)
	msg = append(msg, `{"type":"sequenceAck","sequenceId":`...)
	msg = strconv.AppendUint(msg, seq, 10)
	msg = append(msg, '}')
	return appendMasked(make([]byte, 0, len(msg)+14), ws.OpText, msg)
}

// The protobuf wire format (protobuf.dev/programming-guides/encoding), as much of it as
// the bench needs: a field is a varint tag, field number << 3 | wire type, then a varint
// (type 0), 8 bytes (type 1), a varint length and as many bytes (type 2), or 4 bytes
// (type 5). Varints are little-endian base 128, what encoding/binary's Uvarint reads, so
// the bench needs no protobuf library; its tests pin the bytes to the schema.
const (
	pbVarint  = 0
	pbFixed64 = 1
	pbBytes   = 2
	pbFixed32 = 5
)

// Field numbers of client-protocol.md §8.2–§8.4.
const (
	pbUpSendToGroup  = 1 // UpstreamMessage.send_to_group_message
	pbUpSequenceAck  = 8 // UpstreamMessage.sequence_ack_message
	pbDownAck        = 1 // DownstreamMessage.ack_message
	pbDownData       = 2 // DownstreamMessage.data_message
	pbDownSystem     = 3 // DownstreamMessage.system_message
	pbDownLast       = 8 // DownstreamMessage.stream_closed_message, the highest case
	pbSystemConnect  = 1 // SystemMessage.connected_message
	pbDataTextData   = 1 // MessageData.text_data
	pbDataBinaryData = 2 // MessageData.binary_data
	pbDataJSONData   = 4 // MessageData.json_data
)

func pbAppendTag(dst []byte, num, typ int) []byte {
	return binary.AppendUvarint(dst, uint64(num)<<3|uint64(typ))
}

// pbVarintLen is the encoded length of varint v.
func pbVarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// pbBytesLen is the encoded length of a length-delimited field of n bytes with a one-byte
// tag (field numbers below 16).
func pbBytesLen(n int) int { return 1 + pbVarintLen(uint64(n)) + n }

// appendPBSendToGroup appends UpstreamMessage{send_to_group_message: {group, ack_id,
// data: {text_data: text}}} (§8.2, §8.3).
func appendPBSendToGroup(dst []byte, group string, ackID uint64, text []byte) []byte {
	data := pbBytesLen(len(text))
	inner := pbBytesLen(len(group)) + 1 + pbVarintLen(ackID) + pbBytesLen(data)
	dst = pbAppendTag(dst, pbUpSendToGroup, pbBytes)
	dst = binary.AppendUvarint(dst, uint64(inner))
	dst = pbAppendTag(dst, 1, pbBytes)
	dst = binary.AppendUvarint(dst, uint64(len(group)))
	dst = append(dst, group...)
	dst = pbAppendTag(dst, 2, pbVarint)
	dst = binary.AppendUvarint(dst, ackID)
	dst = pbAppendTag(dst, 3, pbBytes)
	dst = binary.AppendUvarint(dst, uint64(data))
	dst = pbAppendTag(dst, pbDataTextData, pbBytes)
	dst = binary.AppendUvarint(dst, uint64(len(text)))
	return append(dst, text...)
}

// pbField reads the first field of b: its number, wire type, its value (a varint's number,
// a length-delimited field's bytes; fixed fields are skipped) and the rest of b. ok is
// false when b is malformed or uses the deprecated group wire types.
func pbField(b []byte) (num, typ int, v uint64, body, rest []byte, ok bool) {
	tag, n := binary.Uvarint(b)
	if n <= 0 || tag>>3 == 0 || tag>>3 > 1<<29-1 {
		return 0, 0, 0, nil, nil, false
	}
	num, typ, b = int(tag>>3), int(tag&7), b[n:]
	switch typ {
	case pbVarint:
		if v, n = binary.Uvarint(b); n <= 0 {
			return 0, 0, 0, nil, nil, false
		}
		return num, typ, v, nil, b[n:], true
	case pbBytes:
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return 0, 0, 0, nil, nil, false
		}
		end := n + int(l)
		return num, typ, 0, b[n:end:end], b[end:], true
	case pbFixed64, pbFixed32:
		size := 8
		if typ == pbFixed32 {
			size = 4
		}
		if len(b) < size {
			return 0, 0, 0, nil, nil, false
		}
		return num, typ, 0, nil, b[size:], true
	}
	return 0, 0, 0, nil, nil, false
}

// pbDownstream finds the case of a DownstreamMessage (§8.4): its field number and body.
// The last case on the wire wins, as for any proto3 oneof; unknown fields are skipped.
// ok is false when b is malformed or has no case.
func pbDownstream(b []byte) (kind int, body []byte, ok bool) {
	for len(b) > 0 {
		num, typ, _, v, rest, ok := pbField(b)
		if !ok {
			return 0, nil, false
		}
		if typ == pbBytes && num >= pbDownAck && num <= pbDownLast && num != 5 {
			kind, body = num, v
		}
		b = rest
	}
	return kind, body, kind != 0
}

// isPBConnected reports whether b is DownstreamMessage{system_message:
// {connected_message: ...}} (§8.4).
func isPBConnected(b []byte) bool {
	kind, body, ok := pbDownstream(b)
	if !ok || kind != pbDownSystem {
		return false
	}
	connected := false
	for len(body) > 0 {
		num, typ, _, _, rest, ok := pbField(body)
		if !ok {
			return false
		}
		if typ == pbBytes && (num == 1 || num == 2) { // the SystemMessage oneof
			connected = num == pbSystemConnect
		}
		body = rest
	}
	return connected
}

// pbData reads a DataMessage body (§8.4): the payload of its MessageData (text, binary or
// json) and its sequence id (0 when absent).
func pbData(b []byte) (data []byte, seq uint64, ok bool) {
	for len(b) > 0 {
		num, typ, v, body, rest, ok := pbField(b)
		if !ok {
			return nil, 0, false
		}
		switch {
		case num == 4 && typ == pbVarint:
			seq = v
		case num == 3 && typ == pbBytes:
			for len(body) > 0 {
				num, typ, _, d, more, ok := pbField(body)
				if !ok {
					return nil, 0, false
				}
				if typ == pbBytes && (num == pbDataTextData || num == pbDataBinaryData || num == pbDataJSONData) {
					data = d
				}
				body = more
			}
		}
		b = rest
	}
	return data, seq, data != nil
}

// pbAck reads an AckMessage body (§8.4).
func pbAck(b []byte) (ackID uint64, success, ok bool) {
	for len(b) > 0 {
		num, typ, v, _, rest, ok := pbField(b)
		if !ok {
			return 0, false, false
		}
		switch {
		case num == 1 && typ == pbVarint:
			ackID = v
		case num == 2 && typ == pbVarint:
			success = v != 0
		}
		b = rest
	}
	return ackID, success, true
}

// jsonSequenceID reads the sequenceId of a json.reliable message (§7.2); 0 when absent.
// The bench's payloads are digits and x, so the key cannot occur inside data.
func jsonSequenceID(payload []byte) uint64 {
	k := bytes.LastIndex(payload, seqIDKey)
	if k < 0 {
		return 0
	}
	v, ok := parseDigits(payload[k+len(seqIDKey):])
	if !ok || v < 0 {
		return 0
	}
	return uint64(v)
}

var seqIDKey = []byte(`"sequenceId":`)
