package bench

import (
	"context"
	"fmt"
	"time"
)

// run is the parent's side of one scenario: the worker pool, the CPU and memory readings
// around it, and the Result it fills.
type run struct {
	o      *Options
	r      *Result
	p      *pool
	target int // connections asked for
	ramp   *ramp

	selfStart   time.Duration // own + waited children CPU at the start
	ownStart    time.Duration // own CPU at the start (no worker exists yet)
	serverStart time.Duration // server CPU at the start of the measured window
	benchStart  time.Duration // bench CPU (self + workers) at the start of the window
	serverErr   error

	serverWindow, benchWindow float64 // CPU seconds of the window; server -1 when unknown
}

// lifetime bounds a worker: the parent's own bound plus time to report and close.
func lifetime(o *Options, planned time.Duration) time.Duration {
	return o.Timeout + planned + 2*closeWait + 30*time.Second
}

func (o *Options) workerConfig(planned time.Duration) workerConfig {
	return workerConfig{
		Service: o.Service, Hub: o.Hub, HandshakeTimeout: o.HandshakeTimeout,
		LoopbackSources: o.LoopbackSources, Lifetime: lifetime(o, planned),
		Protocol: o.Protocol,
	}
}

// start starts the workers for n connections and waits for their ramp. The caller defers
// rn.abort and calls rn.finish.
func start(ctx context.Context, o *Options, r *Result, base workerConfig, n int) (*run, error) {
	rn := &run{o: o, r: r, target: n}
	rn.selfStart = selfAndChildrenCPU()
	rn.ownStart, _ = readCPU("self")
	p, err := startPool(ctx, o, base, n)
	if err != nil {
		return nil, err
	}
	rn.p = p
	stop := p.startProgress(o, r.Name, n)
	reps, err := p.await(ctx, reportReady)
	stop()
	if err != nil {
		return rn, err
	}
	if rn.ramp, err = mergeReady(reps); err != nil {
		return rn, err
	}
	if rn.ramp.up < int64(n) {
		r.notef("only %d of %d connections came up", rn.ramp.up, n)
	}
	if rn.ramp.failures[failDialFiles] > 0 {
		r.notef("too many open files: lower --conns-per-worker")
	}
	if rn.ramp.failures[failDialAddr] > 0 {
		r.notef("out of source ports: keep --loopback-sources at 254 against a 127.0.0.1 server")
	}
	return rn, nil
}

// abort kills the workers if finish did not stop them.
func (rn *run) abort() {
	if rn != nil && rn.p != nil {
		rn.p.kill()
	}
}

// window starts the measured CPU window.
func (rn *run) window() {
	rn.serverStart, rn.serverErr = serverCPU(rn.o)
	rn.benchStart = rn.p.benchCPU()
}

// windowEnd ends the measured CPU window and returns the server's CPU seconds in it, or
// -1 without --server-pid. reportWindow adds both figures to the result.
func (rn *run) windowEnd() float64 {
	server, err := serverCPU(rn.o)
	rn.benchWindow = (rn.p.benchCPU() - rn.benchStart).Seconds()
	rn.serverWindow = -1
	if rn.o.ServerPID > 0 && rn.serverErr == nil && err == nil {
		rn.serverWindow = (server - rn.serverStart).Seconds()
	}
	return rn.serverWindow
}

func (rn *run) reportWindow() {
	if rn.serverWindow >= 0 {
		rn.r.metric("server CPU (measured window)", rn.serverWindow, "server-cpu-s")
	}
	rn.r.metric("bench CPU (self and workers, measured window)", rn.benchWindow, "bench-cpu-s")
}

// finish stops the workers and adds the failures, drops and the whole run's bench CPU.
func (rn *run) finish(ctx context.Context, extra map[string]int64) error {
	rn.r.metric("bench RSS, self and workers", float64(rn.p.benchRSS()), "bench-rss-bytes")
	reps, err := rn.p.stop(ctx)
	rn.r.Failures = finalFailures(reps)
	addCounts(rn.r.Failures, extra)
	var dropped, seqAcks, seqGaps, unsequenced int64
	for _, rep := range reps {
		dropped += rep.Dropped
		seqAcks += rep.SeqAcks
		seqGaps += rep.SeqGaps
		unsequenced += rep.Unsequenced
	}
	if dropped > 0 {
		rn.r.notef("%d connections were dropped by the server", dropped)
	}
	if rn.o.proto.reliable {
		rn.reportSequence(seqAcks, seqGaps, unsequenced)
	}
	rn.r.metric("failures", float64(rn.r.FailureTotal()), "failures")
	rn.r.metric("bench CPU, whole run (self and workers)", (selfAndChildrenCPU() - rn.selfStart).Seconds(), "bench-total-cpu-s")
	rn.r.metric("worker processes", float64(len(rn.p.workers)), "workers")
	rn.r.Elapsed = time.Since(rn.r.Started)
	return err
}

// reportSequence adds, on the reliable subprotocols, the sequenceAck frames the clients
// wrote over the whole run (per delivery when the scenario counts deliveries), and notes
// sequence ids that break client-protocol.md §7.2.
func (rn *run) reportSequence(acks, gaps, unsequenced int64) {
	r := rn.r
	r.metric("sequenceAck frames sent", float64(acks), "seqacks")
	for _, m := range r.Metrics {
		if m.Unit == "deliveries" && m.Value > 0 {
			r.metric("sequenceAck frames per delivery", float64(acks)/m.Value, "seqacks/delivery")
		}
	}
	if gaps > 0 {
		r.notef("%d messages had a sequenceId other than the previous one + 1", gaps)
	}
	if unsequenced > 0 {
		r.notef("%d messages had no sequenceId", unsequenced)
	}
}

