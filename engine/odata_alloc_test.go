//go:build !race

package engine

import "testing"

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
