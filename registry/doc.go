// Package registry is the node-local index of hubs, connections, users and groups, and of
// each connection's group permissions.
//
// # What it owns
//
//   - Which connections a hub has, keyed by connection id (case-sensitive) inside a hub
//     matched case-insensitively (client-protocol.md §1.2, rest-api.md §1.3).
//   - Which connections belong to a user id and to a group (client-protocol.md §4.4:
//     group names are case-sensitive, a group exists while it has members).
//   - Each connection's permissions from its roles and from REST grants
//     (client-protocol.md §2.5, rest-api.md §3.19), including wildcard role patterns.
//
// It answers the questions behind rest-api.md §3: who gets a send to all, a user, a
// connection or a group; whether a connection, user or group exists; who a close by hub,
// user or group reaches (the caller applies "excluded"); and it applies add/remove of a
// connection or user to/from groups. It stores the engine's handle in Conn.Handle and
// never touches it.
//
// # What it must not do
//
// registry imports no package of this module, and nothing outside the standard library.
// It knows nothing about sockets, event loops or wire formats; it never sends, never
// logs, starts no goroutines and keeps no clock. It returns errors.
//
// # Data layout
//
// Entries live in Config.Shards lock stripes (a power of two, default 64), chosen with
// hash/maphash over (folded hub, name):
//
//	shard(hub, connection id) → the Conn, and the hub's member set for this stripe
//	shard(hub, user id)       → the user's member set
//	shard(hub, group)         → the group's member set
//
// A member set is a map for O(1) join and leave plus a cached, immutable []*Conn
// snapshot. A leave marks the snapshot stale and the next reader rebuilds it; a join
// appends past every reader's length, so a join storm stays O(n). Fan-out iterates a
// snapshot with no lock held. A hub has no single set: HubConns and RangeHubConns walk
// the per-stripe hub sets, so connects to one busy hub do not contend on one lock.
//
// Each Conn also records the groups it is in (for Groups, InGroup, LeaveAll and Remove)
// under its own mutex, and its permissions under a separate RWMutex.
//
// # Concurrency contract
//
// Every exported method is safe for concurrent use. Snapshots returned by GroupMembers
// and UserConns are shared: callers must not modify them. A snapshot is a view at one
// instant; a connection removed afterwards can still appear in it, so fan-out checks its
// own open flag or Conn.Closing per member. After Remove(c) returns, c is in no set and
// no later snapshot contains it, and Join(c, …) is a no-op returning false. Conn's
// exported fields are read without locks and so must not change after Add.
//
// # Lock order
//
// Locks are taken only in this order, compare nats-io/nats-server locksordering.txt:
//
//	Conn.mu  →  shard.mu
//
// and, independently, Conn.perms.mu, which is taken alone and never together with the
// others. Rules:
//
//   - At most one shard.mu is held at a time; an operation that touches several stripes
//     (Add, Remove, Join) takes and releases them one after another while holding
//     Conn.mu.
//   - Conn.mu is never taken while a shard.mu is held. Snapshot rebuilds run under a
//     shard's write lock and only read the member map, never a Conn.
//   - At most one Conn.mu is held at a time. Operations on many connections (add a user
//     to a group, close a group) are done by the caller per connection from a snapshot.
//   - Holding Conn.mu across the group updates is what makes Join racing Remove safe:
//     either Join runs first and Remove sees the new group in Conn.groups, or Remove runs
//     first and Join sees the removed state.
//   - No lock is held while calling back into caller code (RangeHubConns releases each
//     stripe before calling fn).
//
// # Multi-node (later)
//
// A Registry describes only the connections of its own node. A multi-node layer (for
// example over NATS) would sit in the engine, not here: it publishes each REST operation
// or client group change that may touch another node's connections (send to group or
// user, add a user to a group, close a group, grant to a connection id) to the other
// nodes, and each node applies it to its own Registry through the same methods a local
// request uses — Conn, UserConns, Join, Leave, LeaveAll, Grant, Revoke. Those methods are
// idempotent (Join reports false when already a member, Remove and Leave tolerate
// repeats), so redelivered or reordered operations do no harm. Exists checks become
// "local answer, else ask the other nodes" or read a presence summary the engine keeps
// from remote changes; the Registry itself never holds entries for remote connections,
// so there is no remote Conn whose Handle would be meaningless.
package registry
