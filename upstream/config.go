package upstream

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Config holds the upstream client settings (config.md §3.1 `upstream`, plus the
// keys and the public endpoint the requests identify themselves with). Every
// field's zero value works. New copies it; it is never changed afterwards, except
// that SetKeys replaces Keys after a key rotation.
type Config struct {
	// Keys are the access keys, primary first. Each one signs the connection id
	// in ce-signature (upstream-protocol.md §7). Empty means no ce-signature header.
	Keys []string
	// RequestOrigin is the WebHook-Request-Origin value sent on every POST and
	// OPTIONS: the host name of the public endpoint, no scheme, no port (§9.3).
	// Empty means "localhost".
	RequestOrigin string
	// PublicHostPort is host:port of the public endpoint. A WebHook-Allowed-Origin
	// equal to it is accepted as well as RequestOrigin (§9.2). Empty means only
	// RequestOrigin and "*" are accepted.
	PublicHostPort string

	// ValidationDisabled turns abuse protection (§9) off: events are sent without
	// the OPTIONS handshake. False (the default) validates.
	ValidationDisabled bool
	// ValidationTimeout bounds one OPTIONS (or GET) validation request. Zero means 10s.
	ValidationTimeout time.Duration
	// ValidationSuccessCache is how long a successful validation is trusted before
	// it is repeated in the background (the old result stays in use meanwhile).
	// Zero means 60s.
	ValidationSuccessCache time.Duration

	// Timeout bounds one event request attempt, until the whole response is read.
	// Zero means 100s.
	Timeout time.Duration
	// RetryDelays are the waits before the second, third, … attempt of an event
	// that failed with a network error, 408 or 5xx (§11). Nil means 1s, 3s, 5s;
	// an empty non-nil slice means no retries.
	RetryDelays []time.Duration
	// MaxResponseBytes bounds an upstream response body; a larger one fails the
	// event. Zero means 1 MiB (1 048 576).
	MaxResponseBytes int
	// MaxConnectionStateBytes bounds the ce-connectionState value an upstream may
	// set (§8); a larger one fails the event. Zero means 8 KiB (8192).
	MaxConnectionStateBytes int
	// MaxConnsPerHost bounds concurrent requests (and workers, and pooled TCP
	// connections) per upstream host. Events beyond it queue for that host only.
	// Zero means 256.
	MaxConnsPerHost int
	// MaxPendingEvents bounds the events queued or in flight across all sessions.
	// Beyond it a non-blocking event is dropped (counted in Stats.Dropped and
	// logged) and a blocking event fails with ErrQueueFull. Zero means 100 000.
	MaxPendingEvents int

	// Logger receives the package's log lines. Nil means discard.
	Logger *slog.Logger
	// OnAttempt, when set, is called after every HTTP request to an event handler
	// (each attempt of an event, each abuse-protection validation request) with what
	// it was and how it ended: the engine's metrics. It runs on the upstream worker
	// that made the request and must not block. Nil means none.
	OnAttempt func(Attempt)
}

// Attempt describes one finished HTTP request to an event handler.
type Attempt struct {
	// Event is "connect", "connected", "disconnected", "user" (any user event) or
	// "validate" (the abuse-protection OPTIONS or GET, §9).
	Event string
	// Outcome is how the request ended.
	Outcome Outcome
	// Duration is from sending the request until its response was read or it failed.
	Duration time.Duration
}

// Outcome is how one request to an event handler ended.
type Outcome uint8

const (
	// OutcomeSuccess: a 2xx answer that the event accepted (for validation: the
	// handler allowed our origin).
	OutcomeSuccess Outcome = iota
	// OutcomeRejected: a 4xx answer that ends the event (a connect rejection, or
	// any other 4xx but 408).
	OutcomeRejected
	// OutcomeFailed: the event's last attempt failed otherwise: 5xx, 408, timeout,
	// network error, redirect or an invalid response.
	OutcomeFailed
	// OutcomeRetried: the attempt failed and the event is sent again (§11).
	OutcomeRetried
)

// String returns the outcome's metric label: success, rejected, failed or retried.
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeRejected:
		return "rejected"
	case OutcomeRetried:
		return "retried"
	}
	return "failed"
}

// Defaults (config.md §3.1, upstream-protocol.md §11).
const (
	defaultRequestOrigin          = "localhost"
	defaultValidationTimeout      = 10 * time.Second
	defaultValidationSuccessCache = 60 * time.Second
	defaultTimeout                = 100 * time.Second
	defaultMaxResponseBytes       = 1 << 20
	defaultMaxConnectionStateByte = 8 << 10
	defaultMaxConnsPerHost        = 256
	defaultMaxPendingEvents       = 100000

	// maxRejectBodyBytes bounds RejectError.Body (§4.2: "truncated to a small size").
	maxRejectBodyBytes = 4 << 10
	// validationMaxBackoff caps the retry delay of a failing validation (§9.4).
	validationMaxBackoff = 60 * time.Second
	// maxIdleConnDuration closes pooled upstream connections before Node's default
	// keepAliveTimeout (5s) does, so a POST is not written onto a socket the
	// upstream is closing (which would fail the attempt and cost a retry delay).
	maxIdleConnDuration = 4 * time.Second
)

var defaultRetryDelays = []time.Duration{1 * time.Second, 3 * time.Second, 5 * time.Second}

