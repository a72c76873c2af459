package registry

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStress joins, leaves, removes and replaces connections while other goroutines
// iterate snapshots the way fan-out does, then checks that the indexes agree. Run it
// with -race.
func TestStress(t *testing.T) {
	const (
		slots   = 256
		groups  = 16
		users   = 12
		workers = 4 // per kind
	)
	iters := 10000
	if testing.Short() {
		iters = 300
	}
	hubs := []string{"Hub", "other"}
	groupName := func(i int) string { return fmt.Sprintf("g.%d", i) }
	userName := func(i int) string { return fmt.Sprintf("u%d", i) }

	r := newRegistry(t, 16)
	var (
		nextID  atomic.Int64
		pool    [slots]atomic.Pointer[Conn]
		removed sync.Map // *Conn → struct{}
	)
	newConn := func(rng *rand.Rand) *Conn {
		c := &Conn{
			ID:  fmt.Sprintf("c%d", nextID.Add(1)),
			Hub: hubs[rng.IntN(len(hubs))],
		}
		if rng.IntN(4) != 0 {
			c.UserID = userName(rng.IntN(users))
		}
		c.Handle = c.ID
		if err := r.Add(c); err != nil {
			t.Errorf("Add: %v", err)
		}
		return c
	}
	seedRng := rand.New(rand.NewPCG(1, 2))
	for i := range pool {
		pool[i].Store(newConn(seedRng))
	}

	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	run := func(seed uint64, step func(rng *rand.Rand)) {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, seed*7+1))
			for i := 0; i < iters && time.Now().Before(deadline); i++ {
				step(rng)
			}
		})
	}
	pick := func(rng *rand.Rand) *Conn { return pool[rng.IntN(slots)].Load() }

	for w := range workers {
		s := uint64(w+1) * 100
		run(s+1, func(rng *rand.Rand) { // join
			r.Join(pick(rng), groupName(rng.IntN(groups)))
		})
		run(s+2, func(rng *rand.Rand) { // leave
			c := pick(rng)
			if rng.IntN(20) == 0 {
				r.LeaveAll(c)
				return
			}
			r.Leave(c, groupName(rng.IntN(groups)))
		})
		run(s+3, func(rng *rand.Rand) { // replace: close one connection, open another
			i := rng.IntN(slots)
			old, nu := pool[i].Load(), newConn(rng)
			if !pool[i].CompareAndSwap(old, nu) {
				old = nu // another replacer won this slot: drop ours instead
			}
			old.MarkClosing()
			r.Remove(old)
			removed.Store(old, struct{}{})
		})
		run(s+4, func(rng *rand.Rand) { // broadcast to a group / user / hub
			hub := hubs[rng.IntN(len(hubs))]
			var n int
			switch rng.IntN(4) {
			case 0:
				for _, c := range r.GroupMembers(hub, groupName(rng.IntN(groups))) {
					if c.Handle.(string) != c.ID {
						t.Error("handle changed")
					}
					n++
				}
			case 1:
				for _, c := range r.UserConns(hub, userName(rng.IntN(users))) {
					_ = c.Handle
					n++
				}
			case 2:
				r.RangeHubConns(hub, func(c *Conn) bool {
					_ = c.Handle
					n++
					return true
				})
			case 3:
				r.GroupExists(hub, groupName(rng.IntN(groups)))
				r.UserExists(hub, userName(rng.IntN(users)))
				c := pick(rng)
				if got := r.Conn(c.Hub, c.ID); got != nil && got != c {
					t.Error("Conn returned another entry")
				}
				c.Groups()
				_ = r.Count()
			}
			if n < 0 {
				t.Error("unreachable")
			}
		})
		run(s+5, func(rng *rand.Rand) { // permissions change while checked
			c := pick(rng)
			g := groupName(rng.IntN(groups))
			switch rng.IntN(4) {
			case 0:
				c.Grant(send, g)
			case 1:
				c.Revoke(send, "")
			case 2:
				c.SetRoles([]string{"webpubsub.sendToGroups.g.*"})
			default:
				c.Can(send, g)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	live := make(map[*Conn]bool, slots)
	for i := range pool {
		live[pool[i].Load()] = true
	}

	// Counts agree.
	var hubTotal int
	for _, hub := range hubs {
		hubTotal += len(r.HubConns(hub))
	}
	if r.Count() != slots || hubTotal != slots {
		t.Errorf("Count = %d, sum of HubConns = %d, want %d", r.Count(), hubTotal, slots)
	}

	// No removed entry is anywhere.
	nRemoved := 0
	removed.Range(func(k, _ any) bool {
		c := k.(*Conn)
		nRemoved++
		if c.Registered() || len(c.Groups()) != 0 {
			t.Errorf("removed %s still registered or in groups %q", c.ID, c.Groups())
		}
		if r.Conn(c.Hub, c.ID) != nil {
			t.Errorf("removed %s still found by Conn", c.ID)
		}
		return true
	})
	if nRemoved == 0 {
		t.Error("the stress run removed nothing")
	}

	checkSnap := func(what string, snap []*Conn, member func(*Conn) bool) {
		seen := make(map[*Conn]bool, len(snap))
		for _, c := range snap {
			if seen[c] {
				t.Errorf("%s: %s twice", what, c.ID)
			}
			seen[c] = true
			if !live[c] {
				t.Errorf("%s: holds %s, which is not live", what, c.ID)
			}
			if !member(c) {
				t.Errorf("%s: holds %s, which does not belong", what, c.ID)
			}
		}
	}
	for _, hub := range hubs {
		checkSnap("HubConns("+hub+")", r.HubConns(hub), func(c *Conn) bool { return c.Hub == hub })
		for u := range users {
			user := userName(u)
			checkSnap("UserConns("+user+")", r.UserConns(hub, user), func(c *Conn) bool {
				return c.UserID == user && c.Hub == hub
			})
		}
		for g := range groups {
			group := groupName(g)
			snap := r.GroupMembers(hub, group)
			checkSnap("GroupMembers("+group+")", snap, func(c *Conn) bool {
				return c.InGroup(group) && c.Hub == hub
			})
			if (snap != nil) != r.GroupExists(hub, group) {
				t.Errorf("GroupExists(%s) disagrees with GroupMembers", group)
			}
		}
	}

	// Every live entry is where its own fields and groups say.
	for c := range live {
		if r.Conn(c.Hub, c.ID) != c || !c.Registered() {
			t.Errorf("live %s not found", c.ID)
		}
		if c.UserID != "" && !contains(r.UserConns(c.Hub, c.UserID), c) {
			t.Errorf("live %s missing from its user", c.ID)
		}
		for _, g := range c.Groups() {
			if !contains(r.GroupMembers(c.Hub, g), c) {
				t.Errorf("live %s says it is in %s, the group disagrees", c.ID, g)
			}
		}
	}
}

func contains(conns []*Conn, c *Conn) bool {
	for _, x := range conns {
		if x == c {
			return true
		}
	}
	return false
}

// TestJoinRacesRemove: whatever the interleaving, a removed connection ends up in no
// group.
func TestJoinRacesRemove(t *testing.T) {
	r := newRegistry(t, 4)
	for i := range 500 {
		c := &Conn{ID: fmt.Sprint(i), Hub: "hub"}
		if err := r.Add(c); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() { r.Join(c, fmt.Sprint("g", g)) })
		}
		wg.Go(func() { r.Remove(c) })
		wg.Wait()
		for g := range 4 {
			if contains(r.GroupMembers("hub", fmt.Sprint("g", g)), c) {
				t.Fatalf("iteration %d: removed connection left in g%d", i, g)
			}
		}
		if len(c.Groups()) != 0 {
			t.Fatalf("iteration %d: removed connection lists groups %q", i, c.Groups())
		}
	}
	if r.Count() != 0 {
		t.Fatalf("Count = %d", r.Count())
	}
}