// selfAndChildrenCPU is this process's CPU plus that of its children already waited for.
func selfAndChildrenCPU() time.Duration {
	own, children, _ := readCPUTimes("self")
	return own + children
}

func serverCPU(o *Options) (time.Duration, error) {
	if o.ServerPID <= 0 {
		return 0, ErrNoProc
	}
	return readCPU(o.pid())
}

// ConnectConfig configures RunConnect.
type ConnectConfig struct {
	Options
	// Conns is how many connections the storm opens. Required.
	Conns int
}

// RunConnect opens cfg.Conns connections, Concurrency at a time over all workers, as fast
// as the server takes them, and reports handshakes per second over the wall-clock time from
// the first dial to the last connected event, the latency of each from dial to connected,
// and failures by kind. The connections are closed afterwards.
func RunConnect(ctx context.Context, cfg ConnectConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Conns <= 0 {
		return nil, fmt.Errorf("%w: connect needs conns > 0", ErrConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+2*closeWait)
	defer cancel()
	r := &Result{Name: "Connect", Started: time.Now()}
	r.param("conns", cfg.Conns)
	r.param("concurrency", cfg.Concurrency)
	r.param("protocol", cfg.Protocol)

	server0, serverErr := serverCPU(&cfg.Options)
	rn, err := start(ctx, &cfg.Options, r, cfg.workerConfig(0), cfg.Conns)
	defer rn.abort()
	if err != nil {
		return nil, err
	}
	server1, _ := serverCPU(&cfg.Options)
	benchRamp := rn.p.benchCPU()
	var st procStatus
	if cfg.ServerPID > 0 {
		st, _ = readStatus(cfg.pid())
	}
	if wall := rn.ramp.wall(); wall > 0 {
		r.metric("handshakes per second", float64(rn.ramp.connected)/wall.Seconds(), "handshakes/s")
	}
	r.metric("connected", float64(rn.ramp.connected), "conns")
	r.latency("handshake", "", &rn.ramp.handshake)
	r.metric("wall time, first dial to last connected", float64(rn.ramp.wall()), "wall-ns")
	if cfg.ServerPID > 0 && serverErr == nil {
		r.metric("server CPU (ramp)", (server1 - server0).Seconds(), "server-cpu-s")
		r.metric("server threads", float64(st.Threads), "threads")
	}
	r.metric("bench CPU (self and workers, ramp)", (benchRamp - rn.ownStart).Seconds(), "bench-cpu-s")
	r.notef("latency is dial start to the connected event; the bench shares the machine with the server")
	err = rn.finish(ctx, nil)
	return r, err
}

// IdleConfig configures RunIdle.
type IdleConfig struct {
	Options
	// Conns is how many connections to hold. Required.
	Conns int
	// Hold is how long to hold them once all are up. Zero means 10s.
	Hold time.Duration
}

// RunIdle opens cfg.Conns connections that send nothing, holds them, and reports the
// server's resident memory per connection: (VmRSS after the hold − VmRSS before the first
// dial) / connections held. ServerPID is required.
func RunIdle(ctx context.Context, cfg IdleConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Conns <= 0 || cfg.ServerPID <= 0 {
		return nil, fmt.Errorf("%w: idle needs conns > 0 and the server pid (--server-pid)", ErrConfig)
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+cfg.Hold+2*closeWait)
	defer cancel()
	r := &Result{Name: "Idle", Started: time.Now()}
	r.param("conns", cfg.Conns)
	r.param("protocol", cfg.Protocol)
	before, err := readStatus(cfg.pid())
	if err != nil {
		return nil, err
	}
	rn, err := start(ctx, &cfg.Options, r, cfg.workerConfig(cfg.Hold), cfg.Conns)
	defer rn.abort()
	if err != nil {
		return nil, err
	}
	rampSt, _ := readStatus(cfg.pid())
	rn.window()
	stop := rn.p.startProgress(&cfg.Options, "Idle", cfg.Conns)
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
		r.notef("stopped early: %v", ctx.Err())
	}
	stop()
	after, err := readStatus(cfg.pid())
	if err != nil {
		return nil, err
	}
	held := rn.p.progress().Up
	if held == 0 {
		held = rn.ramp.up
	}
	if held > 0 {
		r.metric("server RSS per connection", float64(after.RSSBytes-before.RSSBytes)/float64(held), "bytes/conn")
	}
	r.metric("connections held", float64(held), "conns")
	r.metric("server RSS before", float64(before.RSSBytes), "bytes-before")
	r.metric("server RSS after ramp", float64(rampSt.RSSBytes), "bytes-ramp")
	r.metric("server RSS after hold", float64(after.RSSBytes), "bytes-after")
	r.metric("server threads before", float64(before.Threads), "threads-before")
	r.metric("server threads after", float64(after.Threads), "threads")
	r.metric("ramp-up wall time", float64(rn.ramp.wall()), "ramp-ns")
	rn.windowEnd()
	rn.reportWindow()
	if held > 0 {
		r.metric("bench RSS per connection (self and workers)", float64(rn.p.benchRSS())/float64(held), "bench-bytes/conn")
	}
	r.notef("hold %s; RSS is VmRSS of /proc/%d/status, so it includes memory the server's runtime has not returned; CPU window is the hold", cfg.Hold, cfg.ServerPID)
	err = rn.finish(ctx, nil)
	return r, err
}
