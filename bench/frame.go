package bench

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gobwas/ws"
)

// errNeedMore means the buffer holds less than a whole server frame; the caller keeps the
// bytes and parses again once more arrive.
var errNeedMore = errors.New("bench: need more bytes")

// frameError is a server frame that breaks RFC 6455. The client closes the connection and
// counts it as a protocol error.
type frameError struct{ reason string }

func (e *frameError) Error() string { return "bench: bad server frame: " + e.reason }

var (
	errFrameRsv        = &frameError{"reserved bits set"}
	errFrameOpCode     = &frameError{"reserved opcode"}
	errFrameControlLen = &frameError{"control frame longer than 125 bytes"}
	errFrameControlFin = &frameError{"fragmented control frame"}
	errFrameMasked     = &frameError{"masked server frame"}
	errFrameLengthMSB  = &frameError{"64-bit length with the top bit set"}
)

// serverFrame is one parsed server frame. payload is a view into the buffer given to
// parseServerFrame, valid as long as that buffer.
type serverFrame struct {
	fin     bool
	op      ws.OpCode
	payload []byte
}

// parseServerFrame parses one unmasked server frame from the start of buf without blocking
// and without copying. n is how many bytes the frame occupies. A buffer shorter than the
// frame gives errNeedMore and n == 0; a header that breaks RFC 6455 gives a *frameError as
// soon as the bytes that show it are present. maxPayload <= 0 means no limit.
//
// Safe for concurrent use on distinct buffers; it never allocates and never panics.
func parseServerFrame(buf []byte, maxPayload int) (f serverFrame, n int, err error) {
	if len(buf) < 2 {
		return serverFrame{}, 0, errNeedMore
	}
	b0, b1 := buf[0], buf[1]
	f.fin, f.op = b0&0x80 != 0, ws.OpCode(b0&0x0f)
	len7 := int(b1 & 0x7f)
	// RFC 6455 §5.2: no extension is negotiated, so RSV1-3 are 0.
	if b0&0x70 != 0 {
		return serverFrame{}, 0, errFrameRsv
	}
	// RFC 6455 §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved.
	if f.op.IsReserved() {
		return serverFrame{}, 0, errFrameOpCode
	}
	// RFC 6455 §5.5: control frames are at most 125 bytes and not fragmented.
	if f.op.IsControl() {
		if len7 > 125 {
			return serverFrame{}, 0, errFrameControlLen
		}
		if !f.fin {
			return serverFrame{}, 0, errFrameControlFin
		}
	}
	// RFC 6455 §5.1: a server must not mask the frames it sends.
	if b1&0x80 != 0 {
		return serverFrame{}, 0, errFrameMasked
	}
	hdr, length := 2, uint64(len7)
	switch len7 {
	case 126:
		if len(buf) < 4 {
			return serverFrame{}, 0, errNeedMore
		}
		hdr, length = 4, uint64(binary.BigEndian.Uint16(buf[2:4]))
	case 127:
		if len(buf) < 10 {
			return serverFrame{}, 0, errNeedMore
		}
		hdr, length = 10, binary.BigEndian.Uint64(buf[2:10])
		// RFC 6455 §5.2: the most significant bit of a 64-bit length is 0.
		if length>>63 != 0 {
			return serverFrame{}, 0, errFrameLengthMSB
		}
	}
	if maxPayload > 0 && length > uint64(maxPayload) {
		return serverFrame{}, 0, &frameError{fmt.Sprintf("payload of %d bytes exceeds %d", length, maxPayload)}
	}
	if uint64(len(buf)-hdr) < length {
		return serverFrame{}, 0, errNeedMore
	}
	end := hdr + int(length)
	f.payload = buf[hdr:end:end]
	return f, end, nil
}
