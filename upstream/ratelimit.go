package upstream

import (
	"sync/atomic"
	"time"
)

// rateLimit lets one log line a second through for one kind of repeated warning
// (operations.md §4) and counts the lines it holds back; the next line let through
// reports that count as suppressed=N. A refused call costs two atomic operations and
// allocates nothing. The zero value is ready. Safe for concurrent use. A copy of the
// engine's type (STYLE §1: a small helper two packages need is copied).
type rateLimit struct {
	next       atomic.Int64 // unix nanoseconds before which lines are held back
	suppressed atomic.Int64 // lines held back since the last one let through
}

// rateLimitInterval is the spacing of lines of one kind.
const rateLimitInterval = time.Second

// allow reports whether a line may be written at now and, if so, how many lines were
// held back since the previous one.
func (r *rateLimit) allow(now time.Time) (suppressed int64, ok bool) {
	n := now.UnixNano()
	next := r.next.Load()
	if n < next || !r.next.CompareAndSwap(next, n+int64(rateLimitInterval)) {
		r.suppressed.Add(1)
		return 0, false
	}
	return r.suppressed.Swap(0), true
}
