package registry

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"testing"
)

func newRegistry(t testing.TB, shards int) *Registry {
	t.Helper()
	r, err := New(Config{Shards: shards})
	if err != nil {
		t.Fatalf("New(Shards=%d): %v", shards, err)
	}
	return r
}

// addConn registers a new Conn and removes it again when the test ends.
func addConn(t testing.TB, r *Registry, hub, id, user string) *Conn {
	t.Helper()
	c := &Conn{ID: id, Hub: hub, UserID: user}
	if err := r.Add(c); err != nil {
		t.Fatalf("Add(%s/%s): %v", hub, id, err)
	}
	t.Cleanup(func() { r.Remove(c) })
	return c
}

func ids(conns []*Conn) []string {
	out := make([]string, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.ID)
	}
	slices.Sort(out)
	return out
}

func wantIDs(t *testing.T, what string, got []*Conn, want ...string) {
	t.Helper()
	slices.Sort(want)
	if g := ids(got); !slices.Equal(g, want) {
		t.Errorf("%s = %q, want %q", what, g, want)
	}
}

func TestNewShards(t *testing.T) {
	for _, tc := range []struct {
		shards int
		want   int // shard count, 0 for an error
	}{
		{0, DefaultShards},
		{1, 1},
		{2, 2},
		{64, 64},
		{1024, 1024},
		{maxShards, maxShards},
		{3, 0},
		{100, 0},
		{-1, 0},
		{-64, 0},
		{maxShards * 2, 0},
	} {
		t.Run(fmt.Sprintf("shards=%d", tc.shards), func(t *testing.T) {
			r, err := New(Config{Shards: tc.shards})
			if tc.want == 0 {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.shards) != tc.want {
				t.Fatalf("shards = %d, want %d", len(r.shards), tc.want)
			}
		})
	}
}

// The lookups hash the folded hub as bytes, Add hashes it as a string; both must pick
// the same shard.
func TestHashStringMatchesBytes(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, s := range []string{"", "a", "chat", "a-much-longer-hub-name-than-sixteen-bytes"} {
		if maphash.String(seed, s) != maphash.Bytes(seed, []byte(s)) {
			t.Errorf("maphash.String(%q) != maphash.Bytes", s)
		}
	}
}

func TestAddConnRemove(t *testing.T) {
	r := newRegistry(t, 4)
	c := addConn(t, r, "Chat", "c1", "u1")

	if got := r.Conn("chat", "c1"); got != c {
		t.Fatalf("Conn(chat, c1) = %p, want %p", got, c)
	}
	if got := r.Conn("CHAT", "c1"); got != c {
		t.Fatal("hub must match case-insensitively")
	}
	if got := r.Conn("chat", "C1"); got != nil {
		t.Fatal("connection id must match case-sensitively")
	}
	if got := r.Conn("other", "c1"); got != nil {
		t.Fatal("connection found in another hub")
	}
	if !r.ConnExists("cHaT", "c1") || r.ConnExists("chat", "c2") {
		t.Fatal("ConnExists wrong")
	}
	if c.Hub != "Chat" {
		t.Fatalf("Hub rewritten to %q", c.Hub)
	}
	if !c.Registered() || r.Count() != 1 {
		t.Fatalf("Registered=%v Count=%d", c.Registered(), r.Count())
	}

	r.Remove(c)
	if r.Conn("chat", "c1") != nil || r.Count() != 0 || c.Registered() {
		t.Fatal("connection still registered after Remove")
	}
	r.Remove(c) // idempotent
	if r.Count() != 0 {
		t.Fatalf("Count after second Remove = %d", r.Count())
	}
	if err := r.Add(c); !errors.Is(err, ErrInvalidConn) {
		t.Fatalf("re-Add of removed Conn: err = %v, want ErrInvalidConn", err)
	}
}

