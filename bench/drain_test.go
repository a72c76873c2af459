package bench

import (
	"testing"
	"time"
)

// reportWave's pace figures from the workers' 10 ms buckets: the most events in any
// sliding one-second window, and the median of the whole seconds (the partial last second
// left out).
func TestReportWave(t *testing.T) {
	signalled := time.Unix(100, 0)
	b0 := signalled.Add(time.Second).UnixNano() / int64(drainBucket) // first close 1 s after the signal
	buckets := map[int64]int64{}
	for i := range int64(300) { // 3 s at 5 per 10 ms = 500/s ...
		buckets[b0+i] = 5
	}
	buckets[b0+150] += 40 // ... with a burst in the middle second
	buckets[b0+300] = 1   // and a partial last second
	r := &Result{}
	if got := reportWave(r, "closes", "close", buckets, signalled); got != 1541 {
		t.Fatalf("total %d, want 1541", got)
	}
	want := map[string]float64{
		"closes":         1541,
		"first-close-ns": float64(time.Second),
		"last-close-ns":  float64(4*time.Second + drainBucket),
		"closes/s-max":   540,
		"closes/s-p50":   500,
	}
	for _, m := range r.Metrics {
		if w, ok := want[m.Unit]; ok {
			if m.Value != w {
				t.Errorf("%s = %v, want %v", m.Unit, m.Value, w)
			}
			delete(want, m.Unit)
		}
	}
	if len(want) > 0 {
		t.Errorf("metrics missing: %v", want)
	}
}
