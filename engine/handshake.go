package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/webpubsub/webpubsub/registry"
	"github.com/webpubsub/webpubsub/upstream"
	"github.com/webpubsub/webpubsub/wsproto"
)

// handshake validates a client upgrade request (client-protocol.md §1, §2) and
// either answers with the documented HTTP error or upgrades the connection, sends
// the `connected` system message first (PubSub clients) and registers it.
// head is the complete request head; it runs on the connection's loop.
func (c *conn) handshake(head []byte, h *fasthttp.RequestHeader, path, rawQuery string) {
	s := c.srv
	st := s.settings()
	reject := func(status int, msg string, attrs ...any) {
		kind, level := warnHandshake, slog.LevelInfo
		switch status {
		case 401:
			kind = warnUnauthorized
		case 429:
			kind, level = warnConnLimit, slog.LevelWarn
		case 503:
			kind, level = warnBusy, slog.LevelWarn
		}
		if sup, ok := s.warnAllowed(kind); ok {
			attrs = append(attrs, "status", status, "why", msg, "remote", c.remote(), sup)
			s.log.Log(context.Background(), level, "handshake rejected", attrs...)
		}
		c.lp.rejectHandshake(status)
		c.replyStatus(status, msg)
	}
	if s.refusing.Load() { // during the drain delay handshakes are still accepted (drain.go)
		reject(503, "server is shutting down")
		return
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		reject(400, "malformed query string")
		return
	}
	hubName, ok := hubFromPath(path, q)
	if !ok {
		reject(404, "unknown client endpoint "+path)
		return
	}
	if !wsproto.ValidHubName(hubName) {
		reject(400, "invalid hub name")
		return
	}
	if !strings.EqualFold(string(h.Method()), "GET") || !headerHasToken(h.Peek("Upgrade"), "websocket") {
		reject(400, "not a WebSocket upgrade request")
		return
	}
	hub := st.hub(hubName)
	if id := q.Get("awps_connection_id"); id != "" {
		// A reliable-recovery request (§1.3, §7.5): the access token is ignored.
		c.recoverConn(head, h, hubName, id, q.Get("awps_reconnection_token"))
		return
	}
	token := q.Get("access_token")
	if token == "" {
		if auth := string(h.Peek("Authorization")); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			token = strings.TrimSpace(auth[7:])
		}
	}
	var claims ClientClaims
	if token == "" {
		if !hub.anonymous {
			reject(401, "access token required", "hub", hubName)
			return
		}
	} else {
		claims, err = st.verifier.VerifyClient(token, hubName, s.cfg.BasePath, s.now())
		switch {
		case errors.Is(err, ErrTokenBadGroup):
			reject(400, "invalid group in access token", "hub", hubName, "err", err)
			return
		case err != nil:
			reject(401, "invalid access token", "hub", hubName, "err", err)
			return
		}
	}
	if limit := st.cfg.Limits.MaxConnections; limit > 0 && s.wsConns.Load() >= int64(limit) {
		reject(429, "connection limit reached")
		return
	}
	var offered []string
	for _, v := range h.PeekAll("Sec-WebSocket-Protocol") {
		offered = wsproto.SplitProtocols(offered, string(v))
	}
	p := pendingConn{
		head: head, hubName: hubName, hub: hub, hubGen: st.gen, offered: offered,
		userID: claims.UserID, roles: claims.Roles, groups: claims.Groups,
		id: newConnectionID(),
	}
	if !hub.up.HasConnect() {
		if hub.up != nil {
			p.sess = s.up.NewSession(upstream.SessionInfo{Hub: p.hubName, HubKey: hub.up, ConnectionID: p.id, UserID: p.userID})
		}
		c.upgrade(&p, "")
		return
	}
	// The connect event is blocking (upstream-protocol.md §4): the handshake waits
	// off the loop and resumes on it. Waiting handshakes are bounded.
	if s.connecting.Add(1) > int64(s.cfg.Upstream.MaxPendingConnects) {
		s.connecting.Add(-1)
		reject(503, "too many connections waiting for the connect event handler")
		return
	}
	p.sess = s.up.NewSession(upstream.SessionInfo{Hub: p.hubName, HubKey: hub.up, ConnectionID: p.id, UserID: p.userID})
	req := upstream.ConnectRequest{
		Claims:       claims.ConnectClaims(),
		Query:        connectQuery(q),
		Headers:      connectHeaders(head),
		Subprotocols: offered,
	}
	if token == "" {
		req.Claims = map[string][]string{}
	}
	c.state = stateConnecting
	lp := c.lp
	p.sess.Connect(req, func(res upstream.ConnectResult) {
		_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			s.connecting.Add(-1)
			c.finishConnect(&p, res)
			return nil
		}))
	})
}

