package registry

import (
	"slices"
	"sync"
	"sync/atomic"
)

// connState is where a Conn is in its registry life. It only moves forward.
type connState uint8

const (
	connNew     connState = iota // created, not yet passed to Add
	connAdded                    // registered
	connRemoved                  // Remove ran; Join, Leave and Add are no-ops
)

// Conn is one connection's registry entry. The engine creates it, sets the exported
// fields, then calls Registry.Add. The exported fields must not change after Add.
//
// The registry never reads or writes Handle and never sends anything; it only answers
// which entries belong where.
type Conn struct {
	// ID is the connection id, compared case-sensitively (rest-api.md §1.3).
	ID string
	// Hub is the hub name as the client spelled it. The registry matches hubs
	// case-insensitively (client-protocol.md §1.2) and keeps the original for echoing.
	Hub string
	// UserID is the user the connection is authenticated as; "" means none.
	UserID string
	// Handle is the engine's value for this connection (its *conn). Opaque here.
	Handle any

	// closing is set by MarkClosing, from any goroutine. Read by the exists checks and by
	// the engine's fan-out; it does not take the entry out of any set.
	closing atomic.Bool

	// perms are the connection's group permissions, under their own lock so Can never
	// waits behind a Join.
	perms perms

	mu     sync.Mutex          // guards the fields below; taken before any shard lock
	state  connState           // see connState
	reg    *Registry           // the registry c was added to; nil before Add
	hubKey string              // Hub folded to lower case; set by Add
	groups map[string]struct{} // groups c is in; nil when none
}

// Groups returns a sorted copy of the groups c is currently in, or nil. Safe
// for concurrent use; the caller owns the returned slice.
func (c *Conn) Groups() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.groups) == 0 {
		return nil
	}
	out := make([]string, 0, len(c.groups))
	for g := range c.groups {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// InGroup reports whether c is currently in group. Safe for concurrent use; it does not
// allocate.
func (c *Conn) InGroup(group string) bool {
	c.mu.Lock()
	_, in := c.groups[group]
	c.mu.Unlock()
	return in
}

// GroupCount returns the number of groups c is currently in. Safe for concurrent use; it
// does not allocate.
func (c *Conn) GroupCount() int {
	c.mu.Lock()
	n := len(c.groups)
	c.mu.Unlock()
	return n
}

// MarkClosing records that closing c has started and reports whether this call was the
// first to do so. From then on the exists checks ignore c (rest-api.md §6), while c stays
// in its hub, user and groups until Registry.Remove. Safe for concurrent use.
func (c *Conn) MarkClosing() bool {
	return c.closing.CompareAndSwap(false, true)
}

// Closing reports whether MarkClosing was called. Fan-out loops check it per member to
// skip connections whose close has started. Safe for concurrent use.
func (c *Conn) Closing() bool {
	return c.closing.Load()
}

// Registered reports whether c has been added and not yet removed. Safe for concurrent
// use.
func (c *Conn) Registered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == connAdded
}
