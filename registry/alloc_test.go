//go:build !race

package registry

import (
	"strings"
	"testing"
)

// STYLE.md §4 and §8: registry lookups on the hot path do not allocate.

func TestAllocsConnLookup(t *testing.T) {
	r := newRegistry(t, 0)
	c := addConn(t, r, "Chat", "conn-1", "u")
	for _, hub := range []string{"chat", "Chat", "CHAT", strings.Repeat("x", maxHubBytes)} {
		var got *Conn
		allocs := testing.AllocsPerRun(1000, func() { got = r.Conn(hub, "conn-1") })
		if allocs != 0 {
			t.Errorf("Conn(%.10q…): %v allocs/op, want 0", hub, allocs)
		}
		if hub != strings.Repeat("x", maxHubBytes) && got != c {
			t.Errorf("Conn(%q) did not find the connection", hub)
		}
	}
	if a := testing.AllocsPerRun(1000, func() { r.ConnExists("chat", "conn-1") }); a != 0 {
		t.Errorf("ConnExists: %v allocs/op", a)
	}
}

func TestAllocsCan(t *testing.T) {
	c := &Conn{}
	c.SetRoles([]string{
		"webpubsub.joinLeaveGroup.room-1",
		"webpubsub.sendToGroup.room-1",
		"webpubsub.sendToGroups.tenant.*.chat",
		"webpubsub.joinLeaveGroups.clientA.**",
	})
	for _, tc := range []struct {
		p     Permission
		group string
		want  bool
	}{
		{send, "room-1", true},         // literal
		{join, "room-1", true},         // literal
		{send, "room-2", false},        // literal miss, pattern miss
		{send, "tenant.t1.chat", true}, // pattern
		{join, "clientA.a.b.c", true},  // pattern with **
		{join, strings.Repeat("clientA.x", 100), true},
	} {
		var got bool
		allocs := testing.AllocsPerRun(1000, func() { got = c.Can(tc.p, tc.group) })
		if allocs != 0 {
			t.Errorf("Can(%v, %.20q): %v allocs/op, want 0", tc.p, tc.group, allocs)
		}
		if got != tc.want {
			t.Errorf("Can(%v, %.20q) = %v", tc.p, tc.group, got)
		}
	}

	any := &Conn{}
	any.SetRoles([]string{"webpubsub.sendToGroup"})
	if a := testing.AllocsPerRun(1000, func() { any.Can(send, "g") }); a != 0 {
		t.Errorf("Can with hub-wide grant: %v allocs/op", a)
	}
}

func TestAllocsGroupMembersCached(t *testing.T) {
	r := newRegistry(t, 0)
	for i := range 100 {
		c := addConn(t, r, "hub", "c"+strings.Repeat("x", i), "u")
		r.Join(c, "group")
	}
	r.GroupMembers("hub", "group") // build the snapshot
	var n int
	allocs := testing.AllocsPerRun(1000, func() { n = len(r.GroupMembers("HUB", "group")) })
	if allocs != 0 {
		t.Errorf("GroupMembers (cached): %v allocs/op, want 0", allocs)
	}
	if n != 100 {
		t.Errorf("GroupMembers: %d members, want 100", n)
	}
	r.UserConns("hub", "u")
	if a := testing.AllocsPerRun(1000, func() { r.UserConns("hub", "u") }); a != 0 {
		t.Errorf("UserConns (cached): %v allocs/op", a)
	}
	if a := testing.AllocsPerRun(1000, func() { r.GroupExists("hub", "group") }); a != 0 {
		t.Errorf("GroupExists: %v allocs/op", a)
	}
	r.HubConns("hub") // build the per-shard snapshots
	if a := testing.AllocsPerRun(100, func() { r.RangeHubConns("hub", func(*Conn) bool { return true }) }); a != 0 {
		t.Errorf("RangeHubConns (cached): %v allocs/op", a)
	}
	c := r.Conn("hub", "c")
	if a := testing.AllocsPerRun(1000, func() { c.InGroup("group") }); a != 0 {
		t.Errorf("InGroup: %v allocs/op", a)
	}
	if a := testing.AllocsPerRun(1000, func() { c.GroupCount() }); a != 0 {
		t.Errorf("GroupCount: %v allocs/op", a)
	}
}
