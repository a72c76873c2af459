// Command baseline is a yardstick, not a product: the plain goroutine-per-connection
// gorilla/websocket server that BENCHMARKS.md runs beside webpubsub, so readers see the
// ratio. It speaks only the subset of Azure Web PubSub that `webpubsub bench` uses:
//
//   - GET /client/hubs/{hub}?access_token=JWT upgrades to json.webpubsub.azure.v1, joins the
//     token's webpubsub.group claims and answers sendToGroup (with ack) and ping;
//   - POST /api/hubs/{hub}/groups/{group}/:send with a text/plain body sends to a group;
//   - GET /api/health answers 200.
//
// It is the canonical gorilla hub pattern: one read and one write goroutine per connection,
// a buffered send channel, and one mutex-guarded map of groups. Tokens are checked (HS256
// signature) because the real server checks them too; roles, expiry, audiences, upstream
// events and every other message type are left out on purpose.
package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	subprotocol  = "json.webpubsub.azure.v1"
	sendQueueLen = 256 // messages queued per connection before it is dropped as slow
	writeWait    = 10 * time.Second
	maxMessage   = 1 << 20 // bytes, for client frames and REST bodies alike
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on")
	key := flag.String("access-key", "", "access key that signs client and REST tokens (required)")
	flag.Parse()
	if *key == "" {
		fmt.Fprintln(os.Stderr, "baseline: -access-key is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("baseline: listening on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, newHandler(*key)))
}

// server holds every group of every hub. One mutex guards the map and every send into a
// connection's channel, so a channel is never sent to after it is closed.
type server struct {
	key    []byte
	up     websocket.Upgrader
	mu     sync.Mutex
	groups map[groupKey]map[*conn]struct{}
}

type groupKey struct{ hub, group string }

type conn struct {
	ws     *websocket.Conn
	send   chan []byte
	hub    string
	userID string
	groups []string // joined at connect; read under server.mu
	closed bool     // send is closed; guarded by server.mu
}

