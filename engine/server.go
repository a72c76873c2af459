package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/webpubsub/webpubsub/registry"
	"github.com/webpubsub/webpubsub/upstream"
	"github.com/webpubsub/webpubsub/wsproto"
)

// Server is one Web PubSub node: a gnet reactor that owns every socket of its public
// port, the registry of hubs, groups, users and connections, and the REST API.
type Server struct {
	gnet.BuiltinEventEngine

	// cfg is the configuration given to New. Its reloadable parts (keys, auth, hubs,
	// limits) are read through live instead; the rest needs a restart to change.
	cfg  Config
	log  *slog.Logger
	reg  *registry.Registry
	live atomic.Pointer[settings] // replaced as a whole by Reload
	// reloadMu serialises Reload calls; readers never take it.
	reloadMu sync.Mutex
	pool     *workerPool
	// readers holds bufio.Readers that wrap fully buffered bytes, so fasthttp's
	// blocking parsers never wait: they see EOF instead. Each is as large as the
	// biggest request head allowed, because fasthttp needs a whole head in its buffer.
	readers sync.Pool

	eng        gnet.Engine
	addr       atomic.Pointer[net.TCPAddr]
	started    chan struct{}
	stopped    chan struct{}
	runErr     error
	draining   atomic.Bool  // the readiness flag: set when a drain starts, read by /api/health and the admin /readyz
	refusing   atomic.Bool  // drain step 2: the listener is closing; OnOpen resets sockets accepted just before
	wsConns    atomic.Int64 // open WebSocket connections; read by REST, metrics and shutdown
	connecting atomic.Int64 // handshakes waiting for the upstream connect event
	up         *upstream.Client
	warn       [numWarnKinds]rateLimit // one line a second per kind of repeated warning

	// Metrics (metrics.go): hub label indexes, the counters moved off the loops
	// (indexed like loopStats.hubs), the live reliable connections and the
	// Prometheus registry the admin listener serves.
	labels    *hubLabels
	shared    []sharedHubCounters
	reliables sync.Map // *reliable → struct{}; from upgrade until finalize
	metrics   *metrics
	admin     adminServer
	work      inflight   // REST work and fan-out tasks a drain waits for (drain.go)
	drain     drainState // Shutdown's progress (drain.go)
	// beforeFanout, when set (tests only), runs on the pool worker after a REST
	// response is queued and before the work that follows it (the send's fan-out).
	beforeFanout atomic.Pointer[func()]

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop
	loopArr atomic.Pointer[[]*loop]

	now func() time.Time
}

// loop is the per-event-loop state: scratch buffers and the connections it owns.
// Only its event loop goroutine touches it.
type loop struct {
	el      gnet.EventLoop
	stats   loopStats             // this loop's metrics; written only by its goroutine
	conns   []*conn               // every open connection of the loop; conn.slot is its index
	scratch []byte                // frame encode buffer, reused within one callback
	body    []byte                // message body encode buffer, reused within one callback
	msg     wsproto.ClientMessage // decode target; its scratch is shared by the loop's connections
	// lingering are drain-closed connections waiting for their bytes to flush (drain.go).
	lingering []*conn
}

// New validates cfg and builds a server. It does not listen yet; call Start.
func New(cfg Config) (*Server, error) {
	if err := applyDefaults(&cfg); err != nil {
		return nil, err
	}
	reg, err := registry.New(registry.Config{})
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		reg:     reg,
		started: make(chan struct{}),
		stopped: make(chan struct{}),
		loops:   make(map[gnet.EventLoop]*loop),
		now:     time.Now,
	}
	s.drain.init()
	s.work.init()
	st, err := newSettings(cfg, nil, 1)
	if err != nil {
		return nil, err
	}
	s.live.Store(st)
	// Hubs configured at start get their own metrics label; hubs added by a reload
	// count as dynamic hubs (the first 100 by name, then "other").
	names := make([]string, 0, len(cfg.Hubs))
	for name := range cfg.Hubs {
		names = append(names, name)
	}
	slices.Sort(names)
	s.labels = newHubLabels(names)
	s.shared = make([]sharedHubCounters, s.labels.size())
	s.metrics = newMetrics(s)
	upCfg := upstreamConfig(cfg, log)
	upCfg.OnAttempt = s.metrics.upstreamAttempt
	if s.up, err = upstream.New(upCfg); err != nil {
		return nil, err
	}
	s.pool = newWorkerPool(cfg.Workers, 8192)
	headBuf := cfg.Limits.MaxHeaderBytes + 1024
	s.readers.New = func() any { return bufio.NewReaderSize(nil, headBuf) }
	empty := []*loop{}
	s.loopArr.Store(&empty)
	return s, nil
}

func strictEndpoints(cfg Config) []string {
	if !cfg.Auth.StrictAudienceHost {
		return nil
	}
	return []string{cfg.PublicEndpoint}
}

