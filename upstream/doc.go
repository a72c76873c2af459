// Package upstream calls the application's event handlers ("upstream") with
// CloudEvents over HTTP, as Azure Web PubSub's event-handler protocol specifies:
// azure.webpubsub.sys.connect, …sys.connected, …sys.disconnected and
// …user.<event>, in HTTP binary content mode with exactly the headers of §3,
// the abuse-protection handshake (§9), retries and timeouts (§11) and the
// connection-state round trip (§8).
//
// upstream imports no package of ours. It defines its own request and result
// types (ConnectRequest, ConnectResult, EventResult); engine converts to them,
// so webhook code is tested without a WebSocket.
//
// # Concurrency contract
//
// Every exported method returns immediately: engine calls them from its event
// loops. A Session keeps one connection's events in a FIFO and runs them one at
// a time, including retries (connect, connected, user events, disconnected
// last; nothing after disconnected); different sessions run in parallel.
// Requests run on workers that belong to one upstream host
// (scheme://host:port): each host starts workers on demand up to
// Config.MaxConnsPerHost and they exit when its queue is empty, so a slow or
// hanging host fills only its own queue and never delays another host.
// Config.MaxPendingEvents bounds all queued events together. Retry delays are
// timers, not sleeping workers.
//
// Callbacks (the done functions of Connect and UserEvent) are called exactly
// once, from an upstream goroutine, never inside the call that queued the event.
// They must not block: engine posts the result to the connection's loop. The
// session's next event is dispatched after done returns.
//
// # Why the headers are written by hand, not by cloudevents/sdk-go
//
// The event attributes are written straight into the pooled fasthttp request
// (writeHeaders). The alternative, an sdk-go event.Event encoded by its binary
// binding into the same request (sdkWriteHeaders in bench_test.go; a test
// checks both give identical headers), costs 8× the CPU and 23 allocations per
// event on the hot path, a third of the whole in-process cost of a user event:
//
//	go test -run XXX -bench . -benchtime=2s ./upstream/
//	(AMD EPYC, 2 vCPU, linux 6.18, go1.26.8, 2026-11-28)
//	BenchmarkEncodeHeaders/impl=hand     350 ns/op     0 B/op   0 allocs/op
//	BenchmarkEncodeHeaders/impl=sdk-go  2805 ns/op  1384 B/op  23 allocs/op
//	BenchmarkUserEvent/impl=hand        6212 ns/op   543 B/op   7 allocs/op
//	BenchmarkUserEvent/impl=sdk-go      8116 ns/op  1898 B/op  28 allocs/op
//
// (BenchmarkUserEvent builds, sends and completes one user event against an
// in-memory fasthttp upstream.) sdk-go also lower-cases extension names
// (ce-connectionid), so its output had to be re-spelled to the §3 spellings
// anyway. sdk-go stays a test dependency, as the reference encoding.
package upstream