// pendingConn is what a handshake has decided before the upgrade: kept across the
// connect event's round trip.
type pendingConn struct {
	head    []byte
	hubName string
	hub     *hubConfig
	hubGen  uint32 // settings.gen hub came from
	offered []string
	id      string
	userID  string
	roles   []string
	groups  []string
	sess    *upstream.Session
}

// finishConnect applies the connect event's result (upstream-protocol.md §4.2, §4.3)
// on the connection's loop and completes or rejects the upgrade.
func (c *conn) finishConnect(p *pendingConn, res upstream.ConnectResult) {
	if c.state != stateConnecting {
		return // the client went away while the upstream decided; nothing was sent
	}
	c.state = stateHTTP
	log := c.srv.log.With(slog.String("hub", p.hubName), slog.String("connectionId", p.id))
	if res.Err != nil {
		var rej *upstream.RejectError
		if errors.As(res.Err, &rej) {
			log.Debug("connect rejected by the event handler", "status", rej.Status)
			c.lp.rejectHandshake(rej.Status)
			c.replyStatus(rej.Status, string(rej.Body))
			return
		}
		c.srv.limited(log, warnEventFailed, slog.LevelWarn, "connect event failed", slog.Any("err", res.Err))
		c.lp.rejectHandshake(500)
		c.replyStatus(500, "the connect event handler failed")
		return
	}
	if res.UserID != nil {
		p.userID = *res.UserID
	}
	if len(res.Groups) > 0 {
		p.groups = res.Groups
	}
	if res.HasRoles {
		p.roles = res.Roles
	}
	if res.Subprotocol != "" && !slices.Contains(p.offered, res.Subprotocol) {
		log.Warn("connect event handler chose a subprotocol the client did not offer", "subprotocol", res.Subprotocol)
		c.lp.rejectHandshake(500)
		c.replyStatus(500, "the connect event handler chose a subprotocol the client did not offer")
		return
	}
	p.sess.SetUserID(p.userID)
	c.upgrade(p, res.Subprotocol)
}

// upgrade completes the WebSocket handshake, registers the connection, sends the
// `connected` system message first (PubSub clients) and the upstream connected event.
// chosen is the subprotocol the connect handler picked ("" = the server chooses).
func (c *conn) upgrade(p *pendingConn, chosen string) {
	s := c.srv
	selected, kind := chosen, wsproto.KindOf(chosen)
	if chosen == "" {
		selected, kind = wsproto.SelectProtocol(p.offered)
	}
	resp, err := wsproto.AppendUpgradeResponse(nil, p.head, selected)
	if err != nil {
		c.failUpgrade("handshake rejected", resp, err)
		return
	}
	// Hub and user id alias the request URI and the decoded token; clone them so an
	// idle connection does not pin ~1 KB of handshake buffers (measured with pprof).
	rc := &registry.Conn{ID: p.id, Hub: strings.Clone(p.hubName), UserID: strings.Clone(p.userID), Handle: c}
	rc.SetRoles(p.roles)
	if err := s.reg.Add(rc); err != nil {
		s.log.Error("could not register connection", "err", err)
		c.lp.rejectHandshake(500)
		c.replyStatus(500, "could not register connection")
		return
	}
	for _, g := range p.groups {
		if wsproto.ValidGroupName(g) {
			s.reg.Join(rc, g)
		}
	}
	c.rc, c.kind, c.hub, c.hubGen, c.sess = rc, kind, p.hub, p.hubGen, p.sess
	c.hubIdx = s.labels.index(p.hubName)
	token := ""
	if kind.IsReliable() {
		c.rel = newReliable(c)
		token = c.rel.token
		s.reliables.Store(c.rel, struct{}{})
	}
	now := s.now().UnixNano()
	c.lastRead, c.lastPing = now, now
	c.state = stateWS
	s.wsConns.Add(1)
	hc := &c.lp.stats.hubs[c.hubIdx]
	hc.opened++
	hc.conns[protocolIndex(kind)]++
	if kind.IsPubSub() {
		resp = wsproto.AppendFrame(resp, frameOp(kind), appendConnected(kind, nil, p.userID, p.id, token))
	}
	_, _ = c.gc.Write(resp)
	if c.sess != nil {
		if selected != "" {
			c.sess.SetSubprotocol(selected)
		}
		if c.hub.up.HasConnected() {
			c.sess.Connected()
		}
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		c.logger().Debug("connected", "protocol", selected, "groups", len(p.groups))
	}
}

