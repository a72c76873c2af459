package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// upstreamPathPrefix is the path of every URL the built-in upstream serves:
// /upstream/{hub}/{event}.
const upstreamPathPrefix = "/upstream/"

// CloudEvents types of the Web PubSub events (upstream-protocol.md §2).
var (
	ceTypeConnect      = []byte("azure.webpubsub.sys.connect")
	ceTypeConnected    = []byte("azure.webpubsub.sys.connected")
	ceTypeDisconnected = []byte("azure.webpubsub.sys.disconnected")
	ceTypeUserPrefix   = []byte("azure.webpubsub.user.")
	textPlain          = []byte("text/plain")
)

// ceRequired are the headers every event request carries (upstream-protocol.md §3).
var ceRequired = []string{"ce-specversion", "ce-awpsversion", "ce-type", "ce-source", "ce-id", "ce-time", "ce-hub", "ce-connectionId", "ce-eventName", "WebHook-Request-Origin"}

// upstream is the echo scenario's built-in event handler, a fasthttp server in the parent
// process: it passes the abuse-protection check, accepts connect, connected and
// disconnected at once, and answers every user event with its own body as text/plain,
// after Delay. It counts what it is sent and checks the CloudEvents headers, so a server
// that sends something else shows up in the result. Safe for concurrent use.
type upstream struct {
	hub   string
	delay time.Duration
	ln    net.Listener
	srv   *fasthttp.Server
	done  chan struct{} // closed when Serve returns
	conns sync.Map      // net.Conn → struct{}: open connections, closed by close

	validations, connects, connecteds, disconnecteds atomic.Int64
	messages, otherEvents                            atomic.Int64 // user events named message, and any other name
	malformed                                        atomic.Int64 // a POST missing a ce-* header of §3, or for another hub
	wrongType                                        atomic.Int64 // a message whose Content-Type is not text/plain
	unexpected                                       atomic.Int64 // another method, path or ce-type
	inFlight                                         atomic.Int64 // user events being answered now
	inbound                                          Histogram    // client send stamp to the handler reading the event
}

// startUpstream listens on addr (host:port; port 0 picks one) and serves the events of hub.
func startUpstream(addr, hub string, delay time.Duration) (*upstream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: built-in upstream on %s: %w (pick another --upstream-listen, and the same one in the server's config)", addr, err)
	}
	u := &upstream{hub: hub, delay: delay, ln: ln, done: make(chan struct{})}
	u.srv = &fasthttp.Server{
		Handler:               u.handle,
		Name:                  "webpubsub-bench-upstream",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		NoDefaultContentType:  true,
		// A server keeps a pool of connections to its upstream; idle ones close after this.
		IdleTimeout:        time.Minute,
		ReadTimeout:        time.Minute + delay,
		MaxRequestBodySize: 2 << 20,
		Concurrency:        1 << 20,
		Logger:             discardLogger{},
		ConnState: func(c net.Conn, st fasthttp.ConnState) {
			switch st {
			case fasthttp.StateNew:
				u.conns.Store(c, struct{}{})
			case fasthttp.StateClosed, fasthttp.StateHijacked:
				u.conns.Delete(c)
			}
		},
	}
	go func() {
		defer close(u.done)
		_ = u.srv.Serve(ln)
	}()
	return u, nil
}

// URLTemplate is the urlTemplate of the event handler a server needs for this upstream.
func (u *upstream) URLTemplate() string {
	return "http://" + u.ln.Addr().String() + upstreamPathPrefix + "{hub}/{event}"
}

// close stops the upstream, waiting at most wait for requests in progress; connections
// still open then are closed, so a closed upstream answers nothing more.
func (u *upstream) close(wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = u.srv.ShutdownWithContext(ctx)
	_ = u.ln.Close()
	u.conns.Range(func(c, _ any) bool {
		_ = c.(net.Conn).Close()
		return true
	})
	select {
	case <-u.done:
	case <-ctx.Done():
	}
}

