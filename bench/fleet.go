package bench

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// fleetConfig describes a set of clients opened together in one process.
type fleetConfig struct {
	svc              Service
	hub              string
	first            int // global index of the first client
	conns            int
	concurrency      int // handshakes in flight
	handshakeTimeout time.Duration
	loopbackSources  int
	eventLoops       int // zero means GOMAXPROCS
	// groupOf returns the group client i (global index) joins through its token; nil or ""
	// means none.
	groupOf func(i int) string
	roles   []string
	// proto is the subprotocol the clients speak; ignored when plain.
	proto protocol
	// plain makes plain WebSocket clients: no subprotocol offered, up at the 101 response
	// (no connected event), and every message they receive goes to onMessage.
	plain bool
	// onMessage is called on the client's loop with each text or binary message after
	// connected; payload is valid only during the call. It must not block.
	onMessage func(cl *client, payload []byte)
}

// fleet opens cfg.conns clients on gnet event loops: a few dialing goroutines (as many as
// handshakes may be in flight) dial, then enroll each socket on a loop, which does the
// handshake and reads frames without blocking. No goroutine per connection.
type fleet struct {
	cfg     fleetConfig
	d       *dialer
	host    string // Host header
	path    string // request path of the hub's client endpoint
	cli     *gnet.Client
	clients []*client

	sem  chan struct{} // handshakes in flight; whoever settles a client releases its slot
	next atomic.Int64  // next local index to dial

	up        atomic.Int64 // connected and still open
	connected atomic.Int64 // ever received connected
	dropped   atomic.Int64 // closed after connected, before close was called
	live      atomic.Int64 // enrolled and not yet through OnClose
	stopping  atomic.Bool
	drain     atomic.Pointer[drainWatch] // set by a drain run: the server's closes are expected
	firstDial atomic.Int64               // unix ns of the first dial, 0 until then
	lastUp    atomic.Int64               // unix ns of the latest connected
	handshake Histogram                  // dial to connected frame

	// Reliable subprotocols.
	seqAcks     atomic.Int64 // sequenceAck frames written
	seqGaps     atomic.Int64 // messages whose sequenceId was not the previous one + 1
	unsequenced atomic.Int64 // messages without a sequenceId

	mu       sync.Mutex
	failures map[string]int64

	settled sync.WaitGroup // each client connected or failed
	dialers sync.WaitGroup
	sweep   chan struct{} // closed to stop the timeout sweeper
}

func newFleet(cfg fleetConfig) (*fleet, error) {
	addr, err := cfg.svc.hostPort()
	if err != nil {
		return nil, err
	}
	d, err := newDialer(addr, cfg.loopbackSources)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.svc.clientURL(cfg.hub))
	if err != nil {
		return nil, err
	}
	if cfg.concurrency <= 0 {
		cfg.concurrency = 1
	}
	if cfg.proto.subprotocol == "" {
		cfg.proto, _ = parseProtocol(ProtocolJSON)
	}
	if cfg.eventLoops <= 0 {
		cfg.eventLoops = runtime.GOMAXPROCS(0)
	}
	f := &fleet{
		cfg:      cfg,
		d:        d,
		host:     u.Host,
		path:     u.EscapedPath(),
		clients:  make([]*client, cfg.conns),
		sem:      make(chan struct{}, cfg.concurrency),
		failures: make(map[string]int64),
		sweep:    make(chan struct{}),
	}
	for i := range f.clients {
		cl := &client{f: f, idx: cfg.first + i}
		if cfg.groupOf != nil {
			cl.group = cfg.groupOf(cl.idx)
		}
		f.clients[i] = cl
	}
	f.cli, err = gnet.NewClient(&handler{f: f},
		gnet.WithNumEventLoop(cfg.eventLoops),
		gnet.WithLogger(discardLogger{}),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReadBufferCap(64<<10))
	if err != nil {
		return nil, fmt.Errorf("bench: gnet client: %w", err)
	}
	if err := f.cli.Start(); err != nil {
		return nil, fmt.Errorf("bench: gnet client: %w", err)
	}
	go f.sweepTimeouts()
	if cfg.proto.reliable && !cfg.plain {
		go f.ackLoop()
	}
	return f, nil
}

// subprotocol is what the clients offer: that of cfg.proto, or "" for plain clients.
func (f *fleet) subprotocol() string {
	if f.cfg.plain {
		return ""
	}
	return f.cfg.proto.subprotocol
}

func (f *fleet) fail(kind string) {
	f.mu.Lock()
	f.failures[kind]++
	f.mu.Unlock()
}

// failureCounts returns a copy of the failures so far, by kind.
func (f *fleet) failureCounts() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.failures)
}

func (f *fleet) failed() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, v := range f.failures {
		n += v
	}
	return n
}

// settle ends client cl's handshake phase with a failure of kind ("" for success); the
// caller has won the state transition. It releases the handshake slot.
func (f *fleet) settle(kind string) {
	if kind != "" {
		f.fail(kind)
	}
	<-f.sem // cannot block: the settling client holds a slot
	f.settled.Done()
}

