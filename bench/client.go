package bench

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/webpubsub/webpubsub/wsproto"
)

// JSONProtocol is the subprotocol the bench clients offer unless Options.Protocol says
// otherwise.
const JSONProtocol = "json.webpubsub.azure.v1"

// maxFrameBytes bounds a server frame the client accepts (the service limit is 1 MiB).
const maxFrameBytes = 1 << 20

// maxResponseHeadBytes bounds the upgrade response head (status line and headers).
const maxResponseHeadBytes = 8 << 10

// Failure kinds are the keys of Result.Failures.
const (
	failNotAttempted  = "not-attempted"
	failDialTimeout   = "dial-timeout"
	failDialRefused   = "dial-refused"
	failDialAddr      = "dial-no-address" // EADDRNOTAVAIL / EADDRINUSE: out of source ports
	failDialFiles     = "dial-too-many-files"
	failDial          = "dial-other"
	failEnroll        = "enroll-error"
	failHSTimeout     = "handshake-timeout"
	failHSEOF         = "handshake-eof"
	failHSReset       = "handshake-reset"
	failHSBad         = "handshake-bad-response"
	failFirstFrame    = "connected-missing"
	failClosedEarly   = "closed-before-connected"
	failDropped       = "dropped"
	failProtocol      = "protocol-error"
	failHTTPStatusFmt = "handshake-http-%d"
)

func dialKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return failDialRefused
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return failDialAddr
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return failDialFiles
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return failDialTimeout
	}
	return failDial
}

// closeKind names an OnClose error for a connection that had not finished (prefix
// "handshake") or had been up (prefix "dropped").
func closeKind(prefix string, err error) string {
	switch {
	case err == nil:
		return prefix + "-closed"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return prefix + "-reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return failDialFiles
	}
	return prefix + "-eof"
}

// dialer opens TCP connections to one address, spreading source addresses over a list so
// that a loopback run is not limited by one address's ephemeral ports.
type dialer struct {
	addr    string
	sources []net.IP // empty: let the kernel choose
}

// newDialer spreads source addresses over 127.0.0.1–127.0.0.<loopbackSources> when addr is
// an IPv4 loopback address and loopbackSources > 0.
func newDialer(addr string, loopbackSources int) (*dialer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := &dialer{addr: addr}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() {
		for i := 1; i <= min(loopbackSources, 254); i++ {
			d.sources = append(d.sources, net.IPv4(127, 0, 0, byte(i)))
		}
	}
	return d, nil
}

// dial connects as client number i (a global index, so that workers spread too).
func (d *dialer) dial(ctx context.Context, i int, timeout time.Duration) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout}
	if len(d.sources) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.sources[i%len(d.sources)]}
	}
	return nd.DialContext(ctx, "tcp", d.addr)
}

// Client states. A client moves forward only; the transition out of stateHandshaking is
// a compare-and-swap, so the loop (connected or closed) and the timeout sweeper agree on
// who settles it.
const (
	stateDialing int32 = iota
	stateHandshaking
	stateUp
	stateDone
)

// client is one WebSocket connection on a gnet loop. The loop that owns its gnet.Conn is
// the only one to touch the fields marked "loop"; the others are atomics or are written
// before the connection is enrolled.
type client struct {
	f     *fleet
	idx   int    // global index: user bench-<idx>
	group string // joined at connect through the token; "" for none
	// unselected: the filter of the fanout's sends is not true for this client, so it
	// expects none of them. Written before the fleet opens.
	unselected bool

	state      atomic.Int32
	deadlineNs atomic.Int64 // unix ns; the sweeper fails a handshake still running then
	conn       atomic.Pointer[gconn]
	dialedAt   time.Time // written before enrolling
	req        []byte    // upgrade request, written before enrolling; loop: dropped in OnOpen
	accept     string    // expected Sec-WebSocket-Accept, written before enrolling

	upgraded  bool          // loop: the 101 response was read
	failKind  string        // loop: why the loop closed it, for OnClose
	closeCode ws.StatusCode // loop: the code of the server's close frame, 0 before one

	received atomic.Int64 // bench-stamped messages after connected; read by the worker
	acked    atomic.Int64 // sendToGroup acks with success; read by the worker
	sent     int          // publisher goroutine only: sendToGroup messages written
	sentAtNs []int64      // unix ns of send ackId-1; written by the publisher before the AsyncWrite, read by the loop on the ack

	// Reliable subprotocols (client-protocol.md §7.2, §7.3).
	seqSeen  atomic.Uint64 // highest sequenceId received; written by the loop, read by the acker
	seqAcked atomic.Uint64 // highest sequenceId acknowledged; raised by the loop or the acker
}

