package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Param is one key=value part of a benchmark name, such as conns=10000.
type Param struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Metric is one measured value. Unit is a benchstat unit (no spaces), such as bytes/conn,
// handshakes/s or p99-ns.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Result is what one scenario run measured.
type Result struct {
	// Name is the benchmark name without the "Benchmark" prefix: Idle, Connect, Fanout.
	Name     string           `json:"name"`
	Params   []Param          `json:"params"`
	Metrics  []Metric         `json:"metrics"`
	Failures map[string]int64 `json:"failures,omitempty"`
	Notes    []string         `json:"notes,omitempty"`
	Started  time.Time        `json:"started"`
	Elapsed  time.Duration    `json:"elapsed_ns"`
}

func (r *Result) param(k string, v any) { r.Params = append(r.Params, Param{k, fmt.Sprint(v)}) }

func (r *Result) metric(name string, v float64, unit string) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	r.Metrics = append(r.Metrics, Metric{name, v, unit})
}

// latency adds the quantiles of h. unitPrefix keeps the units of two histograms of one
// result apart (benchstat keys metrics by unit): "" gives p50-ns, "rest-" rest-p50-ns.
func (r *Result) latency(what, unitPrefix string, h *Histogram) {
	if h.Count() == 0 {
		return
	}
	r.metric(what+" p50", float64(h.Quantile(0.50)), unitPrefix+"p50-ns")
	r.metric(what+" p99", float64(h.Quantile(0.99)), unitPrefix+"p99-ns")
	r.metric(what+" p99.9", float64(h.Quantile(0.999)), unitPrefix+"p999-ns")
	r.metric(what+" max", float64(h.Max()), unitPrefix+"max-ns")
}

func (r *Result) notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// FailureTotal is the number of failures of every kind.
func (r *Result) FailureTotal() int64 {
	var n int64
	for _, v := range r.Failures {
		n += v
	}
	return n
}

// BenchmarkName is the Go benchmark name: BenchmarkIdle/conns=10000.
func (r *Result) BenchmarkName() string {
	var b strings.Builder
	b.WriteString("Benchmark")
	b.WriteString(r.Name)
	for _, p := range r.Params {
		b.WriteString("/" + p.Key + "=" + p.Value)
	}
	return b.String()
}

// WriteBenchmarkHeader writes the configuration lines benchstat groups results by.
func WriteBenchmarkHeader(w io.Writer, cpu string) error {
	_, err := fmt.Fprintf(w, "goos: %s\ngoarch: %s\npkg: github.com/webpubsub/webpubsub/bench\ncpu: %s\n", runtime.GOOS, runtime.GOARCH, cpu)
	return err
}

// WriteBenchmark writes r as one line of Go benchmark output with one iteration.
func (r *Result) WriteBenchmark(w io.Writer) error {
	var b strings.Builder
	b.WriteString(r.BenchmarkName())
	b.WriteString("\t1")
	for _, m := range r.Metrics {
		b.WriteString("\t" + formatValue(m.Value) + " " + m.Unit)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes r as a table for people.
func (r *Result) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s (", r.Name)
	for i, p := range r.Params {
		if i > 0 {
			fmt.Fprint(tw, ", ")
		}
		fmt.Fprintf(tw, "%s=%s", p.Key, p.Value)
	}
	fmt.Fprintf(tw, "), %s\n", r.Elapsed.Round(time.Millisecond))
	for _, m := range r.Metrics {
		fmt.Fprintf(tw, "  %s\t%s\n", m.Name, humanValue(m))
	}
	kinds := slices.Sorted(maps.Keys(r.Failures))
	for _, k := range kinds {
		fmt.Fprintf(tw, "  failures %s\t%d\n", k, r.Failures[k])
	}
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "  note: %s\n", n)
	}
	return tw.Flush()
}

// WriteJSON writes r as one JSON object on a line.
func (r *Result) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 3, 64)
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

func humanValue(m Metric) string {
	switch {
	case strings.HasSuffix(m.Unit, "-ns"):
		return time.Duration(m.Value).Round(time.Microsecond).String()
	case strings.Contains(m.Unit, "bytes"):
		return fmt.Sprintf("%s %s (%s)", formatValue(m.Value), m.Unit, humanBytes(m.Value))
	case m.Unit == "ratio":
		return fmt.Sprintf("%.4f%%", 100*m.Value)
	}
	return formatValue(m.Value) + " " + m.Unit
}

func humanBytes(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case a >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}
