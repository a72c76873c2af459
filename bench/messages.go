package bench

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// minPayloadBytes is the payload header: 19 digits of send time (unix ns, a clock every
// process on the machine shares), a space, up to 10 digits of sequence number, a space.
const minPayloadBytes = 31

var (
	dataKey    = []byte(`"data":"`)
	ackType    = []byte(`"type":"ack"`)
	ackIDKey   = []byte(`"ackId":`)
	ackSuccess = []byte(`"success":true`)
	// messageType marks the messages that carry a sequenceId on json.reliable (§7.1).
	messageType = []byte(`"type":"message"`)
)

// receiver counts what the clients of one process receive: bench-stamped group messages
// (latency from the stamp) and sendToGroup acks, or (plain clients) echoes. Its methods run
// on the loops; the counters are read by the worker's reports.
type receiver struct {
	// proto is the clients' subprotocol; set before the fleet opens.
	proto                             protocol
	received, unparsed, acked, nacked atomic.Int64
	misrouted                         atomic.Int64 // echoes of another client's payload
	lastRecvNs                        atomic.Int64 // unix ns of the latest stamped message
	latency, ackLatency               Histogram
}

// onMessage is a fleetConfig.onMessage for the subprotocol clients.
func (rv *receiver) onMessage(cl *client, payload []byte) {
	if rv.proto.protobuf {
		rv.onProtobuf(cl, payload)
		return
	}
	now := time.Now().UnixNano()
	if bytes.Contains(payload, ackType) {
		// Web PubSub client protocol: {"type":"ack","ackId":1,"success":true} or with
		// "success":false and an "error" object.
		var id int64 = -1
		if k := bytes.Index(payload, ackIDKey); k >= 0 {
			if v, ok := parseDigits(payload[k+len(ackIDKey):]); ok {
				id = v
			}
		}
		rv.onAck(cl, id, bytes.Contains(payload, ackSuccess), now)
		return
	}
	if rv.proto.reliable && bytes.Contains(payload, messageType) {
		cl.sequenced(jsonSequenceID(payload))
	}
	k := bytes.Index(payload, dataKey)
	if k < 0 {
		rv.unparsed.Add(1)
		return
	}
	rv.stamped(cl, payload[k+len(dataKey):], now)
}

// onProtobuf handles a DownstreamMessage (client-protocol.md §8.4).
func (rv *receiver) onProtobuf(cl *client, payload []byte) {
	now := time.Now().UnixNano()
	kind, body, ok := pbDownstream(payload)
	if !ok {
		rv.unparsed.Add(1)
		return
	}
	switch kind {
	case pbDownAck:
		id, success, ok := pbAck(body)
		if !ok {
			rv.unparsed.Add(1)
			return
		}
		rv.onAck(cl, int64(min(id, 1<<62)), success, now)
	case pbDownData:
		data, seq, ok := pbData(body)
		if rv.proto.reliable {
			cl.sequenced(seq)
		}
		if !ok {
			rv.unparsed.Add(1)
			return
		}
		rv.stamped(cl, data, now)
	default:
		rv.unparsed.Add(1)
	}
}

// stamped records a message whose data starts with the bench's stamp.
func (rv *receiver) stamped(cl *client, data []byte, now int64) {
	ts, ok := parseDigits(data)
	if !ok {
		rv.unparsed.Add(1)
		return
	}
	rv.latency.Record(time.Duration(now - ts))
	cl.received.Add(1)
	rv.received.Add(1)
	rv.noteLastRecv(now)
}

// noteLastRecv raises lastRecvNs to now.
func (rv *receiver) noteLastRecv(now int64) {
	for {
		last := rv.lastRecvNs.Load()
		if now <= last || rv.lastRecvNs.CompareAndSwap(last, now) {
			return
		}
	}
}

// onAck records the ack of the send with ackID id (-1 when unknown).
func (rv *receiver) onAck(cl *client, id int64, success bool, now int64) {
	if !success {
		rv.nacked.Add(1)
		return
	}
	cl.acked.Add(1)
	rv.acked.Add(1)
	if id >= 1 && id <= int64(len(cl.sentAtNs)) {
		rv.ackLatency.Record(time.Duration(now - cl.sentAtNs[id-1]))
	}
}