// failUpgrade answers an upgrade request that wsproto refused with the error
// response it wrote (resp), counts and logs it under that response's status, and
// closes. Runs on c's loop.
func (c *conn) failUpgrade(msg string, resp []byte, err error) {
	status := responseStatus(resp)
	if sup, ok := c.srv.warnAllowed(warnHandshake); ok {
		c.srv.log.Info(msg, "status", status, "why", err.Error(), "remote", c.remote(), sup)
	}
	c.lp.rejectHandshake(status)
	_, _ = c.gc.Write(resp)
	c.state = stateClosed
	_ = c.gc.Close()
}

// responseStatus is the status code of an HTTP response written by wsproto, 0 when
// it cannot be read.
func responseStatus(resp []byte) int {
	// "HTTP/1.1 400 Bad Request"
	if len(resp) < 12 || !bytes.HasPrefix(resp, []byte("HTTP/1.")) {
		return 0
	}
	n, err := strconv.Atoi(string(resp[9:12]))
	if err != nil {
		return 0
	}
	return n
}

// connectQuery is the client URL's query without the access token (§4.1).
func connectQuery(q url.Values) map[string][]string {
	out := make(map[string][]string, len(q))
	for k, v := range q {
		if k != "access_token" {
			out[k] = v
		}
	}
	return out
}

// connectHeaders is the handshake's headers grouped by name in their original
// spelling, without Authorization (§4.1). It reads the raw head: the parsed header
// has its names normalised.
func connectHeaders(head []byte) map[string][]string {
	out := make(map[string][]string)
	lines := strings.Split(string(head), "\r\n")
	for _, line := range lines[1:] { // the request line first
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.EqualFold(name, "Authorization") {
			continue
		}
		out[name] = append(out[name], strings.TrimSpace(value))
	}
	return out
}

// hubFromPath extracts the hub from /client/hubs/{hub} (path wins) or /client?hub=.
func hubFromPath(path string, q url.Values) (string, bool) {
	rest := strings.TrimPrefix(path, "/client")
	switch {
	case rest == "" || rest == "/":
		return q.Get("hub"), true
	case strings.HasPrefix(rest, "/hubs/"):
		seg := strings.TrimSuffix(rest[len("/hubs/"):], "/")
		if seg == "" || strings.Contains(seg, "/") {
			return "", false
		}
		hub, err := url.PathUnescape(seg)
		if err != nil {
			return "", true // invalid: rejected as a bad hub name
		}
		return hub, true
	}
	return "", false
}

// headerHasToken reports whether a comma-separated header value contains tok.
func headerHasToken(v []byte, tok string) bool {
	for _, part := range strings.Split(string(v), ",") {
		if strings.EqualFold(strings.TrimSpace(part), tok) {
			return true
		}
	}
	return false
}

// newConnectionID returns 22 characters of URL-safe base64 from 16 CSPRNG bytes
// (client-protocol.md §5.3.3).
func newConnectionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// recoverConn resumes the reliable logical connection id on this socket when the
// token matches and the recovery window is open (client-protocol.md §7.5).
func (c *conn) recoverConn(head []byte, h *fasthttp.RequestHeader, hubName, id, token string) {
	rc := c.srv.reg.Conn(hubName, id)
	if rc == nil || rc.Closing() {
		c.refuseRecovery(head, h, hubName)
		return
	}
	a := rc.Handle.(*conn)
	if a.rel == nil || !a.rel.tokenMatches(token) {
		c.refuseRecovery(head, h, hubName)
		return
	}
	resp, err := wsproto.AppendUpgradeResponse(nil, head, a.kind.String())
	if err != nil {
		c.failUpgrade("recovery handshake rejected", resp, err)
		return
	}
	out, ok := a.rel.recover(c, resp)
	if !ok {
		c.refuseRecovery(head, h, hubName)
		return
	}
	_, _ = c.gc.Write(out)
	c.debug("recovered")
}

// refuseRecovery upgrades a recovery request and closes it with 1008 so the SDK
// stops recovering and opens a new connection (client-protocol.md §1.7, §7.5).
func (c *conn) refuseRecovery(head []byte, h *fasthttp.RequestHeader, hubName string) {
	var offered []string
	for _, v := range h.PeekAll("Sec-WebSocket-Protocol") {
		offered = wsproto.SplitProtocols(offered, string(v))
	}
	selected, kind := wsproto.SelectProtocol(offered)
	resp, err := wsproto.AppendUpgradeResponse(nil, head, selected)
	if err == nil {
		if kind.IsPubSub() {
			resp = wsproto.AppendFrame(resp, frameOp(kind), appendDisconnected(kind, nil, "BadRequest: the connection cannot be recovered"))
		}
		resp = wsproto.AppendCloseFrame(resp, ws.StatusPolicyViolation, "BadRequest")
	}
	c.debug("recovery refused", "hub", hubName)
	_, _ = c.gc.Write(resp)
	c.state = stateClosed
	_ = c.gc.Close()
}
