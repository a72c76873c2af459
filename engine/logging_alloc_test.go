//go:build !race

package engine

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestRateLimitAlloc: a held-back line costs no allocation (operations.md §4 limits are
// logged from hot paths), through rateLimit and through Server.limited.
func TestRateLimitAlloc(t *testing.T) {
	var r rateLimit
	now := time.Now()
	r.allow(now)
	if n := testing.AllocsPerRun(1000, func() { r.allow(now) }); n != 0 {
		t.Errorf("rateLimit.allow allocates %v times when it holds a line back, want 0", n)
	}
	s := &Server{now: func() time.Time { return now }}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	op, err := string([]byte("SendToAll")), errors.New("engine: invalid access token")
	s.limited(log, warnUnauthorized, slog.LevelInfo, "first")
	if n := testing.AllocsPerRun(1000, func() {
		s.limited(log, warnUnauthorized, slog.LevelInfo, "rest: bad bearer token", slog.Int("status", 401), slog.String("op", op), slog.Any("err", err))
	}); n != 0 {
		t.Errorf("Server.limited allocates %v times when it holds a line back, want 0", n)
	}
}
