package bench

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// testSelectors are hand-written readings of the filters the tests use: the bench
// takes its Selector from its caller (the engine's compiler in cmd/webpubsub, tested
// there), and the fake service delivers with the same functions.
var testSelectors = map[string]Selector{
	"userId ne null": func(u string, _ []string) bool { return u != "" },
	"'g0' in groups": func(_ string, g []string) bool { return slices.Contains(g, "g0") },
	"'g1' in groups": func(_ string, g []string) bool { return slices.Contains(g, "g1") },
	"startswith(userId, 'bench-1')": func(u string, _ []string) bool {
		return strings.HasPrefix(u, "bench-1")
	},
	"userId ne null and not endswith(userId, '7')": func(u string, _ []string) bool {
		return u != "" && !strings.HasSuffix(u, "7")
	},
}

// TestUnselectedBits: the bitmap the coordinator hands the workers marks exactly the
// members the selector refuses, given member i is user bench-<i> in group g<i mod G>.
func TestUnselectedBits(t *testing.T) {
	for _, tc := range []struct {
		filter   string
		groups   int
		selected int
	}{
		{"userId ne null", 0, 10000},
		{"'g0' in groups", 2, 5000},
		{"'g1' in groups", 4, 2500},
		{"'g1' in groups", 0, 0},
		{"startswith(userId, 'bench-1')", 0, 1111}, // 1, 10–19, 100–199, 1000–1999
		{"userId ne null and not endswith(userId, '7')", 0, 9000},
	} {
		t.Run(nameValue(tc.filter)+"/groups="+formatValue(float64(tc.groups)), func(t *testing.T) {
			cfg := workerConfig{GroupCycle: tc.groups}
			sel := testSelectors[tc.filter]
			bits := unselectedBits(10000, cfg.groupOf, sel)
			if tc.selected == 10000 && bits != nil {
				t.Fatalf("a filter that selects everyone gives a bitmap of %d bytes, want nil", len(bits))
			}
			n := 0
			for i := range 10000 {
				var g []string
				if name := cfg.groupOf(i); name != "" {
					g = []string{name}
				}
				if bitSet(bits, i) == sel(benchUser(i), g) {
					t.Fatalf("member %d: bit %v, selector %v", i, bitSet(bits, i), sel(benchUser(i), g))
				}
				if !bitSet(bits, i) {
					n++
				}
			}
			if n != tc.selected || bitSet(bits, 10000) || bitSet(bits, 1<<20) {
				t.Fatalf("selects %d of 10000, want %d (or a bit past the end is set)", n, tc.selected)
			}
		})
	}
}

func TestDrainPlanWant(t *testing.T) {
	in, out := &client{group: "g0"}, &client{group: "g0", unselected: true}
	for _, tc := range []struct {
		name    string
		plan    drainPlan
		in, out int64
	}{
		{"group", drainPlan{Expect: map[string]int64{"g0": 5}}, 5, 0},
		{"other-group", drainPlan{Expect: map[string]int64{"bench": 5}}, 0, 0},
		{"all", drainPlan{All: 7}, 7, 0},
		{"nothing-accepted", drainPlan{}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.plan.want(in); got != tc.in {
				t.Errorf("selected member wants %d, want %d", got, tc.in)
			}
			if got := tc.plan.want(out); got != tc.out {
				t.Errorf("unselected member wants %d, want %d", got, tc.out)
			}
		})
	}
}

