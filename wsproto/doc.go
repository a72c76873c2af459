// Package wsproto owns the bytes of a Web PubSub client connection: RFC 6455
// framing on top of github.com/gobwas/ws, the HTTP upgrade handshake, and the
// Web PubSub subprotocols (json.webpubsub.azure.v1 and its .reliable. variant;
// protobuf later): decode, encode and validate.
//
// The package does no I/O. It has no net.Conn, starts no goroutines, reads no
// clock and does not log: every function takes bytes and returns bytes or an
// error, so it can be fuzzed and benchmarked alone. Decoders never block; when
// the input is incomplete they return ErrNeedMore and the caller waits for more
// bytes. Encoders append to a caller's buffer (Append*) and allocate only when
// that buffer must grow.
//
// wsproto imports no package of this module. engine and bench import it.
//
// Concurrency: functions keep no state between calls and are safe for
// concurrent use on distinct buffers. A *ClientMessage belongs to one caller
// (one event loop) at a time.
//
// Borrowed bytes: ParseFrame and DecodeJSONMessage return views into their
// input (and, for DecodeJSONMessage, into the message's own scratch space).
// Whoever keeps such bytes beyond the input buffer's lifetime copies them.
//
// Specs: RFC 6455 for framing; /work/shared/spec/client-protocol.md (§1.6
// subprotocol negotiation, §4 data model, §5 JSON subprotocol, §9 limits and
// close codes) for everything else. Section numbers in comments refer to these.
package wsproto
