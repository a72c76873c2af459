// Package engine runs the Web PubSub server: the gnet event loops that own every
// socket of the public port, the connection lifecycle, and the glue that turns
// decoded client messages and REST calls into registry changes and deliveries.
//
// # One port, one reactor
//
// gnet accepts every connection. While a connection is plain HTTP its loop
// buffers bytes until a whole request head has arrived (never parsing a partial
// head), then routes on the escaped path:
//
//   - /client/hubs/{hub} and /client?hub= are WebSocket handshakes, validated and
//     answered on the loop (token check, subprotocol choice, the 101 bytes from
//     gobwas/ws fed only complete buffered bytes), after which the same gnet
//     connection speaks WebSocket frames;
//   - /api/... requests wait on the loop until their body is buffered, are copied
//     once and handed to a bounded worker pool that runs a fasthttp
//     RequestHandler; the response comes back with AsyncWrite and the loop then
//     reads the next pipelined request (HTTP/1.1 keep-alive).
//
// We chose this over "fasthttp serves the port and upgraded sockets move into
// gnet" because that route holds a goroutine (and its 8 KiB stack, plus
// fasthttp's per-connection read and write buffers) for every connection until
// its upgrade completes, needs a dup(2) of each socket to hand it over, and puts
// two schedulers in front of a connect storm. Here a connection costs the same
// from accept to close: gnet's conn, our conn and its registry entry. Measured on
// the 2-core development machine with the load generator beside the server
// (BENCHMARKS.md, 2026-11-28): 2.7 KiB of server RSS per idle JSON-subprotocol
// connection at N = 10 000 with 10 OS threads in all, and 15.7k token-checked
// handshakes per second in a connect storm.
//
// # Concurrency contract
//
// A conn belongs to one event loop from OnOpen to OnClose and has no mutex. Other
// goroutines reach it only through gnet's concurrency-safe calls: EventLoop.Execute
// (fan-out and REST closes, one task per destination loop), AsyncWrite (REST
// responses) and Wake. A task posted to a loop first checks that the connection is
// still open. Blocking work never runs on a loop: REST handlers run on the worker
// pool; upstream calls (a later issue) will too.
//
// Broadcast frames are encoded once per receiver kind (PubSub JSON envelope, raw
// frame for simple clients) and shared read-only by every loop. Each connection
// has an outbound limit (Limits.MaxOutboundBytes); a receiver over it is closed as
// a slow consumer (close 1008 "SlowClient") instead of being buffered further.
//
// Reloadable settings (keys, auth, hubs, limits) are one immutable snapshot behind an
// atomic pointer that Server.Reload replaces: a handshake, REST request, wake-up or sweep
// loads it once and takes no lock. A connection keeps its hub's settings and notices a
// newer snapshot by its generation number, on its own loop.
//
// Keep-alive uses no per-connection timer: gnet's ticker posts one sweep per loop
// each second, which pings connections idle for the hub's interval and closes those
// silent for three intervals.
//
// # Metrics and the admin listener
//
// Config.Admin.Address opens a plain net/http listener, apart from the loops, with
// /livez, /readyz (503 until the public port is up and from the start of a drain),
// /metrics (Prometheus, on a private registry) and optionally /debug/pprof/. The
// hot path does not pay for metrics: every counter a connection or a delivery moves
// is a plain field of its loop's loopStats, written only by that loop. A scrape posts
// one task per loop that copies them (bounded wait; a loop that does not answer is
// reported with its previous copy) and sums the copies. Work off the loops counts
// once per request or connection: REST and upstream series are Prometheus vectors,
// reliable connections that end off their loop use a few atomics per hub.
//
// # Drain
//
// Shutdown (drain.go) follows operations.md §2: the draining flag (readiness) turns at
// once, handshakes are still accepted for Config.Shutdown.DrainDelay, then the listening
// socket is swapped out from under the running reactor and closed (listener_linux.go),
// and a ticker hands each loop its share of the closes due at
// Shutdown.CloseRatePerSecond, as one Execute task per loop and tick (no goroutine or
// timer per connection). Before each tick's closes it waits for the REST work accepted so
// far, the fan-out each send runs after its 202 and the loop tasks that fan-out posted
// (an in-flight counter in generations), so a close frame always queues behind the
// messages answered before it. A close whose bytes the socket cannot take at once lingers
// until they are flushed; the upstream's pending events are awaited before it stops.
//
// # Multi-node
//
// Every delivery goes through Server.deliver with a target list from the registry,
// and every membership change through registry methods. A NATS layer will publish
// REST sends and membership changes to the other nodes, which apply them through
// the same two entry points; no engine code depends on being the only node.
//
// engine imports wsproto, registry and upstream; nothing imports engine but cmd.
package engine
