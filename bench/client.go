package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// JSONProtocol is the subprotocol every bench client offers.
const JSONProtocol = "json.webpubsub.azure.v1"

// readBufferBytes is each client's read buffer. A connected frame is about 200 bytes and a
// group message of 64 bytes about 150, so 1 KiB holds several frames; larger frames are
// read into a per-client scratch slice.
const readBufferBytes = 1024

// maxFrameBytes bounds a server frame the client accepts (the service limit is 1 MiB).
const maxFrameBytes = 1 << 20

// Failure kinds are the keys of Result.Failures.
const (
	failDialTimeout   = "dial-timeout"
	failDialRefused   = "dial-refused"
	failDialAddr      = "dial-no-address" // EADDRNOTAVAIL / EADDRINUSE: out of source ports
	failDialFiles     = "dial-too-many-files"
	failDial          = "dial-other"
	failHSTimeout     = "handshake-timeout"
	failHSEOF         = "handshake-eof"
	failHSBad         = "handshake-bad-response"
	failFirstFrame    = "connected-missing"
	failClosedEarly   = "closed-before-connected"
	failDropped       = "dropped"
	failProtocol      = "protocol-error"
	failHTTPStatusFmt = "handshake-http-%d"
)

// kindError is an error with its failure kind.
type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func withKind(kind string, err error) error { return &kindError{kind: kind, err: err} }

// failureKind classifies err for Result.Failures.
func failureKind(err error) string {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return "other"
}

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

// dial connects as client number i.
func (d *dialer) dial(ctx context.Context, i int, timeout time.Duration) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout}
	if len(d.sources) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.sources[i%len(d.sources)]}
	}
	return nd.DialContext(ctx, "tcp", d.addr)
}

// newReader returns a client's read buffer.
func newReader(conn net.Conn) *bufio.Reader { return bufio.NewReaderSize(conn, readBufferBytes) }

// client is one WebSocket connection. Only its own goroutine reads and writes it; other
// goroutines may call conn.SetReadDeadline or conn.Close to stop it.
type client struct {
	conn    net.Conn
	br      *bufio.Reader
	scratch []byte // payloads larger than br's buffer
	pending int    // bytes of the last frame still to Discard from br
}

// handshake sends the upgrade request for target (path and query) to host and reads the
// 101 response. The connection's deadline must already be set.
func (c *client) handshake(host, target string) error {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(key[8:], rand.Uint64())
	nonce := base64.StdEncoding.EncodeToString(key[:])
	req := make([]byte, 0, 256+len(target))
	req = append(req, "GET "...)
	req = append(req, target...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	req = append(req, nonce...)
	req = append(req, "\r\nSec-WebSocket-Protocol: "+JSONProtocol+"\r\n\r\n"...)
	if _, err := c.conn.Write(req); err != nil {
		return withKind(ioKind(err, failHSEOF), err)
	}

	line, err := c.readLine()
	if err != nil {
		return err
	}
	// RFC 6455 §4.2.2: "HTTP/1.1 101 Switching Protocols".
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, convErr := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || convErr != nil {
		return withKind(failHSBad, fmt.Errorf("status line %q", line))
	}
	var accept, protocol string
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "sec-websocket-accept":
			accept = v
		case "sec-websocket-protocol":
			protocol = v
		}
	}
	if status != 101 {
		// The body, if any, is left unread: the connection is closed next.
		return withKind(fmt.Sprintf(failHTTPStatusFmt, status), fmt.Errorf("status %d", status))
	}
	sum := sha1.Sum([]byte(nonce + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if accept != base64.StdEncoding.EncodeToString(sum[:]) {
		return withKind(failHSBad, fmt.Errorf("Sec-WebSocket-Accept %q does not match the key", accept))
	}
	if protocol != JSONProtocol {
		return withKind(failHSBad, fmt.Errorf("subprotocol %q, want %s", protocol, JSONProtocol))
	}
	return nil
}

func (c *client) readLine() (string, error) {
	b, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", withKind(failHSBad, errors.New("response header line too long"))
		}
		return "", withKind(ioKind(err, failHSEOF), err)
	}
	return string(bytes.TrimRight(b, "\r\n")), nil
}

// ioKind maps a read or write error to a timeout kind or to otherwise.
func ioKind(err error, otherwise string) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failHSTimeout
	}
	return otherwise
}

