package upstream

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Handler is one entry of a hub's eventHandlers (config.md §2.2).
type Handler struct {
	// URLTemplate is the upstream URL with optional {hub} and {event}
	// placeholders outside the host (§10.3). Required; absolute http or https.
	URLTemplate string
	// UserEventPattern selects user events: "*", a name, or a comma-separated
	// list of names (§10.2; glob wildcards are accepted inside entries). Empty
	// means no user events.
	UserEventPattern string
	// SystemEvents lists the system events this handler receives: any of
	// "connect", "connected", "disconnected" (case-insensitive).
	SystemEvents []string
	// BearerToken is sent as "Authorization: Bearer <token>" (§13). Empty means no
	// Authorization header.
	BearerToken string
}

// Hub is the compiled, ordered event handlers of one hub. A nil *Hub has no
// handlers. Safe for concurrent use.
type Hub struct {
	handlers []*handler
}

// System event bits.
const (
	sysConnect = 1 << iota
	sysConnected
	sysDisconnected
)

type handler struct {
	index    int
	template string
	system   int
	users    []string // lower-case pattern entries; "*" alone matches all
	auth     string   // "Bearer <token>" or ""

	// targets caches resolved URLs by hub + "\x00" + event. Its size is bounded by
	// maxCachedTargets because event names come from clients.
	targets  sync.Map
	nTargets atomic.Int32
}

// maxCachedTargets bounds each handler's resolved-URL cache.
const maxCachedTargets = 1024

// target is one resolved handler URL.
type target struct {
	h           *handler
	url         string // the POST URL
	hostKey     string // scheme://host:port, the isolation unit of the workers
	validateURL string // the template with {event}=validate (§9.1)
	logURL      string // url without query, userinfo or fragment
}

// CompileHub validates handlers and compiles them for matching. The error wraps
// ErrInvalidHandler and names the handler index and field.
func CompileHub(handlers []Handler) (*Hub, error) {
	hub := &Hub{handlers: make([]*handler, 0, len(handlers))}
	for i, hd := range handlers {
		ch, err := compileHandler(i, hd)
		if err != nil {
			return nil, err
		}
		hub.handlers = append(hub.handlers, ch)
	}
	return hub, nil
}

func compileHandler(i int, hd Handler) (*handler, error) {
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: eventHandlers[%d].%s: %s", ErrInvalidHandler, i, field, fmt.Sprintf(format, args...))
	}
	if err := checkTemplate(hd.URLTemplate); err != nil {
		return nil, fail("urlTemplate", "%q: %v", redactURL(hd.URLTemplate), err)
	}
	h := &handler{index: i, template: hd.URLTemplate}
	for _, name := range hd.SystemEvents {
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "connect":
			h.system |= sysConnect
		case "connected":
			h.system |= sysConnected
		case "disconnected":
			h.system |= sysDisconnected
		default:
			return nil, fail("systemEvents", "unknown system event %q (want connect, connected or disconnected)", name)
		}
	}
	if strings.TrimSpace(hd.UserEventPattern) != "" {
		for _, e := range strings.Split(hd.UserEventPattern, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				return nil, fail("userEventPattern", "%q has an empty entry", hd.UserEventPattern)
			}
			if strings.IndexFunc(e, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
				return nil, fail("userEventPattern", "entry %q contains white space or control characters", e)
			}
			if strings.Contains(e, "***") {
				return nil, fail("userEventPattern", "entry %q: at most two consecutive '*'", e)
			}
			h.users = append(h.users, strings.ToLower(e))
		}
	}
	if hd.BearerToken != "" {
		if strings.ContainsAny(hd.BearerToken, "\r\n") {
			return nil, fail("auth.bearerToken", "contains a line break")
		}
		h.auth = "Bearer " + hd.BearerToken
	}
	return h, nil
}

// checkTemplate applies §10.3: an absolute http(s) URL once the placeholders are
// substituted, no placeholder in the host, no other braces, no Key Vault
// reference, no tunnel: scheme.
func checkTemplate(t string) error {
	if t == "" {
		return fmt.Errorf("required")
	}
	if strings.Contains(t, "{@") {
		return fmt.Errorf("a Key Vault reference is not supported; use ${VAR} environment substitution")
	}
	lower := strings.ToLower(t)
	if strings.HasPrefix(lower, "tunnel:") {
		return fmt.Errorf("the tunnel: scheme is not supported")
	}
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		return fmt.Errorf("not an absolute http or https URL")
	}
	rest := t[strings.Index(t, "://")+3:]
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	if strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("placeholders are not allowed in the host")
	}
	resolved := expand(t, "hub", "event")
	if strings.ContainsAny(resolved, "{}") {
		return fmt.Errorf("unknown placeholder (only {hub} and {event}; percent-encode literal braces)")
	}
	u, err := url.Parse(resolved)
	if err != nil {
		return err
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("no host")
	}
	if strings.Contains(u.Host, " ") {
		return fmt.Errorf("invalid host")
	}
	return nil
}

