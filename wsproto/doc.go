// Package wsproto owns the bytes of a Web PubSub client connection: RFC 6455
// framing on top of github.com/gobwas/ws, the HTTP upgrade handshake, and the
// Web PubSub subprotocols (json.webpubsub.azure.v1, protobuf.webpubsub.azure.v1
// and their .reliable. variants): decode, encode and validate.
//
// The package does no I/O. It has no net.Conn, starts no goroutines, reads no
// clock and does not log: every function takes bytes and returns bytes or an
// error, so it can be fuzzed and benchmarked alone. Decoders never block; when
// the input is incomplete they return ErrNeedMore and the caller waits for more
// bytes. Encoders append to a caller's buffer (Append*) and allocate only when
// that buffer must grow.
//
// wsproto imports no package of this module. engine and bench import it. Its
// subpackage wsproto/pb holds the Go types generated from pb/webpubsub.proto
// (client-protocol.md §8); only tests import it. DecodeProtobufMessage and the
// AppendProtobuf* encoders are hand-written on google.golang.org/protobuf's
// protowire (the encoders never allocate into a buffer with room; measured 25
// ns against 400 ns and 4 allocations for proto.Marshal of the generated
// types), and tests check them against the generated code. To
// regenerate pb/webpubsub.pb.go after editing the .proto (needs protoc from
// apt-get install protobuf-compiler, and $(go env GOPATH)/bin on PATH):
//
//	go generate ./wsproto/pb
//
// which runs, in wsproto/pb:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	protoc --proto_path=. --go_out=. --go_opt=paths=source_relative webpubsub.proto
//
// Reliable broadcasts: every recipient gets its own sequenceId (§7.2) without
// re-encoding the payload; see AppendGroupMessageHead / AppendJSONSequenceTail
// for JSON and AppendProtobufGroupData / AppendProtobufSequenced for protobuf.
//
// Concurrency: functions keep no state between calls and are safe for
// concurrent use on distinct buffers. A *ClientMessage belongs to one caller
// (one event loop) at a time.
//
// Borrowed bytes: ParseFrame, DecodeJSONMessage and DecodeProtobufMessage
// return views into their input (and, for the message decoders, into the
// message's own scratch space). Whoever keeps such bytes beyond the input
// buffer's lifetime copies them.
//
// Specs: RFC 6455 for framing; the Web PubSub client protocol (§1.6
// subprotocol negotiation, §4 data model, §5 JSON subprotocol, §7 reliable
// subprotocols, §8 protobuf subprotocols, §9 limits and close codes) for
// everything else. Section numbers in comments refer to these.
package wsproto
