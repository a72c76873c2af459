package engine

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// reloadCfg is the configuration testServer starts with, for Reload to change.
func reloadCfg() Config {
	return Config{
		Listen: "127.0.0.1:0",
		Keys:   Keys{Primary: testKey},
		Hubs:   map[string]HubSettings{"anon": {AnonymousConnectPolicy: "allow"}},
		Loops:  2,
	}
}

func mustReload(t *testing.T, s *Server, cfg Config) ReloadResult {
	t.Helper()
	res, err := s.Reload(cfg)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if len(res.NeedRestart) > 0 {
		t.Fatalf("Reload: NeedRestart %v, want none", res.NeedRestart)
	}
	return res
}

// restStatus sends an authorised REST request signed with key and returns the status.
func restStatus(t *testing.T, s *Server, key, method, pathAndQuery string) int {
	t.Helper()
	u := s.testURL() + pathAndQuery
	tok, err := SignRESTToken(key, u, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, u, strings.NewReader("hello"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReloadRotatesKeys: config.md §4, a rotated key invalidates tokens signed with the
// old one at once (handshakes and REST) while open connections stay.
func TestReloadRotatesKeys(t *testing.T) {
	s := testServer(t, nil)
	c, _ := mustJSONClient(t, s, "chat", "u1", nil, nil)
	const newKey = "NEWKEY0123456789NEWKEY0123456789NEWKEY012345"
	cfg := reloadCfg()
	cfg.Keys.Primary = newKey
	res := mustReload(t, s, cfg)
	if !slices.Equal(res.Changed, []string{"keys.primary"}) {
		t.Errorf("Changed = %v, want [keys.primary]", res.Changed)
	}
	if _, err := dial(t, s, "/client/hubs/chat?access_token="+clientToken(t, s, "chat", "u2", nil, nil)); err == nil {
		t.Error("handshake with a token of the old key succeeded")
	} else if !strings.Contains(err.Error(), "401") {
		t.Errorf("handshake with a token of the old key: %v, want 401", err)
	}
	if got := restStatus(t, s, testKey, "POST", "/api/hubs/chat/:send?api-version=2024-01-01"); got != 401 {
		t.Errorf("REST with the old key: %d, want 401", got)
	}
	if got := restStatus(t, s, newKey, "POST", "/api/hubs/chat/:send?api-version=2024-01-01"); got != 202 {
		t.Errorf("REST with the new key: %d, want 202", got)
	}
	if m := c.readJSON(); m["type"] != "message" || m["data"] != "hello" {
		t.Errorf("open connection got %v, want the message sent with the new key", m)
	}
	tok, err := SignClientToken(newKey, s.testURL(), "chat", "u3", nil, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, s, "/client/hubs/chat?access_token="+tok); err != nil {
		t.Errorf("handshake with a token of the new key: %v", err)
	}
}

// TestReloadMovesHandlers: an open connection's next event goes to its hub's new handler.
func TestReloadMovesHandlers(t *testing.T) {
	u1, u2 := newTestUpstream(t), newTestUpstream(t)
	s := upstreamServer(t, u1)
	c, _ := mustJSONClient(t, s, "up", "u1", nil, nil)
	cfg := reloadCfg()
	cfg.Upstream.RetryDelays = []time.Duration{}
	cfg.Hubs["up"] = HubSettings{EventHandlers: []EventHandler{{URLTemplate: u2.srv.URL + "/api/{hub}/{event}", UserEventPattern: "*"}}}
	res, err := s.Reload(cfg)
	if err != nil || !slices.Equal(res.Changed, []string{"hubs.up"}) {
		t.Fatalf("Reload: %v, %v; want hubs.up changed", res, err)
	}
	c.send(`{"type":"event","event":"ping","dataType":"text","data":"x"}`)
	u2.next("ping")
	select {
	case call := <-u1.calls:
		t.Errorf("old handler got %q after the reload", call.event)
	default:
	}
}

// TestReloadLimits: a new limits.maxMessageBytes applies to the next message of an open
// connection.
func TestReloadLimits(t *testing.T) {
	s := testServer(t, nil)
	c, _ := mustJSONClient(t, s, "chat", "u1", []string{"webpubsub.sendToGroup.g"}, nil)
	cfg := reloadCfg()
	cfg.Limits.MaxMessageBytes = 64
	mustReload(t, s, cfg)
	c.send(`{"type":"sendToGroup","group":"g","dataType":"text","data":"` + strings.Repeat("x", 100) + `"}`)
	if code, _ := c.expectClose(); code != ws.StatusMessageTooBig {
		t.Errorf("close %d, want 1009", code)
	}
}

// TestReloadRejectsInvalid: an invalid configuration changes nothing.
func TestReloadRejectsInvalid(t *testing.T) {
	s := testServer(t, nil)
	cfg := reloadCfg()
	cfg.Keys.Primary = ""
	cfg.Limits.MaxMessageBytes = 64
	if _, err := s.Reload(cfg); !errors.Is(err, ErrReloadRejected) {
		t.Fatalf("Reload without a key: %v, want ErrReloadRejected", err)
	}
	cfg = reloadCfg()
	cfg.Hubs["bad"] = HubSettings{EventHandlers: []EventHandler{{URLTemplate: "ftp://x/{event}"}}}
	if _, err := s.Reload(cfg); !errors.Is(err, ErrReloadRejected) {
		t.Fatalf("Reload with a bad handler: %v, want ErrReloadRejected", err)
	}
	if got := restStatus(t, s, testKey, "POST", "/api/hubs/chat/:send"); got != 202 {
		t.Errorf("REST with the running key after a rejected reload: %d, want 202", got)
	}
	if got := s.settings().cfg.Limits.MaxMessageBytes; got != 1<<20 {
		t.Errorf("maxMessageBytes %d after a rejected reload, want the running 1 MiB", got)
	}
}

// TestReloadNeedsRestart: settings that need a restart are reported and ignored.
func TestReloadNeedsRestart(t *testing.T) {
	s := testServer(t, nil)
	cfg := reloadCfg()
	cfg.Listen = "127.0.0.1:1"
	cfg.Loops = 3
	cfg.Limits.MaxHeaderBytes = 1 << 20
	res, err := s.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"listen", "loops", "workers", "limits.maxHeaderBytes"}; !slices.Equal(res.NeedRestart, want) || len(res.Changed) != 0 {
		t.Errorf("NeedRestart %v, Changed %v; want %v and nothing changed", res.NeedRestart, res.Changed, want)
	}
	if s.settings().gen != 1 {
		t.Error("a reload with no reloadable change replaced the settings")
	}
}

// TestRateLimit: with a fixed clock, N lines in one second let one through; the first
// line of the next second reports suppressed=N-1.
func TestRateLimit(t *testing.T) {
	var r rateLimit
	t0 := time.Unix(1000, 0)
	const n = 50
	passed := 0
	for i := range n {
		if _, ok := r.allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d lines passed within one second, want 1", passed)
	}
	if suppressed, ok := r.allow(t0.Add(time.Second)); !ok || suppressed != n-1 {
		t.Fatalf("next second: ok=%v suppressed=%d, want true, %d", ok, suppressed, n-1)
	}
	if suppressed, ok := r.allow(t0.Add(3 * time.Second)); !ok || suppressed != 0 {
		t.Fatalf("after a quiet spell: ok=%v suppressed=%d, want true, 0", ok, suppressed)
	}
}

func TestParseErrorText(t *testing.T) {
	err := errors.New(`error when reading request headers: unsupported http version "HTTP/1.1 x" in "GET /client?access_token=eyJ.a.b HTTP/1.1 x\r\nAuthorization: Bearer eyJ.c.d"`)
	got := parseErrorText(err)
	if want := "error when reading request headers: unsupported http version (request bytes not logged)"; got != want {
		t.Errorf("parseErrorText = %q, want %q", got, want)
	}
}

// TestLimitedSuppressedField: the line after held-back ones carries suppressed=N, the
// others no such field.
func TestLimitedSuppressedField(t *testing.T) {
	var buf strings.Builder
	s := &Server{now: time.Now}
	clock := time.Unix(1000, 0)
	s.now = func() time.Time { return clock }
	log := slog.New(slog.NewTextHandler(&buf, nil))
	for range 5 {
		s.limited(log, warnSlowClient, slog.LevelWarn, "slow")
	}
	clock = clock.Add(time.Second)
	s.limited(log, warnSlowClient, slog.LevelWarn, "slow")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || strings.Contains(lines[0], "suppressed") || !strings.HasSuffix(lines[1], "suppressed=4") {
		t.Errorf("lines:\n%s\nwant two, the second ending suppressed=4", buf.String())
	}
}
