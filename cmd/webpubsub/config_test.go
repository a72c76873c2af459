package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webpubsub/webpubsub/engine"
)

const (
	testPrimary   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
	testSecondary = "SECONDARYKEY0123456789abcdefghijklmnopqrstu"
)

// exampleEnv sets the variables the config.md §3.1 example expands.
var exampleEnv = []string{
	"WPS_PRIMARY_KEY=" + testPrimary,
	"WPS_SECONDARY_KEY=" + testSecondary,
	"AUDIT_TOKEN=audit-secret",
	"HOME=/root",
}

// exampleConfig is what testdata/example-notls.yaml (config.md §3.1 without the TLS
// listener) means.
func exampleConfig() engine.Config {
	return engine.Config{
		Listen:         ":8080",
		PublicEndpoint: "https://wps.example.com",
		Keys:           engine.Keys{Primary: testPrimary, Secondary: testSecondary},
		Auth:           engine.Auth{ClockSkew: 300 * time.Second},
		Hubs: map[string]engine.HubSettings{
			"chat": {
				AnonymousConnectPolicy: "deny",
				KeepAliveInterval:      20 * time.Second,
				EventHandlers: []engine.EventHandler{
					{
						URLTemplate:      "http://app:3000/eventhandler/{event}",
						UserEventPattern: "*",
						SystemEvents:     []string{"connect", "connected", "disconnected"},
						Auth:             engine.UpstreamAuth{Type: "None"},
					},
					{
						URLTemplate:  "https://audit.internal/api/{hub}/{event}",
						SystemEvents: []string{"disconnected"},
						Auth: engine.UpstreamAuth{
							Type:                    "ManagedIdentity",
							ManagedIdentityResource: "api://audit",
							BearerToken:             "audit-secret",
						},
					},
				},
			},
		},
		DefaultHub: engine.HubSettings{AnonymousConnectPolicy: "deny", KeepAliveInterval: 20 * time.Second},
		Upstream: engine.Upstream{
			ValidationTimeout:       10 * time.Second,
			ValidationSuccessCache:  60 * time.Second,
			Timeout:                 100 * time.Second,
			RetryDelays:             []time.Duration{time.Second, 3 * time.Second, 5 * time.Second},
			MaxResponseBytes:        1048576,
			MaxConnectionStateBytes: 8192,
		},
		Limits: engine.Limits{MaxMessageBytes: 1048576, FilterMaxClauses: 100},
	}
}

func TestLoadConfigExample(t *testing.T) {
	cfg, info, err := loadConfig("testdata/example-notls.yaml", exampleEnv)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if want := exampleConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("config =\n%+v\nwant\n%+v", cfg, want)
	}
	if !info.KeyConfigured || info.TLSListeners != 0 || info.RequestOrigin != "" || len(info.Overrides) != 0 {
		t.Errorf("info = %+v", info)
	}
}

func TestLoadConfigExampleWithTLSListener(t *testing.T) {
	_, info, err := loadConfig("testdata/example.yaml", exampleEnv)
	if !errors.Is(err, errTLSListener) {
		t.Fatalf("err = %v, want errTLSListener", err)
	}
	assertOneLineNaming(t, err, "listen[1].tls")
	if info.TLSListeners != 1 {
		t.Errorf("TLSListeners = %d, want 1", info.TLSListeners)
	}
}

func TestLoadConfigExampleUnsetVariable(t *testing.T) {
	env := slices.DeleteFunc(slices.Clone(exampleEnv), func(kv string) bool { return strings.HasPrefix(kv, "WPS_SECONDARY_KEY=") })
	_, _, err := loadConfig("testdata/example-notls.yaml", env)
	assertOneLineNaming(t, err, "keys.secondary")
	assertContains(t, err, "WPS_SECONDARY_KEY")

	// An override replaces the unexpandable value before it is read.
	env = append(env, "WPS_KEYS__SECONDARY="+testSecondary)
	cfg, info, err := loadConfig("testdata/example-notls.yaml", env)
	if err != nil {
		t.Fatalf("with override: %v", err)
	}
	if cfg.Keys.Secondary != testSecondary || !slices.Equal(info.Overrides, []string{"WPS_KEYS__SECONDARY"}) {
		t.Errorf("secondary %q, overrides %q", cfg.Keys.Secondary, info.Overrides)
	}
}

