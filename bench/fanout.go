package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Publishers of RunFanout.
const (
	PublisherREST   = "rest"   // POST /api/hubs/{hub}/groups/{group}/:send, or /api/hubs/{hub}/:send
	PublisherClient = "client" // a PubSub client with the webpubsub.sendToGroup role
)

// Targets of RunFanout: what each send goes to.
const (
	TargetGroup = "group" // the members of FanoutConfig.Group
	TargetAll   = "all"   // every connection of the hub (REST send to all, rest-api.md §3.2)
)

// FanoutConfig configures RunFanout.
type FanoutConfig struct {
	Options
	// Members is how many connections join the group. Required.
	Members int
	// Messages is how many group sends the publisher makes. Required.
	Messages int
	// Rate is the sends per second, paced open-loop from the start time. Required.
	Rate float64
	// SizeBytes is each payload's size. Zero or anything below the stamp (minPayloadBytes)
	// means minPayloadBytes.
	SizeBytes int
	// Group is the group name. Empty means "bench".
	Group string
	// Publisher is PublisherREST (empty means it) or PublisherClient.
	Publisher string
	// Target is TargetGroup (empty means it): the members join Group and each send goes
	// to the group; or TargetAll: the members join no group, or the one MemberGroups
	// gives them, and each send goes to the whole hub. TargetAll needs PublisherREST.
	Target string
	// MemberGroups, with TargetAll, puts member i in group g<i mod MemberGroups> through
	// its token, so that a filter on groups selects a known share ('g0' in groups: one in
	// MemberGroups). Zero means no group.
	MemberGroups int
	// Filter is an OData filter (rest-api.md §5) sent with every REST send, e.g.
	// "'g0' in groups" or "startswith(userId, 'bench-1')". Member i's user id is
	// bench-<i> and its groups are the one above; connectionId, which the server assigns,
	// cannot be used. Empty means no filter. Needs PublisherREST and Select.
	Filter string
	// Select is Filter as the server reads it: the bench expects each send at exactly the
	// members it selects.
	Select Selector
	// FilterName labels the filter in the benchmark name (filter=NAME), so benchstat can
	// put filters side by side. Empty means the filter itself, spaces as _; "none" when
	// there is no filter.
	FilterName string
	// InFlight caps concurrent REST sends. Zero means 16.
	InFlight int
	// Quiet ends the drain after the last send once no delivery has arrived for this long.
	// Zero means 5s.
	Quiet time.Duration
}

