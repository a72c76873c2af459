//go:build e2e

// End-to-end tests of SIGHUP reload and of the logs (operations.md §2, §4, §5) against the
// real binary built by TestMain: the configuration file is rewritten, the process gets a
// real SIGHUP, and Go clients (gobwas/ws, net/http) and a Go event handler check what
// changed. The log tests read everything the process wrote.
//
// Run with: go test -tags e2e -count=1 -v ./engine/ -run 'E2EReload|E2ELogs'
package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/webpubsub/webpubsub/engine"
	"github.com/webpubsub/webpubsub/upstream"
)

// reloadTimeout bounds the wait for the log line that answers a SIGHUP.
const reloadTimeout = 10 * time.Second

// hookCall is one request the event handler stub received.
type hookCall struct {
	method, path, query     string
	connID, signature, auth string
}

// hookStub is an event handler: it passes abuse protection and accepts every event with
// 204, recording each request.
type hookStub struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []hookCall
}

func newHookStub(t *testing.T) *hookStub {
	t.Helper()
	h := &hookStub{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h.mu.Lock()
		h.calls = append(h.calls, hookCall{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery,
			connID: r.Header.Get("ce-connectionId"), signature: r.Header.Get("ce-signature"), auth: r.Header.Get("Authorization")})
		h.mu.Unlock()
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookStub) port() int { return h.srv.Listener.Addr().(*net.TCPAddr).Port }

// count returns how many requests of method went to path.
func (h *hookStub) count(method, path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.calls {
		if c.method == method && c.path == path {
			n++
		}
	}
	return n
}

func (h *hookStub) all() []hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookCall(nil), h.calls...)
}

// reloadable is a running binary whose configuration file the test rewrites.
type reloadable struct {
	*server
	path string
}

// startReloadable writes config and starts the binary with --config only, so that the
// file alone decides keys and listener (flags would override them on every reload).
func startReloadable(t *testing.T, key, config string) *reloadable {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webpubsub.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startBinary(t, key, []string{"WPS_SHUTDOWN__DRAINDELAYSECONDS=0"}, "serve", "--config", path)
	t.Cleanup(func() { srv.stop(t) })
	return &reloadable{server: srv, path: path}
}

