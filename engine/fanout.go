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

	pubsubFrame []byte // text frame with the JSON envelope
	simpleFrame []byte // raw text or binary frame
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
	return true
}

func (m *outMessage) encode(pubsub, simple bool) {
	if pubsub && m.pubsubFrame == nil {
		var body []byte
		if m.fromGroup {
			body = wsproto.AppendGroupMessage(nil, m.group, m.fromUserID, m.dataType, m.data, 0)
		} else {
			body = wsproto.AppendServerMessage(nil, m.dataType, m.data, 0)
		}
		m.pubsubFrame = wsproto.AppendFrame(make([]byte, 0, len(body)+14), ws.OpText, body)
	}
	if simple && m.simpleFrame == nil {
		op := ws.OpText
		if m.dataType == wsproto.DataBinary || m.dataType == wsproto.DataProtobuf {
			op = ws.OpBinary
		}
		m.simpleFrame = wsproto.AppendFrame(make([]byte, 0, len(m.data)+14), op, m.data)
	}
}

// sequencedFrame renders m for one reliable recipient with its sequence id
// (client-protocol.md §7.2).
func (m *outMessage) sequencedFrame(seq uint64) []byte {
	var body []byte
	if m.fromGroup {
		body = wsproto.AppendGroupMessage(nil, m.group, m.fromUserID, m.dataType, m.data, seq)
	} else {
		body = wsproto.AppendServerMessage(nil, m.dataType, m.data, seq)
	}
	return wsproto.AppendFrame(make([]byte, 0, len(body)+14), ws.OpText, body)
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
	var pubsub, simple bool
	n := 0
	for _, rc := range targets {
		if !m.wanted(rc) {
			continue
		}
		c := rc.Handle.(*conn)
		if c.rel != nil {
			// Reliable: a sequence id per recipient, kept until acknowledged.
			c.rel.send(m.sequencedFrame, from)
			n++
			continue
		}
		if c.kind.IsPubSub() {
			pubsub = true
		} else {
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
	m.encode(pubsub, simple)
	for _, b := range buckets {
		conns := b.conns
		if b.lp == from {
			writeAll(conns, m)
			continue
		}
		_ = b.lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			writeAll(conns, m)
			return nil
		}))
	}
	return n
}

// writeAll runs on the loop that owns every conn in conns.
func writeAll(conns []*conn, m *outMessage) {
	for _, c := range conns {
		if c.kind.IsPubSub() {
			c.write(m.pubsubFrame)
		} else {
			c.write(m.simpleFrame)
		}
	}
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
