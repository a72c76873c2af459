package engine

import (
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/webpubsub/webpubsub/registry"
	"github.com/webpubsub/webpubsub/upstream"
	"github.com/webpubsub/webpubsub/wsproto"
)

// maxFramesPerWake bounds the work one OnTraffic does for one connection; when it
// runs out with bytes still buffered the connection is woken again (STYLE §3).
const maxFramesPerWake = 256

// onFrames parses and handles every complete frame buffered for an upgraded
// connection. Partial frames stay buffered until more bytes arrive.
func (c *conn) onFrames() {
	if c.busy {
		return // a blocking user event is with the upstream; frames wait in the buffer
	}
	c.refreshHub()
	buf, _ := c.gc.Peek(-1)
	limit := c.srv.settings().cfg.Limits.MaxMessageBytes
	off, frames := 0, 0
	for off < len(buf) && c.state == stateWS && !c.busy {
		if frames == maxFramesPerWake {
			_ = c.gc.Wake(nil)
			break
		}
		f, n, err := wsproto.ParseFrame(buf[off:], limit)
		if errors.Is(err, wsproto.ErrNeedMore) {
			break
		}
		if err != nil {
			c.protocolError(err)
			break
		}
		off += n
		frames++
		c.lastRead = c.srv.now().UnixNano()
		c.onFrame(f)
	}
	if c.state == stateClosed {
		off = c.gc.InboundBuffered()
	}
	if off > 0 { // gnet's Discard(0) discards everything
		_, _ = c.gc.Discard(off)
	}
}

// protocolError closes the connection with the close code the parser chose.
func (c *conn) protocolError(err error) {
	var pe *wsproto.ProtocolError
	if errors.As(err, &pe) && pe.Status == ws.StatusMessageTooBig {
		limit := c.srv.settings().cfg.Limits.MaxMessageBytes
		if sup, ok := c.srv.warnAllowed(warnTooBig); ok {
			c.logger().Warn("message too big", "limitBytes", limit, sup)
		}
		c.close(closeTooBig, "BadRequest: message exceeds "+strconv.Itoa(limit)+" bytes")
		return
	}
	c.debug("websocket protocol error", "err", err)
	r := closeProtocol
	if pe != nil && pe.Status == ws.StatusInvalidFramePayloadData {
		r = closeInvalidData
	}
	c.close(r, "BadRequest: "+err.Error())
}

func (c *conn) onFrame(f wsproto.Frame) {
	limit := c.srv.settings().cfg.Limits.MaxMessageBytes
	switch f.OpCode {
	case ws.OpPing:
		buf := wsproto.AppendFrame(c.lp.scratch[:0], ws.OpPong, f.Payload)
		c.write(buf)
		c.lp.scratch = buf[:0]
	case ws.OpPong:
		// lastRead is already updated: that is all a pong is for.
	case ws.OpClose:
		code, reason, err := wsproto.ParseClosePayload(f.Payload)
		if err != nil {
			c.protocolError(err)
			return
		}
		c.reason = reason // for the upstream disconnected event (§5.2)
		if code == ws.StatusNoStatusRcvd {
			code = ws.StatusNormalClosure
		}
		c.state = stateClosed
		_, _ = c.gc.Write(wsproto.AppendCloseFrame(nil, code, ""))
		_ = c.gc.Close()
	case ws.OpContinuation:
		if c.frag == nil {
			c.protocolError(&wsproto.ProtocolError{Status: ws.StatusProtocolError, Reason: "continuation frame without a message to continue"})
			return
		}
		if len(c.frag)+len(f.Payload) > limit {
			c.close(closeTooBig, "BadRequest: message exceeds "+strconv.Itoa(limit)+" bytes")
			return
		}
		c.frag = append(c.frag, f.Payload...)
		if f.Fin {
			msg, op := c.frag, c.fragOp
			c.frag = nil
			c.onMessage(op, msg)
		}
	case ws.OpText, ws.OpBinary:
		if c.frag != nil {
			c.protocolError(&wsproto.ProtocolError{Status: ws.StatusProtocolError, Reason: "new message before the fragmented one ended"})
			return
		}
		if !f.Fin {
			c.frag = append(make([]byte, 0, 2*len(f.Payload)), f.Payload...)
			c.fragOp = f.OpCode
			return
		}
		c.onMessage(f.OpCode, f.Payload)
	}
}

