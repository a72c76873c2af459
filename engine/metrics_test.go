package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// metricsServer is testServer with an admin listener on 127.0.0.1:0.
func metricsServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	return testServer(t, func(c *Config) {
		c.Admin.Address = "127.0.0.1:0"
		if mutate != nil {
			mutate(c)
		}
	})
}

// adminGet sends GET path to the admin listener with the given Accept header ("" for
// none) and returns the response with its body read.
func adminGet(t *testing.T, s *Server, path, accept string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+s.AdminAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp, string(b)
}

// samples maps a series, written as in the text format (`name{a="x",b="y"}`), to
// its value.
type samples map[string]float64

// scrape reads /metrics in the text format (0.0.4).
func scrape(t *testing.T, s *Server) samples {
	t.Helper()
	resp, body := adminGet(t, s, "/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d: %s", resp.StatusCode, body)
	}
	return parseSamples(t, body)
}

func parseSamples(t *testing.T, text string) samples {
	t.Helper()
	out := samples{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad sample line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample value in %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// delta is after minus before for every webpubsub_ series that moved, except those
// whose size depends on timing (histogram buckets and sums, queued bytes) and those
// skip reports.
func delta(before, after samples, skip func(series string) bool) samples {
	d := samples{}
	for k, v := range after {
		if !strings.HasPrefix(k, "webpubsub_") || strings.Contains(k, "_bucket{") || strings.Contains(k, "_sum{") ||
			strings.HasPrefix(k, "webpubsub_outbound_queued_bytes") || (skip != nil && skip(k)) {
			continue
		}
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok && strings.HasPrefix(k, "webpubsub_") {
			d[k] = -before[k]
		}
	}
	return d
}

func (d samples) String() string {
	keys := slices.Sorted(maps.Keys(d))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s %g\n", k, d[k])
	}
	return b.String()
}

// diffSamples describes how got differs from want, "" when equal.
func diffSamples(got, want samples) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			fmt.Fprintf(&b, "  %s: got %g, want %g\n", k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "  %s: got %g, want no change\n", k, got[k])
		}
	}
	return b.String()
}

