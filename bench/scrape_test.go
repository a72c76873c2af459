package bench

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestScraper: GETs at the interval until Stop, counted by outcome, and recorded in
// a Result without changing its benchmark name.
func TestScraper(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("metric 1\n"))
	}))
	defer srv.Close()
	sc := StartScraper(srv.URL+"/metrics", 20*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := sc.Stop()
	if n := hits.Load(); st.OK+st.Failed != n || st.Failed != 1 || st.OK < 3 || st.Bytes != 9*st.OK {
		t.Fatalf("stats %+v after %d GETs", st, n)
	}
	r := &Result{Name: "Fanout"}
	r.param("members", 10)
	name := r.BenchmarkName()
	r.AddScrapes(srv.URL, st)
	if r.BenchmarkName() != name || r.Failures["scrape"] != 1 || len(r.Metrics) != 1 || r.Metrics[0].Unit != "scrapes" ||
		len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "1 failed") {
		t.Fatalf("result %+v", r)
	}
}