func TestAddErrors(t *testing.T) {
	r := newRegistry(t, 0)
	c := addConn(t, r, "hub", "c1", "")

	if err := r.Add(c); !errors.Is(err, ErrInvalidConn) {
		t.Errorf("Add twice: err = %v, want ErrInvalidConn", err)
	}
	if err := r.Add(&Conn{ID: "c1", Hub: "HUB"}); !errors.Is(err, ErrDuplicateConn) {
		t.Errorf("same id, hub in other case: err = %v, want ErrDuplicateConn", err)
	}
	if err := r.Add(&Conn{ID: "", Hub: "hub"}); !errors.Is(err, ErrInvalidConn) {
		t.Errorf("empty id: err = %v, want ErrInvalidConn", err)
	}
	if err := r.Add(&Conn{ID: "x", Hub: ""}); !errors.Is(err, ErrInvalidConn) {
		t.Errorf("empty hub: err = %v, want ErrInvalidConn", err)
	}
	// The same id in another hub is a different connection.
	d := addConn(t, r, "hub2", "c1", "")
	if r.Conn("hub", "c1") != c || r.Conn("hub2", "c1") != d {
		t.Error("same id in two hubs mixed up")
	}
	if r.Count() != 2 {
		t.Errorf("Count = %d, want 2", r.Count())
	}
	// A failed duplicate Add leaves the original untouched.
	if got := r.HubConns("hub"); len(got) != 1 || got[0] != c {
		t.Errorf("HubConns(hub) = %q", ids(got))
	}
}

func TestRemoveForeignConn(t *testing.T) {
	r1, r2 := newRegistry(t, 1), newRegistry(t, 1)
	c := addConn(t, r1, "hub", "c1", "u")
	r2.Remove(c)
	if r2.Join(c, "g") || r2.Leave(c, "g") {
		t.Error("another registry changed c")
	}
	r2.LeaveAll(c)
	if r1.Conn("hub", "c1") != c || r1.Count() != 1 {
		t.Error("Remove on another registry removed c")
	}
}

func TestReplaceAfterRemove(t *testing.T) {
	r := newRegistry(t, 2)
	old := addConn(t, r, "hub", "c1", "u1")
	r.Join(old, "g")
	r.Remove(old)
	nu := addConn(t, r, "hub", "c1", "u1")
	if r.Conn("hub", "c1") != nu {
		t.Fatal("new entry not found")
	}
	if r.GroupExists("hub", "g") || nu.InGroup("g") {
		t.Fatal("group membership carried over to the new entry")
	}
	wantIDs(t, "UserConns", r.UserConns("hub", "u1"), "c1")
}

func TestJoinLeave(t *testing.T) {
	r := newRegistry(t, 8)
	a := addConn(t, r, "hub", "a", "")
	b := addConn(t, r, "hub", "b", "")

	if r.GroupMembers("hub", "g") != nil || r.GroupExists("hub", "g") {
		t.Fatal("unknown group must be nil / not exist")
	}
	if !r.Join(a, "g") {
		t.Fatal("first Join = false")
	}
	if r.Join(a, "g") {
		t.Fatal("second Join = true")
	}
	r.Join(b, "g")
	r.Join(a, "G") // group names are case-sensitive
	r.Join(a, "a.b.c")

	wantIDs(t, "GroupMembers(g)", r.GroupMembers("hub", "g"), "a", "b")
	wantIDs(t, "GroupMembers(HUB, g)", r.GroupMembers("HUB", "g"), "a", "b")
	wantIDs(t, "GroupMembers(G)", r.GroupMembers("hub", "G"), "a")
	if r.GroupMembers("other", "g") != nil {
		t.Error("group visible in another hub")
	}
	if got := a.Groups(); !slices.Equal(got, []string{"G", "a.b.c", "g"}) {
		t.Errorf("a.Groups() = %q", got)
	}
	if !a.InGroup("g") || a.InGroup("x") || !b.InGroup("g") || b.InGroup("G") {
		t.Error("InGroup wrong")
	}
	if a.GroupCount() != 3 || b.GroupCount() != 1 {
		t.Errorf("GroupCount: a %d (want 3), b %d (want 1)", a.GroupCount(), b.GroupCount())
	}

	if r.Leave(a, "x") {
		t.Error("Leave of a group not joined = true")
	}
	if !r.Leave(a, "g") || r.Leave(a, "g") {
		t.Error("Leave should report true once")
	}
	wantIDs(t, "GroupMembers(g) after leave", r.GroupMembers("hub", "g"), "b")
	r.Leave(b, "g")
	if r.GroupMembers("hub", "g") != nil || r.GroupExists("hub", "g") {
		t.Error("empty group must disappear")
	}

	r.LeaveAll(a)
	if a.Groups() != nil || r.GroupExists("hub", "G") || r.GroupExists("hub", "a.b.c") {
		t.Error("LeaveAll left groups behind")
	}
	r.LeaveAll(a) // idempotent
}