// reload rewrites the file, sends SIGHUP and waits for the log line with msg that
// answers it. It returns what the server logged from the signal on.
func (r *reloadable) reload(t *testing.T, config, msg string) string {
	t.Helper()
	if err := os.WriteFile(r.path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(r.stderrText())
	want := "msg=" + fmt.Sprintf("%q", msg)
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(reloadTimeout)
	for {
		if after := r.stderrText()[before:]; strings.Contains(after, want) {
			return after
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s line within %v of SIGHUP; log:\n%s", want, reloadTimeout, r.stderrText()[before:])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logSince returns what the server logged after offset bytes.
func (r *reloadable) logSince(offset int) string { return r.stderrText()[offset:] }

// clientToken signs a client token for hub with key, for the server's endpoint.
func (r *reloadable) clientToken(t *testing.T, key, hub, user string) string {
	t.Helper()
	tok, err := engine.SignClientToken(key, r.endpoint, hub, user, nil, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial opens a simple WebSocket client to hub with tok in the query string, or in an
// Authorization header when inHeader.
func (r *reloadable) dial(t *testing.T, hub, tok string, inHeader bool) (net.Conn, error) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(r.endpoint, "http") + "/client/hubs/" + hub
	d := ws.Dialer{Timeout: 5 * time.Second}
	if inHeader {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}})
	} else {
		u += "?access_token=" + tok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, _, err := d.Dial(ctx, u)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

// mustDial dials and fails the test on error.
func (r *reloadable) mustDial(t *testing.T, hub, tok string, inHeader bool) net.Conn {
	t.Helper()
	conn, err := r.dial(t, hub, tok, inHeader)
	if err != nil {
		t.Fatalf("handshake to %s: %v", hub, err)
	}
	return conn
}

// wantRefused checks that a handshake to hub with tok is refused with status.
func (r *reloadable) wantRefused(t *testing.T, hub, tok string, status int) {
	t.Helper()
	_, err := r.dial(t, hub, tok, false)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(status)) {
		t.Errorf("handshake to %s: %v, want %d", hub, err, status)
	}
}

// rest sends body to every connection of hub with a bearer token signed with key and
// returns the status and the token used.
func (r *reloadable) rest(t *testing.T, key, hub, body string) (int, string) {
	t.Helper()
	u := r.endpoint + "/api/hubs/" + hub + "/:send?api-version=2024-01-01"
	tok, err := engine.SignRESTToken(key, u, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, tok
}

// readText reads the next data frame of a simple client within 5 s.
func readText(t *testing.T, conn net.Conn) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	data, _, err := wsutil.ReadServerData(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(data)
}

// reloadConfig renders the file of TestE2EReload.
type reloadConfig struct {
	listen, key, chatPath, level, maxMessageBytes string
	hookPort                                      int
}

func (c reloadConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: [{address: %q}]\nkeys: {primary: %q}\nlog: {level: %s}\n", c.listen, c.key, c.level)
	fmt.Fprintf(&b, "limits: {maxMessageBytes: %s}\n", c.maxMessageBytes)
	fmt.Fprintf(&b, `hubs:
  chat:
    eventHandlers:
      - urlTemplate: "http://127.0.0.1:%d/%s/{hub}/{event}"
        systemEvents: [connect]
  other:
    eventHandlers:
      - urlTemplate: "http://127.0.0.1:%d/keep/{hub}/{event}"
        systemEvents: [connect]
`, c.hookPort, c.chatPath, c.hookPort)
	return b.String()
}

// TestE2EReload drives every reloadable setting of operations.md §2 through the real
// binary and a real SIGHUP, one step after another on one process.
func TestE2EReload(t *testing.T) {
	hook := newHookStub(t)
	oldKey, newKey := randomKey(t), randomKey(t)
	cfg := reloadConfig{listen: "127.0.0.1:0", key: oldKey, chatPath: "a", level: "info", maxMessageBytes: "1048576", hookPort: hook.port()}
	r := startReloadable(t, oldKey, cfg.String())

	chat := r.mustDial(t, "chat", r.clientToken(t, oldKey, "chat", "u1"), false)
	r.mustDial(t, "other", r.clientToken(t, oldKey, "other", "u1"), true)
	oldClientToken := r.clientToken(t, oldKey, "chat", "u2")
	if hook.count("OPTIONS", "/a/chat/validate") != 1 || hook.count("OPTIONS", "/keep/other/validate") != 1 {
		t.Fatalf("handlers not validated once each before the reloads: %+v", hook.all())
	}

	t.Run("rotateKey", func(t *testing.T) {
		cfg.key = newKey
		log := r.reload(t, cfg.String(), "config reloaded")
		if !strings.Contains(log, "keys.primary") {
			t.Errorf("reload line does not name keys.primary:\n%s", log)
		}
		r.wantRefused(t, "chat", oldClientToken, 401)
		if status, _ := r.rest(t, oldKey, "chat", "old"); status != 401 {
			t.Errorf("REST with the old key: %d, want 401", status)
		}
		if status, _ := r.rest(t, newKey, "chat", "rotated"); status != 202 {
			t.Errorf("REST with the new key: %d, want 202", status)
		}
		if got := readText(t, chat); got != "rotated" {
			t.Errorf("connection opened before the rotation got %q, want %q", got, "rotated")
		}
		r.mustDial(t, "chat", r.clientToken(t, newKey, "chat", "u3"), true)
		calls := hook.all()
		last := calls[len(calls)-1]
		if last.path != "/a/chat/connect" || last.signature != upstream.Signature(last.connID, []string{newKey}) {
			t.Errorf("connect after the rotation: %s with ce-signature %q, want one signed with the new key only", last.path, last.signature)
		}
	})

	t.Run("handlerURL", func(t *testing.T) {
		cfg.chatPath = "b"
		r.reload(t, cfg.String(), "config reloaded")
		r.mustDial(t, "chat", r.clientToken(t, newKey, "chat", "u4"), false)
		r.mustDial(t, "other", r.clientToken(t, newKey, "other", "u4"), false)
		if n := hook.count("POST", "/b/chat/connect"); n != 1 {
			t.Errorf("connect to the new URL: %d calls, want 1", n)
		}
		if n := hook.count("OPTIONS", "/b/chat/validate"); n != 1 {
			t.Errorf("new URL validated %d times, want 1", n)
		}
		if n := hook.count("OPTIONS", "/keep/other/validate"); n != 1 {
			t.Errorf("unchanged URL validated %d times, want 1 (its result is kept)", n)
		}
		if n := hook.count("POST", "/keep/other/connect"); n != 2 {
			t.Errorf("unchanged URL got %d connects, want 2", n)
		}
	})

	t.Run("limit", func(t *testing.T) {
		cfg.maxMessageBytes = "100"
		r.reload(t, cfg.String(), "config reloaded")
		if status, _ := r.rest(t, newKey, "chat", strings.Repeat("x", 200)); status != 413 {
			t.Errorf("REST body of 200 bytes: %d, want 413", status)
		}
		if err := wsutil.WriteClientText(chat, bytes.Repeat([]byte("x"), 200)); err != nil {
			t.Fatal(err)
		}
		if code := readClose(t, chat); code != ws.StatusMessageTooBig {
			t.Errorf("message of 200 bytes on an open connection: close %d, want 1009", code)
		}
	})

	t.Run("logLevel", func(t *testing.T) {
		cfg.level = "debug"
		r.reload(t, cfg.String(), "config reloaded")
		from := len(r.stderrText())
		r.mustDial(t, "chat", r.clientToken(t, newKey, "chat", "u5"), false)
		waitLog(t, r, from, "level=DEBUG")
		cfg.level = "info"
		r.reload(t, cfg.String(), "config reloaded")
		from = len(r.stderrText())
		r.mustDial(t, "chat", r.clientToken(t, newKey, "chat", "u6"), false)
		time.Sleep(200 * time.Millisecond)
		if log := r.logSince(from); strings.Contains(log, "level=DEBUG") {
			t.Errorf("debug lines at level info:\n%s", log)
		}
	})

	t.Run("invalidFile", func(t *testing.T) {
		bad := cfg
		bad.maxMessageBytes = "lots"
		bad.key = oldKey // would restore the old key if it were applied
		log := r.reload(t, bad.String(), "config reload rejected, the running configuration stays")
		if n := strings.Count(log, "level=ERROR"); n != 1 || !strings.Contains(log, "limits.maxMessageBytes") {
			t.Errorf("want one error line naming limits.maxMessageBytes, got:\n%s", log)
		}
		if status, _ := r.rest(t, newKey, "chat", "still"); status != 202 {
			t.Errorf("REST with the running key: %d, want 202", status)
		}
		r.wantRefused(t, "chat", r.clientToken(t, oldKey, "chat", "u7"), 401)

		// Without a key a server starts in development mode on loopback; a running one
		// must not switch to the well-known key.
		keyless := cfg
		keyless.key = ""
		log = r.reload(t, keyless.String(), "config reload rejected, the running configuration stays")
		if !strings.Contains(log, "keys.primary") {
			t.Errorf("rejection does not name keys.primary:\n%s", log)
		}
		r.wantRefused(t, "chat", r.clientToken(t, engine.DevAccessKey, "chat", "u8"), 401)
		if status, _ := r.rest(t, newKey, "chat", "still"); status != 202 {
			t.Errorf("REST with the running key: %d, want 202", status)
		}
	})

	t.Run("listenAddress", func(t *testing.T) {
		moved := cfg
		moved.listen = "127.0.0.1:1"
		log := r.reload(t, moved.String(), "config reloaded")
		if !regexp.MustCompile(`level=WARN msg="config change needs a restart, ignored" key=listen`).MatchString(log) {
			t.Errorf("no warning that listen needs a restart:\n%s", log)
		}
		if status, _ := r.rest(t, newKey, "chat", "same port"); status != 202 {
			t.Errorf("REST on the running port: %d, want 202", status)
		}
	})
}

// readClose reads raw frames until the server's close frame and returns its code. It
// does not answer the close (wsutil would, racing the server's close of the socket).
func readClose(t *testing.T, conn net.Conn) ws.StatusCode {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		h, err := ws.ReadHeader(conn)
		if err != nil || h.Length > 125 && h.OpCode == ws.OpClose {
			t.Fatalf("read until the close frame: %v (header %+v)", err, h)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(conn, payload); err != nil {
			t.Fatalf("read until the close frame: %v", err)
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(payload)
			return code
		}
	}
}

// waitLog polls the log after offset until it contains want.
func waitLog(t *testing.T, r *reloadable, offset int, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.logSince(offset), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within 5 s:\n%s", want, r.logSince(offset))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestE2ELogsNoSecrets runs a workload that handles every kind of secret at log level
// debug (tokens in the query string and in headers, good and bad; REST bearer tokens;
// signed upstream events; a handler URL with ?code= and a handler bearer token; a request
// line the HTTP parser rejects; a key rotation) and then searches everything the process
// wrote for each secret (operations.md §5).
func TestE2ELogsNoSecrets(t *testing.T) {
	hook := newHookStub(t)
	oldKey, newKey := randomKey(t), randomKey(t)
	const code, bearer = "c0de-secret-in-url", "handler-bearer-secret"
	config := func(key string) string {
		return fmt.Sprintf(`keys: {primary: %q}
listen: ["127.0.0.1:0"]
log: {level: debug}
hubs:
  chat:
    eventHandlers:
      - urlTemplate: "http://127.0.0.1:%d/h/{hub}/{event}?code=%s"
        userEventPattern: "*"
        systemEvents: [connect, connected, disconnected]
        auth: {type: ManagedIdentity, managedIdentity: {resource: "api://x"}, bearerToken: %q}
`, key, hook.port(), code, bearer)
	}
	r := startReloadable(t, oldKey, config(oldKey))
	secrets := []string{oldKey, newKey, code, bearer}
	// keep records a secret; of a JWT also its signature segment, which is what a log line
	// that quotes part of a request would leak.
	keep := func(s string) string {
		secrets = append(secrets, s)
		if i := strings.LastIndexByte(s, '.'); i >= 0 {
			secrets = append(secrets, s[i+1:])
		}
		return s
	}

	workload := func(key string) {
		q := r.mustDial(t, "chat", keep(r.clientToken(t, key, "chat", "alice")), false)
		h := r.mustDial(t, "chat", keep(r.clientToken(t, key, "chat", "bob")), true)
		if err := wsutil.WriteClientText(q, []byte("hello upstream")); err != nil {
			t.Fatal(err)
		}
		if status, tok := r.rest(t, key, "chat", "hello clients"); status != 202 {
			t.Errorf("REST send: %d", status)
		} else {
			keep(tok)
		}
		readText(t, h)
		wrong := randomKey(t)
		r.wantRefused(t, "chat", keep(r.clientToken(t, wrong, "chat", "mallory")), 401)
		if status, tok := r.rest(t, wrong, "chat", "x"); status != 401 {
			t.Errorf("REST with a wrong key: %d", status)
		} else {
			keep(tok)
		}
		// A request line the parser rejects, carrying a token.
		raw := keep(r.clientToken(t, key, "chat", "raw"))
		conn, err := net.Dial("tcp", strings.TrimPrefix(r.endpoint, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /client/hubs/chat?access_token=%s HTTP/1.1 junk\r\nAuthorization: Bearer %s\r\nHost: x\r\nContent-Length: -5\r\n\r\n", raw, raw)
		_, _ = io.Copy(io.Discard, conn)
		conn.Close()
		q.Close()
		h.Close()
	}
	workload(oldKey)
	r.reload(t, config(newKey), "config reloaded")
	workload(newKey)
	deadline := time.Now().Add(5 * time.Second)
	for hook.count("POST", "/h/chat/disconnected") < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sigs := 0
	for _, c := range hook.all() {
		if c.signature != "" {
			sigs++
			for _, s := range strings.Split(c.signature, ",") {
				keep(strings.TrimPrefix(s, "sha256="))
			}
		}
		if c.auth != "Bearer "+bearer && c.method == http.MethodPost {
			t.Errorf("%s %s: Authorization %q, want the handler's bearer token", c.method, c.path, c.auth)
		}
	}
	if sigs < 8 {
		t.Errorf("only %d signed upstream events; the workload should have sent at least 8", sigs)
	}
	r.stop(t)
	all := r.stdoutText() + "\n" + r.stderrText()
	if !strings.Contains(all, "level=DEBUG") {
		t.Fatalf("no debug line in the log; the test must run at level debug")
	}
	for _, s := range secrets {
		if i := strings.Index(all, s); i >= 0 {
			t.Errorf("secret %.12s… found in the log: …%s…", s, all[max(0, i-200):min(len(all), i+len(s)+40)])
		}
	}
	t.Logf("searched %d bytes of log for %d secrets", len(all), len(secrets))
}
