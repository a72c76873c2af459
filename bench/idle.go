package bench

import (
	"context"
	"fmt"
	"time"
)

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
		return nil, fmt.Errorf("%w: idle needs conns > 0 and the server pid", ErrConfig)
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 10 * time.Second
	}
	if err := checkFileLimit(cfg.Conns); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+cfg.Hold)
	defer cancel()

	r := &Result{Name: "Idle", Started: time.Now()}
	r.param("conns", cfg.Conns)
	before, err := readStatus(cfg.pid())
	if err != nil {
		return nil, err
	}
	f, err := newFleet(cfg.fleetConfig(cfg.Conns, nil, nil))
	if err != nil {
		return nil, err
	}
	stop := startProgress(cfg.Progress, "idle", func() string { return fleetStatus(f, cfg.Conns) })
	f.open(ctx)
	upAfterRamp := f.up.Load()
	ramp, _ := readStatus(cfg.pid())

	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
		r.notef("stopped early: %v", ctx.Err())
	}
	after, err := readStatus(cfg.pid())
	held := f.up.Load()
	stop()
	f.close(closeWait)
	r.Elapsed = time.Since(r.Started)
	r.Failures = f.failureCounts()
	if err != nil {
		return r, err
	}

	if held > 0 {
		r.metric("server RSS per connection", float64(after.RSSBytes-before.RSSBytes)/float64(held), "bytes/conn")
	}
	r.metric("connections held", float64(held), "conns")
	r.metric("server RSS before", float64(before.RSSBytes), "bytes-before")
	r.metric("server RSS after ramp", float64(ramp.RSSBytes), "bytes-ramp")
	r.metric("server RSS after hold", float64(after.RSSBytes), "bytes-after")
	r.metric("server threads before", float64(before.Threads), "threads-before")
	r.metric("server threads after", float64(after.Threads), "threads")
	r.metric("ramp-up wall time", float64(f.rampWall()), "ramp-ns")
	r.metric("failures", float64(r.FailureTotal()), "failures")
	if upAfterRamp < int64(cfg.Conns) {
		r.notef("only %d of %d connections came up", upAfterRamp, cfg.Conns)
	}
	if d := f.dropped.Load(); d > 0 {
		r.notef("%d connections dropped by the server during the hold", d)
	}
	r.notef("hold %s; RSS is VmRSS of /proc/%d/status, so it includes memory the server's runtime has not returned", cfg.Hold, cfg.ServerPID)
	return r, nil
}
