package engine

import (
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bytedance/sonic"
	"github.com/valyala/fasthttp"

	"github.com/webpubsub/webpubsub/registry"
	"github.com/webpubsub/webpubsub/wsproto"
)

// restRoute is one matched REST operation (rest-api.md §3).
type restRoute struct {
	op    string // operation name, for logs
	hub   string
	user  string
	conn  string
	group string
	perm  string
}

// handleREST is the fasthttp RequestHandler of the data-plane API. It runs on the
// worker pool. Validation order (rest-api.md §4): route → auth → names → body.
func (s *Server) handleREST(ctx *fasthttp.RequestCtx) {
	rawURI := string(ctx.Request.Header.RequestURI())
	escPath, _, _ := strings.Cut(rawURI, "?")
	path := strings.TrimPrefix(escPath, s.cfg.BasePath)
	method := string(ctx.Method())

	if path == "/api/health" || path == "/api/health/" {
		if method != "GET" && method != "HEAD" {
			setError(ctx, 405, "Error.MethodNotAllowed", "use GET or HEAD")
			return
		}
		if s.draining.Load() {
			ctx.SetStatusCode(503)
			return
		}
		ctx.SetStatusCode(200)
		return
	}

	rt, allowed, found := matchRoute(path, method)
	if !found {
		s.log.Info("rest: unknown route", "method", method, "path", escPath)
		setError(ctx, 404, "Error.NotFound", "no route for "+method+" "+escPath)
		return
	}
	if !allowed {
		setError(ctx, 405, "Error.MethodNotAllowed", "method "+method+" is not allowed on "+escPath)
		return
	}
	auth := string(ctx.Request.Header.Peek("Authorization"))
	if len(auth) < 7 || !strings.EqualFold(auth[:7], "bearer ") {
		s.log.Info("rest: missing bearer token", "op", rt.op)
		setError(ctx, 401, "Error.Unauthorized", "missing Authorization: Bearer token")
		return
	}
	if err := s.verifier.VerifyREST(strings.TrimSpace(auth[7:]), escPath, s.now()); err != nil {
		s.log.Info("rest: bad bearer token", "op", rt.op, "err", err)
		setError(ctx, 401, "Error.Unauthorized", "invalid bearer token")
		return
	}
	if !wsproto.ValidHubName(rt.hub) {
		setError(ctx, 400, "Error.BadRequest", "invalid hub name")
		return
	}
	if routeHasGroup(rt.op) && !wsproto.ValidGroupName(rt.group) {
		setError(ctx, 400, "Error.BadRequest", "invalid group name: it must be 1 to 1024 characters and not only whitespace")
		return
	}
	args := ctx.QueryArgs()
	if v := args.Peek("messageTtlSeconds"); v != nil {
		ttl, err := strconv.Atoi(string(v))
		if err != nil || ttl < 0 || ttl > 300 {
			setError(ctx, 400, "Error.BadRequest", "messageTtlSeconds must be an integer from 0 to 300")
			return
		}
	}
	if len(args.Peek("filter")) > 0 {
		// TODO(issue 6): OData filters.
		setError(ctx, 501, "Error.NotImplemented", "the filter parameter is not supported yet")
		return
	}
	excluded := excludedSet(args)
	reason := string(args.Peek("reason"))
	hub := rt.hub

	switch rt.op {
	case "SendToAll", "SendToUser", "SendToConnection", "SendToGroup":
		m, ok := s.messageFromBody(ctx)
		if !ok {
			return
		}
		m.excluded = excluded
		var targets []*registry.Conn
		switch rt.op {
		case "SendToAll":
			targets = s.reg.HubConns(hub)
		case "SendToUser":
			m.excluded = nil // not in the contract (rest-api.md §3.3)
			targets = s.reg.UserConns(hub, rt.user)
		case "SendToConnection":
			m.excluded = nil
			if rc := s.reg.Conn(hub, rt.conn); rc != nil {
				targets = []*registry.Conn{rc}
			}
		case "SendToGroup":
			m.fromGroup, m.group = true, rt.group
			targets = s.reg.GroupMembers(hub, rt.group)
		}
		// Deliver after the 202 is queued: the response then reaches the app before
		// the loops are busy with this fan-out, and per-loop task order still keeps
		// sequential sends in order.
		afterResponse(ctx, func() {
			n := s.deliver(targets, m, nil)
			s.log.Debug("rest: send", "op", rt.op, "hub", hub, "recipients", n, "bytes", len(m.data))
		})
		ctx.SetStatusCode(202)
	case "CloseAllConnections":
		s.closeConns(s.reg.HubConns(hub), excluded, reason)
		ctx.SetStatusCode(204)
	case "CloseUserConnections":
		s.closeConns(s.reg.UserConns(hub, rt.user), excluded, reason)
		ctx.SetStatusCode(204)
	case "CloseGroupConnections":
		s.closeConns(s.reg.GroupMembers(hub, rt.group), excluded, reason)
		ctx.SetStatusCode(204)
	case "CloseConnection":
		if rc := s.reg.Conn(hub, rt.conn); rc != nil {
			s.closeConns([]*registry.Conn{rc}, nil, reason)
		}
		ctx.SetStatusCode(204)
	case "ConnectionExists":
		existsStatus(ctx, s.reg.Conn(hub, rt.conn) != nil)
	case "UserExists":
		existsStatus(ctx, s.reg.UserExists(hub, rt.user))
	case "GroupExists":
		existsStatus(ctx, s.reg.GroupExists(hub, rt.group))
	case "AddConnectionToGroup":
		rc := s.reg.Conn(hub, rt.conn)
		if rc == nil {
			setError(ctx, 404, "Error.NotFound", "Connection id '"+rt.conn+"' doesn't exist")
			return
		}
		s.reg.Join(rc, rt.group)
		ctx.SetStatusCode(200)
	case "RemoveConnectionFromGroup":
		if rc := s.reg.Conn(hub, rt.conn); rc != nil {
			s.reg.Leave(rc, rt.group)
		}
		ctx.SetStatusCode(204)
	case "RemoveConnectionFromAllGroups":
		if rc := s.reg.Conn(hub, rt.conn); rc != nil {
			s.reg.LeaveAll(rc)
		}
		ctx.SetStatusCode(204)
	case "AddUserToGroup":
		for _, rc := range s.reg.UserConns(hub, rt.user) {
			s.reg.Join(rc, rt.group)
		}
		ctx.SetStatusCode(200)
	case "RemoveUserFromGroup":
		for _, rc := range s.reg.UserConns(hub, rt.user) {
			s.reg.Leave(rc, rt.group)
		}
		ctx.SetStatusCode(204)
	case "RemoveUserFromAllGroups":
		for _, rc := range s.reg.UserConns(hub, rt.user) {
			s.reg.LeaveAll(rc)
		}
		ctx.SetStatusCode(204)
	case "GrantPermission", "RevokePermission", "CheckPermission":
		s.permission(ctx, rt)
	case "GenerateClientToken":
		s.generateToken(ctx, rt)
	default:
		// TODO(issue 6): list connections in a group and the filtered bulk group operations.
		setError(ctx, 501, "Error.NotImplemented", "operation "+rt.op+" is not supported yet")
	}
}