// onMessage handles one complete data message. payload is borrowed from the
// inbound buffer: anything kept beyond this call is copied.
func (c *conn) onMessage(op ws.OpCode, payload []byte) {
	if op == ws.OpText && !utf8.Valid(payload) { // RFC 6455 §8.1
		c.debug("text frame is not valid UTF-8")
		c.close(closeInvalidData, "BadRequest: text frame is not valid UTF-8")
		return
	}
	if !c.kind.IsPubSub() {
		c.countReceived(len(payload))
		c.simpleMessage(op, payload)
		return
	}
	m := &c.lp.msg // decoded on the loop and not kept past this call
	var err error
	if c.kind.IsJSON() {
		err = wsproto.DecodeJSONMessage(m, payload)
	} else {
		err = wsproto.DecodeProtobufMessage(m, payload)
	}
	if err != nil {
		var me *wsproto.MessageError
		if errors.As(err, &me) {
			if !me.HasAckID {
				c.debug("invalid request without ackId dropped", "err", err)
				return
			}
			if c.recordAck(me.AckID) {
				c.sendAck(me.AckID, me.Name, me.Message)
			} else {
				c.sendDuplicate(me.AckID)
			}
			return
		}
		c.debug("protocol violation", "err", err)
		c.close(closeBadRequest, "BadRequest: invalid message format")
		return
	}
	if m.HasAckID && !c.recordAck(m.AckID) {
		c.sendDuplicate(m.AckID)
		return
	}
	switch m.Type {
	case wsproto.MsgSendToGroup, wsproto.MsgEvent, wsproto.MsgInvoke:
		c.countReceived(len(m.Data)) // data messages only: not joins, acks or pings
	}
	switch m.Type {
	case wsproto.MsgJoinGroup, wsproto.MsgLeaveGroup:
		if !c.rc.Can(registry.PermJoinLeaveGroup, m.Group) {
			verb := "join"
			if m.Type == wsproto.MsgLeaveGroup {
				verb = "leave"
			}
			c.fail(m, "Forbidden", "The connection has no permission to "+verb+" group '"+m.Group+"'.")
			return
		}
		if m.Type == wsproto.MsgJoinGroup {
			c.srv.reg.Join(c.rc, m.Group)
		} else {
			c.srv.reg.Leave(c.rc, m.Group)
		}
		c.ok(m)
	case wsproto.MsgSendToGroup:
		if !c.rc.Can(registry.PermSendToGroup, m.Group) {
			c.fail(m, "Forbidden", "The connection has no permission to send to group '"+m.Group+"'.")
			return
		}
		out := &outMessage{
			fromGroup:  true,
			group:      m.Group,
			fromUserID: c.rc.UserID,
			dataType:   m.DataType,
			data:       append([]byte(nil), m.Data...),
		}
		if m.NoEcho {
			out.skip = c.rc
		}
		c.srv.deliver(c.srv.reg.GroupMembers(c.rc.Hub, m.Group), out, c.lp)
		c.ok(m)
	case wsproto.MsgEvent:
		if !c.hub.up.HasUserEvent(m.Event) {
			// No handler: InvocationFailed with an ackId, else a dropped connection
			// (client-protocol.md §5.2, upstream-protocol.md §6.1).
			if sup, ok := c.srv.warnAllowed(warnNoHandler); ok {
				c.logger().Info("no event handler for user event", "event", m.Event, sup)
			}
			if m.HasAckID {
				c.fail(m, "InvocationFailed", "No event handler is registered for event '"+m.Event+"'.")
				return
			}
			c.close(closeSendEventFail, "SendEventFailed: no event handler is registered for event '"+m.Event+"'.")
			return
		}
		c.pubsubEvent(m)
	case wsproto.MsgInvoke:
		if !c.hub.up.HasUserEvent(m.Event) {
			c.writeInvokeResponse(m.InvocationID, upstream.EventResult{}, "InvocationFailed", "No event handler is registered for event '"+m.Event+"'.")
			return
		}
		c.invoke(m)
	case wsproto.MsgPing:
		var b []byte
		if c.kind.IsJSON() {
			b = wsproto.AppendPong(c.lp.body[:0])
		} else {
			b = wsproto.AppendProtobufPong(c.lp.body[:0])
		}
		c.writeMsg(b)
		c.lp.body = b[:0]
	case wsproto.MsgSequenceAck:
		if c.rel != nil { // non-reliable connections ignore it (§5.2)
			c.rel.ack(m.SequenceID)
		}
	case wsproto.MsgCancelInvocation:
		// Nothing is pending to cancel: frames are not read while an invoke is out.
	}
}

func (c *conn) recordAck(id uint64) bool {
	if r := c.rel; r != nil { // ackIds are per logical connection (§5.4)
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.acks.add(id)
	}
	if c.acks == nil {
		c.acks = &ackWindow{}
	}
	return c.acks.add(id)
}

func (c *conn) ok(m *wsproto.ClientMessage) {
	if m.HasAckID {
		c.sendAck(m.AckID, "", "")
	}
}

func (c *conn) fail(m *wsproto.ClientMessage, name, message string) {
	if m.HasAckID {
		c.sendAck(m.AckID, name, message)
		return
	}
	c.debug("request without ackId failed", "error", name, "detail", message)
}

func (c *conn) sendDuplicate(id uint64) {
	c.sendAck(id, "Duplicate", "Message with ack-id: "+strconv.FormatUint(id, 10)+" has been processed")
}

func (c *conn) sendAck(id uint64, name, message string) {
	var b []byte
	if c.kind.IsJSON() {
		b = wsproto.AppendAck(c.lp.body[:0], id, name, message)
	} else {
		b = wsproto.AppendProtobufAck(c.lp.body[:0], id, name, message)
	}
	c.writeMsg(b)
	c.lp.body = b[:0]
}
