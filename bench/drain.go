package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// DrainConfig configures RunDrain.
type DrainConfig struct {
	Options
	// Conns is how many connections the server holds when it is told to stop. Required.
	Conns int
	// ReconnectTo, when its Endpoint is set, is a second server: each client the drain
	// closes reconnects there at once, as a client behind a balancer would, and the bench
	// reports the pace of that reconnect wave.
	ReconnectTo Service
}

// drainBucket is the resolution of the close and reconnect timestamps the workers report.
const drainBucket = 10 * time.Millisecond

// awaitClosePlan is the drain's worker command: expect the server to close every
// connection, reconnect each closed client to ReconnectTo when set, and report once all
// are closed (and reconnected) or at UntilNs.
type awaitClosePlan struct {
	UntilNs     int64    `json:"until_ns"`
	ReconnectTo *Service `json:"reconnect_to,omitempty"`
}

// drainReport is the part of a workerReport that RunDrain reads: when the clients saw
// their close and their reconnect, in drainBucket buckets (unix time / drainBucket).
type drainReport struct {
	Closes     map[int64]int64  `json:"closes"`
	CloseCodes map[string]int64 `json:"close_codes"`
	Reconnects map[int64]int64  `json:"reconnects,omitempty"`
	// ReconnectFailures counts failed reconnects by kind.
	ReconnectFailures map[string]int64 `json:"reconnect_failures,omitempty"`
}

