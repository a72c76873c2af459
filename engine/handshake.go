package engine

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/url"
	"strings"

	"github.com/gobwas/ws"
	"github.com/valyala/fasthttp"

	"github.com/webpubsub/webpubsub/registry"
	"github.com/webpubsub/webpubsub/wsproto"
)

// handshake validates a client upgrade request (client-protocol.md §1, §2) and
// either answers with the documented HTTP error or upgrades the connection, sends
// the `connected` system message first (PubSub clients) and registers it.
// head is the complete request head; it runs on the connection's loop.
func (c *conn) handshake(head []byte, h *fasthttp.RequestHeader, path, rawQuery string) {
	s := c.srv
	reject := func(status int, msg string, attrs ...any) {
		s.log.Info("handshake rejected", append([]any{"status", status, "why", msg, "remote", c.remote()}, attrs...)...)
		c.replyStatus(status, msg)
	}
	if s.draining.Load() {
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
	hub := s.hub(hubName)
	if q.Get("awps_connection_id") != "" {
		// A reliable-recovery request (§1.3, §7.5). The token is ignored; this server
		// keeps no logical connections yet (issue 5), so recovery is refused the way
		// the spec says: complete the upgrade, then close with 1008.
		c.refuseRecovery(head, h, hubName)
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
		claims, err = s.verifier.VerifyClient(token, hubName, s.cfg.BasePath, s.now())
		switch {
		case errors.Is(err, ErrTokenBadGroup):
			reject(400, "invalid group in access token", "hub", hubName, "err", err)
			return
		case err != nil:
			reject(401, "invalid access token", "hub", hubName, "err", err)
			return
		}
	}
	if limit := s.cfg.Limits.MaxConnections; limit > 0 && s.wsConns.Load() >= int64(limit) {
		reject(429, "connection limit reached")
		return
	}
	var offered []string
	for _, v := range h.PeekAll("Sec-WebSocket-Protocol") {
		offered = wsproto.SplitProtocols(offered, string(v))
	}
	selected, kind := wsproto.SelectProtocol(offered)
	if kind == wsproto.KindProtobuf || kind == wsproto.KindProtobufReliable {
		// TODO(issue 5): protobuf subprotocols. Until then pick a JSON one the client
		// also offered, or refuse clearly rather than speak the wrong protocol.
		selected, kind = "", wsproto.KindSimple
		for _, p := range offered {
			if k := wsproto.KindOf(p); k.IsJSON() {
				selected, kind = p, k
				break
			}
		}
		if selected == "" {
			reject(400, "protobuf subprotocols are not supported yet")
			return
		}
	}
	resp, err := wsproto.AppendUpgradeResponse(nil, head, selected)
	if err != nil {
		s.log.Info("handshake rejected", "why", err.Error(), "remote", c.remote())
		_, _ = c.gc.Write(resp)
		c.state = stateClosed
		_ = c.gc.Close()
		return
	}

	id := newConnectionID()
	// Hub and user id alias the request URI and the decoded token; clone them so an
	// idle connection does not pin ~1 KB of handshake buffers (measured with pprof).
	rc := &registry.Conn{ID: id, Hub: strings.Clone(hubName), UserID: strings.Clone(claims.UserID), Handle: c}
	rc.SetRoles(claims.Roles)
	if err := s.reg.Add(rc); err != nil {
		reject(500, "could not register connection", "err", err)
		return
	}
	for _, g := range claims.Groups {
		s.reg.Join(rc, g)
	}
	c.rc, c.kind, c.hub = rc, kind, hub
	now := s.now().UnixNano()
	c.lastRead, c.lastPing = now, now
	c.state = stateWS
	s.wsConns.Add(1)
	if kind.IsPubSub() {
		resp = wsproto.AppendFrame(resp, ws.OpText, wsproto.AppendConnected(nil, claims.UserID, claims.HasUser, id, ""))
	}
	_, _ = c.gc.Write(resp)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		c.logger().Debug("connected", "protocol", selected, "groups", len(claims.Groups))
	}
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
			resp = wsproto.AppendFrame(resp, ws.OpText, wsproto.AppendDisconnected(nil, "BadRequest: the connection cannot be recovered"))
		}
		resp = wsproto.AppendCloseFrame(resp, ws.StatusPolicyViolation, "BadRequest")
	}
	c.srv.log.Info("recovery refused", "hub", hubName, "remote", c.remote())
	_, _ = c.gc.Write(resp)
	c.state = stateClosed
	_ = c.gc.Close()
}
