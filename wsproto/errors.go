package wsproto

import (
	"errors"
	"strconv"

	"github.com/gobwas/ws"
)

// ErrNeedMore reports that the input holds less than one whole unit (frame,
// request head). Nothing was consumed; the caller keeps the bytes, waits for
// more and calls again with the longer buffer.
var ErrNeedMore = errors.New("wsproto: need more bytes")

// ErrInvalidMessage reports a subprotocol message that cannot be handled at
// all: not UTF-8 JSON, not an object, no or unknown "type", or an "ackId" that
// is not a non-negative integer. It is a protocol violation (client-protocol.md
// §5.1): the caller sends "disconnected" and closes with 1008. Returned errors
// wrap it; test with errors.Is.
var ErrInvalidMessage = errors.New("wsproto: invalid message")

// ProtocolError is a violation of RFC 6455 by the peer. Status is the close
// code to send before closing the connection; Reason is a short phrase that
// fits a close frame.
type ProtocolError struct {
	Status ws.StatusCode
	Reason string
}

func (e *ProtocolError) Error() string {
	return "wsproto: " + e.Reason + " (close " + strconv.Itoa(int(e.Status)) + ")"
}

// Frame errors are preallocated so that ParseFrame stays allocation-free even
// when it rejects a frame.
var (
	errUnmasked        = &ProtocolError{ws.StatusProtocolError, "unmasked client frame"}
	errRsv             = &ProtocolError{ws.StatusProtocolError, "reserved bits set"}
	errReservedOpCode  = &ProtocolError{ws.StatusProtocolError, "reserved opcode"}
	errControlTooLong  = &ProtocolError{ws.StatusProtocolError, "control frame payload over 125 bytes"}
	errControlFragment = &ProtocolError{ws.StatusProtocolError, "fragmented control frame"}
	errLengthMSB       = &ProtocolError{ws.StatusProtocolError, "64-bit payload length with most significant bit set"}
	errTooBig          = &ProtocolError{ws.StatusMessageTooBig, "message too big"}

	errCloseShort    = &ProtocolError{ws.StatusProtocolError, "close payload of 1 byte"}
	errCloseCode     = &ProtocolError{ws.StatusProtocolError, "close code not allowed on the wire"}
	errCloseReasonUT = &ProtocolError{ws.StatusInvalidFramePayloadData, "close reason is not UTF-8"}
)

// MessageError is a subprotocol request that is well formed enough to answer
// but invalid (client-protocol.md §5.4). When HasAckID is true the caller
// answers with an ack carrying Name and Message and keeps the connection; when
// it is false the request was fire-and-forget and is dropped silently.
type MessageError struct {
	AckID    uint64
	HasAckID bool
	Name     string // ack error name, "BadRequest"
	Message  string // human-readable, for the ack's error.message
}

func (e *MessageError) Error() string {
	return "wsproto: " + e.Name + ": " + e.Message
}