// open dials every client, at most cfg.concurrency handshakes at a time, and returns once
// each has connected or failed, or ctx is done (those not dialed yet count as
// not-attempted).
func (f *fleet) open(ctx context.Context) {
	f.settled.Add(len(f.clients))
	for range min(f.cfg.concurrency, len(f.clients)) {
		f.dialers.Add(1)
		go f.dialLoop(ctx)
	}
	done := make(chan struct{})
	go func() { f.settled.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (f *fleet) dialLoop(ctx context.Context) {
	defer f.dialers.Done()
	for {
		i := int(f.next.Add(1) - 1)
		if i >= len(f.clients) {
			return
		}
		select {
		case f.sem <- struct{}{}:
			if ctx.Err() == nil && !f.stopping.Load() {
				f.dialOne(ctx, f.clients[i])
				continue
			}
			<-f.sem
		case <-ctx.Done():
		}
		// Stopped: every client not dialed yet settles now, without a slot.
		for ; i < len(f.clients); i = int(f.next.Add(1) - 1) {
			f.clients[i].state.Store(stateDone)
			f.fail(failNotAttempted)
			f.settled.Done()
		}
		return
	}
}

// dialOne dials cl, holding a slot, and enrolls it on a loop.
func (f *fleet) dialOne(ctx context.Context, cl *client) {
	t0 := time.Now()
	f.firstDial.CompareAndSwap(0, t0.UnixNano())
	cl.dialedAt = t0
	conn, err := f.d.dial(ctx, cl.idx, f.cfg.handshakeTimeout)
	if err != nil {
		cl.state.Store(stateDone)
		f.settle(dialKind(err))
		return
	}
	var groups []string
	if cl.group != "" {
		groups = []string{cl.group}
	}
	tok := signClientToken(f.cfg.svc, f.cfg.hub, benchUser(cl.idx), f.cfg.roles, groups, t0, time.Hour)
	cl.req, cl.accept = upgradeRequest(f.host, f.path+"?access_token="+tok, f.subprotocol())
	cl.deadlineNs.Store(t0.Add(f.cfg.handshakeTimeout).UnixNano())
	cl.state.Store(stateHandshaking)
	f.live.Add(1)
	// Enroll dups the socket onto a loop and closes conn (gnet v2.9.7 client_unix.go), so
	// the process holds one descriptor per connection. The extra Close is harmless and keeps
	// that true should gnet stop doing it.
	_, err = f.cli.EnrollContext(conn, cl)
	_ = conn.Close()
	if err != nil {
		f.live.Add(-1)
		if cl.state.CompareAndSwap(stateHandshaking, stateDone) {
			f.settle(failEnroll)
		}
	}
}

// benchUser is the user id of client idx (a global index).
func benchUser(idx int) string { return "bench-" + strconv.Itoa(idx) }

// connectedLoop marks cl up; it runs on cl's loop when the connected event arrives. It
// reports false when the sweeper timed the handshake out first.
func (f *fleet) connectedLoop(cl *client) bool {
	if !cl.state.CompareAndSwap(stateHandshaking, stateUp) {
		return false
	}
	now := time.Now()
	f.handshake.Record(now.Sub(cl.dialedAt))
	for {
		last := f.lastUp.Load()
		if now.UnixNano() <= last || f.lastUp.CompareAndSwap(last, now.UnixNano()) {
			break
		}
	}
	f.connected.Add(1)
	f.up.Add(1)
	f.settle("")
	return true
}

// closed runs on cl's loop in OnClose.
func (f *fleet) closed(cl *client, err error) {
	f.live.Add(-1)
	if cl.state.CompareAndSwap(stateHandshaking, stateDone) {
		kind := cl.failKind
		if kind == "" {
			kind = closeKind("handshake", err)
		}
		f.settle(kind)
		return
	}
	if cl.state.CompareAndSwap(stateUp, stateDone) {
		f.up.Add(-1)
		if f.stopping.Load() {
			return
		}
		if dw := f.drain.Load(); dw != nil {
			dw.serverClosed(cl, cl.closeCode)
			return
		}
		kind := cl.failKind
		if kind == "" {
			kind = closeKind(failDropped, err)
		}
		f.dropped.Add(1)
		f.fail(kind)
	}
}

// sweepTimeouts fails handshakes that outlive their deadline, ten times a second: one
// goroutine per fleet instead of a timer per connection.
func (f *fleet) sweepTimeouts() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-f.sweep:
			return
		case now := <-t.C:
			ns := now.UnixNano()
			for _, cl := range f.clients {
				if cl.state.Load() != stateHandshaking || cl.deadlineNs.Load() > ns {
					continue
				}
				if cl.state.CompareAndSwap(stateHandshaking, stateDone) {
					f.settle(failHSTimeout)
					if c := cl.conn.Load(); c != nil {
						_ = c.Close()
					}
				}
			}
		}
	}
}

// close sends a close frame on every open connection and waits, at most wait, for the
// server to close them; connections still open then are closed without waiting. It stops
// the loops; the fleet is unusable afterwards.
func (f *fleet) close(wait time.Duration) {
	f.stopping.Store(true)
	f.dialers.Wait()
	for _, cl := range f.clients {
		c := cl.conn.Load()
		if c == nil {
			continue
		}
		if cl.state.Load() == stateUp {
			_ = c.AsyncWrite(closeFrame, nil)
		} else {
			_ = c.Close()
		}
	}
	deadline := time.Now().Add(wait)
	for f.live.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.live.Load() > 0 {
		for _, cl := range f.clients {
			if c := cl.conn.Load(); c != nil {
				_ = c.Close()
			}
		}
		deadline = time.Now().Add(time.Second)
		for f.live.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(f.sweep)
	_ = f.cli.Stop()
}
