package engine

import (
	"log/slog"
	"time"
)

// DevAccessKey is the well-known development key used by Microsoft's samples and
// emulators (config.md §1.1, §3.2). It is only used when no key is configured and the
// listener is on loopback.
const DevAccessKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"

// Config is the whole server configuration. The zero value is not runnable: Keys.Primary
// (or DevMode) is required. Values are copied by New and never changed afterwards;
// Server.Reload takes a new Config and applies its keys, auth, hubs, defaultHub and
// limits (all but MaxHeaderBytes), and needs a restart for the rest.
type Config struct {
	// Listen is the TCP address of the public port (WebSocket and REST). Empty means
	// "127.0.0.1:8080".
	Listen string
	// PublicEndpoint is the base URL apps put into Endpoint=... (config.md §3.1
	// endpoint.public). Empty means "http://" + Listen. Used for the printed connection
	// string and for strict audience checks.
	PublicEndpoint string
	// BasePath is an optional URL prefix such as "/webpubsub". Empty means none.
	BasePath string
	// RequestOrigin is the WebHook-Request-Origin sent to event handlers
	// (upstream-protocol.md §9.3): a host name. Empty means the host of PublicEndpoint.
	RequestOrigin string

	Keys Keys
	Auth Auth

	// Hubs holds the settings of hubs listed in the configuration, keyed by hub name
	// (matched case-insensitively). Hubs not listed use DefaultHub.
	Hubs map[string]HubSettings
	// DefaultHub applies to every hub not listed in Hubs.
	DefaultHub HubSettings

	Upstream Upstream
	Limits   Limits
	Admin    Admin
	Shutdown Shutdown

	// Loops is the number of gnet event loops. Zero means one per CPU.
	Loops int
	// Workers is the number of goroutines that run REST requests and fan-out. Zero means
	// 4 × Loops.
	Workers int

	// Logger receives all server logs. Nil discards them.
	Logger *slog.Logger
}

// Admin is the operator listener (operations.md §2, §3): /livez, /readyz, /metrics
// and, when enabled, /debug/pprof/. It is plain HTTP without authentication: bind it
// to a private address.
type Admin struct {
	// Address is the TCP address of the admin listener, e.g. "127.0.0.1:9090". Empty
	// means no admin listener.
	Address string
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin listener. False
	// (the default) answers 404 there.
	Pprof bool
}

// Keys are the access keys. Both sign/verify client tokens and REST bearer tokens;
// the UTF-8 bytes of the string are the HMAC key (client-protocol.md §2.1).
type Keys struct {
	Primary   string
	Secondary string
}

// Auth tunes token validation (config.md §3.1 auth).
type Auth struct {
	// ClockSkew is the allowance on exp/nbf. Zero means 5 minutes.
	ClockSkew time.Duration
	// StrictAudienceHost also compares scheme://host[:port] of a token's aud with
	// PublicEndpoint. False (the default) compares paths only.
	StrictAudienceHost bool
	// DisableAccessKeys rejects every access-key token (Entra-only deployments).
	DisableAccessKeys bool
}

// HubSettings mirrors Azure's WebPubSubHubProperties (config.md §2.1).
type HubSettings struct {
	// AnonymousConnectPolicy is "allow" or "deny". Empty means "deny".
	AnonymousConnectPolicy string
	// KeepAliveInterval is webSocketKeepAliveIntervalInSeconds: how often the server
	// pings each client. Zero means 20s.
	KeepAliveInterval time.Duration
	// EventHandlers are the upstream handlers, matched in order (upstream issue).
	EventHandlers []EventHandler
}

// EventHandler mirrors Azure's EventHandler (config.md §2.2).
type EventHandler struct {
	URLTemplate      string
	UserEventPattern string
	SystemEvents     []string
	Auth             UpstreamAuth
}

// UpstreamAuth mirrors UpstreamAuthSettings, plus the self-hosted bearer token.
type UpstreamAuth struct {
	// Type is "None" or "ManagedIdentity". Empty means "None".
	Type string
	// ManagedIdentityResource is managedIdentity.resource.
	ManagedIdentityResource string
	// BearerToken is sent as Authorization: Bearer in place of an Entra token.
	BearerToken string
}

// Upstream holds the event-handler client settings (config.md §3.1 upstream).
type Upstream struct {
	// ValidationDisabled skips abuse protection (upstream-protocol.md §9.4); it is
	// on by default.
	ValidationDisabled      bool
	ValidationTimeout       time.Duration
	ValidationSuccessCache  time.Duration
	Timeout                 time.Duration
	RetryDelays             []time.Duration
	MaxResponseBytes        int
	MaxConnectionStateBytes int
	// MaxPendingConnects bounds handshakes waiting for the connect event; beyond it
	// handshakes get 503. Zero means 10 000.
	MaxPendingConnects int
}

// Limits bound what one client or request may use (config.md §3.1 limits, §6).
type Limits struct {
	// MaxMessageBytes bounds one client WebSocket message after reassembly and one REST
	// body. Zero means 1 MiB (1 048 576).
	MaxMessageBytes int
	// MaxConnections caps concurrent WebSocket connections. Zero means unlimited.
	MaxConnections int
	// RESTRequestsPerSecond throttles the REST API. Zero means unlimited.
	RESTRequestsPerSecond int
	// FilterMaxClauses bounds OData filters. Zero means 100.
	FilterMaxClauses int
	// MaxOutboundBytes is the per-connection pending-bytes limit; a client whose
	// unsent bytes exceed it is closed as a slow consumer. Zero means 16 MiB.
	MaxOutboundBytes int
	// MaxHeaderBytes bounds an HTTP request head. Zero means 16 KiB.
	MaxHeaderBytes int
	// HTTPIdleTimeout closes a plain HTTP connection (keep-alive REST, or a request
	// head that has not completed) after this long without a whole request. Zero
	// means 2 minutes.
	HTTPIdleTimeout time.Duration
	// RecoveryWindow is how long a dropped reliable connection is kept for the client
	// to recover it (client-protocol.md §7.5). Zero means 30s.
	RecoveryWindow time.Duration
}

// Shutdown paces the drain that Server.Shutdown runs (operations.md §2).
type Shutdown struct {
	// DrainDelay is how long the server reports itself unready (/api/health 503) while
	// still accepting handshakes, so a balancer stops sending clients before the
	// listener stops. Zero means 5s; negative means no delay.
	DrainDelay time.Duration
	// CloseRatePerSecond caps how many WebSockets the drain closes per second, spread
	// evenly over time and loops, so clients do not reconnect elsewhere all in the
	// same second. Zero means 2000; negative means all at once.
	CloseRatePerSecond int
	// Timeout bounds the whole drain: whatever is left when it passes is cut and
	// Shutdown reports ErrDrainCut. Zero means 60s.
	Timeout time.Duration
}
