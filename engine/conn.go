package engine

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/webpubsub/webpubsub/registry"
	"github.com/webpubsub/webpubsub/upstream"
	"github.com/webpubsub/webpubsub/wsproto"
)

type connState uint8

const (
	stateHTTP       connState = iota // reading an HTTP request head
	stateREST                        // a REST request is running on the worker pool
	stateConnecting                  // a handshake waits for the upstream connect event
	stateWS                          // upgraded WebSocket
	stateClosed                      // close started; nothing more is read or written
)

// conn is one accepted socket. It belongs to one event loop from OnOpen to OnClose
// and has no mutex: only that loop touches it (STYLE §3).
type conn struct {
	srv   *Server
	gc    gnet.Conn
	lp    *loop
	state connState
	// hubIdx is the hub's metrics label index (hubLabels), set at upgrade.
	hubIdx uint16
	slot   int32 // index in lp.conns

	// Set at upgrade; immutable afterwards.
	rc   *registry.Conn
	kind wsproto.Kind
	// hub is the hub's settings, and hubGen the settings.gen they came from; refreshHub
	// replaces them after a Reload. Only the connection's loop touches them.
	hubGen uint32
	hub    *hubConfig
	sess   *upstream.Session // nil when the hub had no event handlers at connect

	lastRead int64 // unix nanos: last inbound frame (WebSocket) or when the connection became idle (HTTP)
	lastPing int64 // unix nanos of the last ping we sent

	frag   []byte     // reassembly of a fragmented message; nil when none
	fragOp ws.OpCode  // opcode of the first fragment
	acks   *ackWindow // ackIds seen, allocated on first use

	// busy is set while a blocking user event is with the upstream: frames stay in the
	// inbound buffer until it answers (upstream-protocol.md §6.1 ordering).
	busy bool
	// reason is why the connection ended, for the upstream disconnected event.
	reason string
	// closedBy is the server's reason when it closed the socket (closeNone otherwise).
	closedBy closeReason
	// rel is the reliable logical connection this socket carries (nil otherwise).
	rel *reliable
	// replaced is set when a recovering socket took over this one's logical connection.
	replaced bool
	// lingering is set while a drain close waits for the queued bytes to flush (drain.go).
	lingering bool
	// asyncPending counts frames queued with AsyncWrite and not yet written; while it
	// is non-zero the loop queues its own frames behind them. Written off-loop.
	asyncPending atomic.Int32
}

// debug logs at Debug level, building the logger only when Debug is enabled.
func (c *conn) debug(msg string, args ...any) {
	if c.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		c.logger().Debug(msg, args...)
	}
}

// logger returns the server logger with this connection's attributes (operations.md
// §5 names): remote, and hub, connectionId and userId once upgraded. It is built on
// demand: keeping a *slog.Logger per connection would cost ~200 bytes of every idle
// connection for lines that are rarely written.
func (c *conn) logger() *slog.Logger {
	if c.rc == nil {
		return c.srv.log.With(slog.String("remote", c.remote()))
	}
	return c.srv.log.With(slog.String("hub", c.rc.Hub), slog.String("connectionId", c.rc.ID),
		slog.String("userId", c.rc.UserID), slog.String("remote", c.remote()))
}

// closeReason is the typed reason of a server-side close (STYLE §5).
type closeReason uint8

const (
	closeNone          closeReason = iota
	closeClient                    // the client sent a close frame
	closeByAppServer               // REST close
	closeBadRequest                // protocol violation
	closeTooBig                    // message over MaxMessageBytes
	closeSlowClient                // outbound queue over MaxOutboundBytes
	closePingTimeout               // no inbound frame for 3 × keep-alive
	closeShutdown                  // server stopping
	closeSendEventFail             // user event without ackId could not be delivered
	closeProtocol                  // RFC 6455 framing violation
	closeInvalidData               // text frame that is not UTF-8
	closeNoHandler                 // simple client message with no `message` handler
	closeEventFailed               // simple client whose `message` event failed
)

