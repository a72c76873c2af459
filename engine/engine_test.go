package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

const testKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"

// testServer starts a real server on 127.0.0.1:0 and stops it at cleanup.
func testServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Listen: "127.0.0.1:0",
		Keys:   Keys{Primary: testKey},
		Hubs:   map[string]HubSettings{"anon": {AnonymousConnectPolicy: "allow"}},
		Loops:  2,
		// Tests stop at once; drain_test.go sets its own pacing.
		Shutdown: Shutdown{DrainDelay: -1, CloseRatePerSecond: -1},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func (s *Server) testURL() string { return "http://" + s.Addr().String() }

// clientToken signs a client token the way the JS SDK does.
func clientToken(t *testing.T, s *Server, hub, user string, roles, groups []string) string {
	t.Helper()
	tok, err := SignClientToken(testKey, s.testURL(), hub, user, roles, groups, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type wsClient struct {
	t        *testing.T
	conn     net.Conn
	protocol string
	br       *bufio.Reader
}

// dial opens a WebSocket to path with the given subprotocols.
func dial(t *testing.T, s *Server, path string, protocols ...string) (*wsClient, error) {
	t.Helper()
	d := ws.Dialer{Protocols: protocols, Timeout: 5 * time.Second}
	conn, br, hs, err := d.Dial(ctxTimeout(t, 5*time.Second), "ws://"+s.Addr().String()+path)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{t: t, conn: conn, protocol: hs.Protocol, br: br}, nil
}

// mustJSONClient dials a JSON PubSub client and consumes its `connected` message.
func mustJSONClient(t *testing.T, s *Server, hub, user string, roles, groups []string) (*wsClient, map[string]any) {
	t.Helper()
	tok := clientToken(t, s, hub, user, roles, groups)
	c, err := dial(t, s, "/client/hubs/"+encodeURIComponent(hub)+"?access_token="+tok, "json.webpubsub.azure.v1")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if c.protocol != "json.webpubsub.azure.v1" {
		t.Fatalf("protocol echoed %q", c.protocol)
	}
	m := c.readJSON()
	if m["type"] != "system" || m["event"] != "connected" {
		t.Fatalf("first message %v, want system/connected", m)
	}
	return c, m
}

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientMessage(c.conn, ws.OpText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next data message (control frames are handled by wsutil).
func (c *wsClient) read() (ws.OpCode, []byte, error) {
	return c.readWithin(3 * time.Second)
}

func (c *wsClient) readWithin(d time.Duration) (ws.OpCode, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	r := wsutil.Reader{Source: c.br, State: ws.StateClientSide, CheckUTF8: true,
		OnIntermediate: wsutil.ControlFrameHandler(c.conn, ws.StateClientSide)}
	for {
		h, err := r.NextFrame()
		if err != nil {
			return 0, nil, err
		}
		if h.OpCode.IsControl() {
			if h.OpCode == ws.OpClose {
				p, _ := io.ReadAll(&r)
				return ws.OpClose, p, nil
			}
			if err := wsutil.ControlFrameHandler(c.conn, ws.StateClientSide)(h, &r); err != nil {
				return 0, nil, err
			}
			continue
		}
		p, err := io.ReadAll(&r)
		return h.OpCode, p, err
	}
}

func (c *wsClient) readJSON() map[string]any {
	c.t.Helper()
	op, p, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if op != ws.OpText {
		c.t.Fatalf("got opcode %v (%q), want text", op, p)
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		c.t.Fatalf("bad JSON %q: %v", p, err)
	}
	return m
}

// expectClose reads until a close frame and returns its code.
func (c *wsClient) expectClose() (ws.StatusCode, []map[string]any) {
	c.t.Helper()
	var before []map[string]any
	for {
		op, p, err := c.read()
		if err != nil {
			c.t.Fatalf("read before close: %v", err)
		}
		if op == ws.OpClose {
			if len(p) < 2 {
				return ws.StatusNoStatusRcvd, before
			}
			return ws.StatusCode(uint16(p[0])<<8 | uint16(p[1])), before
		}
		var m map[string]any
		_ = json.Unmarshal(p, &m)
		before = append(before, m)
	}
}

// expectSilence asserts no data message arrives within d.
func (c *wsClient) expectSilence(d time.Duration) {
	c.t.Helper()
	op, p, err := c.readWithin(d)
	if err == nil {
		c.t.Fatalf("unexpected message op=%v %q", op, p)
	}
	// reset: a timed-out read leaves the conn usable for later reads in tests that continue
}

func restReq(t *testing.T, s *Server, method, pathAndQuery, contentType string, body []byte) *http.Response {
	t.Helper()
	u := s.testURL() + pathAndQuery
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := SignRESTToken(testKey, u, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, pathAndQuery, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, b)
	}
}

func jsonEq(t *testing.T, got map[string]any, want string) {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(g, wb) {
		t.Fatalf("got  %s\nwant %s", g, wb)
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