// RunFanout connects cfg.Members clients (in worker processes) that join cfg.Group through
// their token, then sends cfg.Messages text messages to the group at cfg.Rate per second,
// through the REST API or through a client; with TargetAll the REST publisher sends to the
// whole hub instead, and with a Filter only the members it selects are to receive. Each
// payload starts with its send time, so every delivery yields an end-to-end latency (send
// start to frame read by the member). Reports deliveries per second over first send to
// last delivery, completeness (deliveries / (accepted sends × members selected)), latency,
// and the server's and the bench's CPU over the same window.
func RunFanout(ctx context.Context, cfg FanoutConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	sending := time.Duration(float64(cfg.Messages-1) / cfg.Rate * float64(time.Second))
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+sending+2*closeWait)
	defer cancel()

	r := &Result{Name: "Fanout", Started: time.Now()}
	r.param("members", cfg.Members)
	r.param("messages", cfg.Messages)
	r.param("rate", formatValue(cfg.Rate))
	r.param("size", cfg.SizeBytes)
	r.param("publisher", cfg.Publisher)
	if cfg.Target == TargetAll {
		r.param("target", cfg.Target)
		if cfg.MemberGroups > 0 {
			r.param("groups", cfg.MemberGroups)
		}
	}
	if cfg.Target == TargetAll || cfg.Filter != "" {
		r.param("filter", cfg.FilterName)
	}
	r.param("protocol", cfg.Protocol)

	base := cfg.workerConfig(sending + cfg.Quiet)
	plan := &drainPlan{Quiet: cfg.Quiet}
	if cfg.Target == TargetAll {
		base.GroupCycle = cfg.MemberGroups
	} else {
		base.Group = cfg.Group
	}
	if cfg.Filter != "" {
		base.Unselected = unselectedBits(cfg.Members, base.groupOf, cfg.Select)
	}
	rn, err := start(ctx, &cfg.Options, r, base, cfg.Members)
	defer rn.abort()
	if err != nil {
		return nil, err
	}
	// The members up that each accepted send should reach.
	selected := rn.ramp.selected

	pub := &publisher{cfg: &cfg, messages: cfg.Messages}
	if cfg.Publisher == PublisherClient {
		if err := pub.connect(ctx); err != nil {
			return nil, err
		}
		defer pub.f.close(time.Second)
	}
	rn.p.extra = pub.status
	stop := rn.p.startProgress(&cfg.Options, "Fanout", cfg.Members)
	rn.window()
	first := time.Now()
	pub.publish(ctx)
	accepted := pub.accepted.Load()
	if cfg.Target == TargetAll {
		plan.All = accepted
	} else {
		plan.Expect = map[string]int64{cfg.Group: accepted}
	}
	if err := rn.p.broadcast(workerCommand{Cmd: cmdDrain, Drain: plan}); err != nil {
		stop()
		return nil, err
	}
	reps, err := rn.p.await(ctx, reportDrained)
	stop()
	if err != nil {
		return nil, err
	}
	settleAcks(ctx, r, cfg.proto)
	serverCPU := rn.windowEnd()
	d, err := mergeDrained(reps)
	if err != nil {
		return nil, err
	}
	d.report(r, first, accepted*selected, serverCPU)
	rn.reportWindow()
	r.metric("sends accepted", float64(accepted), "sends")
	if cfg.Target == TargetAll || cfg.Filter != "" {
		r.metric("members each send should reach", float64(selected), "selected")
		if serverCPU >= 0 && accepted > 0 {
			r.metric("server CPU per send", serverCPU/float64(accepted)*1e3, "cpu-ms/send")
		}
	}
	if cfg.Publisher == PublisherREST {
		r.latency("REST send", "rest-", &pub.restLatency)
	} else {
		r.latency("publish ack", "ack-", &pub.rv.ackLatency)
	}
	err = rn.finish(ctx, pub.failureCounts())
	if cfg.Filter != "" {
		r.notef("filter %s selects %d of the %d members up; a member it does not select that receives a send counts as receiving more than expected",
			cfg.Filter, selected, rn.ramp.up)
	}
	r.notef("latency is send start to frame read; bench CPU includes the publisher")
	return r, err
}

// check validates the fanout's own fields and fills their defaults; Options are done.
func (cfg *FanoutConfig) check() error {
	if cfg.Members <= 0 || cfg.Messages <= 0 || cfg.Rate <= 0 {
		return fmt.Errorf("%w: fanout needs members, messages and rate > 0", ErrConfig)
	}
	cfg.SizeBytes = max(cfg.SizeBytes, minPayloadBytes)
	if cfg.Group == "" {
		cfg.Group = "bench"
	}
	if cfg.Publisher == "" {
		cfg.Publisher = PublisherREST
	}
	if cfg.Publisher != PublisherREST && cfg.Publisher != PublisherClient {
		return fmt.Errorf("%w: publisher %q: use %s or %s", ErrConfig, cfg.Publisher, PublisherREST, PublisherClient)
	}
	if cfg.Target == "" {
		cfg.Target = TargetGroup
	}
	switch {
	case cfg.Target != TargetGroup && cfg.Target != TargetAll:
		return fmt.Errorf("%w: target %q: use %s or %s", ErrConfig, cfg.Target, TargetGroup, TargetAll)
	case cfg.Publisher != PublisherREST && (cfg.Target == TargetAll || cfg.Filter != ""):
		return fmt.Errorf("%w: a client can only send to a group, without a filter: --target all and --filter need --publisher rest", ErrConfig)
	case cfg.MemberGroups < 0 || cfg.MemberGroups > 0 && cfg.Target != TargetAll:
		return fmt.Errorf("%w: member groups %d: only --target all spreads members over groups (g0, g1, ...); with --target group they join --group", ErrConfig, cfg.MemberGroups)
	}
	switch {
	case cfg.Filter != "" && cfg.Select == nil:
		return fmt.Errorf("%w: --filter %q needs its Selector (the server's reading of it)", ErrConfig, cfg.Filter)
	case strings.Contains(strings.ToLower(cfg.Filter), "connectionid"):
		return fmt.Errorf("%w: --filter %q: the server assigns connection ids, so the bench cannot tell whom a filter on connectionId selects", ErrConfig, cfg.Filter)
	}
	switch {
	case cfg.FilterName != "":
		cfg.FilterName = nameValue(cfg.FilterName)
	case cfg.Filter != "":
		cfg.FilterName = nameValue(cfg.Filter)
	default:
		cfg.FilterName = "none"
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 16
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 5 * time.Second
	}
	return nil
}

