package engine

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/webpubsub/webpubsub/upstream"
)

// settings is the reloadable part of the configuration (operations.md §2, SIGHUP): keys,
// auth, hubs with their event handlers, defaultHub and limits. A settings value is
// immutable once stored in Server.live; Reload builds a new one and swaps the pointer, so
// a reader loads it once per handshake, REST request, wake-up or sweep and never locks.
type settings struct {
	// gen numbers the settings, from 1. A connection remembers the gen its hub settings
	// came from and looks them up again when it changes (conn.refreshHub).
	gen uint32
	// cfg is the configuration the settings were built from, defaults applied. Only its
	// reloadable fields are read through settings; the others are those of Server.cfg.
	cfg      Config
	verifier *TokenVerifier
	hubs     map[string]*hubConfig // lower-cased hub name → settings
	defHub   *hubConfig
}

// hubConfig is the effective, parsed settings of one hub. It is immutable and shared by
// every connection of the hub until a Reload changes the hub.
type hubConfig struct {
	anonymous bool
	keepAlive time.Duration
	up        *upstream.Hub // compiled event handlers; nil when there are none
	src       HubSettings   // what it was built from, to keep it across a Reload that does not change it
}

// settings returns the current reloadable settings. Safe for concurrent use.
func (s *Server) settings() *settings { return s.live.Load() }

// hub returns the settings of hub name (matched case-insensitively), else defaultHub.
func (st *settings) hub(name string) *hubConfig {
	if h, ok := st.hubs[strings.ToLower(name)]; ok {
		return h
	}
	return st.defHub
}

// newSettings builds the settings of cfg (defaults applied). Hubs whose settings equal
// those in prev keep their *hubConfig, so their compiled handlers, resolved URLs and the
// connections holding them are untouched.
func newSettings(cfg Config, prev *settings, gen uint32) (*settings, error) {
	st := &settings{
		gen:      gen,
		cfg:      cfg,
		verifier: NewTokenVerifier(cfg.Keys, cfg.Auth.ClockSkew, strictEndpoints(cfg)),
		hubs:     make(map[string]*hubConfig, len(cfg.Hubs)),
	}
	reuse := func(old *hubConfig, h HubSettings) (*hubConfig, error) {
		if old != nil && reflect.DeepEqual(old.src, h) {
			return old, nil
		}
		return newHubConfig(h)
	}
	for name, h := range cfg.Hubs {
		key := strings.ToLower(name)
		var old *hubConfig
		if prev != nil {
			old = prev.hubs[key]
		}
		hc, err := reuse(old, h)
		if err != nil {
			return nil, fmt.Errorf("engine: hubs.%s.eventHandlers: %w", name, err)
		}
		st.hubs[key] = hc
	}
	var old *hubConfig
	if prev != nil {
		old = prev.defHub
	}
	var err error
	if st.defHub, err = reuse(old, cfg.DefaultHub); err != nil {
		return nil, fmt.Errorf("engine: defaultHub.eventHandlers: %w", err)
	}
	return st, nil
}

// ReloadResult names, by configuration key (config.md §3.1), what a Reload applied and
// what differs but needs a restart. It never carries a value: keys are secrets.
type ReloadResult struct {
	// Changed lists the applied changes, such as "keys.primary", "hubs.chat" or
	// "limits.maxMessageBytes", sorted.
	Changed []string
	// NeedRestart lists settings that differ from the running ones but can only change
	// with a restart (listen, endpoint, upstream, loops, workers, limits.maxHeaderBytes,
	// admin). They were ignored.
	NeedRestart []string
}

// ErrReloadRejected is wrapped by Reload when the new configuration is invalid; nothing
// was changed. Fix the configuration and reload again.
var ErrReloadRejected = errors.New("engine: configuration rejected, the running one stays")