// gconn boxes a gnet.Conn for atomic.Pointer.
type gconn struct{ gnet.Conn }

// upgradeRequest returns the GET request for target, offering subprotocol unless it is
// empty (a plain WebSocket client), and the Sec-WebSocket-Accept the server must answer
// with (RFC 6455 §4.1, §4.2.2).
func upgradeRequest(host, target, subprotocol string) (req []byte, accept string) {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(key[8:], rand.Uint64())
	nonce := base64.StdEncoding.EncodeToString(key[:])
	req = make([]byte, 0, 200+len(target))
	req = append(req, "GET "...)
	req = append(req, target...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	req = append(req, nonce...)
	if subprotocol != "" {
		req = append(req, "\r\nSec-WebSocket-Protocol: "...)
		req = append(req, subprotocol...)
	}
	req = append(req, "\r\n\r\n"...)
	sum := sha1.Sum([]byte(nonce + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return req, base64.StdEncoding.EncodeToString(sum[:])
}

// checkUpgradeResponse parses the response head (without the final blank line's CRLF
// pair) and returns "" or the failure kind. subprotocol is the one offered: the server
// must select it, or none when none was offered (RFC 6455 §4.1: a subprotocol the client
// did not offer fails the connection).
func checkUpgradeResponse(head []byte, accept, subprotocol string) string {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	// RFC 6455 §4.2.2: "HTTP/1.1 101 Switching Protocols".
	proto, after, _ := bytes.Cut(line, []byte(" "))
	code, _, _ := bytes.Cut(after, []byte(" "))
	status, err := strconv.Atoi(string(code))
	if !bytes.HasPrefix(proto, []byte("HTTP/1.")) || err != nil {
		return failHSBad
	}
	if status != 101 {
		return fmt.Sprintf(failHTTPStatusFmt, status)
	}
	var gotAccept, gotProtocol []byte
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Sec-WebSocket-Accept")):
			gotAccept = v
		case bytes.EqualFold(k, []byte("Sec-WebSocket-Protocol")):
			gotProtocol = v
		}
	}
	if string(gotAccept) != accept || string(gotProtocol) != subprotocol {
		return failHSBad
	}
	return ""
}

// closeFrame is the masked close frame (status 1000) every client sends when the bench
// stops. The mask is fixed: masking defends against cache poisoning, not against a server
// under test.
var closeFrame = wsproto.AppendMaskedFrame(nil, true, ws.OpClose, [4]byte{0x5a, 0xa5, 0x3c, 0xc3}, []byte{0x03, 0xe8})

// appendMasked appends a masked client frame with a random mask (RFC 6455 §5.3).
func appendMasked(dst []byte, op ws.OpCode, payload []byte) []byte {
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	return wsproto.AppendMaskedFrame(dst, true, op, mask, payload)
}

// isConnected reports whether payload is the connected event of subprotocol p.
func isConnected(p protocol, payload []byte) bool {
	if p.protobuf {
		return isPBConnected(payload)
	}
	return bytes.Contains(payload, []byte(`"type":"system"`)) && bytes.Contains(payload, []byte(`"event":"connected"`))
}

// handler is the gnet event handler of a fleet: it runs the client side of the handshake
// and reads frames, all without blocking, on the loop that owns each connection.
type handler struct {
	gnet.BuiltinEventEngine
	f *fleet
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	cl := c.Context().(*client)
	cl.conn.Store(&gconn{c})
	req := cl.req
	cl.req = nil
	return req, gnet.None
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	cl, ok := c.Context().(*client)
	if !ok {
		return gnet.None
	}
	h.f.closed(cl, err)
	return gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	cl := c.Context().(*client)
	buf, _ := c.Peek(-1)
	off := 0
	if !cl.upgraded {
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(buf) > maxResponseHeadBytes {
				cl.failKind = failHSBad
				return gnet.Close
			}
			return gnet.None
		}
		if kind := checkUpgradeResponse(buf[:end], cl.accept, h.f.subprotocol()); kind != "" {
			cl.failKind = kind
			return gnet.Close
		}
		cl.upgraded = true
		off = end + 4
		// A plain client gets no connected event (client-protocol: system messages belong
		// to the subprotocols): the 101 is the end of its handshake.
		if h.f.cfg.plain && !h.f.connectedLoop(cl) {
			return gnet.Close // the sweeper timed it out first
		}
	}
	action := gnet.None
	for action == gnet.None {
		fr, n, err := parseServerFrame(buf[off:], maxFrameBytes)
		if errors.Is(err, errNeedMore) {
			break
		}
		if err != nil {
			cl.failKind = failProtocol
			return gnet.Close
		}
		off += n
		action = h.frame(c, cl, fr)
	}
	if off > 0 { // gnet: Discard(0) discards everything
		_, _ = c.Discard(off)
	}
	return action
}