func TestLoadConfigJSON(t *testing.T) {
	cfg, info, err := loadConfig("testdata/legacy.json", nil)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	want := engine.Config{
		Listen:         "127.0.0.1:8080",
		PublicEndpoint: "http://localhost:8080",
		BasePath:       "/webpubsub",
		Keys:           engine.Keys{Primary: testPrimary},
		Auth:           engine.Auth{ClockSkew: time.Minute, StrictAudienceHost: true},
		Hubs: map[string]engine.HubSettings{
			"chat": {
				AnonymousConnectPolicy: "allow",
				KeepAliveInterval:      5 * time.Second,
				EventHandlers: []engine.EventHandler{{
					URLTemplate:      "http://localhost:7071/events/{hub}/{event}?code=abc",
					UserEventPattern: "message,join",
					SystemEvents:     []string{"connect", "connected"},
					Auth:             engine.UpstreamAuth{Type: "None"},
				}},
			},
			"notify_v2": {},
		},
		Upstream: engine.Upstream{ValidationDisabled: true, RetryDelays: []time.Duration{}, Timeout: 2500 * time.Millisecond},
		Limits:   engine.Limits{MaxMessageBytes: 65536, MaxConnections: 1000, MaxOutboundBytes: 4 << 20, MaxHeaderBytes: 8192},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config =\n%+v\nwant\n%+v", cfg, want)
	}
	if !info.KeyConfigured || info.RequestOrigin != "localhost" {
		t.Errorf("info = %+v", info)
	}
}

func TestLoadConfigNoFile(t *testing.T) {
	cfg, info, err := loadConfig("", []string{"PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	want := engine.Config{}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config = %+v, want %+v", cfg, want)
	}
	if info.KeyConfigured || info.Path != "" {
		t.Errorf("info = %+v", info)
	}
}

func TestLoadConfigNoKey(t *testing.T) {
	path := writeConfig(t, "hubs:\n  chat: {anonymousConnectPolicy: allow}\n")
	cfg, info, err := loadConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.KeyConfigured || cfg.Keys != (engine.Keys{}) {
		t.Errorf("keys %+v, info %+v", cfg.Keys, info)
	}
}

