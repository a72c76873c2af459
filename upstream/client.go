package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Client sends CloudEvents to the hubs' event handlers. Create it with New. Safe
// for concurrent use; no method blocks the caller.
type Client struct {
	cfg  Config
	log  *slog.Logger
	http *fasthttp.Client

	hostsMu sync.Mutex
	hosts   map[string]*host // by target.hostKey; bounded by the configured templates

	validMu     sync.Mutex
	validations map[string]*validation // by target.validateURL

	// keys sign ce-signature: Config.Keys until SetKeys replaces them.
	keys atomic.Pointer[[]string]

	pending atomic.Int64 // events accepted and not yet finished
	closed  atomic.Bool

	// publicHostPort overrides Config.PublicHostPort once the server knows its bound
	// port (a listener on port 0); read by validations.
	publicHostPort atomic.Pointer[string]
	closeCh        chan struct{}

	sent, failed, retried, dropped atomic.Uint64

	// warn rate-limits info and warning lines per kind (warnKindOf): one a second each.
	warn [4]rateLimit
	now  func() time.Time // replaced in tests
	// encode writes an event's headers: writeHeaders; the sdk-go variant in
	// bench_test.go for the comparison doc.go reports.
	encode func(*fasthttp.RequestHeader, *eventHeaders)
}

// Stats are the Client's counters since New. Each is read atomically; together
// they are not a consistent snapshot.
type Stats struct {
	// Sent counts events whose final attempt got a 2xx answer.
	Sent uint64
	// Failed counts events that finally failed (after retries): non-2xx, timeout,
	// network error, invalid response, failed validation.
	Failed uint64
	// Retried counts retry attempts (§11).
	Retried uint64
	// Dropped counts events refused at the call, without any attempt:
	// MaxPendingEvents reached, the session already disconnected, or the Client
	// closed. (Events still queued when Close runs count as Failed, ErrClosed.)
	Dropped uint64
	// Pending is the number of events accepted and not yet finished.
	Pending int64
}

// New returns a Client for cfg. It starts no goroutine: workers start on demand
// per upstream host and exit when idle.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:         cfg,
		log:         cfg.Logger,
		hosts:       make(map[string]*host),
		validations: make(map[string]*validation),
		closeCh:     make(chan struct{}),
		now:         time.Now,
		encode:      writeHeaders,
	}
	c.http = &fasthttp.Client{
		Name:                     "",
		NoDefaultUserAgentHeader: true,
		// One connection per worker, plus one for a background revalidation.
		MaxConnsPerHost:     cfg.MaxConnsPerHost + 1,
		MaxConnWaitTimeout:  cfg.Timeout,
		MaxIdleConnDuration: maxIdleConnDuration,
		ReadTimeout:         cfg.Timeout,
		WriteTimeout:        cfg.Timeout,
		MaxResponseBodySize: cfg.MaxResponseBytes,
		// Our retry policy (§11) decides; fasthttp must not resend a POST.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		// Response header names are normalized (Ce-Connectionstate), so Peek is
		// case-insensitive; request names keep their spelling (writeHeaders).
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
	}
	c.keys.Store(&cfg.Keys)
	return c, nil
}

// Close stops the Client: queued events are dropped (blocking ones complete
// with ErrClosed), requests in flight finish, and later calls fail with
// ErrClosed. Safe to call more than once.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		return
	}
	close(c.closeCh)
	c.hostsMu.Lock()
	hosts := make([]*host, 0, len(c.hosts))
	for _, h := range c.hosts {
		hosts = append(hosts, h)
	}
	c.hostsMu.Unlock()
	for _, h := range hosts {
		h.mu.Lock()
		q := h.queue
		h.queue = nil
		h.mu.Unlock()
		for _, t := range q {
			c.finish(t, outcome{err: ErrClosed})
		}
	}
	c.http.CloseIdleConnections()
}

// Stats returns the counters. Safe for concurrent use.
func (c *Client) Stats() Stats {
	return Stats{
		Sent:    c.sent.Load(),
		Failed:  c.failed.Load(),
		Retried: c.retried.Load(),
		Dropped: c.dropped.Load(),
		Pending: c.pending.Load(),
	}
}

// host is the bounded worker set of one upstream host (scheme://host:port). A
// slow host fills its own queue; other hosts keep their own workers.
type host struct {
	c       *Client
	mu      sync.Mutex
	queue   []*task
	workers int
}

func (c *Client) hostFor(key string) *host {
	c.hostsMu.Lock()
	h := c.hosts[key]
	if h == nil {
		h = &host{c: c}
		c.hosts[key] = h
	}
	c.hostsMu.Unlock()
	return h
}

