package registry

import (
	"strconv"
	"strings"
	"sync"
)

// Permission is a group permission of a connection (client-protocol.md §2.5,
// rest-api.md §3.19).
type Permission uint8

const (
	// PermJoinLeaveGroup allows joining and leaving a group.
	PermJoinLeaveGroup Permission = 1 << iota
	// PermSendToGroup allows publishing to a group.
	PermSendToGroup
)

// Valid reports whether p is exactly one known permission.
func (p Permission) Valid() bool {
	return p == PermJoinLeaveGroup || p == PermSendToGroup
}

// String returns the REST path name of p: "joinLeaveGroup" or "sendToGroup".
func (p Permission) String() string {
	switch p {
	case PermJoinLeaveGroup:
		return "joinLeaveGroup"
	case PermSendToGroup:
		return "sendToGroup"
	}
	return "Permission(" + strconv.Itoa(int(p)) + ")"
}

// ParsePermission parses the {permission} path segment of rest-api.md §3.19. It accepts
// "joinLeaveGroup" and "sendToGroup" in any letter case [R: ASP.NET binds enums
// case-insensitively]; anything else reports false, which the REST layer answers with 400.
func ParsePermission(s string) (Permission, bool) {
	switch {
	case strings.EqualFold(s, "joinLeaveGroup"):
		return PermJoinLeaveGroup, true
	case strings.EqualFold(s, "sendToGroup"):
		return PermSendToGroup, true
	}
	return 0, false
}

// Role prefixes of client-protocol.md §2.5, matched case-sensitively.
const (
	roleJoinLeaveGroup         = "webpubsub.joinLeaveGroup"
	roleSendToGroup            = "webpubsub.sendToGroup"
	roleJoinLeaveGroupLiteral  = "webpubsub.joinLeaveGroup."
	roleSendToGroupLiteral     = "webpubsub.sendToGroup."
	roleJoinLeaveGroupsPattern = "webpubsub.joinLeaveGroups."
	roleSendToGroupsPattern    = "webpubsub.sendToGroups."
)

// perms is a connection's permission set.
type perms struct {
	mu       sync.RWMutex
	any      Permission            // permissions for every group
	literal  map[string]Permission // group → permissions for exactly that group
	patterns []rolePattern         // wildcard roles, tried after the map
}

type rolePattern struct {
	perm Permission
	pat  pattern
}

// SetRoles replaces c's permissions with those the roles grant (client-protocol.md §2.5):
//
//	webpubsub.joinLeaveGroup            join/leave any group
//	webpubsub.sendToGroup               publish to any group
//	webpubsub.joinLeaveGroup.<group>    join/leave exactly <group>
//	webpubsub.sendToGroup.<group>       publish to exactly <group>
//	webpubsub.joinLeaveGroups.<pattern> join/leave groups matching <pattern>
//	webpubsub.sendToGroups.<pattern>    publish to groups matching <pattern>
//
// <group> is everything after the second dot, verbatim, and is compared case-sensitively.
// Pattern syntax is described at compilePattern; a pattern with more than five '*' or a
// bad escape grants nothing [R]. Unknown roles, and literal roles with an empty group, are
// ignored [R]. The connect response's roles replace the token's (upstream-protocol.md),
// hence replace rather than merge. Safe for concurrent use.
func (c *Conn) SetRoles(roles []string) {
	var (
		anyPerm  Permission
		literal  map[string]Permission
		patterns []rolePattern
	)
	grantLiteral := func(p Permission, group string) {
		if group == "" {
			return
		}
		if literal == nil {
			literal = make(map[string]Permission)
		}
		literal[group] |= p
	}
	for _, role := range roles {
		var p Permission
		var rest string
		isPattern := false
		switch {
		case role == roleJoinLeaveGroup:
			anyPerm |= PermJoinLeaveGroup
			continue
		case role == roleSendToGroup:
			anyPerm |= PermSendToGroup
			continue
		case strings.HasPrefix(role, roleJoinLeaveGroupLiteral):
			p, rest = PermJoinLeaveGroup, role[len(roleJoinLeaveGroupLiteral):]
		case strings.HasPrefix(role, roleSendToGroupLiteral):
			p, rest = PermSendToGroup, role[len(roleSendToGroupLiteral):]
		case strings.HasPrefix(role, roleJoinLeaveGroupsPattern):
			p, rest, isPattern = PermJoinLeaveGroup, role[len(roleJoinLeaveGroupsPattern):], true
		case strings.HasPrefix(role, roleSendToGroupsPattern):
			p, rest, isPattern = PermSendToGroup, role[len(roleSendToGroupsPattern):], true
		default:
			continue // unknown role [R]
		}
		// The role often aliases a whole decoded token; keep only our own copy.
		rest = strings.Clone(rest)
		if !isPattern {
			grantLiteral(p, rest)
			continue
		}
		pat, ok := compilePattern(rest)
		if !ok {
			continue
		}
		if lit, isLit := pat.literal(); isLit {
			grantLiteral(p, lit) // no wildcard: a map lookup is cheaper than matching
			continue
		}
		patterns = append(patterns, rolePattern{perm: p, pat: pat})
	}

	c.perms.mu.Lock()
	c.perms.any = anyPerm
	c.perms.literal = literal
	c.perms.patterns = patterns
	c.perms.mu.Unlock()
}