func newHubConfig(h HubSettings) (*hubConfig, error) {
	hc := &hubConfig{
		anonymous: strings.EqualFold(h.AnonymousConnectPolicy, "allow"),
		keepAlive: h.KeepAliveInterval,
		src:       h,
	}
	if hc.keepAlive <= 0 {
		hc.keepAlive = 20 * time.Second
	}
	if len(h.EventHandlers) > 0 {
		handlers := make([]upstream.Handler, len(h.EventHandlers))
		for i, eh := range h.EventHandlers {
			handlers[i] = upstream.Handler{
				URLTemplate:      eh.URLTemplate,
				UserEventPattern: eh.UserEventPattern,
				SystemEvents:     eh.SystemEvents,
				BearerToken:      eh.Auth.BearerToken,
			}
		}
		up, err := upstream.CompileHub(handlers)
		if err != nil {
			return nil, err
		}
		hc.up = up
	}
	return hc, nil
}

// upstreamConfig converts the server's settings into the upstream client's.
func upstreamConfig(cfg Config, log *slog.Logger) upstream.Config {
	public := cfg.PublicEndpoint
	if public == "" {
		public = "http://" + cfg.Listen
	}
	var host, hostPort string
	if u, err := url.Parse(public); err == nil {
		host, hostPort = u.Hostname(), u.Host
	}
	origin := cfg.RequestOrigin
	if origin == "" {
		origin = host
	}
	u := cfg.Upstream
	return upstream.Config{
		Keys:                    upstreamKeys(cfg.Keys),
		RequestOrigin:           origin,
		PublicHostPort:          hostPort,
		ValidationDisabled:      u.ValidationDisabled,
		ValidationTimeout:       u.ValidationTimeout,
		ValidationSuccessCache:  u.ValidationSuccessCache,
		Timeout:                 u.Timeout,
		RetryDelays:             u.RetryDelays,
		MaxResponseBytes:        u.MaxResponseBytes,
		MaxConnectionStateBytes: u.MaxConnectionStateBytes,
		Logger:                  log,
	}
}

// upstreamKeys lists the keys that sign ce-signature, primary first.
func upstreamKeys(k Keys) []string {
	keys := []string{k.Primary}
	if k.Secondary != "" {
		keys = append(keys, k.Secondary)
	}
	return keys
}

// applyDefaults fills zero values and validates; it is the only place defaults live.
func applyDefaults(cfg *Config) error {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Keys.Primary == "" && !cfg.Auth.DisableAccessKeys {
		return errors.New("engine: keys.primary is required (or run in development mode)")
	}
	if cfg.Auth.ClockSkew <= 0 {
		cfg.Auth.ClockSkew = 5 * time.Minute
	}
	if cfg.Limits.MaxMessageBytes <= 0 {
		cfg.Limits.MaxMessageBytes = 1 << 20
	}
	if cfg.Limits.MaxOutboundBytes <= 0 {
		cfg.Limits.MaxOutboundBytes = 16 << 20
	}
	if cfg.Upstream.MaxPendingConnects <= 0 {
		cfg.Upstream.MaxPendingConnects = 10000
	}
	if cfg.Limits.RecoveryWindow <= 0 {
		cfg.Limits.RecoveryWindow = 30 * time.Second
	}
	if cfg.Limits.HTTPIdleTimeout <= 0 {
		cfg.Limits.HTTPIdleTimeout = 2 * time.Minute
	}
	if cfg.Limits.MaxHeaderBytes <= 0 {
		cfg.Limits.MaxHeaderBytes = 16 << 10
	}
	if cfg.Limits.FilterMaxClauses <= 0 {
		cfg.Limits.FilterMaxClauses = 100
	}
	if cfg.Shutdown.DrainDelay == 0 {
		cfg.Shutdown.DrainDelay = 5 * time.Second
	}
	if cfg.Shutdown.CloseRatePerSecond == 0 {
		cfg.Shutdown.CloseRatePerSecond = 2000
	}
	if cfg.Shutdown.Timeout <= 0 {
		cfg.Shutdown.Timeout = 60 * time.Second
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4 * cfg.Loops
	}
	if cfg.BasePath != "" && (!strings.HasPrefix(cfg.BasePath, "/") || strings.HasSuffix(cfg.BasePath, "/")) {
		return fmt.Errorf("engine: endpoint.basePath %q must start with '/' and not end with '/'", cfg.BasePath)
	}
	return nil
}

// Start listens and serves in the background: the admin listener first (when
// Admin.Address is set; /readyz answers 503 until the public port is up), then the
// public port. It returns once the port accepts connections, or with the listen error.
func (s *Server) Start() error {
	if err := s.startAdmin(); err != nil {
		return err
	}
	go func() {
		defer close(s.stopped)
		err := gnet.Run(s, "tcp://"+s.cfg.Listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithReuseAddr(true),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{s.log}),
		)
		if err != nil {
			s.runErr = err
		}
	}()
	select {
	case <-s.started:
		return nil
	case <-s.stopped:
		if s.runErr == nil {
			s.runErr = errors.New("engine: server stopped before it started")
		}
		s.stopAdmin(context.Background())
		return fmt.Errorf("engine: listen on %s: %w", s.cfg.Listen, s.runErr)
	}
}

