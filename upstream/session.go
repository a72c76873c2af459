package upstream

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// SessionInfo identifies a connection to the upstream.
type SessionInfo struct {
	// Hub is the hub name as the client wrote it (ce-hub, {hub} in the URL).
	Hub string
	// HubKey is the hub's compiled handlers; nil means no handlers.
	HubKey *Hub
	// ConnectionID is ce-connectionId and the ce-signature message.
	ConnectionID string
	// UserID is the user id known at connect (the token's sub), "" for none.
	UserID string
	// Subprotocol is the selected subprotocol, "" for none. Never sent on connect.
	Subprotocol string
}

// Session is one connection's upstream state: the ce-id counter (connect = 0,
// then 1, 2, 3 …), the connection state (§8), the user id and subprotocol, and a
// FIFO that keeps the connection's events in order (§5): an event is sent only
// after the previous one of the same session finished (including retries), and
// nothing is sent after disconnected. Different sessions run in parallel.
//
// Every method returns immediately and is safe for concurrent use; callbacks run
// on upstream goroutines, never inside the call that queued them.
type Session struct {
	c      *Client
	hub    string
	hk     atomic.Pointer[Hub] // the hub's current handlers (SetHub)
	id     string
	source string // ce-source

	// sig is ce-signature, computed with sigKeys by the first event that is sent and
	// again after SetKeys. Only the session's running event touches them (events of a
	// session never overlap).
	sig     string
	sigKeys *[]string

	mu          sync.Mutex
	userID      string
	subprotocol string
	state       string
	nextID      uint64
	queue       []*task
	running     bool
	closed      bool // disconnected queued; nothing more is accepted
}

// NewSession starts the upstream state of one connection. It sends nothing.
func (c *Client) NewSession(info SessionInfo) *Session {
	s := &Session{
		c:           c,
		hub:         info.Hub,
		id:          info.ConnectionID,
		source:      "/hubs/" + info.Hub + "/client/" + info.ConnectionID,
		userID:      info.UserID,
		subprotocol: info.Subprotocol,
		nextID:      1,
	}
	s.hk.Store(info.HubKey)
	return s
}

// SetHub replaces the hub's compiled handlers after a configuration reload: events
// queued from now on are matched against hk (nil = no handlers). Events already
// queued keep the handler they were matched to.
func (s *Session) SetHub(hk *Hub) { s.hk.Store(hk) }

// SetUserID sets the user id sent as ce-userId by later events ("" = none). The
// connect response's userId is applied by the session itself.
func (s *Session) SetUserID(id string) {
	s.mu.Lock()
	s.userID = id
	s.mu.Unlock()
}

// SetSubprotocol sets the subprotocol sent as ce-subprotocol by later events.
// Call it with the negotiated value before Connected.
func (s *Session) SetSubprotocol(p string) {
	s.mu.Lock()
	s.subprotocol = p
	s.mu.Unlock()
}

// ConnectionState returns the current connection state (§8), "" when none.
func (s *Session) ConnectionState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// ConnectRequest is the body of the connect event (§4.1). Nil maps and slices
// are sent as {} and []. Connect takes ownership: do not modify it afterwards.
type ConnectRequest struct {
	Claims             map[string][]string
	Query              map[string][]string
	Headers            map[string][]string
	Subprotocols       []string
	ClientCertificates []ClientCertificate
}

// ClientCertificate is one TLS client certificate of the connect event.
type ClientCertificate struct {
	Thumbprint string // SHA-1 thumbprint, hex
	Content    string // PEM
}

// ConnectResult is the outcome of the connect event (§4.2, §4.3).
type ConnectResult struct {
	// Err is nil when the upstream accepted. A 4xx rejection is a *RejectError
	// (answer with its Status); any other error (5xx after retries, timeout,
	// network, invalid body or group name, unoffered subprotocol, state too
	// large, validation failed, ErrQueueFull, ErrClosed) means answer 500.
	Err error
	// UserID replaces the token's user id when non-nil; "" means no user. The
	// session applies it to its own ce-userId.
	UserID *string
	// Groups replaces the token's groups when non-nil (never non-nil and empty).
	Groups []string
	// Roles replaces the token's roles when HasRoles (an empty list removes all).
	Roles    []string
	HasRoles bool
	// Subprotocol is the upstream's choice, one of the offered values; "" means
	// not chosen (the engine picks per §4.3).
	Subprotocol string
}

// ContentType is the media type of a user event body or reply.
type ContentType uint8

// Content types (§6.1).
const (
	Binary   ContentType = iota // application/octet-stream
	Text                        // text/plain; charset=utf-8
	JSON                        // application/json; charset=utf-8
	Protobuf                    // application/x-protobuf
)

// String returns the Content-Type header value sent for c.
func (ct ContentType) String() string {
	switch ct {
	case Text:
		return "text/plain; charset=utf-8"
	case JSON:
		return "application/json; charset=utf-8"
	case Protobuf:
		return "application/x-protobuf"
	default:
		return "application/octet-stream"
	}
}

