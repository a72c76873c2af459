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
// it, with suppressed=N when lines were held back before it. Callers on busy paths
// check s.warn[kind].allow themselves before building arguments; this helper is for
// paths where the arguments are already at hand.
func (s *Server) limited(l *slog.Logger, kind warnKind, level slog.Level, msg string, args ...any) {
	n, ok := s.warn[kind].allow(s.now())
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, slog.Int64("suppressed", n))
	}
	l.Log(context.Background(), level, msg, args...)
}

// secretMarks precede credentials in a quoted request: query parameters whose values
// are tokens, and an Authorization header's scheme. Lower case.
var secretMarks = []string{"access_token=", "awps_reconnection_token=", "code=", "bearer "}

// redactSecrets replaces credentials in text that quotes a request (a parser error
// that echoes the request line, say) with "…": values of access_token,
// awps_reconnection_token and code= query parameters, and what follows "Bearer ".
// Logs must never carry a token (operations.md §5).
func redactSecrets(text string) string {
	lower := strings.ToLower(text)
	if !strings.Contains(lower, "token") && !strings.Contains(lower, "bearer") && !strings.Contains(lower, "code=") {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		match := ""
		for _, p := range secretMarks {
			if strings.HasPrefix(lower[i:], p) {
				match = p
				break
			}
		}
		if match == "" {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(text[i : i+len(match)])
		b.WriteString("…")
		i += len(match)
		for i < len(text) && !strings.ContainsRune("&# \"'\r\n\\", rune(text[i])) {
			i++
		}
	}
	return b.String()
}
