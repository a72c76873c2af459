package engine

import (
	"context"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/webpubsub/webpubsub/registry"
	"github.com/webpubsub/webpubsub/wsproto"
)

// outMessage is one message on its way to many connections. Its frames are
// encoded once per receiver kind and shared read-only by every loop
// (client-protocol.md §4.3 conversion matrix; STYLE §3 "Encode once, fan out").
type outMessage struct {
	fromGroup  bool   // "from":"group" (else "from":"server")
	group      string // for group messages
	fromUserID string // publisher's user id; "" for REST
	dataType   wsproto.DataType
	data       []byte // canonical payload, immutable

	skip     *registry.Conn      // noEcho: the publisher
	excluded map[string]struct{} // REST `excluded` connection ids
	expires  int64               // REST messageTtlSeconds deadline (unix ns); 0 = none
	filter   *Filter             // REST `filter`; nil means every connection
	target   *connTarget         // evaluates filter; set with it

	pubsubFrame []byte // text frame with the JSON envelope
	protoFrame  []byte // binary frame with the protobuf DownstreamMessage
	simpleFrame []byte // raw text or binary frame
	jsonHead    []byte // reliable JSON: the envelope up to "sequenceId":
	protoData   []byte // reliable protobuf: the DataMessage without sequence_id
}

func (m *outMessage) wanted(rc *registry.Conn) bool {
	if rc == m.skip {
		return false
	}
	if m.excluded != nil {
		if _, ok := m.excluded[rc.ID]; ok {
			return false
		}
	}
	return m.filter == nil || m.target.match(m.filter, rc)
}

// setFilter makes the message go only to connections that match f (nil: all).
// The filter is evaluated by deliver, one connection at a time.
func (m *outMessage) setFilter(f *Filter) {
	m.filter = f
	if f != nil {
		m.target = new(connTarget)
	}
}

func (m *outMessage) encode(json, proto, simple bool) {
	if json && m.pubsubFrame == nil {
		var body []byte
		if m.fromGroup {
			body = wsproto.AppendGroupMessage(nil, m.group, m.fromUserID, m.dataType, m.data, 0)
		} else {
			body = wsproto.AppendServerMessage(nil, m.dataType, m.data, 0)
		}
		m.pubsubFrame = wsproto.AppendFrame(make([]byte, 0, len(body)+14), ws.OpText, body)
	}
	if proto && m.protoFrame == nil {
		var body []byte
		if m.fromGroup {
			body = wsproto.AppendProtobufGroupMessage(nil, m.group, m.dataType, m.data, 0)
		} else {
			body = wsproto.AppendProtobufServerMessage(nil, m.dataType, m.data, 0)
		}
		m.protoFrame = wsproto.AppendFrame(make([]byte, 0, len(body)+14), ws.OpBinary, body)
	}
	if simple && m.simpleFrame == nil {
		op := ws.OpText
		if m.dataType == wsproto.DataBinary || m.dataType == wsproto.DataProtobuf {
			op = ws.OpBinary
		}
		m.simpleFrame = wsproto.AppendFrame(make([]byte, 0, len(m.data)+14), op, m.data)
	}
}

// sequencedFrame renders m for one reliable recipient of kind k with its sequence id
// (client-protocol.md §7.2). The part every recipient shares is encoded once per
// family; only the frame header and the sequence id are written per recipient.
// deliver calls it from one goroutine.
func (m *outMessage) sequencedFrame(k wsproto.Kind, seq uint64) []byte {
	if k.IsJSON() {
		if m.jsonHead == nil {
			if m.fromGroup {
				m.jsonHead = wsproto.AppendGroupMessageHead(nil, m.group, m.fromUserID, m.dataType, m.data)
			} else {
				m.jsonHead = wsproto.AppendServerMessageHead(nil, m.dataType, m.data)
			}
		}
		n := len(m.jsonHead) + wsproto.JSONSequenceTailLen(seq)
		f := wsproto.AppendFrameHeader(make([]byte, 0, n+14), ws.OpText, n)
		f = append(f, m.jsonHead...)
		return wsproto.AppendJSONSequenceTail(f, seq)
	}
	if m.protoData == nil {
		if m.fromGroup {
			m.protoData = wsproto.AppendProtobufGroupData(nil, m.group, m.dataType, m.data)
		} else {
			m.protoData = wsproto.AppendProtobufServerData(nil, m.dataType, m.data)
		}
	}
	n := wsproto.ProtobufSequencedLen(len(m.protoData), seq)
	f := wsproto.AppendFrameHeader(make([]byte, 0, n+14), ws.OpBinary, n)
	return wsproto.AppendProtobufSequenced(f, m.protoData, seq)
}

