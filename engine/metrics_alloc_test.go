//go:build !race

package engine

import "testing"

// TestMetricsCountingAlloc: counting a message on its loop is two additions to
// fields of the loop; it allocates nothing (STYLE §4).
func TestMetricsCountingAlloc(t *testing.T) {
	lp := &loop{stats: loopStats{hubs: make([]hubCounters, newHubLabels(nil).size())}}
	c := &conn{lp: lp, hubIdx: 3}
	if n := testing.AllocsPerRun(1000, func() {
		c.countDelivered(64)
		c.countReceived(64)
	}); n != 0 {
		t.Fatalf("%v allocations per counted message, want 0", n)
	}
	if h := lp.stats.hubs[3]; h.delivered != 1001 || h.deliveredBytes != 1001*64 || h.received != 1001 {
		t.Fatalf("counters %+v", h)
	}
}
