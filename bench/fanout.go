package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// FanoutConfig configures RunFanout.
type FanoutConfig struct {
	Options
	// Members is how many connections join the group. Required.
	Members int
	// Messages is how many REST group sends the publisher makes. Required.
	Messages int
	// Rate is the sends per second, paced open-loop from the start time. Required.
	Rate float64
	// SizeBytes is each payload's size. Zero or anything below the timestamp header
	// (minPayloadBytes) means minPayloadBytes.
	SizeBytes int
	// Group is the group name. Empty means "bench".
	Group string
	// InFlight caps concurrent REST sends. Zero means 16.
	InFlight int
	// Quiet ends the drain after the last send once no delivery has arrived for this long.
	// Zero means 5s.
	Quiet time.Duration
}

// minPayloadBytes is the payload header: 19 digits of send time, a space, 10 digits of
// sequence number, a space.
const minPayloadBytes = 31

// dataKey precedes the text payload in a JSON subprotocol group message.
var dataKey = []byte(`"data":"`)

// RunFanout connects cfg.Members clients that join cfg.Group through their token, then
// sends cfg.Messages text messages to the group through the REST API at cfg.Rate per
// second. Each payload starts with its send time, so every delivery yields an end-to-end
// latency (REST request start to frame read by the member). Reports deliveries per
// second over first send to last delivery, completeness (deliveries / (accepted sends ×
// members)), latency, and the server's CPU time over the same window when ServerPID is
// set.
func RunFanout(ctx context.Context, cfg FanoutConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Members <= 0 || cfg.Messages <= 0 || cfg.Rate <= 0 {
		return nil, fmt.Errorf("%w: fanout needs members, messages and rate > 0", ErrConfig)
	}
	if cfg.SizeBytes < minPayloadBytes {
		cfg.SizeBytes = minPayloadBytes
	}
	if cfg.Group == "" {
		cfg.Group = "bench"
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 16
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 5 * time.Second
	}
	if err := checkFileLimit(cfg.Members + cfg.InFlight); err != nil {
		return nil, err
	}
	sending := time.Duration(float64(cfg.Messages-1) / cfg.Rate * float64(time.Second))
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+sending)
	defer cancel()

	r := &Result{Name: "Fanout", Started: time.Now()}
	r.param("members", cfg.Members)
	r.param("messages", cfg.Messages)
	r.param("rate", formatValue(cfg.Rate))
	r.param("size", cfg.SizeBytes)

	fo := &fanout{cfg: &cfg, perMember: make([]atomic.Int32, cfg.Members)}
	f, err := newFleet(cfg.fleetConfig(cfg.Members, []string{cfg.Group}, fo.onMessage))
	if err != nil {
		return nil, err
	}
	fo.epoch = f.epoch
	stopRamp := startProgress(cfg.Progress, "fanout", func() string { return fleetStatus(f, cfg.Members) })
	f.open(ctx)
	stopRamp()
	members := f.up.Load()
	if members < int64(cfg.Members) {
		r.notef("only %d of %d members came up", members, cfg.Members)
	}

	fo.statusAt = time.Now()
	stop := startProgress(cfg.Progress, "fanout", fo.status)
	cpu0, cpuErr := serverCPU(&cfg.Options)
	self0 := selfCPU()
	first := time.Now()
	fo.publish(ctx)
	fo.drain(ctx, members)
	cpu1, _ := serverCPU(&cfg.Options)
	self1 := selfCPU()
	stop()
	if ctx.Err() != nil {
		r.notef("stopped early: %v", ctx.Err())
	}
	f.close(closeWait)
	r.Elapsed = time.Since(r.Started)
	r.Failures = f.failureCounts()
	for k, n := range fo.sendFailures() {
		r.Failures[k] += n
	}

	got, accepted := fo.received.Load(), fo.accepted.Load()
	expected := accepted * members
	window := time.Duration(fo.lastRecv.Load()) - first.Sub(fo.epoch)
	if got > 0 && window > 0 {
		r.metric("deliveries per second", float64(got)/window.Seconds(), "deliveries/s")
	}
	if expected > 0 {
		r.metric("completeness (received / expected)", float64(got)/float64(expected), "ratio")
	}
	r.metric("deliveries", float64(got), "deliveries")
	r.metric("expected deliveries", float64(expected), "expected")
	r.metric("sends accepted (202)", float64(accepted), "sends")
	r.latency("latency", "", &fo.latency)
	r.latency("REST send", "rest-", &fo.restLatency)
	if cfg.ServerPID > 0 && cpuErr == nil {
		cpu := (cpu1 - cpu0).Seconds()
		r.metric("server CPU", cpu, "server-cpu-s")
		if got > 0 {
			r.metric("server CPU per million deliveries", cpu/float64(got)*1e6, "cpu-s/Mdeliveries")
		}
	}
	r.metric("bench CPU", (self1 - self0).Seconds(), "bench-cpu-s")
	var short, over int
	for i := range fo.perMember {
		switch n := int64(fo.perMember[i].Load()); {
		case n < accepted:
			short++
		case n > accepted:
			over++
		}
	}
	if short > 0 || over > 0 {
		r.notef("%d members received fewer messages than were accepted, %d received more", short, over)
	}
	if n := fo.unparsed.Load(); n > 0 {
		r.notef("%d messages without a bench timestamp", n)
	}
	r.notef("latency is REST request start to frame read; first send to last delivery took %s", window.Round(time.Millisecond))
	return r, nil
}