// expand substitutes the placeholders with path-escaped values (§10.3).
func expand(t, hub, event string) string {
	if !strings.Contains(t, "{") {
		return t
	}
	t = strings.ReplaceAll(t, "{hub}", url.PathEscape(hub))
	return strings.ReplaceAll(t, "{event}", url.PathEscape(event))
}

// redactURL drops userinfo, query and fragment so that secrets such as
// ?code=<secret> never reach a log line.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		if i := strings.Index(raw, "@"); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				raw = raw[:j+3] + raw[i+1:]
			}
		}
		return raw
	}
	q := u.RawQuery != ""
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	u.RawFragment = ""
	s := u.String()
	if q {
		s += "?…"
	}
	return s
}

// HasConnect reports whether a handler receives the connect event (§10.1).
func (hb *Hub) HasConnect() bool { return hb.system(sysConnect) != nil }

// HasConnected reports whether a handler receives the connected event.
func (hb *Hub) HasConnected() bool { return hb.system(sysConnected) != nil }

// HasDisconnected reports whether a handler receives the disconnected event.
func (hb *Hub) HasDisconnected() bool { return hb.system(sysDisconnected) != nil }

// HasUserEvent reports whether a handler's userEventPattern matches the user event
// name (case-insensitively, §10.2).
func (hb *Hub) HasUserEvent(name string) bool { return hb.user(name) != nil }

func (hb *Hub) system(bit int) *handler {
	if hb == nil {
		return nil
	}
	for _, h := range hb.handlers {
		if h.system&bit != 0 {
			return h
		}
	}
	return nil
}

func (hb *Hub) user(name string) *handler {
	if hb == nil || name == "" {
		return nil
	}
	for _, h := range hb.handlers {
		for _, p := range h.users {
			if matchPattern(p, name) {
				return h
			}
		}
	}
	return nil
}

// matchPattern matches one lower-case pattern entry against an event name,
// ASCII case-insensitively: "*" alone matches everything; inside an entry "*"
// matches within one dot-separated segment, "**" across dots, "?" one character.
func matchPattern(p, name string) bool {
	if p == "*" {
		return true
	}
	if !strings.ContainsAny(p, "*?") {
		return strings.EqualFold(p, name)
	}
	return glob(p, name)
}

func glob(p, s string) bool {
	for len(p) > 0 {
		switch {
		case strings.HasPrefix(p, "**"):
			rest := p[2:]
			for i := 0; i <= len(s); i++ {
				if glob(rest, s[i:]) {
					return true
				}
			}
			return false
		case p[0] == '*':
			rest := p[1:]
			for i := 0; i <= len(s); i++ {
				if glob(rest, s[i:]) {
					return true
				}
				if i < len(s) && s[i] == '.' {
					return false
				}
			}
			return false
		case p[0] == '?':
			if len(s) == 0 {
				return false
			}
			_, n := utf8.DecodeRuneInString(s)
			p, s = p[1:], s[n:]
		default:
			if len(s) == 0 || lowerASCII(s[0]) != p[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// resolve returns the target of event on hub, cached per handler.
func (h *handler) resolve(hub, event string) *target {
	key := hub + "\x00" + event
	if v, ok := h.targets.Load(key); ok {
		return v.(*target)
	}
	u := expand(h.template, hub, event)
	t := &target{
		h:           h,
		url:         u,
		validateURL: expand(h.template, hub, "validate"),
		logURL:      redactURL(u),
	}
	if pu, err := url.Parse(u); err == nil {
		t.hostKey = strings.ToLower(pu.Scheme) + "://" + strings.ToLower(pu.Host)
	} else {
		t.hostKey = u
	}
	if h.nTargets.Load() < maxCachedTargets {
		if v, loaded := h.targets.LoadOrStore(key, t); loaded {
			return v.(*target)
		}
		h.nTargets.Add(1)
	}
	return t
}
