package engine

import (
	"context"
	"errors"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/webpubsub/webpubsub/upstream"
	"github.com/webpubsub/webpubsub/wsproto"
)

// userEvent sends a blocking user event and pauses this connection's frames until
// the upstream answers (upstream-protocol.md §6.1: one at a time, in order). then
// runs on the connection's loop, only if the connection is still open.
func (c *conn) userEvent(name string, ct upstream.ContentType, body []byte, then func(upstream.EventResult)) {
	c.busy = true
	lp := c.lp
	c.sess.UserEvent(name, ct, append([]byte(nil), body...), func(res upstream.EventResult) {
		_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			c.busy = false
			if c.state != stateWS {
				return nil
			}
			then(res)
			if c.state == stateWS && c.gc.InboundBuffered() > 0 {
				c.onFrames()
			}
			return nil
		}))
	})
}

// simpleMessage forwards a plain WebSocket client's message as the `message` event
// and sends the upstream's reply back as one frame (client-protocol.md §3).
func (c *conn) simpleMessage(op ws.OpCode, payload []byte) {
	if !c.hub.up.HasUserEvent("message") {
		// Azure drops the client; it was observed closing with 1000 and no reason.
		if sup, ok := c.srv.warnAllowed(warnNoHandler); ok {
			c.logger().Info("no event handler for the message event: closing the simple client", sup)
		}
		c.close(closeNoHandler, "")
		return
	}
	ct := upstream.Text
	if op == ws.OpBinary {
		ct = upstream.Binary
	}
	c.userEvent("message", ct, payload, func(res upstream.EventResult) {
		if res.Err != nil {
			if sup, ok := c.srv.warnAllowed(warnEventFailed); ok {
				c.logger().Warn("message event failed", "err", res.Err, sup)
			}
			c.close(closeEventFailed, "")
			return
		}
		if !res.HasBody {
			return
		}
		op := ws.OpBinary
		if res.ContentType == upstream.Text || res.ContentType == upstream.JSON {
			op = ws.OpText
		}
		frame := wsproto.AppendFrame(c.lp.scratch[:0], op, res.Body)
		c.write(frame)
		c.lp.scratch = frame[:0]
		if c.state == stateWS {
			c.countDelivered(len(res.Body))
		}
	})
}

// eventPayload maps a PubSub message's data to the upstream body (§4.2).
func eventPayload(m *wsproto.ClientMessage) (upstream.ContentType, []byte) {
	switch m.DataType {
	case wsproto.DataText:
		return upstream.Text, m.Data
	case wsproto.DataBinary:
		return upstream.Binary, m.Data
	case wsproto.DataProtobuf:
		return upstream.Protobuf, m.Data
	}
	return upstream.JSON, m.Data
}

// replyData maps an upstream reply to a JSON-subprotocol server message; ok is false
// when the reply cannot be one (another media type, or JSON that does not parse).
func replyData(res upstream.EventResult) (dt wsproto.DataType, data []byte, ok bool) {
	switch res.ContentType {
	case upstream.Text:
		return wsproto.DataText, res.Body, true
	case upstream.JSON:
		return wsproto.DataJSON, res.Body, res.ValidJSON
	case upstream.Binary:
		return wsproto.DataBinary, res.Body, true
	}
	return 0, nil, false
}

// replyDataFor is replyData for a connection of kind k: protobuf connections also
// take an application/x-protobuf reply (upstream-protocol.md §6.2).
func replyDataFor(k wsproto.Kind, res upstream.EventResult) (wsproto.DataType, []byte, bool) {
	if res.ContentType == upstream.Protobuf && k.IsPubSub() && !k.IsJSON() {
		return wsproto.DataProtobuf, res.Body, true
	}
	return replyData(res)
}

