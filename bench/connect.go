package bench

import (
	"context"
	"fmt"
	"time"
)

// ConnectConfig configures RunConnect.
type ConnectConfig struct {
	Options
	// Conns is how many connections the storm opens. Required.
	Conns int
}

// RunConnect opens cfg.Conns connections, Concurrency at a time, as fast as the server
// takes them, and reports handshakes per second over the wall-clock time from the first
// dial to the last connected event, and the latency of each from dial to connected. The
// connections are closed afterwards.
func RunConnect(ctx context.Context, cfg ConnectConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Conns <= 0 {
		return nil, fmt.Errorf("%w: connect needs conns > 0", ErrConfig)
	}
	if err := checkFileLimit(cfg.Conns); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	r := &Result{Name: "Connect", Started: time.Now()}
	r.param("conns", cfg.Conns)
	r.param("concurrency", cfg.Concurrency)
	f, err := newFleet(cfg.fleetConfig(cfg.Conns, nil, nil))
	if err != nil {
		return nil, err
	}
	cpu0, cpuErr := serverCPU(&cfg.Options)
	self0 := selfCPU()
	stop := startProgress(cfg.Progress, "connect", func() string { return fleetStatus(f, cfg.Conns) })
	f.open(ctx)
	cpu1, _ := serverCPU(&cfg.Options)
	self1 := selfCPU()
	stop()
	if ctx.Err() != nil {
		r.notef("stopped early: %v", ctx.Err())
	}
	var st procStatus
	if cfg.ServerPID > 0 {
		st, _ = readStatus(cfg.pid())
	}
	f.close(closeWait)
	r.Elapsed = time.Since(r.Started)
	r.Failures = f.failureCounts()

	ok, wall := f.connected.Load(), f.rampWall()
	if wall > 0 {
		r.metric("handshakes per second", float64(ok)/wall.Seconds(), "handshakes/s")
	}
	r.metric("connected", float64(ok), "conns")
	r.metric("failures", float64(r.FailureTotal()), "failures")
	r.latency("handshake", "", &f.handshake)
	r.metric("wall time, first dial to last connected", float64(wall), "wall-ns")
	if cfg.ServerPID > 0 && cpuErr == nil {
		r.metric("server CPU", (cpu1 - cpu0).Seconds(), "server-cpu-s")
		r.metric("server threads", float64(st.Threads), "threads")
	}
	r.metric("bench CPU", (self1 - self0).Seconds(), "bench-cpu-s")
	r.notef("latency is dial start to the connected event; the bench shares the machine with the server")
	return r, nil
}

func serverCPU(o *Options) (time.Duration, error) {
	if o.ServerPID <= 0 {
		return 0, ErrNoProc
	}
	return readCPU(o.pid())
}
