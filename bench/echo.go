package bench

import (
	"context"
	"fmt"
	"time"
)

// EchoConfig configures RunEcho.
type EchoConfig struct {
	Options
	// Conns is how many plain WebSocket clients connect. Required.
	Conns int
	// Messages is how many text messages each client sends. Required.
	Messages int
	// Rate is each client's sends per second, paced open-loop. Required.
	Rate float64
	// SizeBytes is each payload's size. Zero or anything below the stamp
	// (minEchoPayloadBytes, 42) means the stamp's size.
	SizeBytes int
	// UpstreamListen is the address of the built-in upstream, host:port. The server's
	// event handler must point there (EchoServerConfig), so a real run needs a fixed port.
	// Empty means 127.0.0.1:0, a port of the kernel's choosing.
	UpstreamListen string
	// UpstreamDelay is how long the upstream waits before answering each user event, to
	// play a slow app server. Zero answers at once.
	UpstreamDelay time.Duration
	// Quiet ends the drain once no echo has arrived for this long. Zero means 5s.
	Quiet time.Duration
	// OnUpstream, when set, is called with the upstream's URL template once it listens,
	// before any client connects.
	OnUpstream func(urlTemplate string)
}

// RunEcho starts the built-in upstream (an HTTP server in this process), connects
// cfg.Conns plain WebSocket clients (no subprotocol, in worker processes), and has each
// send cfg.Messages stamped text messages at cfg.Rate per second. The server under test
// must forward each message to the upstream as the user event "message" and send the
// upstream's reply, the same text, back to its client (upstream-protocol.md §6): the
// configuration EchoServerConfig prints does that. Reports round trips per second (first
// send to last echo), completeness (echoes / messages written), the round-trip latency
// (client send to echo read), the latency of the way in (client send to the upstream
// reading the event), the server's CPU per round trip, the bench's CPU (parent with the
// upstream, and workers), and what the upstream was sent.
func RunEcho(ctx context.Context, cfg EchoConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Conns <= 0 || cfg.Messages <= 0 || cfg.Rate <= 0 {
		return nil, fmt.Errorf("%w: echo needs conns, messages and rate > 0", ErrConfig)
	}
	if cfg.Protocol != ProtocolJSON {
		return nil, fmt.Errorf("%w: echo clients are plain WebSocket clients and take no protocol", ErrConfig)
	}
	cfg.SizeBytes = max(cfg.SizeBytes, minEchoPayloadBytes)
	if cfg.UpstreamListen == "" {
		cfg.UpstreamListen = "127.0.0.1:0"
	}
	if cfg.UpstreamDelay < 0 {
		return nil, fmt.Errorf("%w: upstream delay %s is negative", ErrConfig, cfg.UpstreamDelay)
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 5 * time.Second
	}
	sending := time.Duration(float64(cfg.Messages-1) / cfg.Rate * float64(time.Second))
	// A server handles a connection's user events one at a time (§6.1), so a slow
	// upstream stretches each client's run to Messages × delay at least.
	answering := max(sending, time.Duration(cfg.Messages)*cfg.UpstreamDelay)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+answering+cfg.Quiet+2*closeWait)
	defer cancel()

	r := &Result{Name: "Echo", Started: time.Now()}
	r.param("conns", cfg.Conns)
	r.param("messages", cfg.Messages)
	r.param("rate", formatValue(cfg.Rate))
	r.param("size", cfg.SizeBytes)
	if cfg.UpstreamDelay > 0 {
		r.param("delay", cfg.UpstreamDelay)
	}

	up, err := startUpstream(cfg.UpstreamListen, cfg.Hub, cfg.UpstreamDelay)
	if err != nil {
		return nil, err
	}
	defer up.close(time.Second)
	if cfg.OnUpstream != nil {
		cfg.OnUpstream(up.URLTemplate())
	}

	base := cfg.workerConfig(answering + cfg.Quiet)
	base.Plain = true
	rn, err := start(ctx, &cfg.Options, r, base, cfg.Conns)
	defer rn.abort()
	if err != nil {
		return nil, err
	}

	rn.p.extra = up.status
	stop := rn.p.startProgress(&cfg.Options, "Echo", cfg.Conns)
	rn.window()
	parent0, _ := readCPU("self")
	// Every worker starts its schedule at the same instant, a moment from now.
	first := time.Now().Add(100 * time.Millisecond)
	err = rn.p.broadcast(workerCommand{Cmd: cmdPublish, Publish: &publishPlan{
		StartNs: first.UnixNano(), Messages: cfg.Messages, Rate: cfg.Rate, SizeBytes: cfg.SizeBytes,
	}})
	if err != nil {
		stop()
		return nil, err
	}
	pubs, err := rn.p.await(ctx, reportPublished)
	if err != nil {
		stop()
		return nil, err
	}
	var sent int64
	for _, rep := range pubs {
		sent += rep.Sent
	}
	// The drain ends when every client has its echoes, nothing arrived for Quiet, or the
	// time a slow upstream needs (plus Timeout) has passed since the first send.
	err = rn.p.broadcast(workerCommand{Cmd: cmdDrain, Drain: &drainPlan{
		Expect: map[string]int64{"": int64(cfg.Messages)}, Quiet: cfg.Quiet,
		Until: first.Add(answering + cfg.Timeout).UnixNano(),
	}})
	if err != nil {
		stop()
		return nil, err
	}
	reps, err := rn.p.await(ctx, reportDrained)
	stop()
	if err != nil {
		return nil, err
	}
	serverCPU := rn.windowEnd()
	parent1, _ := readCPU("self")
	d, err := mergeDrained(reps)
	if err != nil {
		return nil, err
	}

	window := time.Duration(d.lastRecv - first.UnixNano())
	if d.received > 0 && window > 0 {
		r.metric("round trips per second", float64(d.received)/window.Seconds(), "roundtrips/s")
	}
	if sent > 0 {
		r.metric("completeness (echoes / messages written)", float64(d.received)/float64(sent), "ratio")
	}
	r.metric("echoes", float64(d.received), "echoes")
	r.metric("messages written", float64(sent), "sends")
	r.latency("round trip", "", &d.latency)
	r.latency("way in (client send to upstream read)", "upstream-", &up.inbound)
	if serverCPU >= 0 && d.received > 0 {
		r.metric("server CPU per round trip", serverCPU/float64(d.received)*1e6, "cpu-us/roundtrip")
	}
	rn.reportWindow()
	parent := (parent1 - parent0).Seconds()
	r.metric("bench parent CPU with the upstream (measured window)", parent, "parent-cpu-s")
	r.metric("bench workers CPU (measured window)", rn.benchWindow-parent, "worker-cpu-s")
	if d.short > 0 || d.over > 0 {
		r.notef("%d clients received fewer echoes than they sent messages, %d received more", d.short, d.over)
	}
	var extra map[string]int64
	if missing := sent - d.received; missing > 0 {
		extra = map[string]int64{"echo-missing": missing}
	}
	if window > 0 {
		r.notef("first send to last echo took %s", window.Round(time.Millisecond))
	}

	err = rn.finish(ctx, extra)
	// The server sends disconnected after the clients close; give it a moment.
	deadline := time.Now().Add(2 * time.Second)
	for up.disconnecteds.Load() < up.connecteds.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	up.report(r, d)
	if up.messages.Load()+up.connecteds.Load()+up.validations.Load() == 0 {
		r.notef("the upstream received nothing: start the server with the configuration `webpubsub bench echo --print-config` prints for this --hub and --upstream-listen")
	}
	r.notef("plain clients (no subprotocol); round trip is client send to echo read, through the server, the upstream's HTTP round trip and back")
	r.Elapsed = time.Since(r.Started)
	return r, err
}

