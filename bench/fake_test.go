package bench

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeService is a stand-in server speaking just enough of the protocol, one goroutine per
// connection: the upgrade with the JSON subprotocol, groups from the token's
// webpubsub.group claim, the connected event, a ping, client sendToGroup with acks (for
// the webpubsub.sendToGroup role), and REST group sends.
type fakeService struct {
	mu     sync.Mutex
	groups map[string][]*fakeConn
	srv    *httptest.Server
}

type fakeConn struct {
	mu   sync.Mutex // serializes writes
	conn net.Conn
}

func (c *fakeConn) write(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = wsutil.WriteServerText(c.conn, msg)
}

func newFakeService(t *testing.T) *fakeService {
	t.Helper()
	fs := &fakeService{groups: make(map[string][]*fakeConn)}
	mux := http.NewServeMux()
	mux.HandleFunc("/client/hubs/", fs.client)
	mux.HandleFunc("/api/hubs/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		rest, _ := strings.CutPrefix(r.URL.Path, "/api/hubs/")
		parts := strings.Split(rest, "/") // hub, "groups", group, ":send"
		if len(parts) != 4 || parts[1] != "groups" || parts[3] != ":send" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fs.broadcast(parts[2], string(body))
		w.WriteHeader(http.StatusAccepted)
	})
	fs.srv = httptest.NewServer(mux)
	t.Cleanup(fs.srv.Close)
	return fs
}

func (fs *fakeService) broadcast(group, data string) {
	msg, _ := json.Marshal(map[string]string{"type": "message", "from": "group", "group": group, "dataType": "text", "data": data})
	fs.mu.Lock()
	members := slices.Clone(fs.groups[group])
	fs.mu.Unlock()
	for _, c := range members {
		c.write(msg)
	}
}

func (fs *fakeService) client(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("access_token")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims clientClaims
	if err := json.Unmarshal(body, &claims); err != nil {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	u := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == JSONProtocol }}
	conn, _, _, err := u.Upgrade(r, w)
	if err != nil {
		return
	}
	c := &fakeConn{conn: conn}
	// Join before connected, under the lock broadcasts read under, so a member that has
	// seen connected receives every later send.
	fs.mu.Lock()
	for _, g := range claims.Groups {
		fs.groups[g] = append(fs.groups[g], c)
	}
	fs.mu.Unlock()
	c.write([]byte(`{"type":"system","event":"connected","userId":"` + claims.Sub + `","connectionId":"c"}`))
	c.mu.Lock()
	_ = wsutil.WriteServerMessage(conn, ws.OpPing, []byte("p"))
	c.mu.Unlock()
	canSend := slices.Contains(claims.Roles, "webpubsub.sendToGroup")
	go func() {
		defer func() {
			fs.mu.Lock()
			for _, g := range claims.Groups {
				fs.groups[g] = slices.DeleteFunc(fs.groups[g], func(m *fakeConn) bool { return m == c })
			}
			fs.mu.Unlock()
			_ = conn.Close()
		}()
		for {
			data, op, err := wsutil.ReadClientData(conn)
			if err != nil || op != ws.OpText {
				return
			}
			var m struct {
				Type  string `json:"type"`
				Group string `json:"group"`
				AckID uint64 `json:"ackId"`
				Data  string `json:"data"`
			}
			if json.Unmarshal(data, &m) != nil || m.Type != "sendToGroup" {
				continue
			}
			if !canSend {
				ack, _ := json.Marshal(map[string]any{"type": "ack", "ackId": m.AckID, "success": false, "error": map[string]string{"name": "Forbidden"}})
				c.write(ack)
				continue
			}
			fs.broadcast(m.Group, m.Data)
			ack, _ := json.Marshal(map[string]any{"type": "ack", "ackId": m.AckID, "success": true})
			c.write(ack)
		}
	}()
}
