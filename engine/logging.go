package engine

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// rateLimit lets one log line a second through for one kind of repeated warning
// (operations.md §4) and counts the lines it holds back; the next line let through
// reports that count as suppressed=N. A refused call costs two atomic operations and
// allocates nothing, so callers check allow before they build the line's attributes.
// The zero value is ready. Safe for concurrent use. upstream keeps a copy of it.
type rateLimit struct {
	next       atomic.Int64 // unix nanoseconds before which lines are held back
	suppressed atomic.Int64 // lines held back since the last one let through
}

// rateLimitInterval is the spacing of lines of one kind (operations.md §4).
const rateLimitInterval = time.Second

// allow reports whether a line may be written at now and, if so, how many lines were
// held back since the previous one.
func (r *rateLimit) allow(now time.Time) (suppressed int64, ok bool) {
	n := now.UnixNano()
	next := r.next.Load()
	if n < next || !r.next.CompareAndSwap(next, n+int64(rateLimitInterval)) {
		r.suppressed.Add(1)
		return 0, false
	}
	return r.suppressed.Swap(0), true
}

// warnKind names one kind of repeated warning; each has its own rateLimit.
type warnKind uint8

const (
	warnHandshake    warnKind = iota // refused handshake: bad request, unknown endpoint
	warnUnauthorized                 // refused token: handshake or REST 401
	warnConnLimit                    // limits.maxConnections reached: handshake 429
	warnBusy                         // pending connects or REST workers full: 503
	warnTooBig                       // limits.maxMessageBytes: close 1009, REST 413
	warnHead                         // request head too large or malformed: 431, 400
	warnSlowClient                   // outbound buffer over limits.maxOutboundBytes
	warnNoHandler                    // an event no handler takes
	warnEventFailed                  // an upstream event failed for a client
	numWarnKinds
)

// limited writes one line of kind at level through l when the kind's rate limit allows
// it, with suppressed=N when lines were held back before it. A held-back line costs no
// allocation: the attributes are slog.Attr values, which the caller builds without
// boxing, and the slice stays on the caller's stack.
func (s *Server) limited(l *slog.Logger, kind warnKind, level slog.Level, msg string, attrs ...slog.Attr) {
	n, ok := s.warn[kind].allow(s.now())
	if !ok {
		return
	}
	l.LogAttrs(context.Background(), level, msg, append(attrs, suppressedAttr(n))...)
}

// warnAllowed reports whether a line of kind may be written now and returns the
// suppressed=N attribute it carries (empty when nothing was held back). Callers whose
// attributes cost something to build (c.logger(), c.remote(), an error's text) check it
// first, so that a held-back line costs nothing.
func (s *Server) warnAllowed(kind warnKind) (slog.Attr, bool) {
	n, ok := s.warn[kind].allow(s.now())
	return suppressedAttr(n), ok
}

// suppressedAttr is suppressed=n for a line let through after n were held back, and
// an empty attribute, which handlers omit, when none were.
func suppressedAttr(n int64) slog.Attr {
	if n == 0 {
		return slog.Attr{}
	}
	return slog.Int64("suppressed", n)
}

// parseErrorText is an HTTP parser error without the request bytes it quotes: fasthttp
// quotes the request line and headers, which may carry an access token or an
// Authorization header, and logs never carry a token (operations.md §5). The text is
// cut at the first quote.
func parseErrorText(err error) string {
	text := err.Error()
	if i := strings.IndexByte(text, '"'); i >= 0 {
		text = strings.TrimRight(text[:i], " :") + " (request bytes not logged)"
	}
	return text
}