func newHandler(accessKey string) http.Handler {
	s := &server{
		key:    []byte(accessKey),
		groups: make(map[groupKey]map[*conn]struct{}),
		up: websocket.Upgrader{
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			Subprotocols:    []string{subprotocol},
			CheckOrigin:     func(*http.Request) bool { return true },
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /client/hubs/{hub}", s.serveClient)
	mux.HandleFunc("POST /api/hubs/{hub}/groups/{group}/:send", s.serveGroupSend)
	mux.HandleFunc("GET /api/health", func(http.ResponseWriter, *http.Request) {}) // also HEAD
	return mux
}

// claims are the parts of a token the baseline reads.
type claims struct {
	Sub    string   `json:"sub"`
	Groups []string `json:"webpubsub.group"`
}

var errToken = errors.New("baseline: bad token")

// verify checks an HS256 JWT against the access key and returns its claims.
func (s *server) verify(token string) (claims, error) {
	var c claims
	dot := strings.LastIndexByte(token, '.')
	if dot < 0 {
		return c, errToken
	}
	signed, sig := token[:dot], token[dot+1:]
	header, payload, ok := strings.Cut(signed, ".")
	if !ok || header == "" {
		return c, errToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return c, errToken
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(signed))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return c, errToken
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(body, &c) != nil {
		return c, errToken
	}
	return c, nil
}

func (s *server) serveClient(w http.ResponseWriter, r *http.Request) {
	cl, err := s.verify(r.URL.Query().Get("access_token"))
	if err != nil {
		http.Error(w, "invalid access token", http.StatusUnauthorized)
		return
	}
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has already answered
	}
	ws.SetReadLimit(maxMessage)
	c := &conn{ws: ws, send: make(chan []byte, sendQueueLen), hub: r.PathValue("hub"), userID: cl.Sub, groups: cl.Groups}

	var user *string // null when the token has no sub
	if cl.Sub != "" {
		user = &cl.Sub
	}
	hello, _ := json.Marshal(struct {
		Type         string  `json:"type"`
		Event        string  `json:"event"`
		UserID       *string `json:"userId"`
		ConnectionID string  `json:"connectionId"`
	}{"system", "connected", user, rand.Text()})
	c.send <- hello // the channel is new and empty: this cannot block

	s.mu.Lock()
	for _, g := range c.groups {
		k := groupKey{c.hub, g}
		if s.groups[k] == nil {
			s.groups[k] = make(map[*conn]struct{})
		}
		s.groups[k][c] = struct{}{}
	}
	s.mu.Unlock()

	go c.writeLoop()
	s.readLoop(c)
}

// inbound is every client message field the baseline reads.
type inbound struct {
	Type     string          `json:"type"`
	Group    string          `json:"group"`
	DataType string          `json:"dataType"`
	Data     json.RawMessage `json:"data"`
	NoEcho   bool            `json:"noEcho"`
	AckID    *uint64         `json:"ackId"`
}

// groupMessage is what members of a group receive.
type groupMessage struct {
	Type       string          `json:"type"`
	From       string          `json:"from"`
	Group      string          `json:"group"`
	FromUserID string          `json:"fromUserId,omitempty"`
	DataType   string          `json:"dataType"`
	Data       json.RawMessage `json:"data"`
}

var pong = []byte(`{"type":"pong"}`)

// readLoop runs on the connection's own goroutine until the socket fails or closes.
func (s *server) readLoop(c *conn) {
	defer func() {
		s.mu.Lock()
		s.dropLocked(c)
		s.mu.Unlock()
		c.ws.Close()
	}()
	for {
		kind, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var m inbound
		if kind != websocket.TextMessage || json.Unmarshal(data, &m) != nil {
			continue
		}
		switch m.Type {
		case "ping":
			s.enqueue(c, pong)
		case "sendToGroup":
			if m.Data == nil {
				continue
			}
			msg, _ := json.Marshal(groupMessage{"message", "group", m.Group, c.userID, m.DataType, m.Data})
			var skip *conn
			if m.NoEcho {
				skip = c
			}
			s.broadcast(groupKey{c.hub, m.Group}, msg, skip)
			if m.AckID != nil {
				ack := fmt.Appendf(nil, `{"type":"ack","ackId":%d,"success":true}`, *m.AckID)
				s.enqueue(c, ack)
			}
		}
	}
}

// writeLoop runs on its own goroutine and writes queued messages until send is closed.
func (c *conn) writeLoop() {
	defer c.ws.Close() // also ends readLoop, which unregisters c
	for msg := range c.send {
		c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			return
		}
	}
	c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
}

// broadcast queues msg, encoded once, to every member of k but skip.
func (s *server) broadcast(k groupKey, msg []byte, skip *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.groups[k] {
		if c != skip {
			s.enqueueLocked(c, msg)
		}
	}
}

func (s *server) enqueue(c *conn, msg []byte) {
	s.mu.Lock()
	s.enqueueLocked(c, msg)
	s.mu.Unlock()
}

// enqueueLocked queues msg for c, or drops c as a slow consumer when its queue is full.
func (s *server) enqueueLocked(c *conn, msg []byte) {
	if c.closed {
		return
	}
	select {
	case c.send <- msg:
	default:
		s.dropLocked(c)
	}
}

// dropLocked removes c from its groups and closes its queue; writeLoop then closes the
// socket. Safe to call more than once.
func (s *server) dropLocked(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	for _, g := range c.groups {
		k := groupKey{c.hub, g}
		delete(s.groups[k], c)
		if len(s.groups[k]) == 0 {
			delete(s.groups, k)
		}
	}
	close(c.send)
}

func (s *server) serveGroupSend(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		http.Error(w, "missing bearer token", http.StatusUnauthorized)
		return
	}
	if _, err := s.verify(token); err != nil {
		http.Error(w, "invalid bearer token", http.StatusUnauthorized)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "text/plain" {
		http.Error(w, "the baseline accepts only text/plain", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessage))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	data, _ := json.Marshal(string(body))
	group := r.PathValue("group")
	msg, _ := json.Marshal(groupMessage{Type: "message", From: "group", Group: group, DataType: "text", Data: data})
	s.broadcast(groupKey{r.PathValue("hub"), group}, msg, nil)
	w.WriteHeader(http.StatusAccepted)
}