// RunDrain holds cfg.Conns connections, sends SIGTERM to the server (ServerPID, required)
// and measures its drain (operations.md §2) as the clients see it: from the signal to
// the first and the last close, to the server's exit, and the pace of the closes (the
// most in any one-second window and the median of the whole seconds), which should stay
// at the server's shutdown.closeRatePerSecond. With ReconnectTo, every closed client
// reconnects to that server, and the pace of the reconnect wave is reported the same way.
func RunDrain(ctx context.Context, cfg DrainConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Conns <= 0 || cfg.ServerPID <= 0 {
		return nil, fmt.Errorf("%w: drain needs conns > 0 and the server pid (--server-pid) to signal", ErrConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*cfg.Timeout+2*closeWait)
	defer cancel()
	r := &Result{Name: "Drain", Started: time.Now()}
	r.param("conns", cfg.Conns)
	r.param("protocol", cfg.Protocol)
	rn, err := start(ctx, &cfg.Options, r, cfg.workerConfig(cfg.Timeout), cfg.Conns)
	defer rn.abort()
	if err != nil {
		return nil, err
	}
	plan := &awaitClosePlan{UntilNs: time.Now().Add(cfg.Timeout).UnixNano()}
	if cfg.ReconnectTo.Endpoint != "" {
		plan.ReconnectTo = &cfg.ReconnectTo
	}
	if err := rn.p.broadcast(workerCommand{Cmd: cmdAwaitClose, AwaitClose: plan}); err != nil {
		return nil, err
	}
	if _, err := rn.p.await(ctx, reportArmed); err != nil {
		return nil, err
	}

	exited := make(chan time.Time, 1)
	go func() { exited <- waitExit(ctx, cfg.ServerPID) }()
	rn.window()
	signalled := time.Now()
	if err := syscall.Kill(cfg.ServerPID, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("bench: SIGTERM to the server (pid %d): %w", cfg.ServerPID, err)
	}
	stop := rn.p.startProgress(&cfg.Options, "Drain", cfg.Conns)
	reps, err := rn.p.await(ctx, reportServerClosed)
	stop()
	if err != nil {
		return nil, err
	}
	var exitAt time.Time
	select {
	case exitAt = <-exited:
	case <-time.After(cfg.Timeout):
	}
	rn.windowEnd()

	merged := drainReport{Closes: map[int64]int64{}, CloseCodes: map[string]int64{}, Reconnects: map[int64]int64{}, ReconnectFailures: map[string]int64{}}
	for _, rep := range reps {
		if rep.Drain == nil {
			continue
		}
		addBuckets(merged.Closes, rep.Drain.Closes)
		addBuckets(merged.Reconnects, rep.Drain.Reconnects)
		addCounts(merged.CloseCodes, rep.Drain.CloseCodes)
		addCounts(merged.ReconnectFailures, rep.Drain.ReconnectFailures)
	}
	closes := reportWave(r, "closes", "close", merged.Closes, signalled)
	for _, code := range slices.Sorted(maps.Keys(merged.CloseCodes)) {
		if code != "1001" {
			r.notef("%d connections closed with code %s, not 1001", merged.CloseCodes[code], code)
		}
	}
	r.metric("closes with 1001", float64(merged.CloseCodes["1001"]), "closes-1001")
	if closes < int64(rn.ramp.up) {
		r.notef("only %d of %d connections were closed by the server before the timeout", closes, rn.ramp.up)
	}
	if !exitAt.IsZero() {
		r.metric("signal to server exit", float64(exitAt.Sub(signalled)), "exit-ns")
	} else {
		r.notef("the server had not exited %s after the last close", cfg.Timeout)
	}
	if plan.ReconnectTo != nil {
		reconnects := reportWave(r, "reconnects", "reconnect", merged.Reconnects, signalled)
		if failed := sumCounts(merged.ReconnectFailures); failed > 0 {
			r.notef("%d reconnects failed: %v", failed, merged.ReconnectFailures)
		}
		if reconnects < closes {
			r.notef("%d of %d closed clients reconnected", reconnects, closes)
		}
	}
	rn.reportWindow()
	r.notef("times are from the SIGTERM, as the clients saw them (%s buckets); the server's drain delay comes first", drainBucket)
	err = rn.finish(ctx, nil)
	return r, err
}

// reportWave adds the count, timing and pace of one wave (closes or reconnects) and
// returns its count. Pace: the most events in any one-second window, and the median of
// the counts per whole second from the first event.
func reportWave(r *Result, what, unit string, buckets map[int64]int64, signalled time.Time) int64 {
	var total int64
	keys := slices.Sorted(maps.Keys(buckets))
	for _, k := range keys {
		total += buckets[k]
	}
	r.metric(what, float64(total), unit+"s")
	if total == 0 {
		return 0
	}
	at := func(k int64) time.Duration { return time.Unix(0, k*int64(drainBucket)).Sub(signalled) }
	first, last := keys[0], keys[len(keys)-1]
	r.metric("signal to first "+unit, float64(at(first)), "first-"+unit+"-ns")
	r.metric("signal to last "+unit, float64(at(last)+drainBucket), "last-"+unit+"-ns")
	per := int64(time.Second / drainBucket)
	var maxWindow, window int64
	for k := first; k <= last; k++ { // sliding one-second window over the buckets
		window += buckets[k]
		if k-per >= first {
			window -= buckets[k-per]
		}
		maxWindow = max(maxWindow, window)
	}
	r.metric(what+" per second, most in any 1 s window", float64(maxWindow), unit+"s/s-max")
	seconds := make([]int64, (last-first)/per+1)
	for _, k := range keys {
		seconds[(k-first)/per] += buckets[k]
	}
	if len(seconds) > 1 {
		seconds = seconds[:len(seconds)-1] // the last second is partial
	}
	slices.Sort(seconds)
	r.metric(what+" per second, median of whole seconds", float64(seconds[len(seconds)/2]), unit+"s/s-p50")
	return total
}

func addBuckets(dst, src map[int64]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// waitExit polls /proc/PID until the process is gone (or a zombie) and returns when, or
// the zero time when ctx ends first. The server is not our child, so it cannot be waited for.
func waitExit(ctx context.Context, pid int) time.Time {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	stat := "/proc/" + strconv.Itoa(pid) + "/stat"
	for {
		b, err := os.ReadFile(stat)
		if err != nil {
			return time.Now()
		}
		// The state follows the command name in parentheses, which may itself hold spaces.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return time.Now()
		}
		select {
		case <-ctx.Done():
			return time.Time{}
		case <-t.C:
		}
	}
}

// drainWatch is a worker's side of RunDrain: it records when the server closed each
// client and, when reconnecting, dials the second server for each of them.
type drainWatch struct {
	f       *fleet
	closed  chan *client // clients the server closed, for the reconnectors
	mu      sync.Mutex
	rep     drainReport
	pending atomic.Int64 // reconnects queued or in flight
	conns   []net.Conn   // reconnected sockets, closed at stop
}

// awaitClose runs plan p and reports reportServerClosed.
func (w *worker) awaitClose(ctx context.Context, p *awaitClosePlan) {
	dw := &drainWatch{f: w.f, rep: drainReport{Closes: map[int64]int64{}, CloseCodes: map[string]int64{}}}
	if p.ReconnectTo != nil {
		dw.rep.Reconnects, dw.rep.ReconnectFailures = map[int64]int64{}, map[string]int64{}
		dw.closed = make(chan *client, len(w.f.clients))
		if err := dw.startReconnectors(ctx, *p.ReconnectTo, &w.cfg); err != nil {
			w.report(workerReport{Type: reportError, Error: err.Error()})
			return
		}
	}
	w.drainW = dw
	w.f.drain.Store(dw)
	w.report(w.counts(reportArmed))
	until := time.Unix(0, p.UntilNs)
	for ctx.Err() == nil && time.Now().Before(until) && (w.f.up.Load() > 0 || dw.pending.Load() > 0) {
		time.Sleep(10 * time.Millisecond)
	}
	r := w.counts(reportServerClosed)
	dw.mu.Lock()
	rep := dw.rep
	rep.Closes, rep.CloseCodes = maps.Clone(rep.Closes), maps.Clone(rep.CloseCodes)
	rep.Reconnects, rep.ReconnectFailures = maps.Clone(rep.Reconnects), maps.Clone(rep.ReconnectFailures)
	dw.mu.Unlock()
	r.Drain = &rep
	w.report(r)
}

// serverClosed runs on cl's loop when the server closed it during the drain; code is 0
// when the socket ended without a close frame.
func (dw *drainWatch) serverClosed(cl *client, code ws.StatusCode) {
	now := time.Now().UnixNano()
	dw.mu.Lock()
	dw.rep.Closes[now/int64(drainBucket)]++
	dw.rep.CloseCodes[strconv.Itoa(int(code))]++
	dw.mu.Unlock()
	if dw.closed != nil {
		dw.pending.Add(1)
		dw.closed <- cl // cannot block: room for every client
	}
}

// startReconnectors starts the goroutines that reconnect closed clients to svc, as many
// as the worker's handshake concurrency: a blocking dial and upgrade each, because the
// wave is paced by the server's drain, not by the bench.
func (dw *drainWatch) startReconnectors(ctx context.Context, svc Service, cfg *workerConfig) error {
	addr, err := svc.hostPort()
	if err != nil {
		return err
	}
	d, err := newDialer(addr, cfg.LoopbackSources)
	if err != nil {
		return err
	}
	proto, err := parseProtocol(cfg.Protocol)
	if err != nil {
		return err
	}
	base := strings.Replace(svc.clientURL(cfg.Hub), "http", "ws", 1)
	for range max(1, cfg.Concurrency) {
		go func() {
			for cl := range dw.closed {
				kind := dw.reconnect(ctx, d, svc, cfg, base, proto.subprotocol, cl)
				now := time.Now().UnixNano()
				dw.mu.Lock()
				if kind == "" {
					dw.rep.Reconnects[now/int64(drainBucket)]++
				} else {
					dw.rep.ReconnectFailures[kind]++
				}
				dw.mu.Unlock()
				dw.pending.Add(-1)
			}
		}()
	}
	return nil
}

// reconnect dials svc as client cl and upgrades; it returns "" or the failure kind.
func (dw *drainWatch) reconnect(ctx context.Context, d *dialer, svc Service, cfg *workerConfig, base, subprotocol string, cl *client) string {
	conn, err := d.dial(ctx, cl.idx, cfg.HandshakeTimeout)
	if err != nil {
		return dialKind(err)
	}
	tok := signClientToken(svc, cfg.Hub, benchUser(cl.idx), cfg.Roles, nil, time.Now(), time.Hour)
	wd := ws.Dialer{Timeout: cfg.HandshakeTimeout, NetDial: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
	if subprotocol != "" {
		wd.Protocols = []string{subprotocol}
	}
	if _, _, _, err := wd.Dial(ctx, base+"?access_token="+tok); err != nil {
		_ = conn.Close()
		var st ws.StatusError
		if errors.As(err, &st) {
			return fmt.Sprintf(failHTTPStatusFmt, int(st))
		}
		return failHSBad
	}
	dw.mu.Lock()
	dw.conns = append(dw.conns, conn)
	dw.mu.Unlock()
	return ""
}

// close closes the reconnected sockets.
func (dw *drainWatch) close() {
	dw.mu.Lock()
	defer dw.mu.Unlock()
	for _, c := range dw.conns {
		_ = c.Close()
	}
	dw.conns = nil
}
