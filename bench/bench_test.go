package bench

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestParseConnectionString(t *testing.T) {
	for _, tc := range []struct {
		name, in, endpoint, key string
		err                     bool
	}{
		{"plain", "Endpoint=http://127.0.0.1:8080;AccessKey=K;Version=1.0;", "http://127.0.0.1:8080", "K", false},
		{"case-insensitive", "endpoint=http://h/;ACCESSKEY=K=x;", "http://h", "K=x", false},
		{"port-overrides", "Endpoint=http://127.0.0.1:8080;AccessKey=K;Port=9000;", "http://127.0.0.1:9000", "K", false},
		{"no-scheme", "Endpoint=example.com;AccessKey=K", "https://example.com", "K", false},
		{"no-key", "Endpoint=http://h;", "", "", true},
		{"bad-scheme", "Endpoint=ftp://h;AccessKey=K", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseConnectionString(tc.in)
			if tc.err {
				if !errors.Is(err, ErrConnectionString) {
					t.Fatalf("err = %v, want ErrConnectionString", err)
				}
				return
			}
			if err != nil || s.Endpoint != tc.endpoint || s.AccessKey != tc.key {
				t.Fatalf("got %+v, %v; want %s %s", s, err, tc.endpoint, tc.key)
			}
		})
	}
}

func TestSignClientToken(t *testing.T) {
	svc := Service{Endpoint: "http://127.0.0.1:8080", AccessKey: "secret"}
	tok := signClientToken(svc, "chat", "u1", nil, []string{"g"}, time.Unix(1000, 0), time.Hour)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", tok, len(parts))
	}
	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if got := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); got != parts[2] {
		t.Fatalf("signature %s, want %s", parts[2], got)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if string(hdr) != `{"alg":"HS256","typ":"JWT"}` {
		t.Fatalf("header %s", hdr)
	}
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(body, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["aud"] != "http://127.0.0.1:8080/client/hubs/chat" || claims["sub"] != "u1" ||
		claims["exp"].(float64) != 4600 || claims["webpubsub.group"].([]any)[0] != "g" {
		t.Fatalf("claims %s", body)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if d := got - tc.want; d < -tc.want/100 || d > tc.want/100 {
			t.Errorf("q%.2f = %s, want %s within 1%%", tc.q, got, tc.want)
		}
	}
	if h.Max() != time.Millisecond || h.Count() != 1000 {
		t.Errorf("max %s count %d", h.Max(), h.Count())
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 1 << 20, 1<<63 - 1} {
		if i := histIndex(v); i < 0 || i >= histBuckets {
			t.Errorf("histIndex(%d) = %d out of range", v, i)
		}
	}
}

func TestReadFrameMaskedServerFrameIsProtocolError(t *testing.T) {
	cc, server := net.Pipe()
	defer cc.Close()
	go func() {
		frame := []byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}
		_, _ = server.Write(frame)
		server.Close()
	}()
	c := &client{conn: cc, br: newReader(cc)}
	_, _, err := c.next()
	if failureKind(err) != failProtocol {
		t.Fatalf("err = %v, want kind %s", err, failProtocol)
	}
}

// fakeService is a stand-in server speaking just enough of the protocol: the upgrade with
// the JSON subprotocol, the connected event, pings, and REST group sends that it relays
// to every connection as group messages.
type fakeService struct {
	mu    sync.Mutex
	conns []net.Conn
	srv   *httptest.Server
}

func newFakeService(t *testing.T) *fakeService {
	t.Helper()
	fs := &fakeService{}
	mux := http.NewServeMux()
	mux.HandleFunc("/client/hubs/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("access_token") == "" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		u := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == JSONProtocol }}
		conn, _, _, err := u.Upgrade(r, w)
		if err != nil {
			return
		}
		// Join before connected, under the lock the REST handler writes under, so a
		// member that has seen connected receives every later send.
		fs.mu.Lock()
		fs.conns = append(fs.conns, conn)
		_ = wsutil.WriteServerText(conn, []byte(`{"type":"system","event":"connected","userId":"u","connectionId":"c"}`))
		_ = wsutil.WriteServerMessage(conn, ws.OpPing, []byte("p"))
		fs.mu.Unlock()
		go func() { // discard what the client sends until it closes
			defer conn.Close()
			for {
				if _, _, err := wsutil.ReadClientData(conn); err != nil {
					return
				}
			}
		}()
	})
	mux.HandleFunc("/api/hubs/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		msg, _ := json.Marshal(map[string]string{"type": "message", "from": "group", "group": "bench", "dataType": "text", "data": string(body)})
		fs.mu.Lock()
		for _, c := range fs.conns {
			_ = wsutil.WriteServerText(c, msg)
		}
		fs.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	fs.srv = httptest.NewServer(mux)
	t.Cleanup(fs.srv.Close)
	return fs
}

func (fs *fakeService) options() Options {
	return Options{
		Service: Service{Endpoint: fs.srv.URL, AccessKey: "k"},
		Timeout: 10 * time.Second, Concurrency: 8, ServerPID: os.Getpid(),
	}
}

func TestRunConnectAgainstFake(t *testing.T) {
	fs := newFakeService(t)
	r, err := RunConnect(context.Background(), ConnectConfig{Options: fs.options(), Conns: 50})
	if err != nil {
		t.Fatal(err)
	}
	if r.FailureTotal() != 0 || metric(r, "conns") != 50 || metric(r, "handshakes/s") <= 0 {
		t.Fatalf("result %+v", r)
	}
	if !strings.HasPrefix(benchLine(t, r), "BenchmarkConnect/conns=50/concurrency=8\t1\t") {
		t.Fatalf("benchmark line %q", benchLine(t, r))
	}
}

func TestRunIdleAgainstFake(t *testing.T) {
	fs := newFakeService(t)
	r, err := RunIdle(context.Background(), IdleConfig{Options: fs.options(), Conns: 20, Hold: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if metric(r, "conns") != 20 || metric(r, "bytes-after") <= 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestRunFanoutAgainstFake(t *testing.T) {
	fs := newFakeService(t)
	r, err := RunFanout(context.Background(), FanoutConfig{Options: fs.options(), Members: 20, Messages: 5, Rate: 100, SizeBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	if metric(r, "deliveries") != 100 || metric(r, "ratio") != 1 || metric(r, "p50-ns") <= 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestRunConnectRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	o := Options{Service: Service{Endpoint: "http://" + addr, AccessKey: "k"}, Timeout: 5 * time.Second}
	r, err := RunConnect(context.Background(), ConnectConfig{Options: o, Conns: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Failures[failDialRefused] != 3 {
		t.Fatalf("failures %v", r.Failures)
	}
}

func metric(r *Result, unit string) float64 {
	for _, m := range r.Metrics {
		if m.Unit == unit {
			return m.Value
		}
	}
	return -1
}

func benchLine(t *testing.T, r *Result) string {
	t.Helper()
	var b strings.Builder
	if err := r.WriteBenchmark(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