// Reload applies the reloadable settings of cfg (operations.md §2, config.md §3.2):
//
//   - keys: tokens signed with a removed key are refused from now on, by handshakes and
//     the REST API; upstream signatures are computed with the new keys, also for the
//     events of connections opened before;
//   - auth (clock skew, strict audience host, disabled access keys);
//   - hubs and defaultHub: new handshakes use the new settings; open connections pick up
//     their hub's new event handlers and keep-alive interval for their next event (a
//     connection opened while its hub had no event handler at all gets none until it
//     reconnects). The abuse-protection results of handler URLs that are no longer
//     configured are forgotten, so a changed URL is validated again; unchanged URLs keep
//     theirs;
//   - limits, except maxHeaderBytes: enforced on the next message, request or handshake.
//
// Everything else (listener, endpoint, upstream client settings, loops, workers, logger)
// is kept; a difference is reported in NeedRestart. An invalid cfg changes nothing and
// returns an error wrapping ErrReloadRejected. Existing WebSocket connections stay open.
// Safe for concurrent use; calls are serialised.
func (s *Server) Reload(cfg Config) (ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var res ReloadResult
	if err := applyDefaults(&cfg); err != nil {
		return res, fmt.Errorf("%w: %w", ErrReloadRejected, err)
	}
	prev := s.settings()
	st, err := newSettings(cfg, prev, prev.gen+1)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrReloadRejected, err)
	}
	res.NeedRestart = restartNeeded(s.cfg, cfg)
	res.Changed = reloadChanges(prev, st)
	if len(res.Changed) == 0 {
		return res, nil
	}
	s.live.Store(st)
	if prev.cfg.Keys != cfg.Keys {
		s.up.SetKeys(upstreamKeys(cfg.Keys))
	}
	hubs := make([]*upstream.Hub, 0, len(st.hubs)+1)
	for _, h := range st.hubs {
		hubs = append(hubs, h.up)
	}
	s.up.RetainValidations(append(hubs, st.defHub.up)...)
	return res, nil
}

// restartNeeded names the settings that differ between the running configuration and
// cfg but cannot change without a restart. Both have defaults applied.
func restartNeeded(run, cfg Config) []string {
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"listen", run.Listen == cfg.Listen},
		{"endpoint.public", run.PublicEndpoint == cfg.PublicEndpoint},
		{"endpoint.basePath", run.BasePath == cfg.BasePath},
		{"endpoint.requestOrigin", run.RequestOrigin == cfg.RequestOrigin},
		{"upstream", reflect.DeepEqual(run.Upstream, cfg.Upstream)},
		{"loops", run.Loops == cfg.Loops},
		{"workers", run.Workers == cfg.Workers},
		{"limits.maxHeaderBytes", run.Limits.MaxHeaderBytes == cfg.Limits.MaxHeaderBytes},
		{"admin", run.Admin == cfg.Admin},
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return out
}

// reloadChanges names the reloadable settings that differ between prev and st, sorted.
func reloadChanges(prev, st *settings) []string {
	a, b := prev.cfg, st.cfg
	var out []string
	add := func(name string, same bool) {
		if !same {
			out = append(out, name)
		}
	}
	add("keys.primary", a.Keys.Primary == b.Keys.Primary)
	add("keys.secondary", a.Keys.Secondary == b.Keys.Secondary)
	add("auth", a.Auth == b.Auth)
	add("defaultHub", prev.defHub == st.defHub)
	for name, h := range st.hubs {
		add("hubs."+name, prev.hubs[name] == h)
	}
	for name := range prev.hubs {
		add("hubs."+name, st.hubs[name] != nil)
	}
	la, lb := a.Limits, b.Limits
	add("limits.maxMessageBytes", la.MaxMessageBytes == lb.MaxMessageBytes)
	add("limits.maxConnections", la.MaxConnections == lb.MaxConnections)
	add("limits.restRequestsPerSecond", la.RESTRequestsPerSecond == lb.RESTRequestsPerSecond)
	add("limits.filterMaxClauses", la.FilterMaxClauses == lb.FilterMaxClauses)
	add("limits.maxOutboundBytes", la.MaxOutboundBytes == lb.MaxOutboundBytes)
	add("limits.httpIdleTimeout", la.HTTPIdleTimeout == lb.HTTPIdleTimeout)
	add("limits.recoveryWindowSeconds", la.RecoveryWindow == lb.RecoveryWindow)
	slices.Sort(out)
	return out
}

// refreshHub looks the connection's hub settings up again after a Reload, and points
// its upstream session at the hub's new event handlers. It costs one atomic load when
// nothing was reloaded. Runs on the connection's loop.
func (c *conn) refreshHub() {
	st := c.srv.settings()
	if c.hubGen == st.gen || c.rc == nil {
		return
	}
	c.hubGen = st.gen
	h := st.hub(c.rc.Hub)
	if h == c.hub {
		return
	}
	c.hub = h
	if c.sess != nil {
		c.sess.SetHub(h.up)
	}
}