// EventResult is the outcome of a user event (§6.2).
type EventResult struct {
	// Err is nil for a 2xx answer, else the failure (*StatusError, ErrTimeout,
	// ErrResponseTooLarge, ErrBadContentType, ErrRedirect, ErrNotValidated,
	// ErrNoHandler, ErrQueueFull, ErrClosed, network errors…).
	Err error
	// HasBody is true for a 2xx with a non-empty body; an empty body (with any
	// Content-Type, e.g. express's res.success()) sends nothing to the client.
	HasBody bool
	// ContentType is the reply's media type (missing Content-Type = Binary).
	// Protobuf is valid only for protobuf-subprotocol connections; for the
	// others the engine treats it as a failure (§6.2).
	ContentType ContentType
	// ValidJSON reports, for ContentType JSON, whether Body is valid JSON. A
	// subprotocol client needs it (invalid JSON = failure); a simple client
	// gets the bytes as a text frame either way.
	ValidJSON bool
	// Body is the reply, owned by the caller.
	Body []byte
}

type eventKind uint8

const (
	kindConnect eventKind = iota
	kindConnected
	kindDisconnected
	kindUser
)

// String is the kind's Attempt.Event name.
func (k eventKind) String() string {
	switch k {
	case kindConnect:
		return "connect"
	case kindConnected:
		return "connected"
	case kindDisconnected:
		return "disconnected"
	}
	return "user"
}

// task is one event of a session, from queueing to its last attempt.
type task struct {
	s       *Session
	kind    eventKind
	name    string // ce-eventName
	id      uint64 // ce-id, kept across retries
	target  *target
	attempt int    // attempts made before the current one
	time    string // ce-time of the first attempt, kept across retries
	at      time.Time

	ct   ContentType
	body []byte // request body; for connect encoded at the first attempt

	connect     ConnectRequest
	connectDone func(ConnectResult)
	userDone    func(EventResult)
}

// Connect sends the blocking connect event (§4) if a handler receives it; with
// no such handler done reports acceptance without a call. done is called
// exactly once, from an upstream goroutine, never inside Connect.
func (s *Session) Connect(req ConnectRequest, done func(ConnectResult)) {
	h := s.hk.Load().system(sysConnect)
	if h == nil {
		go done(ConnectResult{})
		return
	}
	t := &task{s: s, kind: kindConnect, name: "connect", connect: req, connectDone: done, ct: JSON}
	t.target = h.resolve(s.hub, "connect")
	if err := s.enqueue(t, true); err != nil {
		go done(ConnectResult{Err: err})
	}
}

// Connected queues the non-blocking connected event (§5.1), body {}.
func (s *Session) Connected() {
	h := s.hk.Load().system(sysConnected)
	if h == nil {
		return
	}
	t := &task{s: s, kind: kindConnected, name: "connected", ct: JSON, body: emptyObject}
	t.target = h.resolve(s.hub, "connected")
	_ = s.enqueue(t, false)
}

var emptyObject = []byte("{}")

// Disconnected queues the non-blocking disconnected event (§5.2), body
// {"reason":reason}. It is the session's last event: later calls are refused.
func (s *Session) Disconnected(reason string) {
	h := s.hk.Load().system(sysDisconnected)
	if h == nil {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		return
	}
	t := &task{s: s, kind: kindDisconnected, name: "disconnected", ct: JSON, body: disconnectedBody(reason)}
	t.target = h.resolve(s.hub, "disconnected")
	_ = s.enqueue(t, false)
}

// UserEvent sends the blocking user event name (simple clients: "message") with
// body as ct (§6). UserEvent takes ownership of body: the caller must not modify
// it afterwards (the engine's one copy out of the loop's buffer is enough). done
// is called exactly once, from an upstream goroutine, never inside UserEvent;
// ErrNoHandler when no handler's userEventPattern matches name.
func (s *Session) UserEvent(name string, ct ContentType, body []byte, done func(EventResult)) {
	h := s.hk.Load().user(name)
	if h == nil {
		go done(EventResult{Err: ErrNoHandler})
		return
	}
	t := &task{s: s, kind: kindUser, name: name, ct: ct, body: body, userDone: done}
	t.target = h.resolve(s.hub, name)
	if err := s.enqueue(t, true); err != nil {
		go done(EventResult{Err: err})
	}
}

// enqueue appends t to the session FIFO and dispatches it if the session is
// idle. A refused non-blocking event is counted and logged here; a refused
// blocking event's error is returned for its done.
func (s *Session) enqueue(t *task, blocking bool) error {
	c := s.c
	if c.closed.Load() {
		c.dropped.Add(1)
		return ErrClosed
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.dropped.Add(1)
		c.logEvent(slog.LevelDebug, "upstream: event after disconnected not sent", t)
		return ErrClosed
	}
	if t.kind == kindDisconnected {
		s.closed = true
	}
	if c.pending.Add(1) > int64(c.cfg.MaxPendingEvents) {
		c.pending.Add(-1)
		s.mu.Unlock()
		c.dropped.Add(1)
		c.logEvent(slog.LevelWarn, msgEventDropped, t, slog.Bool("blocking", blocking), slog.Int("maxPendingEvents", c.cfg.MaxPendingEvents))
		return ErrQueueFull
	}
	if t.kind == kindConnect {
		t.id = 0
	} else {
		t.id = s.nextID
		s.nextID++
	}
	if s.running {
		s.queue = append(s.queue, t)
		s.mu.Unlock()
		return nil
	}
	s.running = true
	s.mu.Unlock()
	c.hostFor(t.target.hostKey).submit(t)
	return nil
}

// next dispatches the session's following event after one finished.
func (s *Session) next() {
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.running = false
		s.queue = nil
		s.mu.Unlock()
		return
	}
	t := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	s.mu.Unlock()
	s.c.hostFor(t.target.hostKey).submit(t)
}
