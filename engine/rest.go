package engine

import (
	"log/slog"
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

// handleREST serves one request of the data-plane API and returns its operation
// name for metrics (opUnknown when it matched no route). It runs on the worker pool.
// Validation order (rest-api.md §4): route → auth → names and query → content type
// and body → execution.
func (s *Server) handleREST(ctx *fasthttp.RequestCtx) (op string) {
	rawURI := string(ctx.Request.Header.RequestURI())
	escPath, _, _ := strings.Cut(rawURI, "?")
	method := string(ctx.Method())
	if s.health(ctx, escPath, method) {
		return opHealth
	}
	rt, fail := s.routeAndAuth(method, escPath, ctx.Request.Header.Peek("Authorization"))
	if fail != nil {
		fail.write(&ctx.Response)
		return rt.metricsOp()
	}
	s.serveRoute(ctx, rt, escPath)
	return rt.op
}

// Operation names of requests that have no OpenAPI operation of the data plane
// (webpubsub_rest_requests_total).
const (
	opHealth  = "HealthApi_GetServiceStatus" // the Azure operationId of /api/health
	opUnknown = "unknown"                    // no route matched
)

// metricsOp is the operation label of a request routed to rt: opUnknown when no
// route or no method matched.
func (rt restRoute) metricsOp() string {
	if rt.op == "" {
		return opUnknown
	}
	return rt.op
}

// serveRoute runs the steps after route and auth for the matched operation rt.
func (s *Server) serveRoute(ctx *fasthttp.RequestCtx, rt restRoute, escPath string) {
	args := ctx.QueryArgs()
	if v := args.Peek("api-version"); len(v) > 0 && !knownAPIVersion(string(v)) {
		s.log.Debug("rest: unknown api-version, serving as the latest", "apiVersion", string(v), "op", rt.op)
	}
	if fail := validateNames(rt); fail != nil {
		fail.write(&ctx.Response)
		return
	}
	ttl := 0
	if v := args.Peek("messageTtlSeconds"); v != nil {
		var err error
		if ttl, err = strconv.Atoi(string(v)); err != nil || ttl < 0 || ttl > 300 {
			badRequest(ctx, "messageTtlSeconds", "messageTtlSeconds must be an integer from 0 to 300")
			return
		}
	}
	switch rt.op {
	case "SendToAll", "SendToUser", "SendToConnection", "SendToGroup":
		s.send(ctx, rt, ttl)
	case "CloseAllConnections":
		s.closeConns(s.reg.HubConns(rt.hub), excludedSet(args), string(args.Peek("reason")))
		ctx.SetStatusCode(204)
	case "CloseUserConnections":
		s.closeConns(s.reg.UserConns(rt.hub, rt.user), excludedSet(args), string(args.Peek("reason")))
		ctx.SetStatusCode(204)
	case "CloseGroupConnections":
		s.closeConns(s.reg.GroupMembers(rt.hub, rt.group), excludedSet(args), string(args.Peek("reason")))
		ctx.SetStatusCode(204)
	case "CloseConnection":
		if rc := s.reg.Conn(rt.hub, rt.conn); rc != nil {
			s.closeConns([]*registry.Conn{rc}, nil, string(args.Peek("reason")))
		}
		ctx.SetStatusCode(204)
	case "ConnectionExists":
		existsStatus(ctx, s.reg.Conn(rt.hub, rt.conn) != nil)
	case "UserExists":
		existsStatus(ctx, s.reg.UserExists(rt.hub, rt.user))
	case "GroupExists":
		existsStatus(ctx, s.reg.GroupExists(rt.hub, rt.group))
	case "AddConnectionToGroup":
		rc := s.reg.Conn(rt.hub, rt.conn)
		if rc == nil {
			connNotFound(ctx, rt.conn)
			return
		}
		s.reg.Join(rc, rt.group)
		ctx.SetStatusCode(200)
	case "RemoveConnectionFromGroup":
		if rc := s.reg.Conn(rt.hub, rt.conn); rc != nil {
			s.reg.Leave(rc, rt.group)
		}
		ctx.SetStatusCode(204)
	case "RemoveConnectionFromAllGroups":
		if rc := s.reg.Conn(rt.hub, rt.conn); rc != nil {
			s.reg.LeaveAll(rc)
		}
		ctx.SetStatusCode(204)
	case "AddUserToGroup":
		for _, rc := range s.reg.UserConns(rt.hub, rt.user) {
			s.reg.Join(rc, rt.group)
		}
		ctx.SetStatusCode(200)
	case "RemoveUserFromGroup":
		for _, rc := range s.reg.UserConns(rt.hub, rt.user) {
			s.reg.Leave(rc, rt.group)
		}
		ctx.SetStatusCode(204)
	case "RemoveUserFromAllGroups":
		for _, rc := range s.reg.UserConns(rt.hub, rt.user) {
			s.reg.LeaveAll(rc)
		}
		ctx.SetStatusCode(204)
	case "AddConnectionsToGroups", "RemoveConnectionsFromGroups":
		s.bulkGroups(ctx, rt)
	case "ListConnectionsInGroup", "ListUsersInGroup", "ListGroupsOfUser", "ListGroupsOfConnection":
		s.list(ctx, rt, escPath)
	case "GrantPermission", "RevokePermission", "CheckPermission":
		s.permission(ctx, rt)
	case "GenerateClientToken":
		s.generateToken(ctx, rt)
	default:
		s.log.Error("rest: routed operation has no handler", "op", rt.op)
		setError(ctx, 500, "Error.InternalServerError", "operation "+rt.op+" has no handler")
	}
}

// health answers the probe (rest-api.md §3.1) and reports whether escPath was it.
// It needs no token.
func (s *Server) health(ctx *fasthttp.RequestCtx, escPath, method string) bool {
	if !s.isHealthPath(escPath) {
		return false
	}
	if method != "GET" && method != "HEAD" {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		setError(ctx, 405, "Error.MethodNotAllowed", "use GET or HEAD")
		return true
	}
	ctx.SetStatusCode(s.healthStatus())
	return true
}

// healthStatus is the probe's answer: 200 while serving, 503 from the start of a drain
// (operations.md §2).
func (s *Server) healthStatus() int {
	if s.draining.Load() {
		return 503
	}
	return 200
}

// isHealthPath reports whether escPath (with the base path) is the health probe's.
func (s *Server) isHealthPath(escPath string) bool {
	return isHealthRoute(strings.TrimPrefix(escPath, s.cfg.BasePath))
}

// isHealthRoute reports whether path, without the base path, is the health probe's.
func isHealthRoute(path string) bool { return path == "/api/health" || path == "/api/health/" }

// restFailure is an error answer decided before a request body is read, so the
// loop can send it for a request whose body it will not buffer.
type restFailure struct {
	status  int
	code    string
	message string
	allow   string // Allow header for 405
}

func (f *restFailure) write(r *fasthttp.Response) {
	writeError(r, f.status, f.code, f.message)
	if f.allow != "" {
		r.Header.Set("Allow", f.allow)
	}
}

// routeAndAuth runs the first two validation steps of rest-api.md §4 on a request
// head: route (404, 405), then the bearer token (401).
func (s *Server) routeAndAuth(method, escPath string, auth []byte) (restRoute, *restFailure) {
	path := strings.TrimPrefix(escPath, s.cfg.BasePath)
	rt, allow, found := matchRoute(path, method)
	if !found {
		s.log.Debug("rest: unknown route", "method", method, "path", escPath)
		return rt, &restFailure{status: 404, code: "Error.NotFound", message: "no route for " + method + " " + escPath}
	}
	if rt.op == "" {
		return rt, &restFailure{status: 405, code: "Error.MethodNotAllowed", allow: allow,
			message: "method " + method + " is not allowed on " + escPath + "; allowed: " + allow}
	}
	if len(auth) < 7 || !strings.EqualFold(string(auth[:7]), "bearer ") {
		s.limited(s.log, warnUnauthorized, slog.LevelInfo, "rest: missing bearer token", slog.Int("status", 401), slog.String("op", rt.op))
		return rt, &restFailure{status: 401, code: "Error.Unauthorized", message: "missing Authorization: Bearer token"}
	}
	if err := s.settings().verifier.VerifyREST(strings.TrimSpace(string(auth[7:])), escPath, s.now()); err != nil {
		s.limited(s.log, warnUnauthorized, slog.LevelInfo, "rest: bad bearer token", slog.Int("status", 401), slog.String("op", rt.op), slog.Any("err", err))
		return rt, &restFailure{status: 401, code: "Error.Unauthorized", message: "invalid bearer token: " + err.Error()}
	}
	return rt, nil
}

// validateNames checks the path parameters of rt (rest-api.md §1.3).
func validateNames(rt restRoute) *restFailure {
	bad := func(msg string) *restFailure {
		return &restFailure{status: 400, code: "Error.BadRequest", message: msg}
	}
	if !wsproto.ValidHubName(rt.hub) {
		return bad("invalid hub name '" + rt.hub + "': it must start with a letter and have at most 128 letters, digits or _`,.[]")
	}
	if rt.group != "" && !wsproto.ValidGroupName(rt.group) {
		return bad("invalid group name: it must be 1 to 1024 characters and not only whitespace")
	}
	return nil
}

// latestAPIVersion is the api-version of the OpenAPI document this server follows.
const latestAPIVersion = "2024-12-01"

// knownAPIVersion reports whether v is an api-version an SDK sends (rest-api.md
// §1.2). Every version is served the same; unknown ones are only logged.
func knownAPIVersion(v string) bool {
	switch v {
	case "2021-10-01", "2022-11-01", "2023-07-01", "2024-01-01", latestAPIVersion:
		return true
	}
	return false
}

// send runs the four send operations (rest-api.md §3.2–3.5). ttl is
// messageTtlSeconds (0 = none).
func (s *Server) send(ctx *fasthttp.RequestCtx, rt restRoute, ttl int) {
	args := ctx.QueryArgs()
	var filter *Filter
	if rt.op != "SendToConnection" { // not in the contract of send to connection
		var ok bool
		if filter, ok = compileFilterArg(ctx, string(args.Peek("filter"))); !ok {
			return
		}
	}
	m, ok := s.messageFromBody(ctx)
	if !ok {
		return
	}
	m.setFilter(filter)
	if ttl > 0 {
		m.expires = s.now().Add(time.Duration(ttl) * time.Second).UnixNano()
	}
	hub := rt.hub
	var targets []*registry.Conn
	switch rt.op {
	case "SendToAll":
		m.excluded = excludedSet(args)
		targets = s.reg.HubConns(hub)
	case "SendToUser":
		targets = s.reg.UserConns(hub, rt.user)
	case "SendToConnection":
		if rc := s.reg.Conn(hub, rt.conn); rc != nil {
			targets = []*registry.Conn{rc}
		}
	case "SendToGroup":
		m.excluded = excludedSet(args)
		m.fromGroup, m.group = true, rt.group
		targets = s.reg.GroupMembers(hub, rt.group)
	}
	// Deliver after the 202 is queued: the response then reaches the app before
	// the loops are busy with this fan-out, and per-loop task order still keeps
	// sequential sends in order. The filter is evaluated then, on this worker.
	afterResponse(ctx, func() {
		n := s.deliver(targets, m, nil)
		s.log.Debug("rest: send", "op", rt.op, "hub", hub, "recipients", n, "bytes", len(m.data), "filtered", filter != nil)
	})
	ctx.SetStatusCode(202)
}

// compileFilterArg compiles an OData filter (rest-api.md §5); "" means none. It
// answers 400 itself when the filter is invalid.
func compileFilterArg(ctx *fasthttp.RequestCtx, text string) (*Filter, bool) {
	if strings.TrimSpace(text) == "" {
		return nil, true
	}
	f, err := CompileFilter(text, 0)
	if err != nil {
		// err is a *FilterError: its text names the position.
		writeErrorDetail(&ctx.Response, 400, "Error.BadRequest", err.Error(), "filter", "InvalidFilter")
		return nil, false
	}
	return f, true
}

// badRequest answers 400 for the request parameter target.
func badRequest(ctx *fasthttp.RequestCtx, target, msg string) {
	writeErrorDetail(&ctx.Response, 400, "Error.BadRequest", msg, target, "")
}

func connNotFound(ctx *fasthttp.RequestCtx, id string) {
	setError(ctx, 404, "Error.NotFound", "Connection id '"+id+"' doesn't exist")
}

// groupsBody is the body of :addToGroups and :removeFromGroups (rest-api.md §3.18).
type groupsBody struct {
	Groups []string `json:"groups"`
	Filter string   `json:"filter"`
}

// bulkGroups adds (or removes) every connection of the hub that matches the filter
// to (from) every listed group. Nothing changes unless the whole request is valid.
func (s *Server) bulkGroups(ctx *fasthttp.RequestCtx, rt restRoute) {
	if !isJSONContentType(ctx.Request.Header.ContentType()) {
		badRequest(ctx, "Content-Type", "Content-Type must be application/json")
		return
	}
	var body groupsBody
	if err := sonic.ConfigStd.Unmarshal(ctx.Request.Body(), &body); err != nil {
		badRequest(ctx, "body", "the body must be a JSON object {\"groups\": [...], \"filter\": \"...\"}: "+err.Error())
		return
	}
	if len(body.Groups) == 0 {
		badRequest(ctx, "groups", "groups must list at least one group")
		return
	}
	for _, g := range body.Groups {
		if !wsproto.ValidGroupName(g) {
			badRequest(ctx, "groups", "invalid group name '"+g+"': it must be 1 to 1024 characters and not only whitespace")
			return
		}
	}
	filter, ok := compileFilterArg(ctx, body.Filter)
	if !ok {
		return
	}
	// Evaluate against the state before any change, then apply.
	var t connTarget
	var matched []*registry.Conn
	for _, rc := range s.reg.HubConns(rt.hub) {
		if !rc.Closing() && t.match(filter, rc) {
			matched = append(matched, rc)
		}
	}
	add := rt.op == "AddConnectionsToGroups"
	for _, rc := range matched {
		for _, g := range body.Groups {
			if add {
				s.reg.Join(rc, g)
			} else {
				s.reg.Leave(rc, g)
			}
		}
	}
	s.log.Debug("rest: bulk group change", "op", rt.op, "hub", rt.hub, "connections", len(matched), "groups", len(body.Groups))
	ctx.SetStatusCode(200)
}

// connTarget evaluates a filter against registry connections one at a time; it is
// reused across connections so the evaluation does not allocate per connection.
// Not safe for concurrent use.
type connTarget struct {
	ft  FilterTarget
	cur *registry.Conn
}

func (t *connTarget) match(f *Filter, rc *registry.Conn) bool {
	if f == nil {
		return true
	}
	if t.ft.InGroup == nil {
		t.ft.InGroup = func(g string) bool { return t.cur.InGroup(g) }
	}
	t.cur = rc
	t.ft.ConnectionID, t.ft.UserID, t.ft.HasUser = rc.ID, rc.UserID, rc.UserID != ""
	if f.CountsGroups() {
		t.ft.GroupCount = rc.GroupCount()
	}
	return f.Match(&t.ft)
}

func isJSONContentType(ct []byte) bool {
	mt, _, err := mime.ParseMediaType(string(ct))
	return err == nil && strings.EqualFold(mt, "application/json")
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
// split before they are percent-decoded (rest-api.md §1.1). found reports whether the
// path is known; rt.op is empty when method is not allowed on it, and allow then lists
// the methods that are.
func matchRoute(escPath, method string) (rt restRoute, allow string, found bool) {
	p := strings.TrimSuffix(escPath, "/")
	if !strings.HasPrefix(p, "/api/hubs/") {
		return rt, "", false
	}
	segs := strings.Split(p[len("/api/hubs/"):], "/")
	for i, sg := range segs {
		d, err := url.PathUnescape(sg)
		if err != nil || d == "" {
			return rt, "", false
		}
		segs[i] = d
	}
	rt.hub = segs[0]
	r := segs[1:]
	// ops lists method, operation pairs for the matched path.
	var ops []string
	switch {
	case len(r) == 1 && r[0] == ":send":
		ops = []string{"POST", "SendToAll"}
	case len(r) == 1 && r[0] == ":closeConnections":
		ops = []string{"POST", "CloseAllConnections"}
	case len(r) == 1 && r[0] == ":addToGroups":
		ops = []string{"POST", "AddConnectionsToGroups"}
	case len(r) == 1 && r[0] == ":removeFromGroups":
		ops = []string{"POST", "RemoveConnectionsFromGroups"}
	case len(r) == 1 && r[0] == ":generateToken":
		ops = []string{"POST", "GenerateClientToken"}
	case len(r) == 2 && r[0] == "users":
		rt.user, ops = r[1], []string{"HEAD", "UserExists"}
	case len(r) == 3 && r[0] == "users" && r[2] == ":send":
		rt.user, ops = r[1], []string{"POST", "SendToUser"}
	case len(r) == 3 && r[0] == "users" && r[2] == ":closeConnections":
		rt.user, ops = r[1], []string{"POST", "CloseUserConnections"}
	case len(r) == 3 && r[0] == "users" && r[2] == "groups":
		rt.user, ops = r[1], []string{"DELETE", "RemoveUserFromAllGroups", "GET", "ListGroupsOfUser"}
	case len(r) == 4 && r[0] == "users" && r[2] == "groups":
		rt.user, rt.group = r[1], r[3]
		ops = []string{"PUT", "AddUserToGroup", "DELETE", "RemoveUserFromGroup"}
	case len(r) == 2 && r[0] == "connections":
		rt.conn, ops = r[1], []string{"HEAD", "ConnectionExists", "DELETE", "CloseConnection"}
	case len(r) == 3 && r[0] == "connections" && r[2] == ":send":
		rt.conn, ops = r[1], []string{"POST", "SendToConnection"}
	case len(r) == 3 && r[0] == "connections" && r[2] == "groups":
		rt.conn, ops = r[1], []string{"DELETE", "RemoveConnectionFromAllGroups", "GET", "ListGroupsOfConnection"}
	case len(r) == 2 && r[0] == "groups":
		rt.group, ops = r[1], []string{"HEAD", "GroupExists"}
	case len(r) == 3 && r[0] == "groups" && r[2] == ":send":
		rt.group, ops = r[1], []string{"POST", "SendToGroup"}
	case len(r) == 3 && r[0] == "groups" && r[2] == ":closeConnections":
		rt.group, ops = r[1], []string{"POST", "CloseGroupConnections"}
	case len(r) == 3 && r[0] == "groups" && r[2] == "connections":
		rt.group, ops = r[1], []string{"GET", "ListConnectionsInGroup"}
	case len(r) == 3 && r[0] == "groups" && r[2] == "users":
		rt.group, ops = r[1], []string{"GET", "ListUsersInGroup"}
	case len(r) == 4 && r[0] == "groups" && r[2] == "connections":
		rt.group, rt.conn = r[1], r[3]
		ops = []string{"PUT", "AddConnectionToGroup", "DELETE", "RemoveConnectionFromGroup"}
	case len(r) == 4 && r[0] == "permissions" && r[2] == "connections":
		rt.perm, rt.conn = r[1], r[3]
		ops = []string{"PUT", "GrantPermission", "DELETE", "RevokePermission", "HEAD", "CheckPermission"}
	default:
		return rt, "", false
	}
	var methods []string
	for i := 0; i < len(ops); i += 2 {
		if ops[i] == method {
			rt.op = ops[i+1]
			return rt, "", true
		}
		methods = append(methods, ops[i])
	}
	return rt, strings.Join(methods, ", "), true
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
		if err != nil || n < 1 || n > maxTokenMinutes {
			badRequest(ctx, "minutesToExpire", "minutesToExpire must be an integer from 1 to "+strconv.Itoa(maxTokenMinutes))
			return
		}
		minutes = n
	}
	var clientPath string
	switch ct := string(args.Peek("clientType")); {
	case ct == "" || strings.EqualFold(ct, "Default"):
		clientPath = "/client/hubs/"
	case strings.EqualFold(ct, "MQTT"):
		clientPath = "/clients/mqtt/hubs/"
	case strings.EqualFold(ct, "SocketIO"):
		clientPath = "/clients/socketio/hubs/"
	default:
		badRequest(ctx, "clientType", "clientType must be Default, MQTT or SocketIO, not "+ct)
		return
	}
	var roles, groups []string
	for _, r := range args.PeekMulti("role") {
		roles = append(roles, string(r))
	}
	for _, g := range args.PeekMulti("group") {
		if !wsproto.ValidGroupName(string(g)) {
			badRequest(ctx, "group", "invalid group name in group parameter: it must be 1 to 1024 characters and not only whitespace")
			return
		}
		groups = append(groups, string(g))
	}
	aud := s.publicBase(ctx) + clientPath + rt.hub
	tok, err := signGeneratedToken(s.settings().cfg.Keys.Primary, aud, string(args.Peek("userId")), roles, groups, s.now(), time.Duration(minutes)*time.Minute)
	if err != nil {
		s.log.Error("rest: sign client token", "err", err)
		setError(ctx, 500, "Error.InternalServerError", "could not sign the token")
		return
	}
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json; charset=utf-8")
	body := append([]byte(`{"token":`), appendJSONString(nil, tok)...)
	ctx.SetBody(append(body, '}'))
}

// maxTokenMinutes bounds minutesToExpire (one year) so the expiry cannot overflow.
const maxTokenMinutes = 366 * 24 * 60

// publicBase is the URL prefix the apps use for this server, without a trailing
// slash: the configured public endpoint (else http:// and the request's Host), then
// the base path unless the public endpoint already ends with it.
func (s *Server) publicBase(ctx *fasthttp.RequestCtx) string {
	base := strings.TrimSuffix(s.cfg.PublicEndpoint, "/")
	if base == "" {
		base = "http://" + string(ctx.Host())
	}
	if bp := s.cfg.BasePath; bp != "" && !strings.HasSuffix(base, bp) {
		base += bp
	}
	return base
}

const afterResponseKey = "webpubsub.afterResponse"

// afterResponse registers work that runREST runs once the response is queued.
func afterResponse(ctx *fasthttp.RequestCtx, fn func()) {
	ctx.SetUserValue(afterResponseKey, fn)
}