func routeHasGroup(op string) bool {
	switch op {
	case "SendToGroup", "CloseGroupConnections", "GroupExists", "AddConnectionToGroup",
		"RemoveConnectionFromGroup", "AddUserToGroup", "RemoveUserFromGroup", "ListConnectionsInGroup":
		return true
	}
	return false
}

func existsStatus(ctx *fasthttp.RequestCtx, ok bool) {
	if ok {
		ctx.SetStatusCode(200)
	} else {
		ctx.SetStatusCode(404)
	}
}

func excludedSet(args *fasthttp.Args) map[string]struct{} {
	vals := args.PeekMulti("excluded")
	if len(vals) == 0 {
		return nil
	}
	set := make(map[string]struct{}, len(vals))
	for _, v := range vals {
		set[string(v)] = struct{}{}
	}
	return set
}

// messageFromBody validates a send body (rest-api.md §1.4) and answers 400 itself
// when it is unusable.
func (s *Server) messageFromBody(ctx *fasthttp.RequestCtx) (*outMessage, bool) {
	ct := string(ctx.Request.Header.ContentType())
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		setError(ctx, 400, "Error.BadRequest", "Content-Type must be text/plain, application/json or application/octet-stream")
		return nil, false
	}
	body := append([]byte(nil), ctx.Request.Body()...)
	m := &outMessage{data: body}
	switch strings.ToLower(mt) {
	case "text/plain":
		if !utf8.Valid(body) {
			setError(ctx, 400, "Error.BadRequest", "text/plain body is not valid UTF-8")
			return nil, false
		}
		m.dataType = wsproto.DataText
	case "application/json":
		if len(body) == 0 || !sonic.Valid(body) {
			setError(ctx, 400, "Error.BadRequest", "application/json body is not valid JSON")
			return nil, false
		}
		m.dataType = wsproto.DataJSON
	case "application/octet-stream":
		m.dataType = wsproto.DataBinary
	default:
		setError(ctx, 400, "Error.BadRequest", "unsupported Content-Type "+mt+": use text/plain, application/json or application/octet-stream")
		return nil, false
	}
	return m, true
}

