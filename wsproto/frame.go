package wsproto

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Header bits, RFC 6455 §5.2.
const (
	bitFin    = 0x80
	bitsRsv   = 0x70
	maskOp    = 0x0f
	bitMask   = 0x80
	maskLen7  = 0x7f
	len7Ext16 = 126
	len7Ext64 = 127

	// maxControlPayload is the RFC 6455 §5.5 bound on control frame payloads.
	maxControlPayload = 125
	// maxCloseReason is what is left of a control payload after the 2-byte code.
	maxCloseReason = maxControlPayload - 2
)

// Frame is one parsed client frame. Payload is a view into the buffer given to
// ParseFrame, already unmasked in place; it is valid as long as that buffer.
type Frame struct {
	Fin     bool
	OpCode  ws.OpCode
	Payload []byte
}

// ParseFrame parses one client frame from the start of buf and unmasks its
// payload in place. n is the number of bytes the frame occupies in buf.
//
// When buf holds less than a whole frame it returns ErrNeedMore with n == 0
// and leaves buf untouched, so the caller can retry with more bytes. Header
// violations are reported as soon as the bytes that show them are present,
// without waiting for the payload; the error is a *ProtocolError carrying the
// close code (1002, or 1009 when the payload length exceeds maxPayload).
// maxPayload <= 0 means no limit. It never allocates and never panics.
//
// Safe for concurrent use on distinct buffers. Payload is valid as long as buf.
func ParseFrame(buf []byte, maxPayload int) (f Frame, n int, err error) {
	if len(buf) < 2 {
		return Frame{}, 0, ErrNeedMore
	}
	b0, b1 := buf[0], buf[1]
	fin := b0&bitFin != 0
	op := ws.OpCode(b0 & maskOp)
	len7 := int(b1 & maskLen7)

	// RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them; we
	// negotiate none.
	if b0&bitsRsv != 0 {
		return Frame{}, 0, errRsv
	}
	// RFC 6455 §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved.
	if op.IsReserved() {
		return Frame{}, 0, errReservedOpCode
	}
	// RFC 6455 §5.5: control frames are at most 125 bytes and not fragmented.
	if op.IsControl() {
		if len7 > maxControlPayload {
			return Frame{}, 0, errControlTooLong
		}
		if !fin {
			return Frame{}, 0, errControlFragment
		}
	}
	// RFC 6455 §5.1: a server MUST close on an unmasked client frame.
	if b1&bitMask == 0 {
		return Frame{}, 0, errUnmasked
	}

	hdr := 2
	var length uint64
	switch len7 {
	case len7Ext16:
		if len(buf) < 4 {
			return Frame{}, 0, ErrNeedMore
		}
		length = uint64(binary.BigEndian.Uint16(buf[2:4]))
		hdr = 4
	case len7Ext64:
		if len(buf) < 10 {
			return Frame{}, 0, ErrNeedMore
		}
		length = binary.BigEndian.Uint64(buf[2:10])
		// RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
		if length>>63 != 0 {
			return Frame{}, 0, errLengthMSB
		}
		hdr = 10
	default:
		length = uint64(len7)
	}
	// Reject oversized frames on the header alone, so a client cannot make us
	// buffer up to the limit before we notice (client-protocol.md §9.3).
	if maxPayload > 0 && length > uint64(maxPayload) {
		return Frame{}, 0, errTooBig
	}

	hdr += 4 // masking key
	if len(buf) < hdr || uint64(len(buf)-hdr) < length {
		return Frame{}, 0, ErrNeedMore
	}
	var mask [4]byte
	copy(mask[:], buf[hdr-4:hdr])
	end := hdr + int(length)
	payload := buf[hdr:end:end]
	ws.Cipher(payload, mask, 0)
	return Frame{Fin: fin, OpCode: op, Payload: payload}, end, nil
}

// AppendFrameHeader appends the header of an unmasked server frame with FIN
// set, for a payload of length bytes that the caller appends itself.
func AppendFrameHeader(dst []byte, op ws.OpCode, length int) []byte {
	return appendHeader(dst, true, op, length, false)
}

// AppendFrame appends one unmasked server frame with FIN set.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = appendHeader(dst, true, op, len(payload), false)
	return append(dst, payload...)
}

// AppendMaskedFrame appends one masked frame as a client sends it. Servers do
// not need it; bench and tests use it to speak as a client.
func AppendMaskedFrame(dst []byte, fin bool, op ws.OpCode, mask [4]byte, payload []byte) []byte {
	dst = appendHeader(dst, fin, op, len(payload), true)
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

func appendHeader(dst []byte, fin bool, op ws.OpCode, length int, masked bool) []byte {
	b0 := byte(op) & maskOp
	if fin {
		b0 |= bitFin
	}
	var m byte
	if masked {
		m = bitMask
	}
	// RFC 6455 §5.2: the minimal number of bytes MUST be used for the length.
	switch {
	case length <= maxControlPayload:
		return append(dst, b0, m|byte(length))
	case length <= 0xffff:
		return append(dst, b0, m|len7Ext16, byte(length>>8), byte(length))
	default:
		dst = append(dst, b0, m|len7Ext64)
		return binary.BigEndian.AppendUint64(dst, uint64(length))
	}
}

// AppendCloseFrame appends a server close frame with the given status code and
// reason. The reason is cut to 123 bytes at a UTF-8 boundary (RFC 6455 §5.5:
// control payloads are at most 125 bytes, two of them the code). A zero code
// or 1005 (no status, RFC 6455 §7.4.1 forbids sending it) gives an empty body.
func AppendCloseFrame(dst []byte, code ws.StatusCode, reason string) []byte {
	if code == 0 || code == ws.StatusNoStatusRcvd {
		return append(dst, bitFin|byte(ws.OpClose), 0)
	}
	reason = truncateUTF8(reason, maxCloseReason)
	dst = append(dst, bitFin|byte(ws.OpClose), byte(2+len(reason)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// truncateUTF8 cuts s to at most max bytes without splitting a rune.
func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	// Step back over continuation bytes to the start of the rune that would be
	// split; at most utf8.UTFMax-1 steps.
	for cut > 0 && cut > max-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// ParseClosePayload reads the body of a close frame (RFC 6455 §5.5.1). An empty
// body means no status: code 1005 and no error. A 1-byte body, a code that
// RFC 6455 §7.4 does not allow on the wire, or a reason that is not UTF-8 is a
// *ProtocolError.
//
// The reason is copied; it does not alias p.
func ParseClosePayload(p []byte) (code ws.StatusCode, reason string, err error) {
	switch len(p) {
	case 0:
		return ws.StatusNoStatusRcvd, "", nil
	case 1:
		return 0, "", errCloseShort
	}
	code = ws.StatusCode(binary.BigEndian.Uint16(p))
	if !closeCodeOnWire(code) {
		return 0, "", errCloseCode
	}
	// RFC 6455 §8.1: a close reason is UTF-8; invalid data fails with 1007.
	if !utf8.Valid(p[2:]) {
		return 0, "", errCloseReasonUT
	}
	return code, string(p[2:]), nil
}

// closeCodeOnWire reports whether a peer may send code in a close frame:
// RFC 6455 §7.4.1 codes except the reserved 1004, 1005, 1006 and 1015, the
// IANA-registered 1012-1014, and the 3000-4999 ranges for libraries and
// applications (§7.4.2). Autobahn cases 7.7.x and 7.9.x check this split.
func closeCodeOnWire(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