// report adds what the upstream was sent, and counts what should not have happened
// (misrouted echoes, unstamped frames, malformed requests) as failures.
func (u *upstream) report(r *Result, d *drained) {
	r.metric("upstream validation requests (OPTIONS)", float64(u.validations.Load()), "upstream-options")
	r.metric("upstream connect events", float64(u.connects.Load()), "upstream-connect")
	r.metric("upstream connected events", float64(u.connecteds.Load()), "upstream-connected")
	r.metric("upstream disconnected events", float64(u.disconnecteds.Load()), "upstream-disconnected")
	r.metric("upstream message events", float64(u.messages.Load()), "upstream-messages")
	if r.Failures == nil {
		r.Failures = make(map[string]int64)
	}
	for kind, n := range map[string]int64{
		"echo-misrouted":              d.misrouted,
		"echo-unstamped":              d.unparsed,
		"upstream-malformed-request":  u.malformed.Load(),
		"upstream-wrong-content-type": u.wrongType.Load(),
		"upstream-other-user-event":   u.otherEvents.Load(),
		"upstream-unexpected":         u.unexpected.Load(),
	} {
		if n > 0 {
			r.Failures[kind] += n
		}
	}
	for i, m := range r.Metrics {
		if m.Unit == "failures" {
			r.Metrics[i].Value = float64(r.FailureTotal())
		}
	}
}
