package bench

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeService is a stand-in server speaking just enough of the protocol, one goroutine per
// connection: the upgrade with a JSON or protobuf subprotocol (reliable ones number their
// messages and count the sequenceAcks they get), groups from the token's
// webpubsub.group claim, the connected event, a ping, client sendToGroup with acks (for
// the webpubsub.sendToGroup role), and REST group sends. Plain clients (no subprotocol)
// have their text messages sent to the upstream set with setUpstream as CloudEvents, and
// the upstream's reply sent back (upstream-protocol.md §5, §6, §9). REST sends go to a
// group or to all (rest-api.md §3.2, §3.5), with a filter read through testSelectors:
// the fake checks the bench's plumbing, not anyone's reading of OData.
type fakeService struct {
	mu     sync.Mutex
	groups map[string][]*fakeConn
	srv    *httptest.Server

	upstream  atomic.Pointer[string] // URL template of the event handler
	validated sync.Once
	valid     bool // written once under validated
	nextID    atomic.Int64
	http      *http.Client

	seqAcks atomic.Int64 // sequenceAck messages received
	all     []*fakeConn  // every subprotocol connection; under mu
	live    []*fakeConn  // the subprotocol connections open; under mu
}

// sequences returns, over every connection so far, the fewest messages numbered for one
// and the lowest sequenceAck one sent.
func (fs *fakeService) sequences() (minSent, minAcked uint64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	minSent, minAcked = ^uint64(0), ^uint64(0)
	for _, c := range fs.all {
		c.mu.Lock()
		minSent = min(minSent, c.seq)
		c.mu.Unlock()
		minAcked = min(minAcked, c.acked.Load())
	}
	return minSent, minAcked
}

type fakeConn struct {
	mu     sync.Mutex // serializes writes and numbers messages
	conn   net.Conn
	proto  protocol
	user   string        // from the token
	groups []string      // from the token
	seq    uint64        // last sequenceId sent; under mu
	acked  atomic.Uint64 // highest sequenceAck received
}

// write sends msg in a text frame, or a binary one on the protobuf subprotocols.
func (c *fakeConn) write(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeLocked(msg)
}

func (c *fakeConn) writeLocked(msg []byte) {
	if c.proto.protobuf {
		_ = wsutil.WriteServerBinary(c.conn, msg)
		return
	}
	_ = wsutil.WriteServerText(c.conn, msg)
}

// deliver sends a group message (a message from the server when group is ""), numbered on
// the reliable subprotocols.
func (c *fakeConn) deliver(group, data string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var seq uint64
	if c.proto.reliable {
		c.seq++
		seq = c.seq
	}
	if c.proto.protobuf {
		// DownstreamMessage{data_message: {from, group, data: {text_data}, sequence_id}}
		var dm []byte
		if group == "" {
			dm = pbTestBytes(dm, 1, []byte("server"))
		} else {
			dm = pbTestBytes(dm, 1, []byte("group"))
			dm = pbTestBytes(dm, 2, []byte(group))
		}
		dm = pbTestBytes(dm, 3, pbTestBytes(nil, pbDataTextData, []byte(data)))
		if seq > 0 {
			dm = pbTestVarint(dm, 4, seq)
		}
		c.writeLocked(pbTestBytes(nil, pbDownData, dm))
		return
	}
	m := map[string]any{"type": "message", "from": "group", "group": group, "dataType": "text", "data": data}
	if group == "" {
		m = map[string]any{"type": "message", "from": "server", "dataType": "text", "data": data}
	}
	if seq > 0 {
		m["sequenceId"] = seq
	}
	msg, _ := json.Marshal(m)
	c.writeLocked(msg)
}

// ack sends the ack of a sendToGroup.
func (c *fakeConn) ack(id uint64, success bool) {
	if c.proto.protobuf {
		var am []byte
		am = pbTestVarint(am, 1, id)
		if success {
			am = pbTestVarint(am, 2, 1)
		} else {
			am = pbTestBytes(am, 3, pbTestBytes(nil, 1, []byte("Forbidden")))
		}
		c.write(pbTestBytes(nil, pbDownAck, am))
		return
	}
	m := map[string]any{"type": "ack", "ackId": id, "success": success}
	if !success {
		m["error"] = map[string]string{"name": "Forbidden"}
	}
	msg, _ := json.Marshal(m)
	c.write(msg)
}

// pbTestBytes and pbTestVarint append a protobuf field (field numbers below 16).
func pbTestBytes(dst []byte, num int, v []byte) []byte {
	dst = binary.AppendUvarint(pbAppendTag(dst, num, pbBytes), uint64(len(v)))
	return append(dst, v...)
}