// pubsubEvent sends an `event` message upstream; the reply (if any) goes back as a
// server message before the ack (upstream-protocol.md §6.2, §6.3).
func (c *conn) pubsubEvent(m *wsproto.ClientMessage) {
	ackID, hasAck, name := m.AckID, m.HasAckID, m.Event
	ct, body := eventPayload(m)
	c.userEvent(name, ct, body, func(res upstream.EventResult) {
		dt, data, ok := replyDataFor(c.kind, res)
		if res.Err == nil && res.HasBody && !ok {
			res.Err = errors.New("engine: the event handler replied with a body that is not text, valid JSON or binary")
		}
		if res.Err != nil {
			if sup, ok := c.srv.warnAllowed(warnEventFailed); ok {
				c.logger().Warn("user event failed", "event", name, "err", res.Err, sup)
			}
			if hasAck {
				c.sendAck(ackID, "InvocationFailed", "The event handler returned a failure.")
				return
			}
			c.close(closeSendEventFail, "SendEventFailed: the event handler failed.")
			return
		}
		if res.HasBody {
			m := &outMessage{dataType: dt, data: data}
			if c.rel != nil {
				kind := c.kind
				if c.rel.send(func(seq uint64) []byte { return m.sequencedFrame(kind, seq) }, c.lp, 0) {
					c.countDelivered(len(data))
				}
			} else {
				m.encode(c.kind.IsJSON(), !c.kind.IsJSON(), false)
				if c.kind.IsJSON() {
					c.write(m.pubsubFrame)
				} else {
					c.write(m.protoFrame)
				}
				if c.state == stateWS {
					c.countDelivered(len(data))
				}
			}
		}
		if hasAck {
			c.sendAck(ackID, "", "")
		}
	})
}

// invoke sends an `invoke` message's event upstream and answers with invokeResponse
// (client-protocol.md §5.6).
func (c *conn) invoke(m *wsproto.ClientMessage) {
	id, name := m.InvocationID, m.Event
	ct, body := upstream.Text, []byte(nil)
	if m.HasData {
		ct, body = eventPayload(m)
	}
	c.userEvent(name, ct, body, func(res upstream.EventResult) {
		if _, _, ok := replyData(res); res.Err == nil && res.HasBody && !ok {
			res.Err = errors.New("engine: the event handler replied with a body that is not text, valid JSON or binary")
		}
		if res.Err != nil {
			if sup, ok := c.srv.warnAllowed(warnEventFailed); ok {
				c.logger().Warn("invoke failed", "event", name, "err", res.Err, sup)
			}
			c.writeInvokeResponse(id, res, invokeErrorName(res.Err), "The event handler returned a failure.")
			return
		}
		c.writeInvokeResponse(id, res, "", "")
	})
}

// invokeErrorName maps an upstream failure to an invokeResponse error name (§5.6).
func invokeErrorName(err error) string {
	var se *upstream.StatusError
	if errors.As(err, &se) {
		switch {
		case se.Status == 401 || se.Status == 403:
			return "Forbidden"
		case se.Status >= 400 && se.Status < 500:
			return "BadRequest"
		}
	}
	if errors.Is(err, upstream.ErrTimeout) {
		return "Timeout"
	}
	return "InternalServerError"
}

// writeInvokeResponse sends {"type":"invokeResponse",...}: success with the reply's
// data when errName is "", else the error.
func (c *conn) writeInvokeResponse(id string, res upstream.EventResult, errName, errMessage string) {
	b := append(c.lp.body[:0], `{"type":"invokeResponse","invocationId":`...)
	b = appendJSONString(b, id)
	if errName != "" {
		b = append(b, `,"success":false,"error":{"name":`...)
		b = appendJSONString(b, errName)
		b = append(b, `,"message":`...)
		b = appendJSONString(b, errMessage)
		b = append(b, `}}`...)
	} else {
		b = append(b, `,"success":true`...)
		if res.HasBody {
			dt, data, _ := replyData(res)
			// Borrow the server-message encoder for the dataType/data pair: it ends
			// with them, after a fixed prefix.
			msg := wsproto.AppendServerMessage(nil, dt, data, 0)
			const prefix = `{"type":"message","from":"server"`
			b = append(b, msg[len(prefix):len(msg)-1]...)
		}
		b = append(b, '}')
	}
	c.writeMsg(b) // invoke exists only in the JSON subprotocols
	c.lp.body = b[:0]
}
