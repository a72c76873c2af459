package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// ErrDrainCut is wrapped by Shutdown's error when Config.Shutdown.Timeout (or the
// caller's context) passed before the drain finished: the WebSockets still open, their
// unsent bytes and the upstream events still queued were cut. cmd exits 1 on it.
var ErrDrainCut = errors.New("engine: shutdown timeout passed before the drain finished")

// drainDetail is the `disconnected` message text and upstream reason of a drain
// close; the category comes first (client-protocol.md §9.6).
const drainDetail = "ServiceReload: the server is shutting down"

// drainState is Shutdown's progress.
type drainState struct {
	start     sync.Once
	hurryOnce sync.Once
	hurry     chan struct{} // closed by Hurry
	done      chan struct{} // closed when the first Shutdown returns
	err       error         // the first Shutdown's result; set before done is closed
}

func (d *drainState) init() {
	d.hurry = make(chan struct{})
	d.done = make(chan struct{})
}

func (d *drainState) hurried() bool {
	select {
	case <-d.hurry:
		return true
	default:
		return false
	}
}

// Shutdown drains the server in the order of operations.md §2, then stops it:
//
//  1. readiness turns 503 at once (/api/health reads the draining flag), and
//     handshakes are still accepted for Config.Shutdown.DrainDelay;
//  2. the listener stops accepting: its socket is closed (see stopAccepting);
//  3. WebSockets are closed at most Shutdown.CloseRatePerSecond a second, spread
//     evenly over time and over the loops, each with 1001 ServiceReload; PubSub
//     clients on non-reliable subprotocols get a `disconnected` message first;
//  4. nothing accepted is lost: before a connection's close is queued, every REST
//     request answered before it has run its fan-out to the loops (settle), so the
//     close frame queues behind the data; a close whose bytes the socket cannot take
//     at once waits for them to flush; the upstream `disconnected` events of the
//     closed connections are delivered before the upstream client stops.
//
// REST requests on connections that are already open are served until the reactor
// stops: a send accepted during the drain reaches the clients not yet closed.
//
// Shutdown returns nil when all of that finished, or an error wrapping ErrDrainCut
// when Shutdown.Timeout or ctx ended it first; either way the reactor has stopped. A
// second call hurries the drain in progress (Hurry) and waits for it. Safe for
// concurrent use.
func (s *Server) Shutdown(ctx context.Context) error {
	first := false
	s.drain.start.Do(func() { first = true })
	if !first {
		s.Hurry()
		select {
		case <-s.drain.done:
			return s.drain.err
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrDrainCut, ctx.Err())
		}
	}
	s.drain.err = s.runDrain(ctx)
	close(s.drain.done)
	return s.drain.err
}

// Hurry makes the drain skip what is left of its delay and of its pacing: the
// remaining WebSockets are closed at once (operations.md §2: a second SIGTERM). The
// rest of the drain (delivery, flush, upstream events) still runs. Called before
// Shutdown, it makes that drain unpaced from the start. Safe for concurrent use.
func (s *Server) Hurry() {
	s.drain.hurryOnce.Do(func() { close(s.drain.hurry) })
}

func (s *Server) runDrain(parent context.Context) error {
	sh := s.cfg.Shutdown
	ctx, cancel := context.WithTimeout(parent, sh.Timeout)
	defer cancel()
	began := time.Now()
	s.draining.Store(true)
	s.log.Info("drain: unready", "connections", s.wsConns.Load(), "drainDelay", sh.DrainDelay,
		"closeRatePerSecond", sh.CloseRatePerSecond, "timeout", sh.Timeout)
	if sh.DrainDelay > 0 {
		t := time.NewTimer(sh.DrainDelay)
		select {
		case <-t.C:
		case <-s.drain.hurry:
		case <-ctx.Done():
		}
		t.Stop()
	}
	s.stopAccepting()
	s.log.Info("drain: listener stopped accepting", "connections", s.wsConns.Load())
	err := s.closeWebSockets(ctx)
	if err == nil {
		s.log.Info("drain: connections closed", "took", time.Since(began).Round(time.Millisecond))
		err = s.flushUpstream(ctx)
	}
	if err != nil {
		err = fmt.Errorf("%w after %v (%v): %d WebSockets and %d upstream events left", ErrDrainCut,
			time.Since(began).Round(time.Millisecond), err, s.wsConns.Load(), s.up.Stats().Pending)
		s.log.Error("drain: cut", "err", err)
	}
	// Stopping closes what is left; it is not bounded by ctx, which may be over.
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelStop()
	if serr := s.eng.Stop(stopCtx); serr != nil && err == nil {
		err = serr
	}
	s.pool.stop()
	s.up.Close()
	<-s.stopped
	s.stopAdmin(stopCtx) // last, so /readyz answers 503 for the whole drain
	s.log.Info("drain: stopped", "took", time.Since(began).Round(time.Millisecond))
	return err
}

