package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if d := got - tc.want; d < -tc.want/100 || d > tc.want/100 {
			t.Errorf("q%.2f = %s, want %s within 1%%", tc.q, got, tc.want)
		}
	}
	if h.Max() != time.Millisecond || h.Count() != 1000 {
		t.Errorf("max %s count %d", h.Max(), h.Count())
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 1 << 20, 1<<63 - 1} {
		if i := histIndex(v); i < 0 || i >= histBuckets {
			t.Errorf("histIndex(%d) = %d out of range", v, i)
		}
	}
}

// TestHistogramMergeIsExact: histograms recorded apart (workers) and merged through their
// JSON form equal one histogram that recorded everything, bucket for bucket.
func TestHistogramMergeIsExact(t *testing.T) {
	var parts [3]Histogram
	var all, merged Histogram
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 30000 {
		d := time.Duration(rng.ExpFloat64() * float64(5*time.Millisecond))
		parts[i%3].Record(d)
		all.Record(d)
	}
	for i := range parts {
		b, err := json.Marshal(parts[i].snapshot())
		if err != nil {
			t.Fatal(err)
		}
		var d histogramData
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		if err := merged.merge(&d); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(merged.snapshot(), all.snapshot()) {
		t.Fatal("merged histogram differs from the one that recorded everything")
	}
	for _, q := range []float64{0.5, 0.99, 0.999, 1} {
		if merged.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%v: merged %s, all %s", q, merged.Quantile(q), all.Quantile(q))
		}
	}
	if err := merged.merge(nil); err != nil {
		t.Errorf("merge(nil) = %v", err)
	}
	if err := merged.merge(&histogramData{SubBits: histSubBits + 1}); !errors.Is(err, errHistogramLayout) {
		t.Errorf("other layout: err = %v", err)
	}
	if err := merged.merge(&histogramData{SubBits: histSubBits, Buckets: [][2]uint64{{histBuckets, 1}}}); !errors.Is(err, errHistogramLayout) {
		t.Errorf("bucket out of range: err = %v", err)
	}
}

// TestWorkerProtocolRoundTrip: what the parent writes, the worker reads, and back.
func TestWorkerProtocolRoundTrip(t *testing.T) {
	cfg := workerConfig{Service: Service{Endpoint: "http://127.0.0.1:1", AccessKey: "k"}, Hub: "h", First: 15000, Conns: 4000,
		Concurrency: 100, HandshakeTimeout: 10 * time.Second, LoopbackSources: 254, GroupSize: 10,
		Roles: []string{"webpubsub.sendToGroup"}, Lifetime: time.Minute}
	cmd := workerCommand{Cmd: cmdDrain, Drain: &drainPlan{Expect: map[string]int64{"chat-1": 30}, Quiet: time.Second}}
	var h Histogram
	h.Record(time.Millisecond)
	rep := workerReport{Type: reportDrained, Up: 3, Received: 90, Failures: map[string]int64{failHSTimeout: 1},
		GroupUp: map[string]int64{"chat-1": 3}, Latency: h.snapshot(), LastRecvNs: 17}
	for _, v := range []any{&cfg, &cmd, &rep} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsRune(string(b), '\n') {
			t.Fatalf("%T encodes over more than one line", v)
		}
		back := reflect.New(reflect.TypeOf(v).Elem())
		if err := json.Unmarshal(b, back.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Interface(), v) {
			t.Fatalf("%T round trip: %+v, want %+v", v, back.Interface(), v)
		}
	}
	if got := cfg.groupOf(15019); got != "chat-1501" {
		t.Errorf("groupOf(15019) = %q", got)
	}
}

// TestWorkerMainPhases drives an in-process worker through its protocol: config, ready,
// stop, closed, exit 0.
func TestWorkerMainPhases(t *testing.T) {
	fs := newFakeService(t)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	code := make(chan int, 1)
	go func() { code <- WorkerMain(inR, outW); outW.Close() }()
	send := func(v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := inW.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	reports := bufio.NewScanner(outR)
	next := func(typ string) workerReport {
		t.Helper()
		for reports.Scan() {
			var r workerReport
			if err := json.Unmarshal(reports.Bytes(), &r); err != nil {
				t.Fatalf("report %q: %v", reports.Bytes(), err)
			}
			if r.Type == reportError {
				t.Fatalf("worker error: %s", r.Error)
			}
			if r.Type == typ {
				return r
			}
		}
		t.Fatalf("no %s report", typ)
		return workerReport{}
	}
	send(workerConfig{Service: Service{Endpoint: fs.srv.URL, AccessKey: "k"}, Hub: "h", First: 100, Conns: 20,
		Concurrency: 4, HandshakeTimeout: 5 * time.Second, LoopbackSources: 254, Group: "g", Lifetime: 30 * time.Second})
	r := next(reportReady)
	if r.Up != 20 || r.Connected != 20 || r.GroupUp["g"] != 20 || r.Handshake.Count != 20 || r.FirstDialNs == 0 || r.LastUpNs < r.FirstDialNs {
		t.Fatalf("ready %+v", r)
	}
	fs.broadcast("g", "123 0 x")
	send(workerCommand{Cmd: cmdDrain, Drain: &drainPlan{Expect: map[string]int64{"g": 1}, Quiet: 2 * time.Second}})
	if r := next(reportDrained); r.Received != 20 || r.Short != 0 || r.Latency.Count != 20 {
		t.Fatalf("drained %+v", r)
	}
	send(workerCommand{Cmd: cmdStop})
	if r := next(reportClosed); r.Up != 0 || r.Dropped != 0 || len(r.Failures) != 0 {
		t.Fatalf("closed %+v", r)
	}
	inW.Close()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not exit")
	}
}

func TestWorkerMainBadConfig(t *testing.T) {
	var out strings.Builder
	if code := WorkerMain(strings.NewReader("{not json\n"), &out); code != 2 {
		t.Fatalf("exit code %d", code)
	}
	var r workerReport
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil || r.Type != reportError || r.Error == "" {
		t.Fatalf("report %q", out.String())
	}
}
