package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const testKey = "test-key"

// sign returns an HS256 JWT over claims, signed with key.
func sign(t *testing.T, key string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

func startServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newHandler(testKey)) // listens on 127.0.0.1:0
	t.Cleanup(srv.Close)
	return srv
}

// dial connects as user (empty: no sub) joined to groups and returns the connection and
// its connected message.
func dial(t *testing.T, srv *httptest.Server, user string, groups ...string) (*websocket.Conn, map[string]any) {
	t.Helper()
	claims := map[string]any{"aud": srv.URL + "/client/hubs/h", "webpubsub.group": groups}
	if user != "" {
		claims["sub"] = user
	}
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/client/hubs/h?access_token=" + sign(t, testKey, claims)
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != subprotocol {
		t.Fatalf("subprotocol %q, want %q", got, subprotocol)
	}
	return ws, readJSON(t, ws)
}

// readJSON reads one text frame within 5 seconds and decodes it.
func readJSON(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	kind, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if kind != websocket.TextMessage {
		t.Fatalf("frame kind %d, want text", kind)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return m
}

func wantFields(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (message %v)", k, got[k], v, got)
		}
	}
}

func TestConnected(t *testing.T) {
	srv := startServer(t)
	_, hello := dial(t, srv, "alice")
	wantFields(t, hello, map[string]any{"type": "system", "event": "connected", "userId": "alice"})
	if id, _ := hello["connectionId"].(string); id == "" {
		t.Errorf("connectionId missing: %v", hello)
	}
	_, anon := dial(t, srv, "")
	if v, ok := anon["userId"]; !ok || v != nil {
		t.Errorf("userId = %v (present %v), want null", v, ok)
	}
}

func TestBadTokenIsRejected(t *testing.T) {
	srv := startServer(t)
	tok := sign(t, "other-key", map[string]any{"sub": "mallory"})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/client/hubs/h?access_token=" + tok
	d := websocket.Dialer{Subprotocols: []string{subprotocol}}
	_, resp, err := d.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial with a foreign key: err %v, resp %v; want 401", err, resp)
	}
}

func TestRESTGroupSend(t *testing.T) {
	srv := startServer(t)
	a, _ := dial(t, srv, "a", "g")
	b, _ := dial(t, srv, "b", "g", "other")
	dial(t, srv, "c", "other") // must not receive anything

	url := srv.URL + "/api/hubs/h/groups/g/:send?api-version=2024-01-01"
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("hello members"))
	req.Header.Set("Authorization", "Bearer "+sign(t, testKey, map[string]any{"aud": url}))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202", resp.StatusCode)
	}
	want := map[string]any{"type": "message", "from": "group", "group": "g", "dataType": "text", "data": "hello members"}
	for _, ws := range []*websocket.Conn{a, b} {
		m := readJSON(t, ws)
		wantFields(t, m, want)
		if _, ok := m["fromUserId"]; ok {
			t.Errorf("REST send has fromUserId: %v", m)
		}
	}

	req, _ = http.NewRequest(http.MethodPost, url, strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+sign(t, "other-key", map[string]any{"aud": url}))
	req.Header.Set("Content-Type", "text/plain")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("foreign-key REST send: status %d, want 401", resp.StatusCode)
	}
}

func TestClientSendToGroupWithAck(t *testing.T) {
	srv := startServer(t)
	a, _ := dial(t, srv, "a", "g")
	b, _ := dial(t, srv, "b", "g")

	send := `{"type":"sendToGroup","group":"g","dataType":"text","data":"hi","noEcho":false,"ackId":7}`
	if err := a.WriteMessage(websocket.TextMessage, []byte(send)); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "message", "from": "group", "group": "g", "fromUserId": "a", "dataType": "text", "data": "hi"}
	wantFields(t, readJSON(t, b), want)
	wantFields(t, readJSON(t, a), want) // noEcho false: the sender is a member too
	wantFields(t, readJSON(t, a), map[string]any{"type": "ack", "ackId": 7.0, "success": true})

	noEcho := `{"type":"sendToGroup","group":"g","dataType":"text","data":"quiet","noEcho":true,"ackId":8}`
	if err := a.WriteMessage(websocket.TextMessage, []byte(noEcho)); err != nil {
		t.Fatal(err)
	}
	wantFields(t, readJSON(t, b), map[string]any{"data": "quiet"})
	wantFields(t, readJSON(t, a), map[string]any{"type": "ack", "ackId": 8.0})

	if err := a.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	wantFields(t, readJSON(t, a), map[string]any{"type": "pong"})
}

func TestHealth(t *testing.T) {
	srv := startServer(t)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, srv.URL+"/api/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s /api/health: status %d, want 200", method, resp.StatusCode)
		}
	}
}