// Addr is the bound address of the public port; valid after Start.
func (s *Server) Addr() *net.TCPAddr { return s.addr.Load() }

// Done is closed when the reactor has stopped.
func (s *Server) Done() <-chan struct{} { return s.stopped }

// Err is the reactor's exit error, valid after Done is closed.
func (s *Server) Err() error { return s.runErr }

// OnBoot records the engine and the bound address.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *syscall.SockaddrInet4:
				s.addr.Store(&net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port})
			case *syscall.SockaddrInet6:
				s.addr.Store(&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port})
			}
		}
		syscall.Close(fd)
	}
	if a := s.addr.Load(); a != nil && s.cfg.PublicEndpoint == "" {
		// A listener on port 0: event handlers see the port apps actually use.
		s.up.SetPublicHostPort(a.String())
	}
	close(s.started)
	return gnet.None
}

func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	if lp, ok := s.loops[el]; ok {
		return lp
	}
	lp := &loop{el: el, stats: loopStats{hubs: make([]hubCounters, s.labels.size())}}
	s.loops[el] = lp
	arr := make([]*loop, 0, len(s.loops))
	for _, l := range s.loops {
		arr = append(arr, l)
	}
	s.loopArr.Store(&arr)
	return lp
}

// OnOpen attaches our per-connection state. Once a drain has stopped the listener
// (drain.go), a socket the kernel accepted before its close is reset instead.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	if s.refusing.Load() {
		_ = gc.SetLinger(0) // close with RST: the client sees a refusal, not an empty answer
		return nil, gnet.Close
	}
	lp := s.loopOf(gc.EventLoop())
	c := &conn{srv: s, gc: gc, lp: lp, state: stateHTTP, lastRead: s.now().UnixNano()}
	gc.SetContext(c)
	lp.add(c)
	return nil, gnet.None
}

// OnClose is the only cleanup site (STYLE §5).
func (s *Server) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	if c.lingering {
		c.unlinger()
	}
	c.onClosed(err)
	c.lp.remove(c)
	return gnet.None
}

// OnTraffic dispatches on the connection's state.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	switch c.state {
	case stateHTTP:
		c.onHTTP()
	case stateWS:
		c.onFrames()
	default:
		// stateREST: a request is in flight; pipelined bytes wait in the
		// inbound buffer until its response is written (then Wake).
		// stateClosed: discard whatever the peer still sends.
		if c.state == stateClosed {
			_, _ = gc.Discard(gc.InboundBuffered())
		}
	}
	return gnet.None
}

// OnTick posts one keep-alive sweep per loop each second.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := s.now()
	for _, lp := range *s.loopArr.Load() {
		lp := lp
		_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			lp.sweep(now, int64(s.settings().cfg.Limits.HTTPIdleTimeout))
			return nil
		}))
	}
	return time.Second, gnet.None
}

// sweep pings idle connections and closes those that stopped answering
// (client-protocol.md §9.1: 3 × interval without any inbound frame).
func (lp *loop) sweep(now time.Time, httpIdle int64) {
	n := now.UnixNano()
	for i := 0; i < len(lp.conns); i++ {
		c := lp.conns[i]
		if c.state == stateHTTP && n-c.lastRead > httpIdle {
			// An idle keep-alive connection, or a request head that never completed
			// (slowloris): Limits.HTTPIdleTimeout.
			c.state = stateClosed
			_ = c.gc.Close()
			continue
		}
		if c.state != stateWS {
			continue
		}
		c.refreshHub()
		ka := int64(c.hub.keepAlive)
		if n-c.lastRead > 3*ka && !c.busy { // a slow upstream is not the client's silence
			c.close(closePingTimeout, "")
			continue
		}
		if n-c.lastPing >= ka {
			c.lastPing = n
			c.writeControl(pingFrame)
		}
	}
}

// add and remove keep lp.conns dense: a slice with a back index costs 12 bytes per
// connection where a map cost ~40 (idle-density measurements, BENCHMARKS.md).
func (lp *loop) add(c *conn) {
	c.slot = int32(len(lp.conns))
	lp.conns = append(lp.conns, c)
}

func (lp *loop) remove(c *conn) {
	i := int(c.slot)
	if i >= len(lp.conns) || lp.conns[i] != c {
		return
	}
	last := len(lp.conns) - 1
	lp.conns[i] = lp.conns[last]
	lp.conns[i].slot = int32(i)
	lp.conns[last] = nil
	lp.conns = lp.conns[:last]
}

// gnetLogger adapts slog to gnet's logger interface.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "src", "gnet") }