func TestFanoutConfigCheck(t *testing.T) {
	base := FanoutConfig{Members: 10, Messages: 1, Rate: 1}
	for _, tc := range []struct {
		name string
		edit func(c *FanoutConfig)
		err  string // "" for valid
		// url and name are the send URL's path and query, and the filter= part, when valid.
		url, filterName string
	}{
		{"group", func(c *FanoutConfig) {}, "", "/api/hubs/h/groups/bench/:send?api-version=2024-01-01", ""},
		{"all", func(c *FanoutConfig) { c.Target = TargetAll }, "", "/api/hubs/h/:send?api-version=2024-12-01", "none"},
		{"all-filter", func(c *FanoutConfig) { c.Target, c.MemberGroups, c.Filter = TargetAll, 2, "'g0' in groups" },
			"", "/api/hubs/h/:send?api-version=2024-12-01&filter=%27g0%27%20in%20groups", "'g0'_in_groups"},
		{"all-filter-named", func(c *FanoutConfig) { c.Target, c.Filter, c.FilterName = TargetAll, "userId ne null", "every one" },
			"", "/api/hubs/h/:send?api-version=2024-12-01&filter=userId%20ne%20null", "every_one"},
		{"group-filter", func(c *FanoutConfig) { c.Filter = "startswith(userId, 'bench-1')" },
			"", "/api/hubs/h/groups/bench/:send?api-version=2024-01-01&filter=startswith%28userId%2C%20%27bench-1%27%29", "startswith(userId,_'bench-1')"},
		{"filter-plus-slash", func(c *FanoutConfig) { c.Target, c.Filter = TargetAll, "userId eq 'a+b/c'" },
			"", "/api/hubs/h/:send?api-version=2024-12-01&filter=userId%20eq%20%27a%2Bb%2Fc%27", "userId_eq_'a+b%2Fc'"},
		{"unknown-target", func(c *FanoutConfig) { c.Target = "everyone" }, "target", "", ""},
		{"all-client", func(c *FanoutConfig) { c.Target, c.Publisher = TargetAll, PublisherClient }, "--publisher rest", "", ""},
		{"filter-client", func(c *FanoutConfig) { c.Filter, c.Publisher = "userId ne null", PublisherClient }, "--publisher rest", "", ""},
		{"groups-with-group-target", func(c *FanoutConfig) { c.MemberGroups = 2 }, "member groups", "", ""},
		{"negative-groups", func(c *FanoutConfig) { c.Target, c.MemberGroups = TargetAll, -1 }, "member groups", "", ""},
		{"no-selector", func(c *FanoutConfig) { c.Target, c.Filter, c.Select = TargetAll, "userId ne null", nil }, "Selector", "", ""},
		{"connection-id", func(c *FanoutConfig) { c.Target, c.Filter = TargetAll, "connectionId eq 'x'" }, "connection ids", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Options = Options{Service: Service{Endpoint: "http://127.0.0.1:1", AccessKey: "k"}, Hub: "h"}
			c.Select = func(string, []string) bool { return true }
			tc.edit(&c)
			err := c.check()
			if tc.err != "" {
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrConfig saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(c.sendURL())
			if err != nil {
				t.Fatal(err)
			}
			if got := u.EscapedPath() + "?" + u.RawQuery; got != tc.url {
				t.Errorf("send URL %s, want %s", got, tc.url)
			}
			if c.Filter != "" && u.Query().Get("filter") != c.Filter {
				t.Errorf("the URL's filter decodes to %q", u.Query().Get("filter"))
			}
			if (c.Target == TargetAll || c.Filter != "") && c.FilterName != tc.filterName {
				t.Errorf("filter name %q, want %q", c.FilterName, tc.filterName)
			}
		})
	}
}

// TestRunFanoutAll: sends to all, with and without a filter, against the fake service,
// which reads the filter the bench sends and delivers to whom it selects.
func TestRunFanoutAll(t *testing.T) {
	for _, tc := range []struct {
		name, filter, filterName string
		selected                 int
	}{
		{"unfiltered", "", "none", 200},
		{"half", "'g1' in groups", "'g1'_in_groups", 100},
		{"users", "userId ne null and not endswith(userId, '7')", "userId_ne_null_and_not_endswith(userId,_'7')", 180},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeService(t)
			o := testOptions(t, fs)
			o.ConnsPerWorker = 150
			r, err := RunFanout(context.Background(), FanoutConfig{Options: o, Members: 200, Messages: 5, Rate: 50, SizeBytes: 64,
				Target: TargetAll, MemberGroups: 2, Filter: tc.filter, Select: testSelectors[tc.filter]})
			if err != nil {
				t.Fatal(err)
			}
			if metric(r, "selected") != float64(tc.selected) || metric(r, "deliveries") != float64(5*tc.selected) ||
				metric(r, "ratio") != 1 || metric(r, "cpu-ms/send") < 0 || r.FailureTotal() != 0 {
				t.Fatalf("result %+v", r)
			}
			for _, n := range r.Notes {
				if strings.Contains(n, "received more") {
					t.Fatalf("a member the filter does not select received a send: %s", n)
				}
			}
			want := "BenchmarkFanout/members=200/messages=5/rate=50/size=64/publisher=rest/target=all/groups=2/filter=" + tc.filterName + "/protocol=json\t1\t"
			if !strings.HasPrefix(benchLine(t, r), want) {
				t.Fatalf("benchmark line %q, want prefix %q", benchLine(t, r), want)
			}
		})
	}
}