// category is the Azure close category name (client-protocol.md §9.6).
func (r closeReason) category() string {
	switch r {
	case closeClient:
		return "Normal"
	case closeByAppServer:
		return "ClosedByAppServer"
	case closeBadRequest, closeTooBig, closeProtocol, closeInvalidData:
		return "BadRequest"
	case closeSlowClient:
		return "SlowClient"
	case closePingTimeout:
		return "PingTimeout"
	case closeShutdown:
		return "ServiceReload"
	case closeSendEventFail, closeEventFailed:
		return "SendEventFailed"
	case closeNoHandler:
		return "EventHandlerNotFound"
	}
	return "Normal"
}

// status is the WebSocket close code for the reason (client-protocol.md §9.5).
func (r closeReason) status() ws.StatusCode {
	switch r {
	case closeClient:
		return ws.StatusNormalClosure
	case closeTooBig:
		return ws.StatusMessageTooBig
	case closeShutdown:
		return ws.StatusGoingAway
	case closeProtocol:
		return ws.StatusProtocolError
	case closeInvalidData:
		return ws.StatusInvalidFramePayloadData
	case closeNoHandler:
		return ws.StatusNormalClosure // observed from Azure (client-protocol.md §3)
	case closeEventFailed:
		return ws.StatusInternalServerError
	}
	return ws.StatusPolicyViolation
}

var pingFrame = wsproto.AppendFrame(nil, ws.OpPing, nil)

// close is the one close path for upgraded connections. It is idempotent: the
// first call sends `disconnected` (PubSub clients) and a close frame, then asks
// gnet to close the socket; OnClose does the cleanup. detail, when set, replaces
// the default `disconnected` message text.
func (c *conn) close(r closeReason, detail string) {
	if c.state == stateClosed {
		return
	}
	wasWS := c.state == stateWS
	c.state = stateClosed
	c.closedBy = r
	if c.rc != nil {
		c.rc.MarkClosing() // exists checks stop reporting it now (rest-api.md §6)
	}
	if !wasWS {
		_ = c.gc.Close()
		return
	}
	msg := detail
	if msg == "" {
		msg = r.category()
	}
	c.reason = msg
	if r != closeClient {
		c.debug("closing connection", "category", r.category(), "detail", detail)
	}
	buf := c.lp.scratch[:0]
	// A reliable client is not told `disconnected` before a 1001: it recovers
	// (operations.md §2 step 3, client-protocol.md §7.6).
	if c.kind.IsPubSub() && r != closeClient && (r != closeShutdown || c.rel == nil) {
		buf = wsproto.AppendFrame(buf, frameOp(c.kind), appendDisconnected(c.kind, nil, msg))
	}
	reason := r.category()
	if r == closeClient || r == closeNoHandler {
		reason = ""
	}
	buf = wsproto.AppendCloseFrame(buf, r.status(), reason)
	_, _ = c.gc.Write(buf)
	c.lp.scratch = buf[:0]
	if r == closeShutdown && c.gc.OutboundBuffered() > 0 {
		c.linger() // a drain loses nothing queued: close once it is flushed
		return
	}
	_ = c.gc.Close()
}

// onClosed runs from OnClose: it removes the connection from the registry.
// The upstream `disconnected` event is queued here once upstream exists.
func (c *conn) onClosed(err error) {
	prev := c.state
	c.state = stateClosed
	if c.rc == nil {
		return
	}
	c.srv.wsConns.Add(-1)
	if c.rel != nil {
		// A reliable connection outlives a dropped socket (client-protocol.md §7.6):
		// the client's own close and network loss are recoverable.
		terminal := c.closedBy != closeNone && c.closedBy != closeClient && !c.replaced
		c.rel.detach(c, terminal)
		c.frag = nil
		return
	}
	c.srv.reg.Remove(c.rc)
	hc := &c.lp.stats.hubs[c.hubIdx]
	hc.conns[protocolIndex(c.kind)]--
	hc.closed[c.closedBy.categoryIndex()]++
	c.refreshHub()
	if c.sess != nil && c.hub.up.HasDisconnected() {
		c.sess.Disconnected(c.reason)
	}
	if prev != stateClosed || err != nil {
		c.debug("connection closed", "err", err)
	}
	c.frag = nil
}