// frame handles one server frame; its payload is valid only during the call.
func (h *handler) frame(c gnet.Conn, cl *client, fr serverFrame) gnet.Action {
	switch fr.op {
	case ws.OpText, ws.OpBinary:
		if !fr.fin {
			cl.failKind = failProtocol // the server sends whole messages; fragments are a surprise
			return gnet.Close
		}
		if cl.state.Load() != stateUp {
			if !isConnected(h.f.cfg.proto, fr.payload) {
				cl.failKind = failFirstFrame
				return gnet.Close
			}
			if !h.f.connectedLoop(cl) {
				return gnet.Close // the sweeper timed it out first
			}
			return gnet.None
		}
		if h.f.cfg.onMessage != nil {
			h.f.cfg.onMessage(cl, fr.payload)
		}
	case ws.OpPing:
		// RFC 6455 §5.5.3: a pong carries the ping's application data.
		_, _ = c.Write(appendMasked(nil, ws.OpPong, fr.payload))
	case ws.OpPong:
	case ws.OpClose:
		if !h.f.stopping.Load() {
			code := ws.StatusNoStatusRcvd
			if len(fr.payload) >= 2 {
				code = ws.StatusCode(binary.BigEndian.Uint16(fr.payload))
			}
			cl.closeCode = code
			if cl.state.Load() == stateUp {
				cl.failKind = fmt.Sprintf("%s-close-%d", failDropped, code)
			} else {
				cl.failKind = fmt.Sprintf("%s-%d", failClosedEarly, code)
			}
			// RFC 6455 §5.5.1: answer a close with a close.
			_, _ = c.Write(closeFrame)
		}
		return gnet.Close
	default:
		cl.failKind = failProtocol
		return gnet.Close
	}
	return gnet.None
}

// discardLogger silences gnet, which otherwise logs through a process-wide zap logger,
// and the built-in upstream's fasthttp server.
type discardLogger struct{}

func (discardLogger) Debugf(string, ...any) {}
func (discardLogger) Infof(string, ...any)  {}
func (discardLogger) Warnf(string, ...any)  {}
func (discardLogger) Errorf(string, ...any) {}
func (discardLogger) Fatalf(string, ...any) {}
func (discardLogger) Printf(string, ...any) {}