func TestJoinBeforeAddAndAfterRemove(t *testing.T) {
	r := newRegistry(t, 1)
	c := &Conn{ID: "c", Hub: "hub"}
	if r.Join(c, "g") {
		t.Error("Join before Add = true")
	}
	if err := r.Add(c); err != nil {
		t.Fatal(err)
	}
	r.Join(c, "g")
	r.Remove(c)
	if r.Join(c, "g") || r.Leave(c, "g") {
		t.Error("Join/Leave after Remove changed something")
	}
	if r.GroupExists("hub", "g") || c.Groups() != nil || c.InGroup("g") {
		t.Error("removed connection still in a group")
	}
}

func TestUsers(t *testing.T) {
	r := newRegistry(t, 4)
	a := addConn(t, r, "hub", "a", "alice")
	addConn(t, r, "HUB", "a2", "alice")
	addConn(t, r, "hub", "b", "bob")
	addConn(t, r, "hub", "anon", "")
	addConn(t, r, "hub2", "x", "alice")

	wantIDs(t, "UserConns(alice)", r.UserConns("Hub", "alice"), "a", "a2")
	wantIDs(t, "UserConns(hub2, alice)", r.UserConns("hub2", "alice"), "x")
	if r.UserConns("hub", "Alice") != nil || r.UserExists("hub", "Alice") {
		t.Error("user ids must match case-sensitively")
	}
	if r.UserConns("hub", "") != nil || r.UserExists("hub", "") {
		t.Error(`"" is not a user`)
	}
	if !r.UserExists("hub", "bob") {
		t.Error("UserExists(bob) = false")
	}
	r.Remove(a)
	wantIDs(t, "UserConns(alice) after Remove", r.UserConns("hub", "alice"), "a2")
	r.Remove(r.Conn("hub", "a2"))
	if r.UserExists("hub", "alice") || r.UserConns("hub", "alice") != nil {
		t.Error("user without connections still exists")
	}
}

func TestHubConns(t *testing.T) {
	r := newRegistry(t, 16)
	var want []string
	for i := range 100 {
		id := fmt.Sprintf("c%d", i)
		addConn(t, r, "Hub", id, "")
		want = append(want, id)
	}
	addConn(t, r, "other", "o1", "")

	wantIDs(t, "HubConns", r.HubConns("hUB"), want...)
	wantIDs(t, "HubConns(other)", r.HubConns("OTHER"), "o1")
	if r.HubConns("none") != nil {
		t.Error("HubConns of unknown hub not nil")
	}
	if r.Count() != 101 {
		t.Errorf("Count = %d", r.Count())
	}

	n := 0
	r.RangeHubConns("hub", func(c *Conn) bool {
		n++
		return n < 10
	})
	if n != 10 {
		t.Errorf("RangeHubConns did not stop: %d calls", n)
	}

	// fn may call back into the registry: no lock is held.
	r.RangeHubConns("hub", func(c *Conn) bool {
		r.Join(c, "all")
		return true
	})
	if got := len(r.GroupMembers("hub", "all")); got != 100 {
		t.Errorf("joined from RangeHubConns: %d members", got)
	}
}