func (u *upstream) handle(ctx *fasthttp.RequestCtx) {
	if !bytes.HasPrefix(ctx.Path(), []byte(upstreamPathPrefix)) {
		u.unexpected.Add(1)
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	switch {
	case ctx.IsOptions():
		// Abuse protection (upstream-protocol.md §9): any origin is allowed.
		u.validations.Add(1)
		ctx.Response.Header.Set("WebHook-Allowed-Origin", "*")
		ctx.SetStatusCode(fasthttp.StatusOK)
		return
	case !ctx.IsPost():
		u.unexpected.Add(1)
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	h := &ctx.Request.Header
	if !u.wellFormed(h) {
		u.malformed.Add(1)
	}
	typ := h.Peek("ce-type")
	switch {
	case bytes.Equal(typ, ceTypeConnect):
		u.connects.Add(1)
		ctx.SetStatusCode(fasthttp.StatusNoContent) // §4.2: accept, token defaults unchanged
	case bytes.Equal(typ, ceTypeConnected):
		u.connecteds.Add(1)
		ctx.SetStatusCode(fasthttp.StatusOK)
	case bytes.Equal(typ, ceTypeDisconnected):
		u.disconnecteds.Add(1)
		ctx.SetStatusCode(fasthttp.StatusOK)
	case bytes.HasPrefix(typ, ceTypeUserPrefix):
		u.userEvent(ctx, typ[len(ceTypeUserPrefix):])
	default:
		u.unexpected.Add(1)
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
	}
}

// wellFormed checks the headers every event request carries and the hub.
func (u *upstream) wellFormed(h *fasthttp.RequestHeader) bool {
	for _, k := range ceRequired {
		if len(h.Peek(k)) == 0 {
			return false
		}
	}
	return strings.EqualFold(string(h.Peek("ce-hub")), u.hub)
}

// userEvent answers a user event with its own body (upstream-protocol.md §6.2: a 2xx
// text/plain body goes back to the plain client as one text frame).
func (u *upstream) userEvent(ctx *fasthttp.RequestCtx, name []byte) {
	now := time.Now().UnixNano()
	u.inFlight.Add(1)
	defer u.inFlight.Add(-1)
	if string(name) == "message" {
		u.messages.Add(1)
	} else {
		u.otherEvents.Add(1)
	}
	// §6.1: a plain client's text message arrives as text/plain (a charset may follow).
	ct, _, _ := bytes.Cut(ctx.Request.Header.ContentType(), []byte(";"))
	if !bytes.EqualFold(bytes.TrimSpace(ct), textPlain) {
		u.wrongType.Add(1)
	}
	body := ctx.PostBody()
	if ts, _, _, ok := parseEchoPayload(body); ok {
		u.inbound.Record(time.Duration(now - ts))
	}
	if u.delay > 0 {
		time.Sleep(u.delay)
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/plain")
	ctx.SetBody(body)
}

// status is the upstream's part of the progress line.
func (u *upstream) status() string {
	return fmt.Sprintf("upstream: messages %d in flight %d connected %d disconnected %d",
		u.messages.Load(), u.inFlight.Load(), u.connecteds.Load(), u.disconnecteds.Load())
}

// EchoServerConfig returns the configuration file (YAML) a server needs for `bench echo`
// on hub with its built-in upstream listening on upstreamListen (host:port, a fixed port):
// one event handler that sends every user event and connected and disconnected there.
func EchoServerConfig(hub, upstreamListen string) (string, error) {
	if hub == "" {
		hub = "bench"
	}
	host, port, err := net.SplitHostPort(upstreamListen)
	if err != nil {
		return "", fmt.Errorf("%w: upstream address %q: %v", ErrConfig, upstreamListen, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("%w: upstream address %q: the server's config needs a fixed port, not %q", ErrConfig, upstreamListen, port)
	}
	if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		host = "127.0.0.1" // the server dials the upstream; a wildcard listen is reached on loopback
	}
	if strings.ContainsAny(hub, "\"\\\n\r") {
		return "", fmt.Errorf("%w: hub name %q has quotes or line breaks", ErrConfig, hub)
	}
	tmpl := "http://" + net.JoinHostPort(host, port) + upstreamPathPrefix + "{hub}/{event}"
	return "# Server configuration for `webpubsub bench echo --hub " + hub + " --upstream-listen " + upstreamListen + "`:\n" +
		"# start the server with --config FILE, then run the bench.\n" +
		"hubs:\n" +
		"  \"" + hub + "\":\n" +
		"    eventHandlers:\n" +
		"      - urlTemplate: \"" + tmpl + "\"\n" +
		"        userEventPattern: \"*\"\n" +
		"        systemEvents: [connected, disconnected]\n", nil
}