// closeError reports a close frame from the server.
type closeError struct {
	code   ws.StatusCode
	reason string
}

func (e *closeError) Error() string {
	return fmt.Sprintf("server closed the connection: %d %s", e.code, e.reason)
}

var errFragmented = errors.New("bench: fragmented messages are not supported")

// next returns the payload of the next text or binary message, answering pings on the way.
// The payload is valid until the next call.
func (c *client) next() (ws.OpCode, []byte, error) {
	for {
		op, fin, payload, err := c.readFrame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case ws.OpText, ws.OpBinary:
			if !fin {
				return 0, nil, withKind(failProtocol, errFragmented)
			}
			return op, payload, nil
		case ws.OpPing:
			// RFC 6455 §5.5.3: a pong carries the ping's application data.
			if err := c.writeFrame(ws.OpPong, payload); err != nil {
				return 0, nil, err
			}
		case ws.OpPong:
		case ws.OpClose:
			ce := &closeError{code: ws.StatusNoStatusRcvd}
			if len(payload) >= 2 {
				ce.code = ws.StatusCode(binary.BigEndian.Uint16(payload))
				ce.reason = string(payload[2:])
			}
			return 0, nil, ce
		default:
			return 0, nil, withKind(failProtocol, fmt.Errorf("unexpected opcode %d", op))
		}
	}
}

// readFrame reads one frame. The payload is borrowed from the read buffer (or scratch) and
// valid until the next readFrame.
func (c *client) readFrame() (op ws.OpCode, fin bool, payload []byte, err error) {
	if c.pending > 0 {
		c.br.Discard(c.pending)
		c.pending = 0
	}
	h, err := c.br.Peek(2)
	if err != nil {
		return 0, false, nil, err
	}
	fin, op = h[0]&0x80 != 0, ws.OpCode(h[0]&0x0f)
	// RFC 6455 §5.1: a server must not mask frames it sends.
	if h[1]&0x80 != 0 {
		return 0, false, nil, withKind(failProtocol, errors.New("masked server frame"))
	}
	n, hl := int(h[1]&0x7f), 2
	switch n {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if hl > 2 {
		if h, err = c.br.Peek(hl); err != nil {
			return 0, false, nil, err
		}
		if hl == 4 {
			n = int(binary.BigEndian.Uint16(h[2:]))
		} else {
			v := binary.BigEndian.Uint64(h[2:])
			if v > maxFrameBytes {
				return 0, false, nil, withKind(failProtocol, fmt.Errorf("frame of %d bytes", v))
			}
			n = int(v)
		}
	}
	if n > maxFrameBytes {
		return 0, false, nil, withKind(failProtocol, fmt.Errorf("frame of %d bytes", n))
	}
	c.br.Discard(hl)
	if n <= c.br.Size() {
		if payload, err = c.br.Peek(n); err != nil {
			return 0, false, nil, err
		}
		c.pending = n
		return op, fin, payload, nil
	}
	if cap(c.scratch) < n {
		c.scratch = make([]byte, n)
	}
	payload = c.scratch[:n]
	if _, err = io.ReadFull(c.br, payload); err != nil {
		return 0, false, nil, err
	}
	return op, fin, payload, nil
}

// writeFrame writes one masked frame (RFC 6455 §5.3: every client frame is masked) with a
// payload of at most 125 bytes, as control frames are.
func (c *client) writeFrame(op ws.OpCode, payload []byte) error {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	var buf [2 + 4 + 125]byte
	buf[0] = 0x80 | byte(op)
	buf[1] = 0x80 | byte(len(payload))
	binary.LittleEndian.PutUint32(buf[2:6], rand.Uint32())
	n := 6 + copy(buf[6:], payload)
	ws.Cipher(buf[6:n], [4]byte(buf[2:6]), 0)
	_, err := c.conn.Write(buf[:n])
	return err
}

// sendClose writes a close frame with status 1000 and closes the connection. A server
// that does not read it in time loses only the courtesy.
func (c *client) sendClose() {
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.writeFrame(ws.OpClose, []byte{0x03, 0xe8})
	_ = c.conn.Close()
}

// isConnected reports whether payload is the JSON subprotocol's connected event.
func isConnected(payload []byte) bool {
	return bytes.Contains(payload, []byte(`"type":"system"`)) && bytes.Contains(payload, []byte(`"event":"connected"`))
}
