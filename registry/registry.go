package registry

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultShards is the shard count used when Config.Shards is zero. centrifugal/centrifuge
// hub.go uses the same figure; with 64 shards a connect storm on 32 cores rarely finds a
// shard lock taken.
const DefaultShards = 64

// maxShards bounds Config.Shards. Each shard costs about 128 bytes plus its maps, and more
// shards than this only make HubConns slower.
const maxShards = 1 << 16

// maxHubBytes is the longest hub name (client-protocol.md §1.2: 1–128 characters). Lookups
// fold a hub name of at most this length into a stack buffer, so they do not allocate.
const maxHubBytes = 128

var (
	// ErrInvalidConfig is returned by New when a Config field is out of range. The caller
	// should fix the configuration; the error wraps a message naming the field.
	ErrInvalidConfig = errors.New("registry: invalid config")

	// ErrDuplicateConn is returned by Add when the hub already has a connection with the
	// same id. The caller should not serve the new connection under that id (generate a
	// fresh id, or Remove the old entry first when it is being replaced).
	ErrDuplicateConn = errors.New("registry: connection id already registered")

	// ErrInvalidConn is returned by Add when the Conn has an empty ID or Hub, or was
	// already passed to Add. A Conn is added at most once; create a new one instead.
	ErrInvalidConn = errors.New("registry: invalid or reused connection entry")
)

// Config configures a Registry. The zero value works.
type Config struct {
	// Shards is the number of lock stripes for connections, users and groups. It must be
	// a power of two no larger than 65536. Zero means DefaultShards (64).
	Shards int
}

// Registry is the node-local index of hubs, connections, users and groups.
// All methods are safe for concurrent use.
type Registry struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
	count  atomic.Int64
}

// key names a connection, user or group inside a hub. hub is always the folded
// (lower-cased) hub name.
type key struct {
	hub, name string
}

// shard is one lock stripe. Which shard holds an entry depends on the kind:
// conns and hubs by (hub, connection id), users by (hub, user id), groups by
// (hub, group). An operation holds at most one shard lock at a time.
type shard struct {
	mu     sync.RWMutex
	conns  map[key]*Conn   // (hub, connection id) → entry
	hubs   map[string]*set // hub → the hub's connections whose id hashes to this shard
	users  map[key]*set    // (hub, user id) → connections of that user
	groups map[key]*set    // (hub, group) → members
	_      [64]byte        // keep neighbouring shards' locks off one cache line
}

// New returns an empty Registry configured by cfg.
func New(cfg Config) (*Registry, error) {
	n := cfg.Shards
	if n == 0 {
		n = DefaultShards
	}
	if n < 0 || n > maxShards || n&(n-1) != 0 {
		return nil, fmt.Errorf("%w: Shards=%d is not a power of two in [1, %d]", ErrInvalidConfig, cfg.Shards, maxShards)
	}
	r := &Registry{
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]shard, n),
	}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.conns = make(map[key]*Conn)
		sh.hubs = make(map[string]*set)
		sh.users = make(map[key]*set)
		sh.groups = make(map[key]*set)
	}
	return r, nil
}

// shardOf picks the shard for name inside the folded hub hubKey. It must agree with
// shardOfBytes for equal contents (maphash.String and maphash.Bytes hash equal contents
// alike).
func (r *Registry) shardOf(hubKey, name string) *shard {
	h := maphash.String(r.seed, name) ^ maphash.String(r.seed, hubKey)*0x9e3779b97f4a7c15
	return &r.shards[h&r.mask]
}

func (r *Registry) shardOfBytes(hubKey []byte, name string) *shard {
	h := maphash.String(r.seed, name) ^ maphash.Bytes(r.seed, hubKey)*0x9e3779b97f4a7c15
	return &r.shards[h&r.mask]
}

