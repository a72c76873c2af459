//go:build !race

package engine

import (
	"testing"
	"time"
)

// TestRateLimitAlloc: a held-back line costs no allocation (operations.md §4 limits are
// logged from hot paths).
func TestRateLimitAlloc(t *testing.T) {
	var r rateLimit
	now := time.Now()
	r.allow(now)
	if n := testing.AllocsPerRun(1000, func() { r.allow(now) }); n != 0 {
		t.Fatalf("rateLimit.allow allocates %v times when it holds a line back, want 0", n)
	}
}