func pbTestVarint(dst []byte, num int, v uint64) []byte {
	return binary.AppendUvarint(pbAppendTag(dst, num, pbVarint), v)
}

// fakeUpstream is a client message as the fake service reads it.
type fakeUpstream struct {
	Type  string `json:"type"`
	Group string `json:"group"`
	AckID uint64 `json:"ackId"`
	Data  string `json:"data"`
	Seq   uint64 `json:"sequenceId"`
}

// decodeUpstream reads a client message of c's subprotocol: sendToGroup or sequenceAck.
func (c *fakeConn) decodeUpstream(data []byte, op ws.OpCode) (m fakeUpstream, ok bool) {
	if !c.proto.protobuf {
		return m, op == ws.OpText && json.Unmarshal(data, &m) == nil
	}
	if op != ws.OpBinary {
		return m, false
	}
	num, _, _, body, _, ok := pbField(data)
	if !ok {
		return m, false
	}
	for len(body) > 0 {
		f, typ, v, b, rest, ok := pbField(body)
		if !ok {
			return m, false
		}
		switch {
		case num == pbUpSendToGroup && f == 1 && typ == pbBytes:
			m.Group = string(b)
		case num == pbUpSendToGroup && f == 2 && typ == pbVarint:
			m.AckID = v
		case num == pbUpSendToGroup && f == 3 && typ == pbBytes:
			if _, _, _, text, _, ok := pbField(b); ok {
				m.Data = string(text)
			}
		case num == pbUpSequenceAck && f == 1 && typ == pbVarint:
			m.Seq = v
		}
		body = rest
	}
	switch num {
	case pbUpSendToGroup:
		m.Type = "sendToGroup"
	case pbUpSequenceAck:
		m.Type = "sequenceAck"
	}
	return m, true
}

func newFakeService(t *testing.T) *fakeService {
	t.Helper()
	fs := &fakeService{groups: make(map[string][]*fakeConn),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	t.Cleanup(fs.http.CloseIdleConnections)
	mux := http.NewServeMux()
	mux.HandleFunc("/client/hubs/", fs.client)
	mux.HandleFunc("/api/hubs/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		rest, _ := strings.CutPrefix(r.URL.Path, "/api/hubs/")
		parts := strings.Split(rest, "/") // hub, "groups", group, ":send" or hub, ":send"
		var group string
		switch {
		case len(parts) == 4 && parts[1] == "groups" && parts[3] == ":send":
			group = parts[2]
		case len(parts) == 2 && parts[1] == ":send":
		default:
			http.NotFound(w, r)
			return
		}
		var flt Selector
		if f := r.URL.Query().Get("filter"); f != "" {
			if flt = testSelectors[f]; flt == nil {
				http.Error(w, "the fake knows no selector for filter "+f, http.StatusBadRequest)
				return
			}
		}
		body, _ := io.ReadAll(r.Body)
		fs.send(group, flt, string(body))
		w.WriteHeader(http.StatusAccepted)
	})
	fs.srv = httptest.NewServer(mux)
	t.Cleanup(fs.srv.Close)
	return fs
}

func (fs *fakeService) broadcast(group, data string) { fs.send(group, nil, data) }

// send delivers data to the members of group, or to every connection when group is "",
// for which flt (if any) is true.
func (fs *fakeService) send(group string, flt Selector, data string) {
	fs.mu.Lock()
	members := slices.Clone(fs.groups[group])
	if group == "" {
		members = slices.Clone(fs.live)
	}
	fs.mu.Unlock()
	for _, c := range members {
		if flt == nil || flt(c.user, c.groups) {
			c.deliver(group, data)
		}
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
	subprotocols := map[string]protocol{}
	for _, name := range Protocols {
		p, _ := parseProtocol(name)
		subprotocols[p.subprotocol] = p
	}
	u := ws.HTTPUpgrader{Protocol: func(p string) bool { _, ok := subprotocols[p]; return ok }}
	conn, _, hs, err := u.Upgrade(r, w)
	if err != nil {
		return
	}
	c := &fakeConn{conn: conn, proto: subprotocols[hs.Protocol],
		user: claims.Sub, groups: claims.Groups}
	if r.Header.Get("Sec-WebSocket-Protocol") == "" {
		hub, _ := strings.CutPrefix(r.URL.Path, "/client/hubs/")
		go fs.plain(c, hub, claims.Sub)
		return
	}
	// Join before connected, under the lock broadcasts read under, so a member that has
	// seen connected receives every later send.
	fs.mu.Lock()
	for _, g := range claims.Groups {
		fs.groups[g] = append(fs.groups[g], c)
	}
	fs.all = append(fs.all, c)
	fs.live = append(fs.live, c)
	fs.mu.Unlock()
	if c.proto.protobuf {
		// DownstreamMessage{system_message: {connected_message: {connection_id, user_id}}}
		cm := pbTestBytes(pbTestBytes(nil, 1, []byte("c")), 2, []byte(claims.Sub))
		c.write(pbTestBytes(nil, pbDownSystem, pbTestBytes(nil, pbSystemConnect, cm)))
	} else {
		c.write([]byte(`{"type":"system","event":"connected","userId":"` + claims.Sub + `","connectionId":"c"}`))
	}
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
			fs.live = slices.DeleteFunc(fs.live, func(m *fakeConn) bool { return m == c })
			fs.mu.Unlock()
			_ = conn.Close()
		}()
		for {
			data, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			m, ok := c.decodeUpstream(data, op)
			switch {
			case !ok:
				return
			case m.Type == "sequenceAck":
				fs.seqAcks.Add(1)
				for last := c.acked.Load(); m.Seq > last && !c.acked.CompareAndSwap(last, m.Seq); last = c.acked.Load() {
				}
				continue
			case m.Type != "sendToGroup":
				continue
			case !canSend:
				c.ack(m.AckID, false)
				continue
			}
			fs.broadcast(m.Group, m.Data)
			c.ack(m.AckID, true)
		}
	}()
}