// withDefaults returns a copy of cfg with every zero field replaced by its default.
func (cfg Config) withDefaults() (Config, error) {
	cfg.Keys = append([]string(nil), cfg.Keys...)
	if cfg.RequestOrigin == "" {
		cfg.RequestOrigin = defaultRequestOrigin
	}
	if cfg.ValidationTimeout == 0 {
		cfg.ValidationTimeout = defaultValidationTimeout
	}
	if cfg.ValidationSuccessCache == 0 {
		cfg.ValidationSuccessCache = defaultValidationSuccessCache
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = defaultRetryDelays
	}
	cfg.RetryDelays = append([]time.Duration{}, cfg.RetryDelays...)
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = defaultMaxResponseBytes
	}
	if cfg.MaxConnectionStateBytes == 0 {
		cfg.MaxConnectionStateBytes = defaultMaxConnectionStateByte
	}
	if cfg.MaxConnsPerHost == 0 {
		cfg.MaxConnsPerHost = defaultMaxConnsPerHost
	}
	if cfg.MaxPendingEvents == 0 {
		cfg.MaxPendingEvents = defaultMaxPendingEvents
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case cfg.ValidationTimeout < 0:
		return cfg, fmt.Errorf("%w: ValidationTimeout %v is negative", ErrInvalidConfig, cfg.ValidationTimeout)
	case cfg.ValidationSuccessCache < 0:
		return cfg, fmt.Errorf("%w: ValidationSuccessCache %v is negative", ErrInvalidConfig, cfg.ValidationSuccessCache)
	case cfg.Timeout < 0:
		return cfg, fmt.Errorf("%w: Timeout %v is negative", ErrInvalidConfig, cfg.Timeout)
	case cfg.MaxResponseBytes < 0:
		return cfg, fmt.Errorf("%w: MaxResponseBytes %d is negative", ErrInvalidConfig, cfg.MaxResponseBytes)
	case cfg.MaxConnectionStateBytes < 0:
		return cfg, fmt.Errorf("%w: MaxConnectionStateBytes %d is negative", ErrInvalidConfig, cfg.MaxConnectionStateBytes)
	case cfg.MaxConnsPerHost < 0:
		return cfg, fmt.Errorf("%w: MaxConnsPerHost %d is negative", ErrInvalidConfig, cfg.MaxConnsPerHost)
	case cfg.MaxPendingEvents < 0:
		return cfg, fmt.Errorf("%w: MaxPendingEvents %d is negative", ErrInvalidConfig, cfg.MaxPendingEvents)
	}
	for i, d := range cfg.RetryDelays {
		if d < 0 {
			return cfg, fmt.Errorf("%w: RetryDelays[%d] %v is negative", ErrInvalidConfig, i, d)
		}
	}
	return cfg, nil
}

// Sentinel errors. Test with errors.Is.
var (
	// ErrInvalidConfig is wrapped by New for an unusable Config. Fix the configuration.
	ErrInvalidConfig = errors.New("upstream: invalid config")
	// ErrInvalidHandler is wrapped by CompileHub; the message names the handler
	// index and field. Fix the hub's eventHandlers.
	ErrInvalidHandler = errors.New("upstream: invalid event handler")
	// ErrNoHandler: no handler of the hub matches the event (§10.1). For a user
	// event the engine applies §6.1 (close a simple client, ack failure…).
	ErrNoHandler = errors.New("upstream: no event handler matches the event")
	// ErrQueueFull: MaxPendingEvents events are already pending. Treat as an
	// upstream failure (500 for connect).
	ErrQueueFull = errors.New("upstream: too many pending events")
	// ErrClosed: the Client was closed or the session already sent disconnected.
	ErrClosed = errors.New("upstream: closed")
	// ErrTimeout: the upstream did not answer within Config.Timeout.
	ErrTimeout = errors.New("upstream: request timed out")
	// ErrResponseTooLarge: the response body exceeded Config.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("upstream: response body too large")
	// ErrBadContentType: a user-event response had a non-empty body with a media
	// type other than text/plain, application/json, application/octet-stream or
	// application/x-protobuf (§6.2).
	ErrBadContentType = errors.New("upstream: unsupported response content type")
	// ErrBadConnectResponse: a 2xx connect response body is not a JSON object of
	// the §4.3 shape, names an invalid group, or picks a subprotocol the client
	// did not offer. Answer the handshake with 500.
	ErrBadConnectResponse = errors.New("upstream: invalid connect response")
	// ErrConnectionState: the response's ce-connectionState is over
	// MaxConnectionStateBytes or repeated (§8).
	ErrConnectionState = errors.New("upstream: invalid ce-connectionState")
	// ErrNotValidated: the handler URL failed abuse-protection validation (§9) and
	// is not retried before its back-off ends.
	ErrNotValidated = errors.New("upstream: event handler failed abuse-protection validation")
	// ErrRedirect: the upstream answered 3xx; redirects are not followed.
	ErrRedirect = errors.New("upstream: redirect not followed")
)

// StatusError is an upstream answer with a status outside 2xx (other than a
// connect rejection, which is a *RejectError).
type StatusError struct {
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream: event handler answered status %d", e.Status)
}

// RejectError is a connect event the upstream rejected with a 4xx status (§4.2).
// Answer the client's upgrade request with Status and no upgrade; Body (at most
// 4 KiB of the upstream's body) may be passed through.
type RejectError struct {
	Status int
	Body   []byte
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("upstream: connect rejected with status %d", e.Status)
}
