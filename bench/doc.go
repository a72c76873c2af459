// Package bench is the load generator of webpubsub: a client that speaks only the wire
// (RFC 6455, plain or with a Web PubSub subprotocol, plus the REST data plane, and on the
// other side an upstream that receives CloudEvents over HTTP) and
// measures a running server from outside, the way any Azure Web PubSub client and app
// server would.
//
// Scenarios:
//   - Connect: a connect storm; handshakes per second, handshake latency, failures by kind.
//   - Idle: hold N connections; the server's resident memory per connection (VmRSS from
//     /proc/PID/status) and its thread count.
//   - Fanout: N members of one group receive M group sends at a fixed rate, from a REST
//     publisher or a client with the webpubsub.sendToGroup role; deliveries per second,
//     completeness, end-to-end latency, the server's CPU per million deliveries. The REST
//     publisher can instead send to all (every connection of the hub, member i in group
//     g<i mod G>) and add an OData filter (rest-api.md §5) to each send. The caller passes
//     the server's reading of the filter (a Selector; cmd/webpubsub uses the engine's
//     compiler), and with each member's user id (bench-<i>) and groups known the bench
//     expects each send at exactly the members it selects; connectionId, assigned by the
//     server, is refused.
//   - Chat: G groups of K members, every member sending to its own group with sendToGroup
//     at a fixed rate; deliveries per second, completeness, latency, ack latency.
//   - Echo: N plain WebSocket clients (no subprotocol) send text messages at a fixed rate;
//     the server forwards each to the bench's built-in upstream as the user event
//     "message" (upstream-protocol.md §6) and sends the reply, the same text, back. Round
//     trips per second, completeness, round-trip latency, the latency of the way in
//     (client to upstream), the server's CPU per round trip. The server must be started
//     with the event handler EchoServerConfig prints. With an upstream delay it plays a
//     slow app server, to show that other hubs' fan-out does not slow down meanwhile.
//   - Drain: hold N connections, send SIGTERM to the server and measure its drain
//     (operations.md §2) as the clients see it: from the signal to the first and the last
//     close and to the server's exit, the close codes, and the pace of the closes (the most
//     in any one-second window, the median of the whole seconds), which should stay at the
//     server's shutdown.closeRatePerSecond. With a second server, every closed client
//     reconnects there at once and the reconnect wave's pace is reported the same way.
//
// Protocols. The clients of Idle, Connect, Fanout, Chat and Drain speak Options.Protocol: json
// (json.webpubsub.azure.v1, the default), json.reliable, protobuf or protobuf.reliable
// (client-protocol.md §5, §7, §8), and every benchmark name of those scenarios carries
// protocol=..., so benchstat can compare them (-col /protocol). Protobuf clients send
// UpstreamMessage and read DownstreamMessage in binary frames, encoded and decoded by hand
// (protocol.go: the few fields the bench uses, no protobuf library). Reliable clients read
// each message's sequenceId and acknowledge like the JS SDK: the highest id seen, once a
// second when it changed (one acker goroutine per worker visits a tenth of the clients
// every 100ms, so the acks are spread like independent timers), and at once when a
// message is more than 300 ids past the last ack; they count ids that are not the
// previous + 1. Fanout and Chat end their CPU window an ack interval after the drain, so
// the server's CPU per delivery includes the acks.
//
// Every scenario also reports the bench's own CPU (utime+stime of itself and its workers
// from /proc), because on one machine the load generator competes with the server.
//
// Structure. The parent process (RunConnect, RunIdle, RunFanout, RunChat, RunEcho) starts
// worker processes (`webpubsub bench worker`, running WorkerMain), at most
// Options.ConnsPerWorker connections each, so that no process passes the open-file limit.
// Parent and workers speak JSON lines (worker.go): a config, then commands (publish,
// drain, stop); the workers answer each phase with a report that carries counters and
// histogram buckets, which the parent merges exactly. Workers die with the parent
// (Pdeathsig), exit when their stdin closes, and have a lifetime of their own.
//
// Inside a worker the clients run on gnet event loops, not one goroutine each: a few
// dialing goroutines (as many as handshakes may be in flight) dial with source addresses
// spread over 127.0.0.1–127.0.0.254, enroll the socket on a loop (gnet dups it and closes
// the original, so one descriptor per connection), and the loop writes the upgrade
// request, parses the response and the server's frames without blocking, and answers
// pings. One sweeper goroutine per worker fails handshakes that pass their deadline.
//
// The echo scenario's upstream is a fasthttp server in the parent process (upstream.go):
// it answers the abuse-protection OPTIONS and the system events at once, echoes user
// events, and counts and checks what it is sent; its CPU is the parent's.
//
// Every scenario is bounded by a count and a duration and stops by itself. Results are a
// Result, printed as a table, as Go benchmark lines (for benchstat) or as JSON.
//
// bench may import wsproto and nothing else of this module (STYLE.md §1); it signs its own
// tokens and parses its own frames so that it exercises the server as a stranger would.
//
// Concurrency: a Run function belongs to one caller. A client's loop-owned fields are
// touched only by its loop; the counters others read are atomics.
package bench
