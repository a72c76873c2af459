package registry

// set is the member set of one group, user or hub stripe. It lives in a shard map and is
// guarded by that shard's lock.
//
// m gives O(1) add and delete. snap caches the members as a slice that fan-out iterates
// without any lock:
//   - nil means stale; the first reader rebuilds it under the shard's write lock.
//   - A delete makes it stale, because readers may still be iterating the old slice and
//     it must not be changed in place.
//   - An add to a current snapshot appends: the new element goes past the length every
//     earlier reader holds, so their views do not change. A join storm of n members
//     interleaved with reads therefore costs O(n) in total instead of O(n²).
//
// A set is deleted from its map when it becomes empty, so a set in a map has at least one
// member.
type set struct {
	m    map[*Conn]struct{}
	snap []*Conn
}

// addLocked adds c to the set m[k], creating the set. The caller holds the write lock of
// the shard that owns m.
func addLocked[K comparable](m map[K]*set, k K, c *Conn) {
	s := m[k]
	if s == nil {
		s = &set{m: make(map[*Conn]struct{}, 1)}
		m[k] = s
	}
	if _, in := s.m[c]; in {
		return
	}
	s.m[c] = struct{}{}
	if s.snap != nil {
		s.snap = append(s.snap, c)
	}
}

// deleteLocked removes c from the set m[k] and drops the set when it becomes empty. The
// caller holds the write lock of the shard that owns m.
func deleteLocked[K comparable](m map[K]*set, k K, c *Conn) {
	s := m[k]
	if s == nil {
		return
	}
	if _, in := s.m[c]; !in {
		return
	}
	if len(s.m) == 1 {
		delete(m, k)
		return
	}
	delete(s.m, c)
	s.snap = nil
}

// snapshotLocked returns the current snapshot, rebuilding it if stale. The caller holds
// the owning shard's write lock. Spare capacity lets later adds append in place; the
// returned slice has its capacity clipped so a caller's append cannot write into it.
func (s *set) snapshotLocked() []*Conn {
	if s.snap == nil {
		n := len(s.m)
		snap := make([]*Conn, 0, n+n/4+1)
		for c := range s.m {
			snap = append(snap, c)
		}
		s.snap = snap
	}
	return s.snap[:len(s.snap):len(s.snap)]
}
