package engine

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/webpubsub/webpubsub/registry"
)

// The list operations: ListConnectionsInGroup (rest-api.md §3.17) and this server's
// own listings of the users in a group and of the groups of a user or connection
// (README, "Listing users and groups"). They page the same way: items sorted by key,
// a continuation token that encodes the last key returned (so joins and leaves
// between pages neither repeat nor skip the items that stay), and an absolute
// nextLink that carries everything the next request needs.

const (
	maxPageSize     = 200
	defaultPageSize = 200
)

// pageRequest is the paging part of a list request.
type pageRequest struct {
	size  int    // items per page, 1..maxPageSize
	top   int    // items left across all pages; 0 means no limit
	after string // return only keys greater than this; "" means from the start
}

// parsePage reads maxpagesize, top and continuationToken; it answers 400 itself
// when one is invalid.
func parsePage(ctx *fasthttp.RequestCtx) (pageRequest, bool) {
	args := ctx.QueryArgs()
	pg := pageRequest{size: defaultPageSize}
	if v := args.Peek("maxpagesize"); v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > maxPageSize {
			badRequest(ctx, "maxpagesize", "maxpagesize must be an integer from 1 to "+strconv.Itoa(maxPageSize))
			return pg, false
		}
		pg.size = n
	}
	if v := args.Peek("top"); v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 {
			badRequest(ctx, "top", "top must be an integer of at least 1")
			return pg, false
		}
		pg.top = n
	}
	if v := args.Peek("continuationToken"); v != nil {
		key, err := base64.RawURLEncoding.DecodeString(string(v))
		if err != nil || len(key) == 0 {
			badRequest(ctx, "continuationToken", "continuationToken is not one this server issued; start again without it")
			return pg, false
		}
		pg.after = string(key)
	}
	return pg, true
}

// listEntry is one item of a listing: its sort key and, for connections, the user.
type listEntry struct {
	key  string
	user string
}

// list answers the four list operations.
func (s *Server) list(ctx *fasthttp.RequestCtx, rt restRoute, escPath string) {
	pg, ok := parsePage(ctx)
	if !ok {
		return
	}
	var entries []listEntry
	var field string // the JSON member that holds key
	switch rt.op {
	case "ListConnectionsInGroup":
		field = "connectionId"
		for _, rc := range s.reg.GroupMembers(rt.hub, rt.group) {
			if listed(rc) && rc.ID > pg.after {
				entries = append(entries, listEntry{key: rc.ID, user: rc.UserID})
			}
		}
	case "ListUsersInGroup":
		field = "userId"
		for _, rc := range s.reg.GroupMembers(rt.hub, rt.group) {
			if listed(rc) && rc.UserID != "" && rc.UserID > pg.after {
				entries = append(entries, listEntry{key: rc.UserID})
			}
		}
	case "ListGroupsOfUser":
		field = "group"
		for _, rc := range s.reg.UserConns(rt.hub, rt.user) {
			if listed(rc) {
				entries = appendGroupsAfter(entries, rc, pg.after)
			}
		}
	case "ListGroupsOfConnection":
		field = "group"
		rc := s.reg.Conn(rt.hub, rt.conn)
		if rc == nil || !listed(rc) {
			connNotFound(ctx, rt.conn)
			return
		}
		entries = appendGroupsAfter(entries, rc, pg.after)
	}
	slices.SortFunc(entries, func(a, b listEntry) int { return strings.Compare(a.key, b.key) })
	entries = slices.CompactFunc(entries, func(a, b listEntry) bool { return a.key == b.key })

	n := min(len(entries), pg.size)
	if pg.top > 0 {
		n = min(n, pg.top)
	}
	b := make([]byte, 0, 64+n*48)
	b = append(b, `{"value":[`...)
	for i, e := range entries[:n] {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"`...)
		b = append(b, field...)
		b = append(b, `":`...)
		b = appendJSONString(b, e.key)
		if e.user != "" {
			b = append(b, `,"userId":`...)
			b = appendJSONString(b, e.user)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	left := pg.top - n // items the caller still wants; <= 0 when top was not given
	if n < len(entries) && (pg.top == 0 || left > 0) {
		b = append(b, `,"nextLink":`...)
		b = appendJSONString(b, s.nextLink(ctx, escPath, pg, left, entries[n-1].key))
	}
	b = append(b, '}')
	ctx.SetStatusCode(200)
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.Response.SetBodyRaw(b)
}

// listed reports whether rc is still connected: snapshots may hold connections whose
// close has started or finished (rest-api.md §6).
func listed(rc *registry.Conn) bool { return !rc.Closing() && rc.Registered() }

func appendGroupsAfter(entries []listEntry, rc *registry.Conn, after string) []listEntry {
	for _, g := range rc.Groups() {
		if g > after {
			entries = append(entries, listEntry{key: g})
		}
	}
	return entries
}

// nextLink is the absolute URL of the page after the one that ended with last. The
// JS SDK requests it verbatim and signs it as the audience (rest-api.md §3.17).
func (s *Server) nextLink(ctx *fasthttp.RequestCtx, escPath string, pg pageRequest, left int, last string) string {
	version := string(ctx.QueryArgs().Peek("api-version"))
	if version == "" {
		version = latestAPIVersion
	}
	var b strings.Builder
	b.WriteString(s.publicBase(ctx))
	b.WriteString(strings.TrimPrefix(escPath, s.cfg.BasePath))
	b.WriteString("?api-version=")
	b.WriteString(url.QueryEscape(version))
	b.WriteString("&maxpagesize=")
	b.WriteString(strconv.Itoa(pg.size))
	if pg.top > 0 {
		b.WriteString("&top=")
		b.WriteString(strconv.Itoa(left))
	}
	b.WriteString("&continuationToken=")
	b.WriteString(base64.RawURLEncoding.EncodeToString([]byte(last)))
	return b.String()
}
