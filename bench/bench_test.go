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
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// workerEnv makes the test binary act as a bench worker, so the end-to-end tests start
// real worker processes through the same protocol `webpubsub bench worker` speaks.
const workerEnv = "WEBPUBSUB_BENCH_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(WorkerMain(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

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
	tok := signClientToken(svc, "chat", "u1", []string{"webpubsub.sendToGroup"}, []string{"g"}, time.Unix(1000, 0), time.Hour)
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
		claims["exp"].(float64) != 4600 || claims["webpubsub.group"].([]any)[0] != "g" ||
		claims["role"].([]any)[0] != "webpubsub.sendToGroup" {
		t.Fatalf("claims %s", body)
	}
}

func TestSplitConns(t *testing.T) {
	for _, tc := range []struct{ n, per, workers int }{{1, 15000, 1}, {15000, 15000, 1}, {15001, 15000, 2}, {19000, 15000, 2}, {250, 100, 3}} {
		first, count := splitConns(tc.n, tc.per)
		if len(count) != tc.workers {
			t.Errorf("splitConns(%d, %d): %d workers, want %d", tc.n, tc.per, len(count), tc.workers)
		}
		at := 0
		for i := range count {
			if first[i] != at || count[i] > tc.per || count[i] <= 0 {
				t.Errorf("splitConns(%d, %d): worker %d = [%d, +%d)", tc.n, tc.per, i, first[i], count[i])
			}
			at += count[i]
		}
		if at != tc.n {
			t.Errorf("splitConns(%d, %d) covers %d", tc.n, tc.per, at)
		}
	}
}

func TestConnsPerWorkerAboveFileLimit(t *testing.T) {
	limit := fileLimit()
	if limit == 0 || limit > 1<<30 {
		t.Skip("no finite open-file limit")
	}
	o := Options{Service: Service{Endpoint: "http://127.0.0.1:1", AccessKey: "k"}, ConnsPerWorker: int(limit)}
	err := o.setDefaults()
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "lower --conns-per-worker") {
		t.Fatalf("err = %v, want ErrConfig saying to lower --conns-per-worker", err)
	}
}

// testOptions points the bench at fs, with workers that are this test binary.
func testOptions(t *testing.T, fs *fakeService) Options {
	t.Helper()
	return Options{
		Service:       Service{Endpoint: fs.srv.URL, AccessKey: "k"},
		Timeout:       20 * time.Second,
		Concurrency:   16,
		ServerPID:     os.Getpid(),
		WorkerCommand: []string{os.Args[0]},
		WorkerEnv:     []string{workerEnv + "=1"},
	}
}

func TestRunConnect(t *testing.T) {
	fs := newFakeService(t)
	o := testOptions(t, fs)
	o.ConnsPerWorker = 100 // three workers, so their reports are merged
	r, err := RunConnect(context.Background(), ConnectConfig{Options: o, Conns: 250})
	if err != nil {
		t.Fatal(err)
	}
	if r.FailureTotal() != 0 || metric(r, "conns") != 250 || metric(r, "handshakes/s") <= 0 ||
		metric(r, "workers") != 3 || metric(r, "bench-cpu-s") < 0 || metric(r, "p99-ns") <= 0 {
		t.Fatalf("result %+v", r)
	}
	if !strings.HasPrefix(benchLine(t, r), "BenchmarkConnect/conns=250/concurrency=16/protocol=json\t1\t") {
		t.Fatalf("benchmark line %q", benchLine(t, r))
	}
}