// matchRoute matches an escaped path against the operation table; segments are
// split before they are percent-decoded (rest-api.md §1.1).
func matchRoute(escPath, method string) (rt restRoute, allowed, found bool) {
	p := strings.TrimSuffix(escPath, "/")
	if !strings.HasPrefix(p, "/api/hubs/") {
		return rt, false, false
	}
	segs := strings.Split(p[len("/api/hubs/"):], "/")
	for i, sg := range segs {
		d, err := url.PathUnescape(sg)
		if err != nil || d == "" {
			return rt, false, false
		}
		segs[i] = d
	}
	rt.hub = segs[0]
	r := segs[1:]
	want := ""
	switch {
	case len(r) == 1 && r[0] == ":send":
		rt.op, want = "SendToAll", "POST"
	case len(r) == 1 && r[0] == ":closeConnections":
		rt.op, want = "CloseAllConnections", "POST"
	case len(r) == 1 && r[0] == ":addToGroups":
		rt.op, want = "AddConnectionsToGroups", "POST"
	case len(r) == 1 && r[0] == ":removeFromGroups":
		rt.op, want = "RemoveConnectionsFromGroups", "POST"
	case len(r) == 1 && r[0] == ":generateToken":
		rt.op, want = "GenerateClientToken", "POST"
	case len(r) == 2 && r[0] == "users":
		rt.user, rt.op, want = r[1], "UserExists", "HEAD"
	case len(r) == 3 && r[0] == "users" && r[2] == ":send":
		rt.user, rt.op, want = r[1], "SendToUser", "POST"
	case len(r) == 3 && r[0] == "users" && r[2] == ":closeConnections":
		rt.user, rt.op, want = r[1], "CloseUserConnections", "POST"
	case len(r) == 3 && r[0] == "users" && r[2] == "groups":
		rt.user, rt.op, want = r[1], "RemoveUserFromAllGroups", "DELETE"
	case len(r) == 4 && r[0] == "users" && r[2] == "groups":
		rt.user, rt.group = r[1], r[3]
		switch method {
		case "PUT":
			rt.op, want = "AddUserToGroup", "PUT"
		default:
			rt.op, want = "RemoveUserFromGroup", "DELETE"
		}
	case len(r) == 2 && r[0] == "connections":
		rt.conn = r[1]
		switch method {
		case "DELETE":
			rt.op, want = "CloseConnection", "DELETE"
		default:
			rt.op, want = "ConnectionExists", "HEAD"
		}
	case len(r) == 3 && r[0] == "connections" && r[2] == ":send":
		rt.conn, rt.op, want = r[1], "SendToConnection", "POST"
	case len(r) == 3 && r[0] == "connections" && r[2] == "groups":
		rt.conn, rt.op, want = r[1], "RemoveConnectionFromAllGroups", "DELETE"
	case len(r) == 2 && r[0] == "groups":
		rt.group, rt.op, want = r[1], "GroupExists", "HEAD"
	case len(r) == 3 && r[0] == "groups" && r[2] == ":send":
		rt.group, rt.op, want = r[1], "SendToGroup", "POST"
	case len(r) == 3 && r[0] == "groups" && r[2] == ":closeConnections":
		rt.group, rt.op, want = r[1], "CloseGroupConnections", "POST"
	case len(r) == 3 && r[0] == "groups" && r[2] == "connections":
		rt.group, rt.op, want = r[1], "ListConnectionsInGroup", "GET"
	case len(r) == 4 && r[0] == "groups" && r[2] == "connections":
		rt.group, rt.conn = r[1], r[3]
		switch method {
		case "PUT":
			rt.op, want = "AddConnectionToGroup", "PUT"
		default:
			rt.op, want = "RemoveConnectionFromGroup", "DELETE"
		}
	case len(r) == 4 && r[0] == "permissions" && r[2] == "connections":
		rt.perm, rt.conn = r[1], r[3]
		switch method {
		case "PUT":
			rt.op, want = "GrantPermission", "PUT"
		case "HEAD":
			rt.op, want = "CheckPermission", "HEAD"
		default:
			rt.op, want = "RevokePermission", "DELETE"
		}
	default:
		return rt, false, false
	}
	return rt, method == want, true
}