// fanout is the state one RunFanout shares between the publisher and the members.
type fanout struct {
	cfg   *FanoutConfig
	epoch time.Time // timestamps in payloads are ns since epoch (monotonic)

	sent, accepted, received, unparsed atomic.Int64
	lastRecv                           atomic.Int64 // ns since epoch
	perMember                          []atomic.Int32
	latency, restLatency               Histogram

	mu       sync.Mutex
	failures map[string]int64

	statusGot int64 // status's previous reading; only the progress goroutine uses these
	statusAt  time.Time
}

func (fo *fanout) status() string {
	fo.mu.Lock()
	var failed int64
	for _, n := range fo.failures {
		failed += n
	}
	fo.mu.Unlock()
	got, now := fo.received.Load(), time.Now()
	rate := float64(got-fo.statusGot) / now.Sub(fo.statusAt).Seconds()
	fo.statusGot, fo.statusAt = got, now
	return fmt.Sprintf("sent %d/%d  accepted %d  send errors %d  delivered %d (%.0f/s)",
		fo.sent.Load(), fo.cfg.Messages, fo.accepted.Load(), failed, got, rate)
}

func (fo *fanout) fail(kind string) {
	fo.mu.Lock()
	if fo.failures == nil {
		fo.failures = make(map[string]int64)
	}
	fo.failures[kind]++
	fo.mu.Unlock()
}

func (fo *fanout) sendFailures() map[string]int64 {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return maps.Clone(fo.failures)
}

// onMessage runs on member i's goroutine for every message after connected.
func (fo *fanout) onMessage(i int, payload []byte) {
	now := int64(time.Since(fo.epoch))
	k := bytes.Index(payload, dataKey)
	if k < 0 {
		fo.unparsed.Add(1)
		return
	}
	ts, ok := parseDigits(payload[k+len(dataKey):])
	if !ok {
		fo.unparsed.Add(1)
		return
	}
	fo.latency.Record(time.Duration(now - ts))
	fo.perMember[i].Add(1)
	fo.received.Add(1)
	for {
		last := fo.lastRecv.Load()
		if now <= last || fo.lastRecv.CompareAndSwap(last, now) {
			return
		}
	}
}

func parseDigits(b []byte) (int64, bool) {
	var v int64
	n := 0
	for ; n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9'; n++ {
		v = v*10 + int64(b[n]-'0')
	}
	return v, n > 0
}

// publish sends cfg.Messages messages, message k at start + k/Rate, with at most InFlight
// requests outstanding; it returns when every send has finished or ctx is done.
func (fo *fanout) publish(ctx context.Context) {
	cfg := fo.cfg
	svc := cfg.Service
	url := svc.groupSendURL(cfg.Hub, cfg.Group)
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.InFlight, MaxConnsPerHost: cfg.InFlight},
	}
	defer client.CloseIdleConnections()
	tok, tokAt := "", time.Time{}
	slots := make(chan struct{}, cfg.InFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range cfg.Messages {
		at := start.Add(time.Duration(float64(k) / cfg.Rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			fo.fail("send-not-attempted")
			continue
		}
		if ctx.Err() != nil {
			<-slots
			fo.fail("send-not-attempted")
			continue
		}
		if now := time.Now(); now.Sub(tokAt) > 10*time.Minute {
			tok, tokAt = "Bearer "+signRESTToken(svc, url, now, time.Hour), now
		}
		wg.Add(1)
		go func(k int, auth string) {
			defer wg.Done()
			defer func() { <-slots }()
			fo.send(ctx, client, url, auth, k)
		}(k, tok)
	}
	wg.Wait()
}

func (fo *fanout) send(ctx context.Context, client *http.Client, url, auth string, k int) {
	body := make([]byte, 0, fo.cfg.SizeBytes)
	t0 := time.Now()
	body = strconv.AppendInt(body, int64(t0.Sub(fo.epoch)), 10)
	body = append(body, ' ')
	body = strconv.AppendInt(body, int64(k), 10)
	body = append(body, ' ')
	for len(body) < fo.cfg.SizeBytes {
		body = append(body, 'x')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		fo.fail("send-request")
		return
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "text/plain")
	fo.sent.Add(1)
	resp, err := client.Do(req)
	if err != nil {
		fo.fail("send-error")
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	fo.restLatency.Record(time.Since(t0))
	if resp.StatusCode != http.StatusAccepted {
		fo.fail("send-http-" + strconv.Itoa(resp.StatusCode))
		return
	}
	fo.accepted.Add(1)
}

// drain waits until every member has every accepted message, no delivery has arrived for
// cfg.Quiet, or ctx is done.
func (fo *fanout) drain(ctx context.Context, members int64) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	lastCount, lastChange := fo.received.Load(), time.Now()
	for {
		got := fo.received.Load()
		if got >= fo.accepted.Load()*members {
			return
		}
		if got != lastCount {
			lastCount, lastChange = got, time.Now()
		} else if time.Since(lastChange) > fo.cfg.Quiet {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
