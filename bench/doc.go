// Package bench is the load generator of webpubsub: a client that speaks only the wire
// (RFC 6455 and the json.webpubsub.azure.v1 subprotocol, plus the REST data plane) and
// measures a running server from outside, the way any Azure Web PubSub client would.
//
// Scenarios:
//   - Idle: hold N connections and report the server's resident memory per connection
//     (VmRSS from /proc/PID/status) and its thread count.
//   - Connect: a connect storm, reporting handshakes per second, handshake latency and
//     failures by kind.
//   - Fanout: N members of one group receive M REST group sends at a fixed rate; reports
//     deliveries per second, completeness, end-to-end latency and the server's CPU time.
//
// Every scenario is bounded by a count and a duration and stops by itself. Results are a
// Result, printed as a table, as Go benchmark lines (for benchstat) or as JSON.
//
// bench may import wsproto and nothing else of this module (STYLE.md §1); it signs its own
// tokens and parses its own frames so that it exercises the server as a stranger would.
//
// Concurrency: the current client runs one goroutine per connection. A Run function
// belongs to one caller; the Progress callbacks it takes are called from one goroutine.
// The process must be allowed one file descriptor per connection plus a few (ulimit -n).
package bench