// Grant gives c permission p for group, or for every group when group is "". This is the
// REST grant of rest-api.md §3.19: group is a literal name, never a pattern. Grant is
// idempotent and ignores an invalid p. Safe for concurrent use.
func (c *Conn) Grant(p Permission, group string) {
	if !p.Valid() {
		return
	}
	c.perms.mu.Lock()
	defer c.perms.mu.Unlock()
	if group == "" {
		c.perms.any |= p
		return
	}
	if c.perms.literal == nil {
		c.perms.literal = make(map[string]Permission)
	}
	if _, ok := c.perms.literal[group]; !ok {
		group = strings.Clone(group) // do not retain the caller's (often a request's) buffer
	}
	c.perms.literal[group] |= p
}

// Revoke takes permission p away from c. With a group it removes only the grant for
// exactly that group; a hub-wide grant or a matching wildcard role still allows it. With
// group "" it removes the hub-wide grant and every group-specific grant and wildcard role
// of p (rest-api.md §3.19 and §9.3). Revoke is idempotent and does not leave groups
// already joined. Safe for concurrent use.
func (c *Conn) Revoke(p Permission, group string) {
	if !p.Valid() {
		return
	}
	c.perms.mu.Lock()
	defer c.perms.mu.Unlock()
	if group != "" {
		if q, ok := c.perms.literal[group]; ok {
			if q &^= p; q == 0 {
				delete(c.perms.literal, group)
			} else {
				c.perms.literal[group] = q
			}
		}
		return
	}
	c.perms.any &^= p
	for g, q := range c.perms.literal {
		if q &^= p; q == 0 {
			delete(c.perms.literal, g)
		} else {
			c.perms.literal[g] = q
		}
	}
	var kept []rolePattern
	for _, rp := range c.perms.patterns {
		if rp.perm != p {
			kept = append(kept, rp)
		}
	}
	c.perms.patterns = kept
}

// Can reports whether c may do p on group: a hub-wide grant, a literal grant for
// exactly group, or a matching wildcard role. group "" asks about the hub-wide grant
// only. An invalid p reports false. Safe for concurrent use; it does not allocate.
func (c *Conn) Can(p Permission, group string) bool {
	if !p.Valid() {
		return false
	}
	c.perms.mu.RLock()
	defer c.perms.mu.RUnlock()
	if c.perms.any&p != 0 {
		return true
	}
	if group == "" {
		return false
	}
	if c.perms.literal[group]&p != 0 {
		return true
	}
	for i := range c.perms.patterns {
		rp := &c.perms.patterns[i]
		if rp.perm == p && rp.pat.match(group) {
			return true
		}
	}
	return false
}