func TestLoadConfigEnvOverrides(t *testing.T) {
	base := writeConfig(t, `
keys: {primary: "file-key"}
hubs:
  Chat:
    anonymousConnectPolicy: deny
    eventHandlers:
      - urlTemplate: "http://app/{event}"
        systemEvents: [connect]
`)
	cases := []struct {
		name  string
		env   []string
		check func(t *testing.T, cfg engine.Config)
	}{
		{"hub-policy", []string{"WPS_HUBS__CHAT__ANONYMOUSCONNECTPOLICY=allow"}, func(t *testing.T, cfg engine.Config) {
			if got := cfg.Hubs["chat"].AnonymousConnectPolicy; got != "allow" {
				t.Errorf("policy = %q", got)
			}
			if len(cfg.Hubs) != 1 {
				t.Errorf("hubs = %v, want only chat", cfg.Hubs)
			}
		}},
		{"new-hub", []string{"WPS_HUBS__Notify__WEBSOCKETKEEPALIVEINTERVALINSECONDS=7"}, func(t *testing.T, cfg engine.Config) {
			if got := cfg.Hubs["notify"].KeepAliveInterval; got != 7*time.Second {
				t.Errorf("keep-alive = %v", got)
			}
		}},
		{"key", []string{"WPS_KEYS__PRIMARY=env-key"}, func(t *testing.T, cfg engine.Config) {
			if cfg.Keys.Primary != "env-key" {
				t.Errorf("primary = %q", cfg.Keys.Primary)
			}
		}},
		{"limit-upper-snake", []string{"WPS_LIMITS__MAX_MESSAGE_BYTES=2048", "WPS_LIMITS__MAXCONNECTIONS=10"}, func(t *testing.T, cfg engine.Config) {
			if cfg.Limits.MaxMessageBytes != 2048 || cfg.Limits.MaxConnections != 10 {
				t.Errorf("limits = %+v", cfg.Limits)
			}
		}},
		{"handler-index", []string{"WPS_HUBS__CHAT__EVENTHANDLERS__0__SYSTEMEVENTS=connected,disconnected"}, func(t *testing.T, cfg engine.Config) {
			if got := cfg.Hubs["chat"].EventHandlers[0].SystemEvents; !slices.Equal(got, []string{"connected", "disconnected"}) {
				t.Errorf("systemEvents = %q", got)
			}
		}},
		{"handler-append", []string{"WPS_HUBS__CHAT__EVENTHANDLERS__1__URLTEMPLATE=https://audit/{hub}"}, func(t *testing.T, cfg engine.Config) {
			hs := cfg.Hubs["chat"].EventHandlers
			if len(hs) != 2 || hs[1].URLTemplate != "https://audit/{hub}" {
				t.Errorf("handlers = %+v", hs)
			}
		}},
		{"handlers-flow", []string{`WPS_DEFAULTHUB__EVENTHANDLERS=[{"urlTemplate":"http://x/{event}","userEventPattern":"*"}]`}, func(t *testing.T, cfg engine.Config) {
			hs := cfg.DefaultHub.EventHandlers
			if len(hs) != 1 || hs[0].URLTemplate != "http://x/{event}" || hs[0].UserEventPattern != "*" {
				t.Errorf("handlers = %+v", hs)
			}
		}},
		{"listen-shorthand", []string{"WPS_LISTEN=:9090"}, func(t *testing.T, cfg engine.Config) {
			if cfg.Listen != ":9090" {
				t.Errorf("listen = %q", cfg.Listen)
			}
		}},
		{"upstream-durations", []string{"WPS_UPSTREAM__RETRY__DELAYSSECONDS=0.5,2", "WPS_UPSTREAM__VALIDATION__ENABLED=false"}, func(t *testing.T, cfg engine.Config) {
			if !slices.Equal(cfg.Upstream.RetryDelays, []time.Duration{500 * time.Millisecond, 2 * time.Second}) || !cfg.Upstream.ValidationDisabled {
				t.Errorf("upstream = %+v", cfg.Upstream)
			}
		}},
		{"admin", []string{"WPS_ADMIN__ADDRESS=127.0.0.1:9090", "WPS_ADMIN__PPROF=true"}, func(t *testing.T, cfg engine.Config) {
			if cfg.Admin != (engine.Admin{Address: "127.0.0.1:9090", Pprof: true}) {
				t.Errorf("admin = %+v", cfg.Admin)
			}
		}},
		{"shutdown", []string{"WPS_SHUTDOWN__DRAIN_DELAY_SECONDS=0", "WPS_SHUTDOWN__CLOSERATEPERSECOND=500", "WPS_SHUTDOWN__TIMEOUTSECONDS=2.5"}, func(t *testing.T, cfg engine.Config) {
			want := engine.Shutdown{DrainDelay: -1, CloseRatePerSecond: 500, Timeout: 2500 * time.Millisecond}
			if cfg.Shutdown != want {
				t.Errorf("shutdown = %+v, want %+v", cfg.Shutdown, want)
			}
		}},
		{"unrelated-wps-variable", []string{"WPS_PRIMARY_KEY=x", "WPS_DEV=1"}, func(t *testing.T, cfg engine.Config) {
			if cfg.Keys.Primary != "file-key" {
				t.Errorf("primary = %q", cfg.Keys.Primary)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := loadConfig(base, tc.env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestLoadConfigEnvOverrideErrors(t *testing.T) {
	cases := []struct {
		name string
		env  string
		want string
	}{
		{"bad-int", "WPS_LIMITS__MAXMESSAGEBYTES=big", "limits.maxMessageBytes"},
		{"names-variable", "WPS_LIMITS__MAXMESSAGEBYTES=-1", "WPS_LIMITS__MAXMESSAGEBYTES"},
		{"shutdown-rate", "WPS_SHUTDOWN__CLOSERATEPERSECOND=fast", "shutdown.closeRatePerSecond: must be an integer (from WPS_SHUTDOWN__CLOSERATEPERSECOND)"},
		{"unknown-top", "WPS_LIMTS__MAXMESSAGEBYTES=1", "WPS_LIMTS__MAXMESSAGEBYTES"},
		{"unknown-leaf", "WPS_LIMITS__MAXMESAGEBYTES=1", `unknown key "limits.MAXMESAGEBYTES" (from WPS_LIMITS__MAXMESAGEBYTES)`},
		{"bad-policy", "WPS_HUBS__CHAT__ANONYMOUSCONNECTPOLICY=maybe", "hubs.CHAT.anonymousConnectPolicy"},
		{"bad-index", "WPS_LISTEN__3__ADDRESS=:1", "WPS_LISTEN__3__ADDRESS"},
		{"below-scalar", "WPS_KEYS__PRIMARY__X=1", "WPS_KEYS__PRIMARY__X"},
	}
	base := writeConfig(t, "keys: {primary: k}\n")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadConfig(base, []string{tc.env})
			assertOneLineNaming(t, err, tc.want)
		})
	}
}

func TestLoadConfigExpansion(t *testing.T) {
	path := writeConfig(t, `
keys:
  primary: "${KEY}"
  secondary: "${NOPE:-fallback}"
endpoint:
  public: "https://${HOST}:${PORT:-8443}"
hubs:
  chat:
    eventHandlers:
      - urlTemplate: "http://app/$${literal}/{event}"
        auth: {type: ManagedIdentity, bearerToken: "Bearer-${TOKEN}"}
`)
	cfg, _, err := loadConfig(path, []string{"KEY=k1", "HOST=wps.example.com", "TOKEN=t0k"})
	if err == nil {
		t.Fatal("want an error for the literal ${literal} placeholder")
	}
	assertOneLineNaming(t, err, "hubs.chat.eventHandlers[0].urlTemplate")

	path = writeConfig(t, strings.Replace(mustRead(t, path), "$${literal}/", "", 1))
	cfg, _, err = loadConfig(path, []string{"KEY=k1", "HOST=wps.example.com", "TOKEN=t0k"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Keys.Primary != "k1" || cfg.Keys.Secondary != "fallback" || cfg.PublicEndpoint != "https://wps.example.com:8443" {
		t.Errorf("keys %+v, public %q", cfg.Keys, cfg.PublicEndpoint)
	}
	if got := cfg.Hubs["chat"].EventHandlers[0].Auth.BearerToken; got != "Bearer-t0k" {
		t.Errorf("bearerToken = %q", got)
	}

	for name, tc := range map[string]struct{ text, want string }{
		"unterminated": {`endpoint: {public: "${HOST"}`, "endpoint.public"},
		"bad-name":     {`endpoint: {basePath: "${1X}"}`, "endpoint.basePath"},
		"unset":        {`keys: {primary: "${UNSET_VAR}"}`, "UNSET_VAR"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := loadConfig(writeConfig(t, tc.text), nil)
			assertOneLineNaming(t, err, tc.want)
		})
	}
	// $${ survives as a literal ${ in fields that allow it.
	cfg, _, err = loadConfig(writeConfig(t, `keys: {primary: "a$${b}"}`), nil)
	if err != nil || cfg.Keys.Primary != "a${b}" {
		t.Errorf("literal: primary %q, err %v", cfg.Keys.Primary, err)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	handler := func(fields string) string {
		return "hubs:\n  chat:\n    eventHandlers:\n      - " + fields + "\n"
	}
	cases := []struct {
		name, text, want string
	}{
		{"unknown-top", "limts: {}", `unknown key "limts"`},
		{"unknown-hub-key", "hubs: {chat: {anonymousConectPolicy: allow}}", `unknown key "hubs.chat.anonymousConectPolicy"`},
		{"unknown-handler-key", handler(`{urlTemplate: "http://a/{event}", systemEvent: [connect]}`), `unknown key "hubs.chat.eventHandlers[0].systemEvent"`},
		{"unknown-nested", "upstream: {retry: {delays: [1]}}", `unknown key "upstream.retry.delays"`},
		{"duplicate-case", "keys: {primary: a, Primary: b}", "keys.primary"},
		{"yaml-syntax", "keys: [a\n", "invalid YAML"},
		{"yaml-duplicate", "keys: {}\nkeys: {}\n", "invalid YAML"},
		{"yaml-two-docs", "keys: {}\n---\nlimits: {}\n", "more than one document"},
		{"json-syntax", `{"keys": }`, "invalid JSON"},
		{"json-trailing", `{"keys": {}} {}`, "invalid JSON"},
		{"top-list", "- a\n", "top level"},
		{"hub-name", "hubs: {1chat: {}}", "hubs.1chat"},
		{"hub-name-char", "hubs: {'chat-room': {}}", "hubs.chat-room"},
		{"hub-name-long", "hubs: {a" + strings.Repeat("b", 128) + ": {}}", "invalid hub name"},
		{"hub-twice", "hubs: {chat: {}, Chat: {}}", "hubs.chat"},
		{"policy", "hubs: {chat: {anonymousConnectPolicy: maybe}}", "hubs.chat.anonymousConnectPolicy"},
		{"keepalive-0", "hubs: {chat: {webSocketKeepAliveIntervalInSeconds: 0}}", "hubs.chat.webSocketKeepAliveIntervalInSeconds"},
		{"keepalive-121", "defaultHub: {webSocketKeepAliveIntervalInSeconds: 121}", "defaultHub.webSocketKeepAliveIntervalInSeconds"},
		{"keepalive-float", "defaultHub: {webSocketKeepAliveIntervalInSeconds: 1.5}", "defaultHub.webSocketKeepAliveIntervalInSeconds"},
		{"listeners", "hubs: {chat: {eventListeners: [{filter: {}}]}}", "eventListeners are not supported by this server"},
		{"url-required", handler(`{systemEvents: [connect]}`), "hubs.chat.eventHandlers[0].urlTemplate"},
		{"url-scheme", handler(`{urlTemplate: "ftp://a/{event}"}`), "hubs.chat.eventHandlers[0].urlTemplate"},
		{"url-relative", handler(`{urlTemplate: "/api/{event}"}`), "hubs.chat.eventHandlers[0].urlTemplate"},
		{"url-host-placeholder", handler(`{urlTemplate: "http://{hub}.app/{event}"}`), "placeholders are not allowed in the host"},
		{"url-keyvault", handler(`{urlTemplate: "https://app/api?code={@Microsoft.KeyVault(SecretUri=https://kv/secrets/s)}"}`), "key vault"},
		{"url-tunnel", handler(`{urlTemplate: "tunnel:///api/{event}"}`), "tunnel:"},
		{"url-unknown-placeholder", handler(`{urlTemplate: "http://a/{user}"}`), "{user}"},
		{"url-unbalanced", handler(`{urlTemplate: "http://a/{event"}`), "hubs.chat.eventHandlers[0].urlTemplate"},
		{"url-no-host", handler(`{urlTemplate: "http:///x"}`), "hubs.chat.eventHandlers[0].urlTemplate"},
		{"pattern-empty-item", handler(`{urlTemplate: "http://a/{event}", userEventPattern: "a,,b"}`), "hubs.chat.eventHandlers[0].userEventPattern"},
		{"pattern-star-in-list", handler(`{urlTemplate: "http://a/{event}", userEventPattern: "a,*"}`), "hubs.chat.eventHandlers[0].userEventPattern"},
		{"system-event", handler(`{urlTemplate: "http://a/{event}", systemEvents: [connect, disconnect]}`), "hubs.chat.eventHandlers[0].systemEvents"},
		{"system-event-legacy", handler(`{urlTemplate: "http://a/{event}", systemEventPattern: "connect,message"}`), "hubs.chat.eventHandlers[0].systemEventPattern"},
		{"system-event-both", handler(`{urlTemplate: "http://a/{event}", systemEvents: [connect], systemEventPattern: connect}`), "systemEventPattern"},
		{"auth-type", handler(`{urlTemplate: "http://a/{event}", auth: {type: Basic}}`), "hubs.chat.eventHandlers[0].auth.type"},
		{"auth-mi-no-token", handler(`{urlTemplate: "http://a/{event}", auth: {type: ManagedIdentity, managedIdentity: {resource: "api://x"}}}`), "hubs.chat.eventHandlers[0].auth.bearerToken"},
		{"auth-token-without-mi", handler(`{urlTemplate: "http://a/{event}", auth: {bearerToken: t}}`), "hubs.chat.eventHandlers[0].auth.type"},
		{"auth-unknown", handler(`{urlTemplate: "http://a/{event}", auth: {type: None, token: t}}`), `"hubs.chat.eventHandlers[0].auth.token"`},
		{"group-presence", handler(`{urlTemplate: "http://a/{event}", groupPresenceEvents: {eventNames: [joined]}}`), "hubs.chat.eventHandlers[0].groupPresenceEvents"},
		{"handlers-not-list", "hubs: {chat: {eventHandlers: {urlTemplate: x}}}", "hubs.chat.eventHandlers"},
		{"listen-two", "listen: [{address: ':1'}, {address: ':2'}]", "listen"},
		{"listen-tls", "listen: [{address: ':8443', tls: {certFile: a}}]", "listen[0].tls"},
		{"listen-address", "listen: [{address: 'nohost'}]", "listen[0].address"},
		{"listen-port", "listen: [{address: ':99999'}]", "listen[0].address"},
		{"listen-unknown", "listen: [{addr: ':1'}]", `"listen[0].addr"`},
		{"limit-negative", "limits: {maxConnections: -1}", "limits.maxConnections"},
		{"limit-string", "limits: {maxMessageBytes: lots}", "limits.maxMessageBytes"},
		{"limit-list", "limits: {filterMaxClauses: [1]}", "limits.filterMaxClauses"},
		{"upstream-timeout", "upstream: {timeoutSeconds: -1}", "upstream.timeoutSeconds"},
		{"upstream-retry", "upstream: {retry: {delaysSeconds: [1, x]}}", "upstream.retry.delaysSeconds[1]"},
		{"upstream-validation", "upstream: {validation: {enabled: sometimes}}", "upstream.validation.enabled"},
		{"admin-address", "admin: {address: 'nohost'}", "admin.address"},
		{"admin-port", "admin: {address: ':70000'}", "admin.address"},
		{"admin-pprof", "admin: {pprof: sometimes}", "admin.pprof"},
		{"admin-unknown", "admin: {metrics: true}", `unknown key "admin.metrics"`},
		{"admin-scalar", "admin: ':9090'", "admin"},
		{"skew-negative", "auth: {clockSkewSeconds: -5}", "auth.clockSkewSeconds"},
		{"strict-not-bool", "auth: {strictAudienceHost: 3}", "auth.strictAudienceHost"},
		{"entra", "auth: {entra: {enabled: true}}", "auth.entra.enabled"},
		{"strict-without-public", "auth: {strictAudienceHost: true}", "auth.strictAudienceHost"},
		{"entra-unknown", "auth: {entra: {tenant: x}}", `"auth.entra.tenant"`},
		{"base-path-slash", "endpoint: {basePath: '/wps/'}", "endpoint.basePath"},
		{"base-path-relative", "endpoint: {basePath: 'wps'}", "endpoint.basePath"},
		{"base-path-root", "endpoint: {basePath: '/'}", "endpoint.basePath"},
		{"public-scheme", "endpoint: {public: 'ws://h'}", "endpoint.public"},
		{"public-query", "endpoint: {public: 'https://h/?a=1'}", "endpoint.public"},
		{"request-origin", "endpoint: {requestOrigin: 'https://h/'}", "endpoint.requestOrigin"},
		{"key-semicolon", "keys: {primary: 'a;b'}", "keys.primary"},
		{"key-space", "keys: {primary: ' ab'}", "keys.primary"},
		{"key-control", "keys: {primary: \"a\\tb\"}", "keys.primary"},
		{"key-secondary-only", "keys: {secondary: abc}", "keys.primary"},
		{"section-scalar", "auth: yes", "auth"},
		{"log-format", "log: {format: xml}", "log.format: must be text or json"},
		{"log-level", "log: {level: verbose}", "log.level: must be debug, info, warn or error"},
		{"log-unknown", "log: {colour: red}", `unknown key "log.colour"`},
		{"log-scalar", "log: debug", "log"},
		{"shutdown-unknown", "shutdown: {drainDelay: 5}", `unknown key "shutdown.drainDelay"`},
		{"shutdown-delay-negative", "shutdown: {drainDelaySeconds: -1}", "shutdown.drainDelaySeconds"},
		{"shutdown-rate-negative", "shutdown: {closeRatePerSecond: -5}", "shutdown.closeRatePerSecond"},
		{"shutdown-rate-float", "shutdown: {closeRatePerSecond: 1.5}", "shutdown.closeRatePerSecond"},
		{"shutdown-timeout-zero", "shutdown: {timeoutSeconds: 0}", "shutdown.timeoutSeconds"},
		{"shutdown-scalar", "shutdown: now", "shutdown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadConfig(writeConfig(t, tc.text), nil)
			assertOneLineNaming(t, err, tc.want)
		})
	}
}

// TestLoadConfigShutdown maps the shutdown keys (operations.md §2) onto engine.Shutdown:
// absent keys leave the engine's defaults, and an explicit 0 delay or rate (none, all
// at once) becomes negative, because zero means the default there.
func TestLoadConfigShutdown(t *testing.T) {
	cases := []struct {
		name, text string
		want       engine.Shutdown
	}{
		{"absent", "keys: {primary: k}\n", engine.Shutdown{}},
		{"empty", "keys: {primary: k}\nshutdown: {}\n", engine.Shutdown{}},
		{"values", "keys: {primary: k}\nshutdown: {drainDelaySeconds: 5, closeRatePerSecond: 2000, timeoutSeconds: 60}\n",
			engine.Shutdown{DrainDelay: 5 * time.Second, CloseRatePerSecond: 2000, Timeout: time.Minute}},
		{"zeros", "keys: {primary: k}\nshutdown: {drainDelaySeconds: 0, closeRatePerSecond: 0}\n",
			engine.Shutdown{DrainDelay: -1, CloseRatePerSecond: -1}},
		{"fraction", "keys: {primary: k}\nshutdown: {drain_delay_seconds: 0.25}\n", engine.Shutdown{DrainDelay: 250 * time.Millisecond}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := loadConfig(writeConfig(t, tc.text), nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Shutdown != tc.want {
				t.Errorf("shutdown = %+v, want %+v", cfg.Shutdown, tc.want)
			}
		})
	}
}

func TestLoadConfigSecretsNotEchoed(t *testing.T) {
	for _, text := range []string{
		"keys: {primary: 'secret-value;x'}",
		"hubs: {chat: {eventHandlers: [{urlTemplate: 'ftp://h/?code=secret-value'}]}}",
		"hubs: {chat: {eventHandlers: [{urlTemplate: 'http://h/', auth: {type: ManagedIdentity, bearerToken: ' secret-value'}}]}}",
	} {
		_, _, err := loadConfig(writeConfig(t, text), nil)
		if err == nil || strings.Contains(err.Error(), "secret-value") {
			t.Errorf("%s: err = %v", text, err)
		}
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, _, err := loadConfig(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
	assertOneLineNaming(t, err, "nope.yaml")
}

func TestLoadConfigEmptyFile(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "{}", "\xef\xbb\xbf{}"} {
		if _, _, err := loadConfig(writeConfig(t, text), nil); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// assertOneLineNaming checks that err is a one-line config error containing want.
func assertOneLineNaming(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want an error naming %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "config: ") || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one config line: %q", msg)
	}
	assertContains(t, err, want)
}

func assertContains(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
}