// deliver sends m to every wanted target. Targets are grouped by owning loop; the
// caller's own loop (from, nil off-loop) writes inline, every other loop gets one
// task. Safe to call from any goroutine.
func (s *Server) deliver(targets []*registry.Conn, m *outMessage, from *loop) int {
	if len(targets) == 0 {
		return 0
	}
	type bucket struct {
		lp    *loop
		conns []*conn
	}
	var buckets []bucket
	var json, proto, simple bool
	n := 0
	relSent, relHub := int64(0), uint16(0)
	for _, rc := range targets {
		if !m.wanted(rc) {
			continue
		}
		c := rc.Handle.(*conn)
		if c.rel != nil {
			// Reliable: a sequence id per recipient, kept until acknowledged.
			kind := c.kind
			if c.rel.send(func(seq uint64) []byte { return m.sequencedFrame(kind, seq) }, from, m.expires) {
				relSent++
				relHub = c.hubIdx // every target is in the same hub
			}
			n++
			continue
		}
		switch {
		case c.kind.IsJSON():
			json = true
		case c.kind.IsPubSub():
			proto = true
		default:
			simple = true
		}
		i := 0
		for i < len(buckets) && buckets[i].lp != c.lp {
			i++
		}
		if i == len(buckets) {
			buckets = append(buckets, bucket{lp: c.lp, conns: make([]*conn, 0, len(targets))})
		}
		buckets[i].conns = append(buckets[i].conns, c)
		n++
	}
	if relSent > 0 {
		// Counted once per message, not per recipient: on the caller's loop when it
		// has one, else (a REST worker) in the shared counters.
		if from != nil {
			hc := &from.stats.hubs[relHub]
			hc.delivered += relSent
			hc.deliveredBytes += relSent * int64(len(m.data))
		} else {
			sh := &s.shared[relHub]
			sh.delivered.Add(relSent)
			sh.deliveredBytes.Add(relSent * int64(len(m.data)))
		}
	}
	m.encode(json, proto, simple)
	for _, b := range buckets {
		conns := b.conns
		if b.lp == from {
			writeAll(conns, m)
			continue
		}
		wg := s.work.add() // a drain closes the connections only after this ran (drain.go settle)
		if err := b.lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			writeAll(conns, m)
			return nil
		})); err != nil { // the reactor is stopping: the task will not run
			wg.Done()
		}
	}
	return n
}

// writeAll runs on the loop that owns every conn in conns. A delivery counts when
// the frame was written or queued (not to a closed connection, nor to a slow
// consumer the write closed).
func writeAll(conns []*conn, m *outMessage) {
	for _, c := range conns {
		if c.state != stateWS {
			continue
		}
		switch {
		case c.kind.IsJSON():
			c.write(m.pubsubFrame)
		case c.kind.IsPubSub():
			c.write(m.protoFrame)
		default:
			c.write(m.simpleFrame)
		}
		if c.state == stateWS {
			c.countDelivered(len(m.data))
		}
	}
}

// countDelivered counts one data message of n payload bytes sent to c. Must run on
// c's loop.
func (c *conn) countDelivered(n int) {
	hc := &c.lp.stats.hubs[c.hubIdx]
	hc.delivered++
	hc.deliveredBytes += int64(n)
}

// countReceived counts one data message of n payload bytes from c. Must run on c's
// loop.
func (c *conn) countReceived(n int) {
	hc := &c.lp.stats.hubs[c.hubIdx]
	hc.received++
	hc.receivedBytes += int64(n)
}

// closeConns closes each target on its own loop with the app server's reason.
func (s *Server) closeConns(targets []*registry.Conn, excluded map[string]struct{}, reason string) {
	for _, rc := range targets {
		if _, ok := excluded[rc.ID]; ok {
			continue
		}
		c := rc.Handle.(*conn)
		if c.rel != nil { // not recoverable (client-protocol.md §7.6)
			c.rel.terminate(closeByAppServer, reason)
			continue
		}
		_ = c.lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			c.close(closeByAppServer, reason)
			return nil
		}))
	}
}
