package registry

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
)

var benchSizes = []int{1, 100, 10000}

// fillGroup registers n connections of hub and joins them to group.
func fillGroup(b *testing.B, r *Registry, hub, group string, n int) []*Conn {
	b.Helper()
	conns := make([]*Conn, n)
	for i := range conns {
		c := &Conn{ID: "m" + strconv.Itoa(i), Hub: hub, UserID: "u" + strconv.Itoa(i%100)}
		if err := r.Add(c); err != nil {
			b.Fatal(err)
		}
		r.Join(c, group)
		conns[i] = c
	}
	r.GroupMembers(hub, group)
	return conns
}

// BenchmarkJoin joins b.N fresh connections to a group that starts with members=N
// members.
func BenchmarkJoin(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRegistry(b, 0)
			fillGroup(b, r, "hub", "group", n)
			fresh := make([]*Conn, b.N)
			for i := range fresh {
				fresh[i] = &Conn{ID: "f" + strconv.Itoa(i), Hub: "hub"}
				if err := r.Add(fresh[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r.Join(fresh[i], "group")
			}
		})
	}
}

// BenchmarkJoinLeave joins and leaves one connection on a group of members=N others.
// Each leave makes the snapshot stale; no reader rebuilds it here.
func BenchmarkJoinLeave(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRegistry(b, 0)
			fillGroup(b, r, "hub", "group", n)
			c := addConn(b, r, "hub", "mover", "")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.Join(c, "group")
				r.Leave(c, "group")
			}
		})
	}
}

// BenchmarkJoinStorm joins members=N connections to one group, reading the member
// snapshot after every join as a concurrent broadcast would. The time per op is for the
// whole storm; appending to the cached snapshot keeps it linear in N.
func BenchmarkJoinStorm(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRegistry(b, 0)
			conns := make([]*Conn, n)
			for i := range conns {
				conns[i] = addConn(b, r, "hub", "s"+strconv.Itoa(i), "")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, c := range conns {
					r.Join(c, "group")
					_ = r.GroupMembers("hub", "group")
				}
				b.StopTimer()
				for _, c := range conns {
					r.Leave(c, "group")
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkGroupMembers reads a cached snapshot, the path every group send takes.
func BenchmarkGroupMembers(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := newRegistry(b, 0)
			fillGroup(b, r, "hub", "group", n)
			b.ReportAllocs()
			b.ResetTimer()
			var sink int
			for b.Loop() {
				sink += len(r.GroupMembers("hub", "group"))
			}
			_ = sink
		})
	}
	b.Run("members=10000/parallel", func(b *testing.B) {
		r := newRegistry(b, 0)
		fillGroup(b, r, "hub", "group", 10000)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var sink int
			for pb.Next() {
				sink += len(r.GroupMembers("hub", "group"))
			}
			_ = sink
		})
	})
	// After a leave the first reader rebuilds the snapshot: cost of one leave plus one
	// read of a members=10000 group.
	b.Run("members=10000/rebuild", func(b *testing.B) {
		r := newRegistry(b, 0)
		conns := fillGroup(b, r, "hub", "group", 10000)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			c := conns[i%len(conns)]
			r.Leave(c, "group")
			r.Join(c, "group")
			_ = r.GroupMembers("hub", "group")
		}
	})
}

// BenchmarkConcurrentJoinLeave has every goroutine join and leave its own connection
// across groups=N groups of one hub.
func BenchmarkConcurrentJoinLeave(b *testing.B) {
	for _, groups := range []int{1, 1000} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			r := newRegistry(b, 0)
			names := make([]string, groups)
			for i := range names {
				names[i] = "group-" + strconv.Itoa(i)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id := next.Add(1)
				c := &Conn{ID: "p" + strconv.FormatInt(id, 10), Hub: "hub"}
				if err := r.Add(c); err != nil {
					b.Error(err)
					return
				}
				defer r.Remove(c)
				i := int(id) * 7919
				for pb.Next() {
					g := names[i%groups]
					r.Join(c, g)
					r.Leave(c, g)
					i++
				}
			})
		})
	}
}

// BenchmarkAddRemove is the connect/disconnect path, from many goroutines.
func BenchmarkAddRemove(b *testing.B) {
	r := newRegistry(b, 0)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		base := "w" + strconv.FormatInt(next.Add(1), 10) + "-"
		ids := make([]string, 1024)
		for i := range ids {
			ids[i] = base + strconv.Itoa(i)
		}
		i := 0
		for pb.Next() {
			c := &Conn{ID: ids[i%len(ids)], Hub: "hub", UserID: "user"}
			if err := r.Add(c); err != nil {
				b.Error(err)
				return
			}
			r.Remove(c)
			i++
		}
	})
}

func BenchmarkConnLookup(b *testing.B) {
	for _, hub := range []string{"chat", "Chat"} {
		b.Run("hub="+hub, func(b *testing.B) {
			r := newRegistry(b, 0)
			for i := range 10000 {
				addConn(b, r, "chat", "c"+strconv.Itoa(i), "")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if r.Conn(hub, "c4242") == nil {
					b.Fatal("not found")
				}
			}
		})
	}
}

func BenchmarkCan(b *testing.B) {
	c := &Conn{}
	c.SetRoles([]string{
		"webpubsub.joinLeaveGroup.room-1",
		"webpubsub.sendToGroup.room-1",
		"webpubsub.sendToGroups.tenant.*.chat",
		"webpubsub.sendToGroups.org.**.alerts",
	})
	anyConn := &Conn{}
	anyConn.SetRoles([]string{"webpubsub.sendToGroup"})
	for _, tc := range []struct {
		name  string
		c     *Conn
		group string
	}{
		{"kind=any", anyConn, "room-1"},
		{"kind=literal", c, "room-1"},
		{"kind=pattern", c, "tenant.t42.chat"},
		{"kind=pattern/doublestar", c, "org.eu.west.team7.alerts"},
		{"kind=miss", c, "org.eu.west.team7.alert"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.c.Can(send, tc.group)
			}
		})
	}
}