// stopAccepting ends drain step 2: the listening socket is closed under the running
// reactor (closeListener), so the kernel refuses new connections, and a socket
// accepted just before is reset in OnOpen. Where the socket cannot be closed, every
// new socket is reset in OnOpen: a client still sees its connection fail at once, but
// a balancer's TCP-connect check does not.
func (s *Server) stopAccepting() {
	s.refusing.Store(true)
	if err := s.closeListener(); err != nil {
		s.log.Warn("drain: the listening socket stays open; new connections are reset instead", "err", err)
	}
}

// closeWebSockets runs drain steps 3 and 4 for the WebSockets: each tick it settles
// the REST work accepted so far, then posts one task per loop that closes that
// loop's share of the tick's budget. It returns when no WebSocket (nor handshake
// waiting for the upstream) is left, or with ctx's error.
//
// The budget is the closes due since the start at CloseRatePerSecond, minus those
// already handed out, capped at one tick's worth so that a stall (a slow settle, a
// busy loop) is not followed by a burst. A loop that had fewer WebSockets than its
// share gives the rest back, and loops found empty get no more shares.
func (s *Server) closeWebSockets(ctx context.Context) error {
	rate := s.cfg.Shutdown.CloseRatePerSecond
	interval := 10 * time.Millisecond
	perTick := math.MaxInt
	if rate > 0 {
		if d := time.Second / time.Duration(rate); d > interval {
			interval = d
		}
		perTick = max(1, int(math.Ceil(float64(rate)*interval.Seconds())))
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	hurry := s.drain.hurry
	var (
		handed   int64        // closes handed to loops
		unused   atomic.Int64 // of those, not used (the loop had no WebSocket left)
		began    = time.Now()
		rr       int                // loop that gets the next remainder
		empty    = map[*loop]bool{} // loops found with nothing left to close
		posted   []*loop            // the previous tick's loops, and whether each has more
		more     []bool
		inFlight sync.WaitGroup
	)
	for {
		if err := waitGroup(ctx, &inFlight); err != nil { // the previous tick's tasks
			return err
		}
		for i, lp := range posted {
			empty[lp] = !more[i]
		}
		if err := s.settle(ctx); err != nil {
			return err
		}
		budget := math.MaxInt
		if rate > 0 && !s.drain.hurried() {
			due := int64(time.Since(began).Seconds() * float64(rate))
			budget = int(max(0, min(due-(handed-unused.Load()), int64(perTick))))
		}
		loops := slices.DeleteFunc(slices.Clone(*s.loopArr.Load()), func(lp *loop) bool { return empty[lp] })
		if len(loops) == 0 && s.wsConns.Load() > 0 {
			clear(empty) // a loop found empty got a WebSocket later (a handshake done upstream)
			loops = slices.Clone(*s.loopArr.Load())
		}
		posted, more = loops, make([]bool, len(loops))
		for i, lp := range loops {
			share := budget
			if budget != math.MaxInt {
				share = budget / len(loops)
				if (i-rr+len(loops))%len(loops) < budget%len(loops) {
					share++
				}
				handed += int64(share)
			}
			inFlight.Add(1)
			err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				defer inFlight.Done()
				closed, left := lp.closeForDrain(share)
				if share != math.MaxInt {
					unused.Add(int64(share - closed))
				}
				more[i] = left
				return nil
			}))
			if err != nil { // the reactor is stopping: the task will not run
				if share != math.MaxInt {
					unused.Add(int64(share))
				}
				more[i] = true
				inFlight.Done()
			}
		}
		if budget != math.MaxInt && len(loops) > 0 {
			rr = (rr + budget%len(loops)) % len(loops)
		}
		if s.wsConns.Load() == 0 && s.connecting.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-hurry:
			hurry = nil // closed: wake once, then tick
		}
	}
}

