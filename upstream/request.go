package upstream

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// ce-type values (§2).
const (
	typeConnect      = "azure.webpubsub.sys.connect"
	typeConnected    = "azure.webpubsub.sys.connected"
	typeDisconnected = "azure.webpubsub.sys.disconnected"
	typeUserPrefix   = "azure.webpubsub.user."
)

// Signature returns the ce-signature value for connectionID (§7): "sha256=<hex>"
// per key, HMAC-SHA256 keyed with the key string as written, comma-joined
// without spaces. It returns "" for no keys.
func Signature(connectionID string, keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(len(keys) * (7 + 64 + 1))
	var sum [sha256.Size]byte
	var hx [2 * sha256.Size]byte
	for i, k := range keys {
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte(connectionID))
		hex.Encode(hx[:], m.Sum(sum[:0]))
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("sha256=")
		b.Write(hx[:])
	}
	return b.String()
}

// ceTime is the ce-time of the current second, formatted once per second.
type ceTime struct {
	sec int64
	s   string
}

var lastCETime atomic.Pointer[ceTime]

// formatCETime renders t as RFC 3339 UTC with seconds and Z (§3).
func formatCETime(t time.Time) string {
	sec := t.Unix()
	if p := lastCETime.Load(); p != nil && p.sec == sec {
		return p.s
	}
	s := t.UTC().Format("2006-01-02T15:04:05Z")
	lastCETime.Store(&ceTime{sec: sec, s: s})
	return s
}

// eventHeaders are the per-attempt attribute values of an event.
type eventHeaders struct {
	ceType, source, id, time, hub, connID, name string
	userID, subprotocol, state, signature       string
	origin, auth                                string
	ct                                          ContentType
	at                                          time.Time // ce-time as a time, for the sdk-go comparison
}

// headersFor snapshots t's attributes at send time: user id, subprotocol and
// state are read now so that a state set by the previous event applies (§6.4).
func (c *Client) headersFor(t *task) eventHeaders {
	s := t.s
	if keys := c.keys.Load(); s.sigKeys != keys {
		s.sig = Signature(s.id, *keys)
		s.sigKeys = keys
	}
	if t.time == "" {
		t.at = c.now()
		t.time = formatCETime(t.at)
	}
	h := eventHeaders{
		source:    s.source,
		id:        strconv.FormatUint(t.id, 10),
		time:      t.time,
		hub:       s.hub,
		connID:    s.id,
		name:      t.name,
		signature: s.sig,
		origin:    c.cfg.RequestOrigin,
		auth:      t.target.h.auth,
		ct:        t.ct,
		at:        t.at,
	}
	switch t.kind {
	case kindConnect:
		h.ceType = typeConnect
	case kindConnected:
		h.ceType = typeConnected
	case kindDisconnected:
		h.ceType = typeDisconnected
	default:
		h.ceType = typeUserPrefix + t.name
	}
	s.mu.Lock()
	h.userID, h.subprotocol, h.state = s.userID, s.subprotocol, s.state
	s.mu.Unlock()
	if t.kind == kindConnect {
		h.subprotocol = "" // §3: nothing is selected yet on connect
	}
	if t.attempt == 0 && !isASCII(h.userID) {
		// §3, §15.2: no documented encoding; the UTF-8 bytes go verbatim.
		c.logEvent(slog.LevelWarn, "upstream: ce-userId is not ASCII; sent as raw UTF-8 bytes", t)
	}
	return h
}

// writeHeaders writes the CloudEvents HTTP binary-mode headers of §3, exactly,
// in the spellings of the spec.
func writeHeaders(rh *fasthttp.RequestHeader, h *eventHeaders) {
	rh.DisableNormalizing()
	rh.SetContentType(h.ct.String())
	rh.Add("WebHook-Request-Origin", h.origin)
	rh.Add("ce-specversion", "1.0")
	rh.Add("ce-awpsversion", "1.0")
	rh.Add("ce-type", h.ceType)
	rh.Add("ce-source", h.source)
	rh.Add("ce-id", h.id)
	rh.Add("ce-time", h.time)
	rh.Add("ce-hub", h.hub)
	rh.Add("ce-connectionId", h.connID)
	rh.Add("ce-eventName", h.name)
	if h.userID != "" {
		rh.Add("ce-userId", h.userID)
	}
	if h.subprotocol != "" {
		rh.Add("ce-subprotocol", h.subprotocol)
	}
	if h.state != "" {
		rh.Add("ce-connectionState", h.state)
	}
	if h.signature != "" {
		rh.Add("ce-signature", h.signature)
	}
	if h.auth != "" {
		rh.Add("Authorization", h.auth)
	}
}

// buildRequest fills req with t's POST.
func (c *Client) buildRequest(req *fasthttp.Request, t *task) {
	if t.kind == kindConnect && t.body == nil {
		t.body = encodeConnect(&t.connect)
	}
	h := c.headersFor(t)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(t.target.url)
	c.encode(&req.Header, &h)
	req.SetBodyRaw(t.body)
}

// disconnectedBody is {"reason":reason} (§5.2).
func disconnectedBody(reason string) []byte {
	b, _ := json.Marshal(struct {
		Reason string `json:"reason"`
	}{reason})
	return b
}

// parseContentType maps a response Content-Type to a ContentType (§6.2): media
// type compared case-insensitively without parameters; missing = Binary.
func parseContentType(v []byte) (ContentType, bool) {
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return Binary, true
	case bytes.EqualFold(v, []byte("application/octet-stream")):
		return Binary, true
	case bytes.EqualFold(v, []byte("text/plain")):
		return Text, true
	case bytes.EqualFold(v, []byte("application/json")):
		return JSON, true
	case bytes.EqualFold(v, []byte("application/x-protobuf")):
		return Protobuf, true
	}
	return 0, false
}

func jsonValid(b []byte) bool { return json.Valid(b) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
