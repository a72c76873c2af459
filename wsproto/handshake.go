package wsproto

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
)

// Subprotocol names, client-protocol.md §1.6.
const (
	ProtocolJSON             = "json.webpubsub.azure.v1"
	ProtocolJSONReliable     = "json.reliable.webpubsub.azure.v1"
	ProtocolProtobuf         = "protobuf.webpubsub.azure.v1"
	ProtocolProtobufReliable = "protobuf.reliable.webpubsub.azure.v1"
)

// Kind is what a connection speaks after the handshake: the simple WebSocket
// client (client-protocol.md §3) or one of the four PubSub subprotocols.
type Kind uint8

// Kinds, in the order of client-protocol.md §1.6's table; KindSimple is the
// zero value.
const (
	KindSimple Kind = iota
	KindJSON
	KindJSONReliable
	KindProtobuf
	KindProtobufReliable
)

// KindOf maps a subprotocol name to its Kind. Names are compared exactly, as
// the SDKs send them; unknown and empty names are KindSimple.
func KindOf(protocol string) Kind {
	switch protocol {
	case ProtocolJSON:
		return KindJSON
	case ProtocolJSONReliable:
		return KindJSONReliable
	case ProtocolProtobuf:
		return KindProtobuf
	case ProtocolProtobufReliable:
		return KindProtobufReliable
	}
	return KindSimple
}

// IsPubSub reports whether k is one of the predefined subprotocols.
func (k Kind) IsPubSub() bool { return k >= KindJSON && k <= KindProtobufReliable }

// IsReliable reports whether k keeps sequence ids and a redelivery buffer
// (client-protocol.md §7).
func (k Kind) IsReliable() bool { return k == KindJSONReliable || k == KindProtobufReliable }

// IsJSON reports whether k carries JSON text frames.
func (k Kind) IsJSON() bool { return k == KindJSON || k == KindJSONReliable }

// String returns the subprotocol name, or "simple".
func (k Kind) String() string {
	switch k {
	case KindSimple:
		return "simple"
	case KindJSON:
		return ProtocolJSON
	case KindJSONReliable:
		return ProtocolJSONReliable
	case KindProtobuf:
		return ProtocolProtobuf
	case KindProtobufReliable:
		return ProtocolProtobufReliable
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// SplitProtocols appends to dst the tokens of one Sec-WebSocket-Protocol header
// value ("a, b"), trimmed of spaces and tabs, skipping empty ones. Call it once
// per header line when the header is repeated.
func SplitProtocols(dst []string, headerValue string) []string {
	for len(headerValue) > 0 {
		tok := headerValue
		if i := strings.IndexByte(headerValue, ','); i >= 0 {
			tok, headerValue = headerValue[:i], headerValue[i+1:]
		} else {
			headerValue = ""
		}
		tok = strings.Trim(tok, " \t")
		if tok != "" {
			dst = append(dst, tok)
		}
	}
	return dst
}

// SelectProtocol picks the subprotocol to answer with when no upstream connect
// handler decides (client-protocol.md §1.6 steps 1, 3, 4 and 5):
//   - nothing offered: ("", KindSimple), no header in the response;
//   - the first predefined name in the client's order: (name, its kind);
//   - only unknown names: (first offered, KindSimple); echoing it keeps browsers
//     and the Node ws library from failing the handshake.
func SelectProtocol(offered []string) (selected string, kind Kind) {
	for _, p := range offered {
		if k := KindOf(p); k != KindSimple {
			return p, k
		}
	}
	if len(offered) > 0 {
		return offered[0], KindSimple
	}
	return "", KindSimple
}

// HeadLength returns the length of the HTTP request head at the start of buf,
// up to and including the blank line that ends it, or ErrNeedMore when the
// blank line has not arrived. The caller bounds how many bytes it buffers.
func HeadLength(buf []byte) (n int, err error) {
	i := bytes.Index(buf, []byte("\r\n\r\n"))
	if i < 0 {
		return 0, ErrNeedMore
	}
	return i + 4, nil
}

// headConn is the io.ReadWriter gobwas's Upgrader wants: it reads the buffered
// request head and appends whatever the upgrader writes.
type headConn struct {
	bytes.Reader
	out []byte
}

func (c *headConn) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}

// errBadProtocolName is returned for a selected protocol that is not an HTTP
// token, which would otherwise corrupt the response head.
var errBadProtocolName = errors.New("wsproto: subprotocol is not an HTTP token")

// AppendUpgradeResponse validates head, a complete HTTP/1.1 request head (up
// to and including the blank line, see HeadLength), as a WebSocket upgrade
// (RFC 6455 §4.2.1) and appends the 101 Switching Protocols response to dst.
// protocol is the subprotocol to select; "" sends no Sec-WebSocket-Protocol.
//
// On an invalid request it appends an HTTP error response (400, 405, 426, 505)
// and returns an error, wrapping gobwas/ws's error that names the failed check;
// the caller writes the bytes and closes. Bytes after the head are ignored.
func AppendUpgradeResponse(dst []byte, head []byte, protocol string) ([]byte, error) {
	if protocol != "" && !isToken(protocol) {
		body := []byte(errBadProtocolName.Error())
		return AppendHTTPResponse(dst, http.StatusBadRequest, "text/plain; charset=utf-8", body, true), errBadProtocolName
	}
	c := headConn{out: dst}
	c.Reset(head)
	u := ws.Upgrader{
		// A head line longer than gobwas's read buffer is copied in pieces;
		// sizing the buffer to the head keeps it to one read.
		ReadBufferSize: max(len(head), ws.DefaultServerReadBufferSize),
	}
	if protocol != "" {
		line := ws.HandshakeHeaderString("Sec-WebSocket-Protocol: " + protocol + "\r\n")
		u.OnBeforeUpgrade = func() (ws.HandshakeHeader, error) { return line, nil }
	}
	start := len(dst)
	_, err := u.Upgrade(&c)
	if err == nil {
		return c.out, nil
	}
	if len(c.out) == start {
		// gobwas writes nothing when the head ends early (it hits EOF while
		// reading lines): the head was incomplete or malformed.
		body := []byte("malformed HTTP request")
		c.out = AppendHTTPResponse(c.out, http.StatusBadRequest, "text/plain; charset=utf-8", body, true)
	}
	return c.out, fmt.Errorf("wsproto: upgrade rejected: %w", err)
}

// isToken reports whether s is an RFC 7230 token, the grammar of a
// Sec-WebSocket-Protocol value (RFC 6455 §4.1).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// AppendHTTPResponse appends a complete HTTP/1.1 response with a
// Content-Length body, for handshake rejections (client-protocol.md §1.7).
// contentType "" omits the header; closeConn adds "Connection: close".
func AppendHTTPResponse(dst []byte, status int, contentType string, body []byte, closeConn bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	dst = append(dst, "\r\n"...)
	if contentType != "" {
		dst = append(dst, "Content-Type: "...)
		dst = append(dst, contentType...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n"...)
	if closeConn {
		dst = append(dst, "Connection: close\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, body...)
}