func TestRunIdle(t *testing.T) {
	fs := newFakeService(t)
	r, err := RunIdle(context.Background(), IdleConfig{Options: testOptions(t, fs), Conns: 200, Hold: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if metric(r, "conns") != 200 || metric(r, "bytes-after") <= 0 || metric(r, "bench-total-cpu-s") <= 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestRunFanout(t *testing.T) {
	for _, pub := range []string{PublisherREST, PublisherClient} {
		t.Run("publisher="+pub, func(t *testing.T) {
			fs := newFakeService(t)
			o := testOptions(t, fs)
			o.ConnsPerWorker = 150
			r, err := RunFanout(context.Background(), FanoutConfig{Options: o, Members: 200, Messages: 5, Rate: 50, SizeBytes: 64, Publisher: pub})
			if err != nil {
				t.Fatal(err)
			}
			if metric(r, "deliveries") != 1000 || metric(r, "ratio") != 1 || metric(r, "p50-ns") <= 0 ||
				metric(r, "sends") != 5 || r.FailureTotal() != 0 {
				t.Fatalf("result %+v", r)
			}
		})
	}
}

func TestRunChat(t *testing.T) {
	fs := newFakeService(t)
	o := testOptions(t, fs)
	o.ConnsPerWorker = 105 // groups straddle workers
	r, err := RunChat(context.Background(), ChatConfig{Options: o, Groups: 30, MembersPerGroup: 7, Messages: 3, Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	// 210 members each send 3 messages that reach the 7 members of their group.
	if metric(r, "sends") != 630 || metric(r, "acked") != 630 || metric(r, "deliveries") != 630*7 ||
		metric(r, "ratio") != 1 || metric(r, "ack-p99-ns") <= 0 || r.FailureTotal() != 0 {
		t.Fatalf("result %+v", r)
	}
	if !strings.HasPrefix(benchLine(t, r), "BenchmarkChat/groups=30/members=7/messages=3/rate=20/size=31/protocol=json\t1\t") {
		t.Fatalf("benchmark line %q", benchLine(t, r))
	}
}

func TestRunConnectRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	o := Options{Service: Service{Endpoint: "http://" + addr, AccessKey: "k"}, Timeout: 5 * time.Second,
		WorkerCommand: []string{os.Args[0]}, WorkerEnv: []string{workerEnv + "=1"}}
	r, err := RunConnect(context.Background(), ConnectConfig{Options: o, Conns: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Failures[failDialRefused] != 3 {
		t.Fatalf("failures %v", r.Failures)
	}
}

// TestFleetHandshakeTimeout: a server that accepts and never answers is failed by the
// sweeper, not by a goroutine per connection.
func TestFleetHandshakeTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	f, err := newFleet(fleetConfig{svc: Service{Endpoint: "http://" + l.Addr().String(), AccessKey: "k"}, hub: "h",
		conns: 5, concurrency: 5, handshakeTimeout: 300 * time.Millisecond, loopbackSources: 254})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.open(ctx)
	f.close(time.Second)
	if got := f.failureCounts()[failHSTimeout]; got != 5 {
		t.Fatalf("failures %v, want 5 %s", f.failureCounts(), failHSTimeout)
	}
}

// TestFleetOneFilePerConnection: gnet's Enroll dups the socket; the original must be
// closed, or the process holds two descriptors per connection.
func TestFleetOneFilePerConnection(t *testing.T) {
	fs := newFakeService(t)
	const n = 60
	before := countFDs(t)
	f, err := newFleet(fleetConfig{svc: Service{Endpoint: fs.srv.URL, AccessKey: "k"}, hub: "h",
		conns: n, concurrency: 8, handshakeTimeout: 5 * time.Second, loopbackSources: 254})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.open(ctx)
	during := countFDs(t)
	f.close(5 * time.Second)
	if f.up.Load() != 0 || f.connected.Load() != n {
		t.Fatalf("connected %d, up after close %d", f.connected.Load(), f.up.Load())
	}
	// The fake server is in this process: it holds one descriptor per connection too. The
	// loops' pollers add a few. An earlier test's descriptor (a worker's pipe, an idle
	// HTTP connection) may close between the two counts, hence the slack below 2n; the
	// bound that matters is the upper one (a leaked original would make it 3n).
	if d := during - before; d < 2*n-8 || d > 2*n+16 {
		t.Fatalf("%d descriptors for %d connections (client and server side), want about %d", d, n, 2*n)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
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

func TestRunEcho(t *testing.T) {
	fs := newFakeService(t)
	o := testOptions(t, fs)
	o.ConnsPerWorker = 100 // two workers
	r, err := RunEcho(context.Background(), EchoConfig{Options: o, Conns: 150, Messages: 4, Rate: 20, SizeBytes: 64, OnUpstream: fs.setUpstream})
	if err != nil {
		t.Fatal(err)
	}
	if metric(r, "echoes") != 600 || metric(r, "sends") != 600 || metric(r, "ratio") != 1 || metric(r, "roundtrips/s") <= 0 ||
		metric(r, "p99-ns") <= 0 || metric(r, "upstream-p99-ns") <= 0 || metric(r, "upstream-messages") != 600 ||
		metric(r, "upstream-options") != 1 || metric(r, "upstream-connected") != 150 || metric(r, "upstream-disconnected") != 150 ||
		metric(r, "cpu-us/roundtrip") <= 0 || metric(r, "parent-cpu-s") < 0 || metric(r, "worker-cpu-s") < 0 ||
		r.FailureTotal() != 0 || metric(r, "failures") != 0 {
		t.Fatalf("result %+v", r)
	}
	if !strings.HasPrefix(benchLine(t, r), "BenchmarkEcho/conns=150/messages=4/rate=20/size=64\t1\t") {
		t.Fatalf("benchmark line %q", benchLine(t, r))
	}
}

// TestRunEchoUpstreamDelay: a slow upstream shows in the round trip, not in the way in.
func TestRunEchoUpstreamDelay(t *testing.T) {
	fs := newFakeService(t)
	const delay = 150 * time.Millisecond
	r, err := RunEcho(context.Background(), EchoConfig{Options: testOptions(t, fs), Conns: 10, Messages: 3, Rate: 50,
		UpstreamDelay: delay, OnUpstream: fs.setUpstream})
	if err != nil {
		t.Fatal(err)
	}
	if metric(r, "echoes") != 30 || r.FailureTotal() != 0 || metric(r, "p50-ns") < float64(delay) ||
		metric(r, "upstream-p50-ns") >= float64(delay) {
		t.Fatalf("result %+v", r)
	}
	if !strings.Contains(benchLine(t, r), "/size=42/delay=150ms\t") {
		t.Fatalf("benchmark line %q", benchLine(t, r))
	}
}

// TestRunEchoNoUpstream: a server without an event handler closes plain clients on their
// first message (upstream-protocol.md §6.1); the run reports it instead of hanging.
func TestRunEchoNoUpstream(t *testing.T) {
	fs := newFakeService(t)
	o := testOptions(t, fs)
	r, err := RunEcho(context.Background(), EchoConfig{Options: o, Conns: 5, Messages: 2, Rate: 50, Quiet: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if metric(r, "echoes") != 0 || r.FailureTotal() == 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestUpstreamAnswers(t *testing.T) {
	u, err := startUpstream("127.0.0.1:0", "chat", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.close(time.Second) })
	base := strings.TrimSuffix(u.URLTemplate(), "{hub}/{event}") + "chat/"
	if !strings.HasPrefix(u.URLTemplate(), "http://127.0.0.1:") {
		t.Fatalf("template %s", u.URLTemplate())
	}
	do := func(method, event, ceType, contentType, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+event, strings.NewReader(body))
		req.Header.Set("WebHook-Request-Origin", "127.0.0.1")
		req.Header.Set("ce-awpsversion", "1.0")
		if ceType != "" {
			for k, v := range map[string]string{"ce-specversion": "1.0", "ce-type": ceType, "ce-source": "/hubs/chat/client/c1",
				"ce-id": "1", "ce-time": "2024-05-01T08:30:00Z", "ce-hub": "chat", "ce-connectionId": "c1", "ce-eventName": event} {
				req.Header.Set(k, v)
			}
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := do(http.MethodOptions, "validate", "", "", ""); resp.StatusCode != 200 || resp.Header.Get("WebHook-Allowed-Origin") != "*" {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := do(http.MethodPost, "connect", "azure.webpubsub.sys.connect", "application/json; charset=utf-8", `{"claims":{}}`); resp.StatusCode != 204 {
		t.Fatalf("connect: %d", resp.StatusCode)
	}
	for _, ev := range []string{"connected", "disconnected"} {
		if resp := do(http.MethodPost, ev, "azure.webpubsub.sys."+ev, "application/json; charset=utf-8", `{}`); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", ev, resp.StatusCode)
		}
	}
	payload := string(appendEchoPayload(nil, time.Now().UnixNano(), 3, 7, 50))
	resp := do(http.MethodPost, "message", "azure.webpubsub.user.message", "text/plain", payload)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" || string(body) != payload {
		t.Fatalf("message: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	do(http.MethodPost, "message", "azure.webpubsub.user.message", "application/json", `{}`)
	do(http.MethodPost, "message", "", "", "no headers")
	if u.validations.Load() != 1 || u.connects.Load() != 1 || u.connecteds.Load() != 1 || u.disconnecteds.Load() != 1 ||
		u.messages.Load() != 2 || u.wrongType.Load() != 1 || u.malformed.Load() != 1 || u.unexpected.Load() != 1 || u.inbound.Count() != 1 {
		t.Fatalf("counts: %s, wrong type %d, malformed %d, unexpected %d", u.status(), u.wrongType.Load(), u.malformed.Load(), u.unexpected.Load())
	}
}

func TestEchoServerConfig(t *testing.T) {
	got, err := EchoServerConfig("slow", "127.0.0.1:7071")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Hubs map[string]struct {
			EventHandlers []struct {
				URLTemplate      string   `yaml:"urlTemplate"`
				UserEventPattern string   `yaml:"userEventPattern"`
				SystemEvents     []string `yaml:"systemEvents"`
			} `yaml:"eventHandlers"`
		} `yaml:"hubs"`
	}
	if err := yaml.Unmarshal([]byte(got), &doc); err != nil {
		t.Fatalf("%v in\n%s", err, got)
	}
	hs := doc.Hubs["slow"].EventHandlers
	if len(doc.Hubs) != 1 || len(hs) != 1 || hs[0].URLTemplate != "http://127.0.0.1:7071/upstream/{hub}/{event}" ||
		hs[0].UserEventPattern != "*" || !slices.Equal(hs[0].SystemEvents, []string{"connected", "disconnected"}) {
		t.Fatalf("config %+v from\n%s", doc, got)
	}
	for _, bad := range []string{"127.0.0.1:0", "127.0.0.1", "127.0.0.1:x"} {
		if _, err := EchoServerConfig("h", bad); !errors.Is(err, ErrConfig) {
			t.Errorf("EchoServerConfig(%q): err = %v, want ErrConfig", bad, err)
		}
	}
}

func TestEchoPayload(t *testing.T) {
	p := appendEchoPayload(nil, 1700000000123456789, 12, 34567, 64)
	ts, k, idx, ok := parseEchoPayload(p)
	if len(p) != 64 || !ok || ts != 1700000000123456789 || k != 12 || idx != 34567 {
		t.Fatalf("%q: %d %d %d %v", p, ts, k, idx, ok)
	}
	if long := appendEchoPayload(nil, 1700000000123456789, 4294967295, 4294967295, 0); len(long) != minEchoPayloadBytes {
		t.Fatalf("largest stamp %q is %d bytes, want %d", long, len(long), minEchoPayloadBytes)
	}
	for _, bad := range []string{"", "x", "123", "123 4", "123 4 5", "123  4 5 "} {
		if _, _, _, ok := parseEchoPayload([]byte(bad)); ok {
			t.Errorf("parseEchoPayload(%q) ok", bad)
		}
	}
}
