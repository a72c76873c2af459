package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fleetConfig describes a set of clients opened together.
type fleetConfig struct {
	svc              Service
	hub              string
	conns            int
	concurrency      int // handshakes in flight
	handshakeTimeout time.Duration
	loopbackSources  int
	groups           []string // joined at connect through the token
	// onMessage is called from client i's goroutine with each text or binary message
	// after connected; payload is valid only during the call.
	onMessage func(i int, payload []byte)
}

// fleet opens cfg.conns clients, one goroutine each, and keeps them reading (and answering
// pings) until close.
type fleet struct {
	cfg     fleetConfig
	d       *dialer
	host    string // Host header
	path    string // request path of the hub's client endpoint
	epoch   time.Time
	clients []atomic.Pointer[client] // set once dialed; read by close

	sem chan struct{} // handshakes in flight

	up        atomic.Int64 // connected and still open
	connected atomic.Int64 // ever received connected
	dropped   atomic.Int64 // closed after connected, before close was called
	stopping  atomic.Bool
	firstDial atomic.Int64 // ns since epoch, +1 so that 0 means unset
	lastUp    atomic.Int64 // ns since epoch of the latest connected
	handshake Histogram    // dial to connected frame

	mu       sync.Mutex
	failures map[string]int64

	settled sync.WaitGroup // each client connected, failed or gave up
	exited  sync.WaitGroup // each client goroutine returned
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
	return &fleet{
		cfg:      cfg,
		d:        d,
		host:     u.Host,
		path:     u.EscapedPath(),
		epoch:    time.Now(),
		clients:  make([]atomic.Pointer[client], cfg.conns),
		sem:      make(chan struct{}, cfg.concurrency),
		failures: make(map[string]int64),
	}, nil
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

func (f *fleet) since(t time.Time) int64 { return int64(t.Sub(f.epoch)) }

// open starts every client and returns once each has connected or failed, or ctx is done.
func (f *fleet) open(ctx context.Context) {
	f.settled.Add(f.cfg.conns)
	f.exited.Add(f.cfg.conns)
	for i := range f.cfg.conns {
		go f.run(ctx, i)
	}
	done := make(chan struct{})
	go func() { f.settled.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// rampWall is the wall-clock time from the first dial to the last connected frame.
func (f *fleet) rampWall() time.Duration {
	first := f.firstDial.Load()
	if first == 0 {
		return 0
	}
	return time.Duration(f.lastUp.Load() - (first - 1))
}

func (f *fleet) run(ctx context.Context, i int) {
	defer f.exited.Done()
	settled := false
	settle := func() {
		if !settled {
			settled = true
			f.settled.Done()
		}
	}
	defer settle()

	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		f.fail("not-attempted")
		return
	}
	released := false
	release := func() {
		if !released {
			released = true
			<-f.sem
		}
	}
	defer release()
	if f.stopping.Load() {
		f.fail("not-attempted")
		return
	}

	t0 := time.Now()
	f.firstDial.CompareAndSwap(0, f.since(t0)+1)
	conn, err := f.d.dial(ctx, i, f.cfg.handshakeTimeout)
	if err != nil {
		f.fail(dialKind(err))
		return
	}
	c := &client{conn: conn, br: newReader(conn)}
	f.clients[i].Store(c)
	if f.stopping.Load() {
		_ = conn.Close()
		f.fail("not-attempted")
		return
	}
	_ = conn.SetDeadline(t0.Add(f.cfg.handshakeTimeout))
	tok := signClientToken(f.cfg.svc, f.cfg.hub, "bench-"+strconv.Itoa(i), nil, f.cfg.groups, t0, time.Hour)
	err = c.handshake(f.host, f.path+"?access_token="+tok)
	if err == nil {
		err = c.awaitConnected()
	}
	if err != nil {
		_ = conn.Close()
		f.fail(failureKind(err))
		return
	}
	_ = conn.SetDeadline(time.Time{})
	now := time.Now()
	f.handshake.Record(now.Sub(t0))
	for {
		last := f.lastUp.Load()
		if f.since(now) <= last || f.lastUp.CompareAndSwap(last, f.since(now)) {
			break
		}
	}
	f.connected.Add(1)
	f.up.Add(1)
	release()
	settle()

	// close sets stopping before it sets read deadlines, so either it saw c above or we see
	// stopping here (after clearing the handshake deadline).
	if f.stopping.Load() {
		f.up.Add(-1)
		c.sendClose()
		return
	}
	for {
		_, payload, err := c.next()
		if err != nil {
			f.up.Add(-1)
			if f.stopping.Load() {
				c.sendClose()
				return
			}
			_ = conn.Close()
			f.dropped.Add(1)
			f.fail(dropKind(err))
			return
		}
		if f.cfg.onMessage != nil {
			f.cfg.onMessage(i, payload)
		}
	}
}

// awaitConnected reads the first message, which must be the connected event.
func (c *client) awaitConnected() error {
	_, payload, err := c.next()
	if err != nil {
		var ce *closeError
		if errors.As(err, &ce) {
			return withKind(fmt.Sprintf("%s-%d", failClosedEarly, ce.code), err)
		}
		var ke *kindError
		if errors.As(err, &ke) {
			return err
		}
		return withKind(ioKind(err, failHSEOF), err)
	}
	if !isConnected(payload) {
		return withKind(failFirstFrame, fmt.Errorf("first message %.80q", payload))
	}
	return nil
}

func dropKind(err error) string {
	var ce *closeError
	switch {
	case errors.As(err, &ce):
		return fmt.Sprintf("%s-close-%d", failDropped, ce.code)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failDropped + "-eof"
	case errors.Is(err, syscall.ECONNRESET):
		return failDropped + "-reset"
	}
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return failDropped + "-other"
}

// close sends a close frame on every connection and waits, at most wait, for the client
// goroutines to end; connections still open then are closed without one.
func (f *fleet) close(wait time.Duration) {
	f.stopping.Store(true)
	now := time.Now()
	for i := range f.clients {
		if c := f.clients[i].Load(); c != nil {
			_ = c.conn.SetReadDeadline(now)
		}
	}
	done := make(chan struct{})
	go func() { f.exited.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(wait):
	}
	for i := range f.clients {
		if c := f.clients[i].Load(); c != nil {
			_ = c.conn.Close()
		}
	}
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