func (fs *fakeService) setUpstream(urlTemplate string) { fs.upstream.Store(&urlTemplate) }

// plain serves a plain client: connected, each text message as the user event "message"
// with the reply sent back, and disconnected when it closes.
func (fs *fakeService) plain(c *fakeConn, hub, user string) {
	defer c.conn.Close()
	c.mu.Lock()
	_ = wsutil.WriteServerMessage(c.conn, ws.OpPing, []byte("p"))
	c.mu.Unlock()
	tmpl := fs.upstream.Load()
	if tmpl == nil || !fs.validate(*tmpl, hub) {
		return // §6.1: no handler for a plain client's message closes it
	}
	ev := &fakeEvents{fs: fs, tmpl: *tmpl, hub: hub, user: user, id: "conn-" + strconv.FormatInt(fs.nextID.Add(1), 10)}
	ev.post("connected", "azure.webpubsub.sys.connected", "application/json; charset=utf-8", []byte("{}"))
	defer ev.post("disconnected", "azure.webpubsub.sys.disconnected", "application/json; charset=utf-8", []byte(`{"reason":""}`))
	for {
		data, op, err := wsutil.ReadClientData(c.conn)
		if err != nil || op != ws.OpText {
			return
		}
		status, ct, body := ev.post("message", "azure.webpubsub.user.message", "text/plain", data)
		if status/100 != 2 {
			return
		}
		if len(body) > 0 && strings.HasPrefix(ct, "text/plain") {
			c.write(body)
		}
	}
}

// validate runs the abuse-protection check once (§9).
func (fs *fakeService) validate(tmpl, hub string) bool {
	fs.validated.Do(func() {
		u := strings.NewReplacer("{hub}", hub, "{event}", "validate").Replace(tmpl)
		req, _ := http.NewRequest(http.MethodOptions, u, nil)
		req.Header.Set("WebHook-Request-Origin", "127.0.0.1")
		req.Header.Set("ce-awpsversion", "1.0")
		resp, err := fs.http.Do(req)
		if err != nil {
			return
		}
		_ = resp.Body.Close()
		fs.valid = resp.StatusCode == http.StatusOK && resp.Header.Get("WebHook-Allowed-Origin") == "*"
	})
	return fs.valid
}

// fakeEvents sends one connection's events in CloudEvents HTTP binary mode (§3).
type fakeEvents struct {
	fs                  *fakeService
	tmpl, hub, user, id string
	seq                 int
}

func (ev *fakeEvents) post(event, ceType, contentType string, body []byte) (status int, ct string, reply []byte) {
	u := strings.NewReplacer("{hub}", ev.hub, "{event}", event).Replace(ev.tmpl)
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	for k, v := range map[string]string{
		"ce-specversion": "1.0", "ce-awpsversion": "1.0", "ce-type": ceType,
		"ce-source": "/hubs/" + ev.hub + "/client/" + ev.id, "ce-id": strconv.Itoa(ev.seq),
		"ce-time": time.Now().UTC().Format(time.RFC3339), "ce-hub": ev.hub, "ce-connectionId": ev.id,
		"ce-eventName": event, "ce-userId": ev.user, "WebHook-Request-Origin": "127.0.0.1",
		"Content-Type": contentType,
	} {
		req.Header.Set(k, v)
	}
	ev.seq++
	resp, err := ev.fs.http.Do(req)
	if err != nil {
		return 0, "", nil
	}
	defer resp.Body.Close()
	reply, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), reply
}