// closeForDrain runs on lp's loop: it closes those of its lingering connections whose
// bytes are out, then up to max WebSockets, newest slot first. more reports whether
// the loop still has WebSockets (or handshakes that may become one) to close.
func (lp *loop) closeForDrain(max int) (closed int, more bool) {
	kept := lp.lingering[:0]
	for _, c := range lp.lingering {
		if c.gc.OutboundBuffered() > 0 {
			kept = append(kept, c)
			continue
		}
		_ = c.gc.Close()
	}
	clear(lp.lingering[len(kept):])
	lp.lingering = kept
	more = len(kept) > 0
	// From the end: a close that fails its write is removed at once (OnClose), which
	// moves the last slot into this one, and the last slot was already visited.
	for i := len(lp.conns) - 1; i >= 0; i-- {
		switch c := lp.conns[i]; c.state {
		case stateWS:
			if closed == max {
				return closed, true
			}
			c.close(closeShutdown, drainDetail)
			closed++
		case stateConnecting:
			more = true
		}
	}
	return closed, more || len(lp.lingering) > 0
}

// linger keeps a drain-closed connection whose close frame is still queued: gnet's
// close writes what the socket takes at once and drops the rest, so closeForDrain
// closes it once OutboundBuffered is zero. Runs on c's loop.
func (c *conn) linger() {
	c.lingering = true
	c.lp.lingering = append(c.lp.lingering, c)
}

// unlinger forgets c when it closed while lingering (the peer went away). Runs on c's loop.
func (c *conn) unlinger() {
	if i := slices.Index(c.lp.lingering, c); i >= 0 {
		c.lp.lingering = slices.Delete(c.lp.lingering, i, i+1)
	}
	c.lingering = false
}

// flushUpstream waits until the upstream client has delivered every queued event
// (the `disconnected` events of the closed connections), or ctx ends.
func (s *Server) flushUpstream(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.up.Stats().Pending > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// settle waits until every REST request accepted so far has finished, with the
// fan-out it runs after its response and the loop tasks that fan-out posted. Those
// tasks join the generation current when they are posted, so two generations are
// waited for: the requests', then their tasks'. A close queued after settle returns
// thus follows every message such a request sent to the connection.
func (s *Server) settle(ctx context.Context) error {
	for range 2 {
		if err := waitGroup(ctx, s.work.next()); err != nil {
			return err
		}
	}
	return nil
}

func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// inflight counts work that runs off a connection's loop and then writes to it: REST
// requests on the worker pool (with their after-response fan-out) and the fan-out
// tasks posted to loops. Work joins the current generation; the drain starts a new
// one and waits for the old one to finish (settle).
type inflight struct {
	mu  sync.RWMutex // held exclusively only to switch generations
	cur *sync.WaitGroup
}

func (f *inflight) init() { f.cur = new(sync.WaitGroup) }

// add counts one piece of work in the current generation; the caller calls Done on
// the result when the work is finished. Safe for concurrent use.
func (f *inflight) add() *sync.WaitGroup {
	f.mu.RLock()
	wg := f.cur
	wg.Add(1)
	f.mu.RUnlock()
	return wg
}

// next starts a new generation and returns the previous one, to which nothing is
// added any more. Safe for concurrent use.
func (f *inflight) next() *sync.WaitGroup {
	f.mu.Lock()
	old := f.cur
	f.cur = new(sync.WaitGroup)
	f.mu.Unlock()
	return old
}