func parseDigits(b []byte) (int64, bool) {
	var v int64
	n := 0
	for ; n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9'; n++ {
		v = v*10 + int64(b[n]-'0')
	}
	return v, n > 0
}

// appendPayload appends a payload of size bytes stamped with the send time and sequence k.
func appendPayload(dst []byte, sentNs int64, k, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, sentNs, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(k), 10)
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// sendToGroupFrame returns a masked frame that sends a stamped text payload to group with
// ackID: the JSON subprotocols' sendToGroup (a text frame), or the protobuf ones'
// UpstreamMessage.send_to_group_message with text_data (a binary frame, §8.2). Each call
// allocates the frame, which belongs to gnet's AsyncWrite from then on. Group names are
// plain bench names (no characters JSON escapes).
func sendToGroupFrame(p protocol, group string, sentNs int64, k, size int, ackID int) []byte {
	if p.protobuf {
		text := appendPayload(make([]byte, 0, size), sentNs, k, size)
		msg := appendPBSendToGroup(make([]byte, 0, 24+len(group)+size), group, uint64(ackID), text)
		return appendMasked(make([]byte, 0, len(msg)+14), ws.OpBinary, msg)
	}
	msg := make([]byte, 0, 96+len(group)+size)
	msg = append(msg, `{"type":"sendToGroup","group":"`...)
	msg = append(msg, group...)
	msg = append(msg, `","dataType":"text","ackId":`...)
	msg = strconv.AppendInt(msg, int64(ackID), 10)
	msg = append(msg, `,"data":"`...)
	msg = appendPayload(msg, sentNs, k, size)
	msg = append(msg, `"}`...)
	return appendMasked(make([]byte, 0, len(msg)+14), ws.OpText, msg)
}

// minEchoPayloadBytes is the echo payload header: the send time (19 digits), the sequence
// number and the sender's global index (up to 10 digits each), each followed by a space.
const minEchoPayloadBytes = 42

// appendEchoPayload appends an echo payload of size bytes: send time, sequence k and the
// sending client's global index idx, so the echo proves it came back to its sender.
func appendEchoPayload(dst []byte, sentNs int64, k, idx, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, sentNs, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(k), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(idx), 10)
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parseEchoPayload reads what appendEchoPayload wrote.
func parseEchoPayload(b []byte) (sentNs, k, idx int64, ok bool) {
	fields := [3]int64{}
	for i := range fields {
		n := 0
		for ; n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9'; n++ {
			fields[i] = fields[i]*10 + int64(b[n]-'0')
		}
		if n == 0 || n >= len(b) || b[n] != ' ' {
			return 0, 0, 0, false
		}
		b = b[n+1:]
	}
	return fields[0], fields[1], fields[2], true
}

// echoFrame returns a masked text frame carrying an echo payload, the message a plain
// client sends. Each call allocates the frame, which belongs to gnet's AsyncWrite from
// then on.
func echoFrame(sentNs int64, k, idx, size int) []byte {
	msg := appendEchoPayload(make([]byte, 0, size+minEchoPayloadBytes), sentNs, k, idx, size)
	return appendMasked(make([]byte, 0, len(msg)+14), ws.OpText, msg)
}

// onEcho is the fleetConfig.onMessage of plain clients: every message should be the echo
// of one of this client's own payloads, sent back by the upstream through the server.
func (rv *receiver) onEcho(cl *client, payload []byte) {
	now := time.Now().UnixNano()
	ts, _, idx, ok := parseEchoPayload(payload)
	switch {
	case !ok:
		rv.unparsed.Add(1)
		return
	case idx != int64(cl.idx):
		rv.misrouted.Add(1)
		return
	}
	rv.latency.Record(time.Duration(now - ts))
	cl.received.Add(1)
	rv.received.Add(1)
	rv.noteLastRecv(now)
}