// permission grants, revokes or checks a connection's permission (rest-api.md §3.19).
func (s *Server) permission(ctx *fasthttp.RequestCtx, rt restRoute) {
	p, ok := registry.ParsePermission(rt.perm)
	if !ok || !p.Valid() {
		setError(ctx, 400, "Error.BadRequest", "permission must be sendToGroup or joinLeaveGroup")
		return
	}
	target := string(ctx.QueryArgs().Peek("targetName"))
	if target != "" && !wsproto.ValidGroupName(target) {
		setError(ctx, 400, "Error.BadRequest", "invalid targetName: it must be a valid group name")
		return
	}
	rc := s.reg.Conn(rt.hub, rt.conn)
	switch rt.op {
	case "GrantPermission":
		if rc == nil {
			setError(ctx, 404, "Error.NotFound", "Connection id '"+rt.conn+"' doesn't exist")
			return
		}
		rc.Grant(p, target)
		ctx.SetStatusCode(200)
	case "RevokePermission":
		if rc != nil {
			rc.Revoke(p, target)
		}
		ctx.SetStatusCode(204)
	case "CheckPermission":
		existsStatus(ctx, rc != nil && rc.Can(p, target))
	}
}

// generateToken issues a client access token signed with the primary key
// (rest-api.md §3.20).
func (s *Server) generateToken(ctx *fasthttp.RequestCtx, rt restRoute) {
	args := ctx.QueryArgs()
	minutes := 60
	if v := args.Peek("minutesToExpire"); v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 {
			setError(ctx, 400, "Error.BadRequest", "minutesToExpire must be an integer of at least 1")
			return
		}
		minutes = n
	}
	if ct := string(args.Peek("clientType")); ct != "" && !strings.EqualFold(ct, "Default") {
		setError(ctx, 400, "Error.BadRequest", "clientType "+ct+" is not supported by this server; use Default")
		return
	}
	var roles, groups []string
	for _, r := range args.PeekMulti("role") {
		roles = append(roles, string(r))
	}
	for _, g := range args.PeekMulti("group") {
		if !wsproto.ValidGroupName(string(g)) {
			setError(ctx, 400, "Error.BadRequest", "invalid group name in group parameter")
			return
		}
		groups = append(groups, string(g))
	}
	endpoint := s.cfg.PublicEndpoint
	if endpoint == "" {
		endpoint = "http://" + string(ctx.Host())
	}
	tok, err := SignClientToken(s.cfg.Keys.Primary, endpoint, rt.hub, string(args.Peek("userId")), roles, groups, s.now(), time.Duration(minutes)*time.Minute)
	if err != nil {
		setError(ctx, 500, "Error.InternalServerError", "could not sign the token")
		return
	}
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json; charset=utf-8")
	body := append([]byte(`{"token":`), appendJSONString(nil, tok)...)
	ctx.SetBody(append(body, '}'))
}

const afterResponseKey = "webpubsub.afterResponse"

// afterResponse registers work that runREST runs once the response is queued.
func afterResponse(ctx *fasthttp.RequestCtx, fn func()) {
	ctx.SetUserValue(afterResponseKey, fn)
}