// nameValue makes s fit in one key=value part of a benchmark name: runs of white space
// become _, and / (the parts' separator) becomes %2F.
func nameValue(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), "_"), "/", "%2F")
}

// sendURL is the REST URL of every send: to the group or to all, with the filter.
func (cfg *FanoutConfig) sendURL() string {
	if cfg.Target == TargetAll {
		return withFilter(cfg.Service.allSendURL(cfg.Hub), cfg.Filter)
	}
	return withFilter(cfg.Service.groupSendURL(cfg.Hub, cfg.Group), cfg.Filter)
}

// drained is what the workers' drained reports add up to.
type drained struct {
	received, short, over, unparsed int64
	misrouted                       int64
	lastRecv                        int64 // unix ns
	latency                         Histogram
}

func mergeDrained(reps []workerReport) (*drained, error) {
	d := &drained{}
	for _, rep := range reps {
		d.received += rep.Received
		d.short += rep.Short
		d.over += rep.Over
		d.unparsed += rep.Unparsed
		d.misrouted += rep.Misrouted
		d.lastRecv = max(d.lastRecv, rep.LastRecvNs)
		if err := d.latency.merge(rep.Latency); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// report adds deliveries/s over first send to last delivery, completeness, latency and CPU
// per delivery.
func (d *drained) report(r *Result, first time.Time, expected int64, serverCPU float64) {
	window := time.Duration(d.lastRecv - first.UnixNano())
	if d.received > 0 && window > 0 {
		r.metric("deliveries per second", float64(d.received)/window.Seconds(), "deliveries/s")
	}
	if expected > 0 {
		r.metric("completeness (received / expected)", float64(d.received)/float64(expected), "ratio")
	}
	r.metric("deliveries", float64(d.received), "deliveries")
	r.metric("expected deliveries", float64(expected), "expected")
	r.latency("latency", "", &d.latency)
	if serverCPU >= 0 && d.received > 0 {
		r.metric("server CPU per million deliveries", serverCPU/float64(d.received)*1e6, "cpu-s/Mdeliveries")
	}
	if d.short > 0 || d.over > 0 {
		r.notef("%d members received fewer messages than expected, %d received more", d.short, d.over)
	}
	if d.unparsed > 0 {
		r.notef("%d messages without a bench stamp", d.unparsed)
	}
	if window > 0 {
		r.notef("first send to last delivery took %s", window.Round(time.Millisecond))
	}
}

// publisher sends the fanout's messages from the parent process.
type publisher struct {
	cfg      *FanoutConfig
	messages int

	sent, accepted atomic.Int64
	restLatency    Histogram

	// Client publisher: a fleet of one on the parent's own loops.
	f  *fleet
	rv receiver

	mu       sync.Mutex
	failures map[string]int64
}

func (pub *publisher) fail(kind string) {
	pub.mu.Lock()
	if pub.failures == nil {
		pub.failures = make(map[string]int64)
	}
	pub.failures[kind]++
	pub.mu.Unlock()
}

func (pub *publisher) failureCounts() map[string]int64 {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	out := maps.Clone(pub.failures)
	if pub.f != nil {
		for k, n := range pub.f.failureCounts() {
			out["publisher-"+k] += n
		}
	}
	return out
}

func (pub *publisher) status() string {
	acc := pub.accepted.Load()
	if pub.f != nil {
		acc = pub.rv.acked.Load()
	}
	return fmt.Sprintf("published %d/%d accepted %d", pub.sent.Load(), pub.messages, acc)
}

// connect opens the client publisher, a connection with the webpubsub.sendToGroup role
// that does not join the group.
func (pub *publisher) connect(ctx context.Context) error {
	cfg := pub.cfg
	f, err := newFleet(fleetConfig{
		svc: cfg.Service, hub: cfg.Hub, first: cfg.Members, conns: 1, concurrency: 1,
		handshakeTimeout: cfg.HandshakeTimeout, loopbackSources: cfg.LoopbackSources,
		eventLoops: 1, roles: []string{"webpubsub.sendToGroup"}, proto: cfg.proto, onMessage: pub.rv.onMessage,
	})
	if err != nil {
		return err
	}
	pub.f = f
	pub.rv.proto = cfg.proto
	f.clients[0].sentAtNs = make([]int64, cfg.Messages)
	f.open(ctx)
	if f.up.Load() != 1 {
		f.close(time.Second)
		return fmt.Errorf("bench: the client publisher did not connect (%v): check the access key and that the server grants webpubsub.sendToGroup", f.failureCounts())
	}
	return nil
}

// publish sends the messages, message k at start + k/Rate, and returns when every send has
// finished (REST) or been acknowledged (client), or ctx is done.
func (pub *publisher) publish(ctx context.Context) {
	cfg := pub.cfg
	var send func(k int)
	var wg sync.WaitGroup
	if pub.f != nil {
		cl := pub.f.clients[0]
		send = func(k int) {
			c := cl.conn.Load()
			now := time.Now().UnixNano()
			cl.sentAtNs[k] = now
			pub.sent.Add(1)
			if c == nil || c.AsyncWrite(sendToGroupFrame(cfg.proto, cfg.Group, now, k, cfg.SizeBytes, k+1), nil) != nil {
				pub.fail("send-error")
			}
		}
	} else {
		svc := cfg.Service
		url := cfg.sendURL()
		client := &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: cfg.InFlight, MaxConnsPerHost: cfg.InFlight},
		}
		defer client.CloseIdleConnections()
		auth := "Bearer " + signRESTToken(svc, url, time.Now(), time.Hour+cfg.Timeout)
		slots := make(chan struct{}, cfg.InFlight)
		send = func(k int) {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				pub.fail("send-not-attempted")
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				pub.sendREST(ctx, client, url, auth, k)
			}()
		}
	}
	start := time.Now()
	for k := range cfg.Messages {
		at := start.Add(time.Duration(float64(k) / cfg.Rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			pub.fail("send-not-attempted")
			continue
		}
		send(k)
	}
	wg.Wait()
	if pub.f != nil {
		// Acks, bounded by Quiet.
		deadline := time.Now().Add(cfg.Quiet)
		for pub.rv.acked.Load()+pub.rv.nacked.Load() < pub.sent.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		pub.accepted.Store(pub.rv.acked.Load())
		if n := pub.rv.nacked.Load(); n > 0 {
			pub.mu.Lock()
			if pub.failures == nil {
				pub.failures = make(map[string]int64)
			}
			pub.failures["send-nack"] += n
			pub.mu.Unlock()
		}
	}
}

func (pub *publisher) sendREST(ctx context.Context, client *http.Client, url, auth string, k int) {
	t0 := time.Now()
	body := appendPayload(make([]byte, 0, pub.cfg.SizeBytes), t0.UnixNano(), k, pub.cfg.SizeBytes)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		pub.fail("send-request")
		return
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "text/plain")
	pub.sent.Add(1)
	resp, err := client.Do(req)
	if err != nil {
		pub.fail("send-error")
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	pub.restLatency.Record(time.Since(t0))
	if resp.StatusCode != http.StatusAccepted {
		pub.fail("send-http-" + strconv.Itoa(resp.StatusCode))
		return
	}
	pub.accepted.Add(1)
}