func TestClosing(t *testing.T) {
	r := newRegistry(t, 2)
	a := addConn(t, r, "hub", "a", "u")
	b := addConn(t, r, "hub", "b", "u")
	r.Join(a, "g")
	r.Join(b, "g")

	if !a.MarkClosing() || a.MarkClosing() {
		t.Fatal("MarkClosing should report true exactly once")
	}
	if !a.Closing() || b.Closing() {
		t.Fatal("Closing wrong")
	}
	if r.ConnExists("hub", "a") {
		t.Error("closing connection reported as existing")
	}
	if r.Conn("hub", "a") != a {
		t.Error("Conn must still return a closing connection")
	}
	if !r.UserExists("hub", "u") || !r.GroupExists("hub", "g") {
		t.Error("user/group with an open connection must exist")
	}
	b.MarkClosing()
	if r.UserExists("hub", "u") || r.GroupExists("hub", "g") {
		t.Error("user/group with only closing connections must not exist (rest-api.md §6)")
	}
	if len(r.GroupMembers("hub", "g")) != 2 {
		t.Error("closing connections stay members until Remove")
	}
}

// A reader holding a snapshot must never see it change, whether members join (append in
// place) or leave (rebuild).
func TestSnapshotImmutable(t *testing.T) {
	r := newRegistry(t, 1)
	var conns []*Conn
	for i := range 8 {
		conns = append(conns, addConn(t, r, "hub", fmt.Sprint(i), ""))
	}
	r.Join(conns[0], "g")
	r.Join(conns[1], "g")
	s1 := r.GroupMembers("hub", "g")
	before := slices.Clone(s1)

	r.Join(conns[2], "g") // appended to the cached snapshot
	s2 := r.GroupMembers("hub", "g")
	if len(s2) != 3 {
		t.Fatalf("len after join = %d", len(s2))
	}
	if cap(s1) != len(s1) || cap(s2) != len(s2) {
		t.Fatal("snapshot capacity not clipped: a caller's append could write into it")
	}
	_ = append(s1, conns[7]) // must not be visible to anybody
	r.Join(conns[3], "g")
	s3 := r.GroupMembers("hub", "g")
	if !slices.Contains(s3, conns[3]) || slices.Contains(s3, conns[7]) {
		t.Fatalf("snapshot after append: %q", ids(s3))
	}

	r.Leave(conns[0], "g") // stale: rebuilt on the next read
	s4 := r.GroupMembers("hub", "g")
	if slices.Contains(s4, conns[0]) || len(s4) != 3 {
		t.Fatalf("snapshot after leave: %q", ids(s4))
	}
	if !slices.Equal(s1, before) {
		t.Fatal("an earlier snapshot changed")
	}
	if len(s3) != 4 || !slices.Contains(s3, conns[0]) {
		t.Fatal("an earlier snapshot changed after leave")
	}
	// Two reads without a change return the same backing array (cached).
	s5 := r.GroupMembers("hub", "g")
	if &s4[0] != &s5[0] {
		t.Error("snapshot not cached")
	}
}

func TestLongHubName(t *testing.T) {
	r := newRegistry(t, 4)
	hub := "H" + strings.Repeat("Ab", maxHubBytes) // longer than the stack buffer
	c := addConn(t, r, hub, "c", "u")
	r.Join(c, "g")
	lower := hubKeyOf(hub)
	if r.Conn(lower, "c") != c || !r.GroupExists(lower, "g") || !r.UserExists(hub, "u") {
		t.Error("hub longer than the stack buffer not found")
	}
}

func TestHubKeyOf(t *testing.T) {
	for in, want := range map[string]string{
		"chat":      "chat",
		"Chat":      "chat",
		"CHAT_1[x]": "chat_1[x]",
		"ÄB":        "Äb", // only ASCII folds; hub names are ASCII (§1.2)
	} {
		if got := hubKeyOf(in); got != want {
			t.Errorf("hubKeyOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// rest-api.md §3.16: a user joins by each of its current connections joining.
func TestAddUserToGroupByConns(t *testing.T) {
	r := newRegistry(t, 4)
	addConn(t, r, "hub", "a1", "alice")
	addConn(t, r, "hub", "a2", "alice")
	addConn(t, r, "hub", "b1", "bob")
	for _, c := range r.UserConns("hub", "alice") {
		r.Join(c, "g")
	}
	wantIDs(t, "members", r.GroupMembers("hub", "g"), "a1", "a2")
	for _, c := range r.UserConns("hub", "alice") {
		r.Leave(c, "g")
	}
	if r.GroupExists("hub", "g") {
		t.Error("group still exists")
	}
}
