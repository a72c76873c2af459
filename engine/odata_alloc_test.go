//go:build !race

package engine

import (
	"strconv"
	"testing"

	"github.com/webpubsub/webpubsub/registry"
)

// TestFilterMatchAllocs checks that Match does not allocate (STYLE.md §4),
// including filters that need scratch space (tolower of an upper-case user,
// concat, substring of a computed string).
func TestFilterMatchAllocs(t *testing.T) {
	for _, tc := range odataCases {
		if tc.want == "" || tc.name == "in/computed-in-groups" {
			// Errors have nothing to match; a computed string tested against
			// groups must be converted for InGroup (documented on FilterTarget).
			continue
		}
		f, err := CompileFilter(tc.filter, tc.max)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, tg := range odataTestTargets {
			f.Match(tg) // warm the scratch pool
			if n := testing.AllocsPerRun(50, func() { f.Match(tg) }); n != 0 {
				t.Errorf("%s: Match(%q) allocates %v times", tc.name, tg.UserID, n)
			}
		}
	}
}

// TestSendFilterAllocs checks the send path's per-connection filter evaluation
// (connTarget.match on registry connections) does not allocate: one message to
// many connections costs no garbage per recipient.
func TestSendFilterAllocs(t *testing.T) {
	reg, err := registry.New(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var conns []*registry.Conn
	for i, user := range []string{"alice", "bob", "", "chat-bot"} {
		rc := &registry.Conn{ID: "c" + strconv.Itoa(i), Hub: "h", UserID: user}
		if err := reg.Add(rc); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			reg.Join(rc, "g1")
		}
		reg.Join(rc, "g2")
		conns = append(conns, rc)
	}
	for _, text := range []string{
		"'g1' in groups or 'g3' in groups",
		"userId ne null and not endswith(userId, 'bot')",
		"length(groups) gt 1 and startswith(connectionId, 'c')",
		"tolower(userId) in ('alice', 'bob')",
	} {
		f, err := CompileFilter(text, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ct connTarget
		matched := 0
		for _, rc := range conns { // warm up, and prove the filter is evaluated
			if ct.match(f, rc) {
				matched++
			}
		}
		if matched == 0 || matched == len(conns) {
			t.Fatalf("%q matched %d of %d: the test needs a filter that discriminates", text, matched, len(conns))
		}
		if n := testing.AllocsPerRun(50, func() {
			for _, rc := range conns {
				ct.match(f, rc)
			}
		}); n != 0 {
			t.Errorf("%q: %v allocations per %d connections", text, n, len(conns))
		}
	}
}