// waitDelta scrapes until the change since before is exactly want (counters of work
// finished off the loops, such as a REST response's count, land just after the
// client sees the answer), or fails after 5 s with the last difference.
func waitDelta(t *testing.T, s *Server, before samples, want samples, skip func(string) bool) samples {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := scrape(t, s)
		diff := diffSamples(delta(before, after, skip), want)
		if diff == "" {
			return after
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics moved differently from the workload:\n%s", diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readFrames reads n data frames (any opcode) from a client that sends nothing.
func (c *wsClient) readFrames(n int) {
	c.t.Helper()
	for i := 0; i < n; i++ {
		op, p, err := c.read()
		if err != nil || op == ws.OpClose {
			c.t.Fatalf("frame %d of %d: op %v %q err %v", i+1, n, op, p, err)
		}
	}
}

// readMessages reads JSON messages until it has seen n of type "message", acks of
// type "ack" and pongs of type "pong", in any order.
func (c *wsClient) readMessages(n, acks, pongs int) {
	c.t.Helper()
	for n > 0 || acks > 0 || pongs > 0 {
		m := c.readJSON()
		switch m["type"] {
		case "message":
			n--
		case "ack":
			acks--
		case "pong":
			pongs--
		default:
			c.t.Fatalf("unexpected %v", m)
		}
	}
}

// series writes name and label pairs the way the text format does: labels sorted
// by name.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	pairs := make([][2]string, 0, len(labels)/2)
	for i := 0; i < len(labels); i += 2 {
		pairs = append(pairs, [2]string{labels[i], labels[i+1]})
	}
	slices.SortFunc(pairs, func(x, y [2]string) int { return strings.Compare(x[0], y[0]) })
	labels = labels[:0:0]
	for _, p := range pairs {
		labels = append(labels, p[0], p[1])
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// TestMetricsWorkload drives a known workload over real sockets and checks that
// every series moved by exactly what was done (operations.md §6 "Metrics").
func TestMetricsWorkload(t *testing.T) {
	u := newTestUpstream(t)
	u.setReply(func(w http.ResponseWriter, call upstreamCall) {
		switch {
		case call.event == "connect" && call.header.Get("ce-userId") == "rejectme":
			w.WriteHeader(401)
		case call.event == "message":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("echo"))
		case call.event == "fail":
			w.WriteHeader(500)
		}
	})
	s := metricsServer(t, func(c *Config) {
		c.Limits.MaxOutboundBytes = 1 << 20
		c.Upstream.RetryDelays = []time.Duration{0} // one retry, at once
		c.Hubs["up"] = HubSettings{EventHandlers: []EventHandler{{
			URLTemplate:      u.srv.URL + "/api/{hub}/{event}",
			UserEventPattern: "*",
			SystemEvents:     []string{"connect"},
		}}}
	})
	before := scrape(t, s)
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "webpubsub_outbound_queued_bytes", "webpubsub_reliable_buffered_messages",
		series("webpubsub_connections", "hub", "anon", "protocol", "json")} {
		if _, ok := before[want]; !ok {
			t.Errorf("no %s before any traffic", want)
		}
	}

	// Four connections in hub chat, one per kind, all in group g.
	g := []string{"g"}
	a, am := mustJSONClient(t, s, "chat", "a", []string{"webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"}, g)
	aID := am["connectionId"].(string)
	b, err := dial(t, s, "/client/hubs/chat?access_token="+clientToken(t, s, "chat", "b", nil, g), "protobuf.webpubsub.azure.v1")
	if err != nil {
		t.Fatal(err)
	}
	b.readFrames(1) // connected
	c, _ := reliableClient(t, s, "chat", "c", g)
	d, err := dial(t, s, "/client/hubs/chat?access_token="+clientToken(t, s, "chat", "d", nil, g))
	if err != nil {
		t.Fatal(err)
	}
	// Refused upgrades: a bad token, an unknown client route.
	var se ws.StatusError
	if _, err := dial(t, s, "/client/hubs/chat?access_token=bad"); !errors.As(err, &se) || se != 401 {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := dial(t, s, "/client/nowhere"); !errors.As(err, &se) || se != 404 {
		t.Fatalf("unknown route: %v", err)
	}
	mid := scrape(t, s)
	for _, p := range []string{"json", "protobuf", "json.reliable", "none"} {
		if k := series("webpubsub_connections", "hub", "chat", "protocol", p); mid[k] != 1 {
			t.Errorf("%s = %g, want 1", k, mid[k])
		}
	}

	// Messages: two REST group sends, one send to all, one to a user with no
	// connection, one to a connection, one group send from a client.
	rest := func(method, path, ct, body string, status int) {
		t.Helper()
		wantStatus(t, restReq(t, s, method, path, ct, []byte(body)), status)
	}
	rest("POST", "/api/hubs/chat/groups/g/:send", "text/plain", "g1", 202)
	rest("POST", "/api/hubs/chat/groups/g/:send", "text/plain", "g2", 202)
	rest("POST", "/api/hubs/chat/:send", "text/plain", "all!", 202)
	rest("POST", "/api/hubs/chat/users/nobody/:send", "text/plain", "none", 202)
	rest("POST", "/api/hubs/chat/connections/"+aID+"/:send", "text/plain", "one", 202)
	a.send(`{"type":"sendToGroup","group":"g","dataType":"text","data":"hey","ackId":1}`)
	a.send(`{"type":"joinGroup","group":"h","ackId":2}`) // not a data message
	a.send(`{"type":"ping"}`)                            // nor this
	// REST fan-out runs after the 202, so the pong may overtake the last REST message.
	a.readMessages(5, 2, 1)
	b.readFrames(4)
	c.readMessages(4, 0, 0) // never acknowledged: 4 reliable messages stay buffered
	d.readFrames(4)

	// Group and existence operations, health, an unrouted path, a missing token.
	rest("PUT", "/api/hubs/chat/groups/h2/connections/"+aID, "", "", 200)
	rest("DELETE", "/api/hubs/chat/groups/h2/connections/"+aID, "", "", 204)
	rest("HEAD", "/api/hubs/chat/connections/"+aID, "", "", 200)
	rest("HEAD", "/api/hubs/chat/groups/g", "", "", 200)
	rest("HEAD", "/api/hubs/chat/users/nobody", "", "", 404)
	rest("GET", "/api/health", "", "", 200)
	rest("GET", "/api/hubs/chat/nothing", "", "", 404)
	rest("GET", "/nowhere", "", "", 404)
	resp, err := http.Post(s.testURL()+"/api/hubs/chat/:send", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStatus(t, resp, 401)

	// A slow consumer in its own hub, closed once 1 MiB is queued.
	_, sm := mustJSONClient(t, s, "slow", "s", nil, nil)
	slowID := sm["connectionId"].(string)
	big := strings.Repeat("x", 256<<10)
	slowSends := 0
	for s.reg.Conn("slow", slowID) != nil {
		if slowSends == 400 {
			t.Fatal("the slow consumer was not closed after 400 sends of 256 KiB")
		}
		rest("POST", "/api/hubs/slow/connections/"+slowID+"/:send", "text/plain", big, 202)
		slowSends++
		time.Sleep(time.Millisecond)
	}

	// Upstream: two accepted connects and one rejected, a simple client's message
	// event answered with a body, and a user event that fails twice (one retry).
	up, err := dial(t, s, "/client/hubs/up?access_token="+clientToken(t, s, "up", "su", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.writeText("hello"); err != nil {
		t.Fatal(err)
	}
	if op, p, err := up.read(); err != nil || string(p) != "echo" {
		t.Fatalf("simple client reply: op %v %q %v", op, p, err)
	}
	upj, _ := mustJSONClient(t, s, "up", "pu", nil, nil)
	upj.send(`{"type":"event","event":"fail","dataType":"text","data":"boom","ackId":1}`)
	if m := upj.readJSON(); m["type"] != "ack" || m["success"] != false {
		t.Fatalf("failed event: %v", m)
	}
	if _, err := dial(t, s, "/client/hubs/up?access_token="+clientToken(t, s, "up", "rejectme", nil, nil)); !errors.As(err, &se) || se != 401 {
		t.Fatalf("rejected connect: %v", err)
	}

	// Closes: a client's own close, and one by the app server.
	rest("DELETE", "/api/hubs/chat/connections/"+userConnID(t, s, "chat", "b"), "", "", 204)
	a.close()

	chat := func(name string, v float64, labels ...string) (string, float64) {
		return series(name, append([]string{"hub", "chat"}, labels...)...), v
	}
	want := samples{}
	add := func(k string, v float64) { want[k] = v }
	add(chat("webpubsub_connections", 1, "protocol", "json.reliable"))
	add(chat("webpubsub_connections", 1, "protocol", "none"))
	add(chat("webpubsub_connections_opened_total", 4))
	add(chat("webpubsub_connections_closed_total", 1, "category", "Normal"))
	add(chat("webpubsub_connections_closed_total", 1, "category", "ClosedByAppServer"))
	add(chat("webpubsub_messages_received_total", 1))
	add(chat("webpubsub_received_bytes_total", 3))
	// g1, g2, all!, hey to four members; one to a.
	add(chat("webpubsub_messages_delivered_total", 4+4+4+1+4))
	add(chat("webpubsub_delivered_bytes_total", 4*2+4*2+4*4+3+4*3))
	add(series("webpubsub_reliable_buffered_messages"), 4)
	add(series("webpubsub_connections_opened_total", "hub", "slow"), 1)
	add(series("webpubsub_connections_closed_total", "category", "SlowClient", "hub", "slow"), 1)
	add(series("webpubsub_connections", "hub", "up", "protocol", "json"), 1)
	add(series("webpubsub_connections", "hub", "up", "protocol", "none"), 1)
	add(series("webpubsub_connections_opened_total", "hub", "up"), 2)
	add(series("webpubsub_messages_received_total", "hub", "up"), 2)
	add(series("webpubsub_received_bytes_total", "hub", "up"), 5+4)
	add(series("webpubsub_messages_delivered_total", "hub", "up"), 1)
	add(series("webpubsub_delivered_bytes_total", "hub", "up"), 4)
	add(series("webpubsub_handshakes_rejected_total", "code", "401"), 2)
	add(series("webpubsub_handshakes_rejected_total", "code", "404"), 1)
	for op, codes := range map[string]map[int]int{
		"SendToGroup":                {202: 2},
		"SendToAll":                  {202: 1, 401: 1},
		"SendToUser":                 {202: 1},
		"SendToConnection":           {202: 1 + slowSends},
		"AddConnectionToGroup":       {200: 1},
		"RemoveConnectionFromGroup":  {204: 1},
		"ConnectionExists":           {200: 1},
		"GroupExists":                {200: 1},
		"UserExists":                 {404: 1},
		"CloseConnection":            {204: 1},
		"HealthApi_GetServiceStatus": {200: 1},
		"unknown":                    {404: 2},
	} {
		n := 0
		for code, v := range codes {
			add(series("webpubsub_rest_requests_total", "code", strconv.Itoa(code), "operation", op), float64(v))
			n += v
		}
		add(series("webpubsub_rest_request_duration_seconds_count", "operation", op), float64(n))
	}
	for _, e := range []struct {
		event, outcome string
		n              int
	}{
		{"connect", "success", 2}, {"connect", "rejected", 1},
		{"user", "success", 1}, {"user", "retried", 1}, {"user", "failed", 1},
		{"validate", "success", 1},
	} {
		add(series("webpubsub_upstream_requests_total", "event", e.event, "outcome", e.outcome), float64(e.n))
	}
	add(series("webpubsub_upstream_request_duration_seconds_count", "event", "connect"), 3)
	add(series("webpubsub_upstream_request_duration_seconds_count", "event", "user"), 3)
	add(series("webpubsub_upstream_request_duration_seconds_count", "event", "validate"), 1)

	// The slow consumer's deliveries depend on socket buffers: checked apart.
	slowDelivery := func(k string) bool { return strings.Contains(k, `delivered`) && strings.Contains(k, `hub="slow"`) }
	after := waitDelta(t, s, before, want, slowDelivery)
	n := after[series("webpubsub_messages_delivered_total", "hub", "slow")]
	if n < 1 || n > float64(slowSends) || after[series("webpubsub_delivered_bytes_total", "hub", "slow")] != n*float64(len(big)) {
		t.Errorf("slow hub: %g deliveries of %d sends, %g bytes", n, slowSends, after[series("webpubsub_delivered_bytes_total", "hub", "slow")])
	}
}

// writeText sends one text frame as a client.
func (c *wsClient) writeText(s string) error {
	return ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewTextFrame([]byte(s))))
}

// close sends a normal close frame and waits for the server's.
func (c *wsClient) close() {
	c.t.Helper()
	_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	for {
		op, _, err := c.read()
		if err != nil || op == ws.OpClose {
			return
		}
	}
}

// userConnID finds the id of user's only connection in hub through the registry.
func userConnID(t *testing.T, s *Server, hub, user string) string {
	t.Helper()
	conns := s.reg.UserConns(hub, user)
	if len(conns) != 1 {
		t.Fatalf("user %s has %d connections in %s", user, len(conns), hub)
	}
	return conns[0].ID
}

// TestMetricsHubLabelOverflow: dynamic hubs get their own label up to 100 of them;
// later ones share hub="other". Configured hubs always have their own.
func TestMetricsHubLabelOverflow(t *testing.T) {
	s := metricsServer(t, nil)
	for i := 0; i < maxDynamicHubLabels+2; i++ {
		hub := fmt.Sprintf("dyn%03d", i)
		if _, err := dial(t, s, "/client/hubs/"+hub+"?access_token="+clientToken(t, s, hub, "u", nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	mustJSONClient(t, s, "ANON", "u", nil, nil) // a configured hub, matched case-insensitively
	got := scrape(t, s)
	hubs := map[string]bool{}
	for k, v := range got {
		if name, labels, ok := strings.Cut(k, "{"); ok && name == "webpubsub_connections_opened_total" {
			hubs[strings.TrimSuffix(strings.TrimPrefix(labels, `hub="`), `"}`)] = true
			if v != 1 && !strings.Contains(labels, `"other"`) && !strings.Contains(labels, `"anon"`) {
				t.Errorf("%s = %g", k, v)
			}
		}
	}
	if len(hubs) != maxDynamicHubLabels+2 { // 100 dynamic, other, anon
		t.Errorf("%d hub label values, want %d", len(hubs), maxDynamicHubLabels+2)
	}
	for k, want := range map[string]float64{
		series("webpubsub_connections_opened_total", "hub", "other"):                      2,
		series("webpubsub_connections_opened_total", "hub", "anon"):                       1,
		series("webpubsub_connections", "hub", "other", "protocol", "none"):               2,
		series("webpubsub_connections_opened_total", "hub", "dyn099"):                     1,
		series("webpubsub_connections", "hub", "dyn000", "protocol", "none"):              1,
		series("webpubsub_connections_closed_total", "category", "Normal", "hub", "anon"): 0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %g (present %v), want %g", k, v, ok, want)
		}
	}
	if _, ok := got[series("webpubsub_connections_opened_total", "hub", "dyn100")]; ok {
		t.Error("the 101st dynamic hub has its own label")
	}
}

// TestAdminEndpoints: liveness, readiness (503 once draining), the exposition
// formats, and pprof only when enabled.
func TestAdminEndpoints(t *testing.T) {
	s := metricsServer(t, nil)
	for _, path := range []string{"/livez", "/readyz"} {
		if resp, body := adminGet(t, s, path, ""); resp.StatusCode != 200 {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
	resp, body := adminGet(t, s, "/metrics", "")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") || strings.Contains(body, "# EOF") {
		t.Errorf("default format: Content-Type %q", ct)
	}
	resp, body = adminGet(t, s, "/metrics", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics: Content-Type %q, body ends %q", ct, body[max(0, len(body)-20):])
	}
	if !strings.Contains(body, "# TYPE webpubsub_connections_opened counter") {
		t.Error("OpenMetrics body has no webpubsub_connections_opened counter family")
	}
	if resp, _ := adminGet(t, s, "/debug/pprof/", ""); resp.StatusCode != 404 {
		t.Errorf("pprof off: status %d, want 404", resp.StatusCode)
	}

	s.draining.Store(true) // what the SIGTERM drain does first
	if resp, body := adminGet(t, s, "/readyz", ""); resp.StatusCode != 503 || body != "draining\n" {
		t.Errorf("draining /readyz: %d %q", resp.StatusCode, body)
	}
	if resp, _ := adminGet(t, s, "/livez", ""); resp.StatusCode != 200 {
		t.Errorf("draining /livez: %d", resp.StatusCode)
	}
	s.draining.Store(false)

	p := metricsServer(t, func(c *Config) { c.Admin.Pprof = true })
	if resp, body := adminGet(t, p, "/debug/pprof/", ""); resp.StatusCode != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof on: status %d", resp.StatusCode)
	}
	if resp, _ := adminGet(t, p, "/debug/pprof/cmdline", ""); resp.StatusCode != 200 {
		t.Errorf("pprof cmdline: status %d", resp.StatusCode)
	}
}

// TestAdminReadyBeforeStart: /readyz is 503 until the public port is up, and the
// admin listener goes away with Shutdown; without an address there is none.
func TestAdminReadyBeforeStart(t *testing.T) {
	s, err := New(Config{Keys: Keys{Primary: testKey}, Listen: "127.0.0.1:0", Loops: 1, Admin: Admin{Address: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.startAdmin(); err != nil {
		t.Fatal(err)
	}
	if resp, body := adminGet(t, s, "/readyz", ""); resp.StatusCode != 503 || body != "starting\n" {
		t.Errorf("before Start: %d %q", resp.StatusCode, body)
	}
	addr := s.AdminAddr().String()
	s.stopAdmin(t.Context())
	if _, err := http.Get("http://" + addr + "/livez"); err == nil {
		t.Error("the admin listener still answers after stopAdmin")
	}

	plain := testServer(t, nil)
	if plain.AdminAddr() != nil {
		t.Errorf("AdminAddr %v without admin.address", plain.AdminAddr())
	}
}

// TestMetricsScrapeBusyLoop: a loop that cannot answer a scrape in time is reported
// with its previous snapshot, so the scrape ends within its bound and no counter
// goes backwards.
func TestMetricsScrapeBusyLoop(t *testing.T) {
	s := metricsServer(t, func(c *Config) { c.Loops = 1 })
	mustJSONClient(t, s, "anon", "u", nil, nil)
	opened := series("webpubsub_connections_opened_total", "hub", "anon")
	if got := scrape(t, s)[opened]; got != 1 {
		t.Fatalf("%s = %g, want 1", opened, got)
	}
	release := make(chan struct{})
	blocked := make(chan struct{})
	for _, lp := range *s.loopArr.Load() {
		_ = lp.el.Execute(t.Context(), gnet.RunnableFunc(func(context.Context) error {
			close(blocked)
			<-release
			return nil
		}))
	}
	<-blocked
	start := time.Now()
	got := scrape(t, s)[opened]
	close(release)
	if d := time.Since(start); d < scrapeWait || d > scrapeWait+2*time.Second {
		t.Errorf("scrape of a busy loop took %v, want about %v", d, scrapeWait)
	}
	if got != 1 {
		t.Errorf("%s = %g from the previous snapshot, want 1", opened, got)
	}
}
