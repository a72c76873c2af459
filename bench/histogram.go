package bench

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histSubBits sets the precision of Histogram: 2^6 = 64 linear sub-buckets per power of
// two, so a bucket's midpoint is within 1/128 (0.8%) of any value in it.
const histSubBits = 6

const (
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// Histogram counts durations in log-linear buckets. Its memory is fixed (about 30 KiB)
// however many values it records, so long runs stay bounded. Safe for concurrent use.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - histSubBits
	return (shift+1)*histSub + int(v>>uint(shift)) - histSub
}

// histMid returns the midpoint of bucket i.
func histMid(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	shift := i/histSub - 1
	lo := uint64(i%histSub+histSub) << uint(shift)
	return float64(lo) + float64(uint64(1)<<uint(shift)-1)/2
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histIndex(uint64(v))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max returns the largest duration recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the q-quantile (0 < q ≤ 1) to within 1%, or 0 when nothing was
// recorded. Call it once recording has stopped.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(time.Duration(histMid(i)), h.Max())
		}
	}
	return h.Max()
}

// histogramData is a Histogram on the wire between a worker and the parent: its non-empty
// buckets, so the parent can merge the workers' histograms exactly and compute quantiles
// over all of them (averaging per-worker percentiles would not be a percentile).
type histogramData struct {
	// SubBits is histSubBits of the process that recorded it; merging refuses another.
	SubBits int `json:"sub_bits"`
	// Buckets are [bucket index, count] pairs in increasing index order.
	Buckets [][2]uint64 `json:"buckets"`
	Count   uint64      `json:"count"`
	MaxNs   int64       `json:"max_ns"`
}

// errHistogramLayout means a worker sent buckets of another layout: the worker binary is not
// this binary. Run the bench from one build.
var errHistogramLayout = errors.New("bench: histogram buckets of another layout")

// snapshot returns h's buckets. Call it once recording has stopped, or accept a reading
// that may miss values being recorded concurrently.
func (h *Histogram) snapshot() *histogramData {
	d := &histogramData{SubBits: histSubBits, Count: h.n.Load(), MaxNs: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			d.Buckets = append(d.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return d
}

// merge adds d's counts to h. A nil d adds nothing.
func (h *Histogram) merge(d *histogramData) error {
	if d == nil {
		return nil
	}
	if d.SubBits != histSubBits {
		return fmt.Errorf("%w: sub_bits %d, want %d", errHistogramLayout, d.SubBits, histSubBits)
	}
	for _, b := range d.Buckets {
		if b[0] >= histBuckets {
			return fmt.Errorf("%w: bucket %d of %d", errHistogramLayout, b[0], histBuckets)
		}
	}
	for _, b := range d.Buckets {
		h.counts[b[0]].Add(b[1])
	}
	h.n.Add(d.Count)
	for {
		m := h.max.Load()
		if d.MaxNs <= m || h.max.CompareAndSwap(m, d.MaxNs) {
			return nil
		}
	}
}