// submit queues t and starts a worker if the host has fewer than
// MaxConnsPerHost. It never blocks on the upstream.
func (h *host) submit(t *task) {
	if h.c.closed.Load() {
		h.c.finish(t, outcome{err: ErrClosed})
		return
	}
	h.mu.Lock()
	h.queue = append(h.queue, t)
	start := h.workers < h.c.cfg.MaxConnsPerHost
	if start {
		h.workers++
	}
	h.mu.Unlock()
	if start {
		go h.work()
	}
}

// work runs queued tasks one at a time and exits when the queue is empty.
func (h *host) work() {
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			h.workers--
			h.queue = nil // let a burst's backing array go
			h.mu.Unlock()
			return
		}
		t := h.queue[0]
		h.queue[0] = nil
		h.queue = h.queue[1:]
		h.mu.Unlock()
		h.c.run(t)
	}
}

// outcome is the end of one attempt.
type outcome struct {
	err       error
	retryable bool
	status    int
	// success parts
	connect ConnectResult
	event   EventResult
	state   *string // new connection state from a blocking 2xx (nil = unchanged)
}

// run makes one attempt of t on a worker goroutine.
func (c *Client) run(t *task) {
	if c.closed.Load() {
		c.finish(t, outcome{err: ErrClosed})
		return
	}
	if !c.cfg.ValidationDisabled {
		if err := c.validate(t.target, t.s); err != nil {
			c.finish(t, outcome{err: err})
			return
		}
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	c.buildRequest(req, t)
	start := time.Now()
	err := c.http.DoTimeout(req, resp, c.cfg.Timeout)
	fasthttp.ReleaseRequest(req)
	var o outcome
	if err != nil {
		o = classifyError(err)
	} else {
		o = c.readResponse(t, resp)
	}
	fasthttp.ReleaseResponse(resp)
	retry := o.retryable && t.attempt < len(c.cfg.RetryDelays) && !c.closed.Load()
	if c.cfg.OnAttempt != nil {
		c.cfg.OnAttempt(Attempt{Event: t.kind.String(), Outcome: o.result(retry), Duration: time.Since(start)})
	}
	if retry {
		delay := c.cfg.RetryDelays[t.attempt]
		t.attempt++
		c.retried.Add(1)
		c.logEvent(slog.LevelInfo, msgEventRetrying, t, slog.Any("err", o.err), slog.Duration("delay", delay), slog.Int("attempt", t.attempt+1))
		h := c.hostFor(t.target.hostKey)
		if delay <= 0 {
			h.submit(t)
		} else {
			time.AfterFunc(delay, func() { h.submit(t) })
		}
		return
	}
	c.finish(t, o)
}

// result is the Attempt outcome of o; retry reports whether the event is sent again.
func (o outcome) result(retry bool) Outcome {
	switch {
	case retry:
		return OutcomeRetried
	case o.err == nil:
		return OutcomeSuccess
	case o.status >= 400 && o.status < 500 && o.status != 408:
		return OutcomeRejected
	}
	return OutcomeFailed
}

// classifyError maps a fasthttp error to the package's errors and the §11 retry
// rule: network errors retry; the request timeout and an oversize body do not.
func classifyError(err error) outcome {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return outcome{err: ErrResponseTooLarge}
	case errors.Is(err, fasthttp.ErrTimeout):
		return outcome{err: ErrTimeout}
	case errors.Is(err, fasthttp.ErrDialTimeout):
		return outcome{err: fmt.Errorf("upstream: dial: %w", err), retryable: true}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return outcome{err: ErrTimeout}
	}
	return outcome{err: fmt.Errorf("upstream: %w", err), retryable: true}
}