// write sends a complete frame if the connection is open and not over its
// outbound limit; a slow consumer is closed instead of buffered without bound.
// Must run on the connection's loop.
func (c *conn) write(frame []byte) {
	if c.state != stateWS {
		return
	}
	if c.asyncPending.Load() > 0 {
		c.asyncWrite(append([]byte(nil), frame...)) // behind the queued frames
		return
	}
	// One message is always accepted onto an empty queue, so a message larger than
	// the limit still reaches a client that keeps up.
	if pending := c.gc.OutboundBuffered(); pending > 0 && pending+len(frame) > c.srv.settings().cfg.Limits.MaxOutboundBytes {
		if sup, ok := c.srv.warnAllowed(warnSlowClient); ok {
			c.logger().Warn("slow consumer: outbound limit reached", "pendingBytes", pending, sup)
		}
		c.close(closeSlowClient, "")
		return
	}
	_, _ = c.gc.Write(frame)
}

// writeControl sends a control frame; same rules as write.
func (c *conn) writeControl(frame []byte) { c.write(frame) }

// protocol message encoders per subprotocol family (client-protocol.md §5.3, §8.4).

func appendConnected(k wsproto.Kind, dst []byte, userID, connID, token string) []byte {
	if k.IsJSON() {
		return wsproto.AppendConnected(dst, userID, userID != "", connID, token)
	}
	return wsproto.AppendProtobufConnected(dst, userID, connID, token)
}

func appendDisconnected(k wsproto.Kind, dst []byte, reason string) []byte {
	if k.IsJSON() {
		return wsproto.AppendDisconnected(dst, reason)
	}
	return wsproto.AppendProtobufDisconnected(dst, reason)
}

// writeMsg sends a protocol message body in the frame type of the connection's
// subprotocol: text for JSON, binary for protobuf.
func (c *conn) writeMsg(body []byte) {
	buf := wsproto.AppendFrame(c.lp.scratch[:0], frameOp(c.kind), body)
	c.write(buf)
	c.lp.scratch = buf[:0]
}

// frameOp is the WebSocket opcode of a subprotocol's messages (§5.1, §8.1).
func frameOp(k wsproto.Kind) ws.OpCode {
	if k.IsPubSub() && !k.IsJSON() {
		return ws.OpBinary
	}
	return ws.OpText
}

// ackWindow remembers the ackIds a connection used, bounded to the most recent
// maxAckIDs (client-protocol.md §5.4 duplicate detection).
type ackWindow struct {
	seen  map[uint64]struct{}
	order []uint64
	next  int
}

const maxAckIDs = 10000

// add records id and reports whether it was new.
func (w *ackWindow) add(id uint64) bool {
	if w.seen == nil {
		w.seen = make(map[uint64]struct{})
	}
	if _, dup := w.seen[id]; dup {
		return false
	}
	if len(w.order) < maxAckIDs {
		w.order = append(w.order, id)
	} else {
		delete(w.seen, w.order[w.next])
		w.order[w.next] = id
		w.next = (w.next + 1) % maxAckIDs
	}
	w.seen[id] = struct{}{}
	return true
}

// asyncWrite queues frame (which the caller must not touch again) behind the
// socket's other queued frames. Safe for concurrent use.
func (c *conn) asyncWrite(frame []byte) {
	c.asyncPending.Add(1)
	if err := c.gc.AsyncWrite(frame, func(gnet.Conn, error) error {
		c.asyncPending.Add(-1)
		return nil
	}); err != nil {
		c.asyncPending.Add(-1)
	}
}