// foldHub appends the hub name with ASCII letters lower-cased. Hub names are ASCII
// (client-protocol.md §1.2) and matched case-insensitively (§1.2 [R], rest-api.md §1.3);
// other bytes are kept as they are, so Add and the lookups always agree.
func foldHub(dst []byte, hub string) []byte {
	for i := 0; i < len(hub); i++ {
		b := hub[i]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	return dst
}

// hubKeyOf returns the folded hub name as a string. It allocates only when hub contains
// an upper-case letter.
func hubKeyOf(hub string) string {
	for i := 0; i < len(hub); i++ {
		if b := hub[i]; 'A' <= b && b <= 'Z' {
			return string(foldHub(make([]byte, 0, len(hub)), hub))
		}
	}
	return hub
}

// Add registers c under its hub, id and user. The engine sets c's exported fields first
// and must not change them afterwards. Add returns ErrDuplicateConn if the hub already has
// a connection with c.ID, and ErrInvalidConn if c.ID or c.Hub is empty or c was already
// added. Safe for concurrent use.
func (r *Registry) Add(c *Conn) error {
	if c.ID == "" || c.Hub == "" {
		return ErrInvalidConn
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connNew {
		return ErrInvalidConn
	}
	hk := hubKeyOf(c.Hub)

	sh := r.shardOf(hk, c.ID)
	k := key{hk, c.ID}
	sh.mu.Lock()
	if _, dup := sh.conns[k]; dup {
		sh.mu.Unlock()
		return ErrDuplicateConn
	}
	sh.conns[k] = c
	addLocked(sh.hubs, hk, c)
	sh.mu.Unlock()

	if c.UserID != "" {
		ush := r.shardOf(hk, c.UserID)
		uk := key{hk, c.UserID}
		ush.mu.Lock()
		addLocked(ush.users, uk, c)
		ush.mu.Unlock()
	}

	c.hubKey = hk
	c.reg = r
	c.state = connAdded
	r.count.Add(1)
	return nil
}

// Remove takes c out of its hub, its user and every group it is in. It is idempotent,
// and a no-op for a Conn that was never added. Once Remove returns, no later snapshot
// contains c; snapshots taken earlier may. Safe for concurrent use.
func (r *Registry) Remove(c *Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connAdded || c.reg != r {
		return
	}
	c.state = connRemoved
	hk := c.hubKey

	for g := range c.groups {
		r.leaveGroupLocked(c, g)
	}
	c.groups = nil

	if c.UserID != "" {
		ush := r.shardOf(hk, c.UserID)
		ush.mu.Lock()
		deleteLocked(ush.users, key{hk, c.UserID}, c)
		ush.mu.Unlock()
	}

	sh := r.shardOf(hk, c.ID)
	k := key{hk, c.ID}
	sh.mu.Lock()
	if sh.conns[k] == c {
		delete(sh.conns, k)
	}
	deleteLocked(sh.hubs, hk, c)
	sh.mu.Unlock()

	r.count.Add(-1)
}

// Conn returns the connection with id in hub (matched case-insensitively), or nil.
// It returns connections that are closing too; see ConnExists. Safe for concurrent use;
// it does not allocate for hub names of up to 128 bytes.
func (r *Registry) Conn(hub, id string) *Conn {
	var buf [maxHubBytes]byte
	hk := foldHub(buf[:0], hub)
	sh := r.shardOfBytes(hk, id)
	sh.mu.RLock()
	c := sh.conns[key{string(hk), id}]
	sh.mu.RUnlock()
	return c
}

// ConnExists reports whether hub has a connection with id that is not closing
// (rest-api.md §3.6 and §6). Safe for concurrent use.
func (r *Registry) ConnExists(hub, id string) bool {
	c := r.Conn(hub, id)
	return c != nil && !c.Closing()
}

// Join adds c to group. It returns true if c was not in the group before, and false if it
// was, or if c is not (or no longer) registered. Safe for concurrent use.
func (r *Registry) Join(c *Conn, group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connAdded || c.reg != r {
		return false
	}
	if _, in := c.groups[group]; in {
		return false
	}
	if c.groups == nil {
		c.groups = make(map[string]struct{})
	}
	// The name often aliases a request or token buffer; the registry keeps its own copy
	// so a long-lived membership never pins that buffer.
	group = strings.Clone(group)
	c.groups[group] = struct{}{}

	sh := r.shardOf(c.hubKey, group)
	sh.mu.Lock()
	addLocked(sh.groups, key{c.hubKey, group}, c)
	sh.mu.Unlock()
	return true
}

// Leave removes c from group. It returns true if c was in the group. Safe for concurrent
// use.
func (r *Registry) Leave(c *Conn, group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connAdded || c.reg != r {
		return false
	}
	if _, in := c.groups[group]; !in {
		return false
	}
	delete(c.groups, group)
	r.leaveGroupLocked(c, group)
	return true
}

// LeaveAll removes c from every group it is in (rest-api.md §3.15). Safe for concurrent
// use.
func (r *Registry) LeaveAll(c *Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != connAdded || c.reg != r {
		return
	}
	for g := range c.groups {
		r.leaveGroupLocked(c, g)
	}
	c.groups = nil
}

// leaveGroupLocked takes c out of group's member set. The caller holds c.mu.
func (r *Registry) leaveGroupLocked(c *Conn, group string) {
	sh := r.shardOf(c.hubKey, group)
	sh.mu.Lock()
	deleteLocked(sh.groups, key{c.hubKey, group}, c)
	sh.mu.Unlock()
}

// GroupMembers returns the members of group in hub, or nil if the group has none
// (groups exist only while they have members, client-protocol.md §4.4). The slice is an
// immutable snapshot shared with other callers: do not modify it. It may include
// connections that are closing or were removed after the snapshot was taken, so a
// fan-out checks Conn.Closing (or its own open flag) per member. Safe for concurrent use;
// it does not allocate while the cached snapshot is current.
func (r *Registry) GroupMembers(hub, group string) []*Conn {
	var buf [maxHubBytes]byte
	hk := foldHub(buf[:0], hub)
	sh := r.shardOfBytes(hk, group)
	sh.mu.RLock()
	s := sh.groups[key{string(hk), group}]
	if s == nil {
		sh.mu.RUnlock()
		return nil
	}
	if snap := s.snap; snap != nil {
		sh.mu.RUnlock()
		return snap[:len(snap):len(snap)]
	}
	sh.mu.RUnlock()
	return snapshotOf(sh, sh.groups, key{string(hk), group})
}

// UserConns returns the connections of userID in hub, or nil. The slice is an immutable
// snapshot like GroupMembers'. Safe for concurrent use.
func (r *Registry) UserConns(hub, userID string) []*Conn {
	var buf [maxHubBytes]byte
	hk := foldHub(buf[:0], hub)
	sh := r.shardOfBytes(hk, userID)
	sh.mu.RLock()
	s := sh.users[key{string(hk), userID}]
	if s == nil {
		sh.mu.RUnlock()
		return nil
	}
	if snap := s.snap; snap != nil {
		sh.mu.RUnlock()
		return snap[:len(snap):len(snap)]
	}
	sh.mu.RUnlock()
	return snapshotOf(sh, sh.users, key{string(hk), userID})
}

// snapshotOf rebuilds (if still needed) and returns the snapshot of the set m[k], where
// m is one of sh's maps. It takes sh's write lock, because the cached snapshot is written
// under it; the fast paths read a current snapshot under the read lock instead.
func snapshotOf[K comparable](sh *shard, m map[K]*set, k K) []*Conn {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := m[k]
	if s == nil {
		return nil
	}
	return s.snapshotLocked()
}

// HubConns returns all connections of hub, or nil. The returned slice is freshly
// allocated and owned by the caller; the *Conn values are shared. For a send to all
// connections RangeHubConns avoids the copy. Safe for concurrent use.
func (r *Registry) HubConns(hub string) []*Conn {
	var out []*Conn
	r.RangeHubConns(hub, func(c *Conn) bool {
		out = append(out, c)
		return true
	})
	return out
}

// RangeHubConns calls fn for each connection of hub until fn returns false. It iterates
// per-shard snapshots and holds no lock while fn runs, so fn may call Registry methods.
// A connection added or removed during the call may or may not be visited. Safe for
// concurrent use.
func (r *Registry) RangeHubConns(hub string, fn func(c *Conn) bool) {
	var buf [maxHubBytes]byte
	hk := foldHub(buf[:0], hub)
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		s := sh.hubs[string(hk)]
		var snap []*Conn
		if s != nil {
			snap = s.snap
		}
		sh.mu.RUnlock()
		if s != nil && snap == nil {
			snap = snapshotOf(sh, sh.hubs, string(hk))
		}
		for _, c := range snap {
			if !fn(c) {
				return
			}
		}
	}
}

// GroupExists reports whether group in hub has at least one member that is not closing
// (rest-api.md §3.12 and §6). Safe for concurrent use.
func (r *Registry) GroupExists(hub, group string) bool {
	return anyOpen(r.GroupMembers(hub, group))
}

// UserExists reports whether userID has at least one connection in hub that is not
// closing (rest-api.md §3.11 and §6). Safe for concurrent use.
func (r *Registry) UserExists(hub, userID string) bool {
	return anyOpen(r.UserConns(hub, userID))
}

func anyOpen(conns []*Conn) bool {
	for _, c := range conns {
		if !c.Closing() {
			return true
		}
	}
	return false
}

// Count returns the number of registered connections across all hubs. Safe for
// concurrent use.
func (r *Registry) Count() int {
	return int(r.count.Load())
}