// readResponse interprets a complete upstream response.
func (c *Client) readResponse(t *task, resp *fasthttp.Response) outcome {
	status := resp.StatusCode()
	switch {
	case status >= 200 && status < 300:
	case status == 408 || status >= 500:
		return outcome{err: &StatusError{Status: status}, retryable: true, status: status}
	case status >= 300 && status < 400:
		return outcome{err: fmt.Errorf("%w: status %d", ErrRedirect, status), status: status}
	default:
		if t.kind == kindConnect && status >= 400 && status < 500 {
			body := resp.Body()
			if len(body) > maxRejectBodyBytes {
				body = body[:maxRejectBodyBytes]
			}
			return outcome{err: &RejectError{Status: status, Body: append([]byte(nil), body...)}, status: status}
		}
		return outcome{err: &StatusError{Status: status}, status: status}
	}
	o := outcome{status: status}
	if t.kind == kindConnected || t.kind == kindDisconnected {
		return o // §5: responses to non-blocking events change nothing
	}
	// §8: connection state from a blocking event's 2xx.
	var n int
	var val []byte
	for _, v := range resp.Header.PeekAll("ce-connectionState") {
		n++
		val = v
	}
	if n > 1 {
		return outcome{err: fmt.Errorf("%w: %d headers in one response", ErrConnectionState, n), status: status}
	}
	if n == 1 {
		if len(val) > c.cfg.MaxConnectionStateBytes {
			return outcome{err: fmt.Errorf("%w: %d bytes over the %d byte limit", ErrConnectionState, len(val), c.cfg.MaxConnectionStateBytes), status: status}
		}
		s := string(val)
		o.state = &s
	}
	switch t.kind {
	case kindConnect:
		res, err := parseConnectResponse(resp.Body(), t.connect.Subprotocols)
		if err != nil {
			return outcome{err: err, status: status}
		}
		o.connect = res
	case kindUser:
		body := resp.Body()
		if len(body) == 0 {
			return o
		}
		resp.Header.SetNoDefaultContentType(true)
		ct, ok := parseContentType(resp.Header.ContentType())
		if !ok {
			return outcome{err: fmt.Errorf("%w: %q", ErrBadContentType, truncate(resp.Header.ContentType(), 100)), status: status}
		}
		o.event = EventResult{HasBody: true, ContentType: ct, Body: append([]byte(nil), body...)}
		if ct == JSON {
			o.event.ValidJSON = jsonValid(o.event.Body)
		}
	}
	return o
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// finish ends t: counters, session state, the done callback, then the session's
// next event. Runs on a worker or timer goroutine, never on the caller's.
func (c *Client) finish(t *task, o outcome) {
	c.pending.Add(-1)
	s := t.s
	if o.err == nil {
		c.sent.Add(1)
		if o.state != nil || (t.kind == kindConnect && o.connect.UserID != nil) {
			s.mu.Lock()
			if o.state != nil {
				s.state = *o.state
			}
			if t.kind == kindConnect && o.connect.UserID != nil {
				s.userID = *o.connect.UserID
			}
			s.mu.Unlock()
		}
	} else {
		c.failed.Add(1)
		level := slog.LevelWarn
		if errors.Is(o.err, ErrClosed) {
			level = slog.LevelDebug
		}
		var re *RejectError
		if errors.As(o.err, &re) {
			level = slog.LevelInfo
		}
		c.logEvent(level, msgEventFailed, t, slog.Any("err", o.err))
	}
	switch t.kind {
	case kindConnect:
		r := o.connect
		r.Err = o.err
		if o.err != nil {
			r = ConnectResult{Err: o.err}
		}
		t.connectDone(r)
	case kindUser:
		r := o.event
		if o.err != nil {
			r = EventResult{Err: o.err}
		}
		t.userDone(r)
	}
	s.next()
}

// Warnings of logEvent, each rate-limited on its own (operations.md §4).
const (
	msgEventFailed   = "upstream: event failed"
	msgEventRetrying = "upstream: event failed, retrying"
	msgEventDropped  = "upstream: too many pending events, event dropped"
)

// warnKindOf picks the rate limit of a line: failed, retried, dropped events, others.
func warnKindOf(msg string) int {
	switch msg {
	case msgEventFailed:
		return 0
	case msgEventRetrying:
		return 1
	case msgEventDropped:
		return 2
	}
	return 3
}

// logEvent writes one line about t with hub, connection id, event and URL
// (without query). Lines at info and above are rate-limited per kind, debug ones are not.
func (c *Client) logEvent(level slog.Level, msg string, t *task, attrs ...slog.Attr) {
	ctx := context.Background()
	if !c.log.Enabled(ctx, level) {
		return
	}
	if level >= slog.LevelInfo { // per-event lines above debug: rate-limited (operations.md §4)
		suppressed, ok := c.warn[warnKindOf(msg)].allow(c.now())
		if !ok {
			return
		}
		if suppressed > 0 {
			attrs = append(attrs, slog.Int64("suppressed", suppressed))
		}
	}
	base := []slog.Attr{
		slog.String("hub", t.s.hub),
		slog.String("connectionId", t.s.id),
		slog.String("event", t.name),
		slog.String("ceId", strconv.FormatUint(t.id, 10)),
	}
	if t.target != nil {
		base = append(base, slog.String("url", t.target.logURL))
	}
	c.log.LogAttrs(ctx, level, msg, append(base, attrs...)...)
}

// SetKeys replaces the access keys that sign ce-signature (primary first) after a key
// rotation: every event sent from now on, also of existing sessions, is signed with
// keys. Safe for concurrent use.
func (c *Client) SetKeys(keys []string) {
	keys = append([]string(nil), keys...)
	c.keys.Store(&keys)
}

// SetPublicHostPort sets the host:port accepted in WebHook-Allowed-Origin (§9.2),
// replacing Config.PublicHostPort: the engine calls it once it has bound its port.
// Safe for concurrent use.
func (c *Client) SetPublicHostPort(hostPort string) {
	c.publicHostPort.Store(&hostPort)
}

func (c *Client) currentPublicHostPort() string {
	if p := c.publicHostPort.Load(); p != nil {
		return *p
	}
	return c.cfg.PublicHostPort
}
