package bench

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// ScrapeStats counts the GETs a Scraper made.
type ScrapeStats struct {
	// OK counts answers with status 200 whose body was read to the end.
	OK int64
	// Failed counts errors and other statuses.
	Failed int64
	// Bytes is the body bytes of the OK answers.
	Bytes int64
	// Interval is the time between two GETs.
	Interval time.Duration
}

// Scraper plays a Prometheus server during a run: it GETs a URL (the server's
// /metrics on its admin listener) at a fixed interval, one request at a time, so a
// run with a scraper and one without differ only by that (operations.md §3: the
// fan-out costs the same CPU either way).
type Scraper struct {
	url      string
	interval time.Duration
	client   *http.Client
	stop     chan struct{}
	done     chan struct{}

	mu    sync.Mutex
	stats ScrapeStats
}

// StartScraper starts GETting url every interval (zero means 1s), the first one at
// once. Stop it with Stop.
func StartScraper(url string, interval time.Duration) *Scraper {
	if interval <= 0 {
		interval = time.Second
	}
	s := &Scraper{
		url:      url,
		interval: interval,
		client:   &http.Client{Timeout: interval},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.stats.Interval = interval
	go s.run()
	return s
}

func (s *Scraper) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.scrapeOnce()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Scraper) scrapeOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), s.interval)
	defer cancel()
	ok, n := false, int64(0)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = s.client.Do(req); err == nil {
			n, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = err == nil && resp.StatusCode == http.StatusOK
		}
	}
	s.mu.Lock()
	if ok {
		s.stats.OK++
		s.stats.Bytes += n
	} else {
		s.stats.Failed++
	}
	s.mu.Unlock()
}

// Stop ends the scraping, waits for a GET in flight and returns the counts. Call it
// once.
func (s *Scraper) Stop() ScrapeStats {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// AddScrapes records a scraper's counts in r: the scrapes that succeeded as a metric
// (unit scrapes), failed ones as failures of kind "scrape", and a note. The benchmark
// name does not change, so benchstat lines up a run with a scraper and one without.
func (r *Result) AddScrapes(url string, st ScrapeStats) {
	r.metric("scrapes", float64(st.OK), "scrapes")
	if st.Failed > 0 {
		if r.Failures == nil {
			r.Failures = map[string]int64{}
		}
		r.Failures["scrape"] += st.Failed
	}
	avg := int64(0)
	if st.OK > 0 {
		avg = st.Bytes / st.OK
	}
	r.notef("scraped %s every %v: %d ok, %d failed, %d bytes per scrape", url, st.Interval, st.OK, st.Failed, avg)
}
