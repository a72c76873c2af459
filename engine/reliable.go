package engine

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/webpubsub/webpubsub/wsproto"
)

// Redelivery buffer limits (client-protocol.md §7.4): exceeding either ends the
// logical connection, which cannot be recovered.
const (
	maxUnackedMessages = 1000
	maxUnackedBytes    = 16 << 20
)

// reliable is the part of a reliable-subprotocol connection that outlives its
// sockets (client-protocol.md §7): sequence ids, the unacked buffer, the
// reconnection token and which socket carries it now. It is reached from the loop of
// whichever socket carries it, from fan-out goroutines and from the recovery timer,
// so it has a mutex; nothing that can wait happens while it is held (gnet's
// AsyncWrite only queues).
type reliable struct {
	anchor *conn  // the first socket's conn: the registry handle of the logical connection
	token  string // reconnection token; immutable

	mu        sync.Mutex
	seq       uint64 // last sequence id assigned
	acked     uint64 // highest sequence id the client acknowledged
	unacked   []sentFrame
	bytes     int
	sock      *conn // the attached socket; nil while detached
	timer     *time.Timer
	ended     bool // terminal: no recovery, the logical connection is gone or going
	finalized bool
	acks      ackWindow
}

type sentFrame struct {
	seq     uint64
	frame   []byte
	expires int64 // unix nanoseconds after which a redelivery drops it; 0 = never
}

func newReliable(anchor *conn) *reliable {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return &reliable{anchor: anchor, token: base64.RawURLEncoding.EncodeToString(b[:]), sock: anchor}
}

// tokenMatches compares a presented reconnection token in constant time.
func (r *reliable) tokenMatches(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(r.token)) == 1
}

// send assigns the next sequence id, keeps the frame until it is acknowledged and
// writes it to the attached socket. encode renders the frame for a sequence id. on is
// the loop the caller runs on (nil off-loop). expires (unix nanoseconds, 0 = never)
// is the REST messageTtlSeconds deadline: a recovery after it does not redeliver the
// frame. It reports whether the message was taken (for metrics: a delivery). Safe
// for concurrent use.
func (r *reliable) send(encode func(seq uint64) []byte, on *loop, expires int64) bool {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return false
	}
	r.seq++
	frame := encode(r.seq)
	r.unacked = append(r.unacked, sentFrame{seq: r.seq, frame: frame, expires: expires})
	r.bytes += len(frame)
	if len(r.unacked) > maxUnackedMessages || r.bytes > maxUnackedBytes {
		r.mu.Unlock()
		r.terminate(closeSlowClient, "SlowClient: the reliable buffer of unacknowledged messages overflowed")
		return false
	}
	sock := r.sock
	direct := sock != nil && on == sock.lp && sock.asyncPending.Load() == 0
	if sock != nil && !direct {
		// Off the socket's loop: AsyncWrite only queues, and queueing under r.mu keeps
		// the loop's queue in sequence order.
		sock.asyncWrite(frame)
	}
	r.mu.Unlock()
	if direct {
		// On the socket's own loop with nothing queued: write now, outside r.mu,
		// because a failed write closes the socket synchronously and OnClose takes
		// r.mu. Nothing can overtake it: other senders queue behind this callback.
		sock.write(frame)
	}
	return true
}

// ack trims the buffer up to seq (client-protocol.md §7.3): acks at or below the
// current value are ignored, acks beyond what was sent are clamped.
func (r *reliable) ack(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq > r.seq {
		seq = r.seq
	}
	if seq <= r.acked {
		return
	}
	r.acked = seq
	i := 0
	for i < len(r.unacked) && r.unacked[i].seq <= seq {
		r.bytes -= len(r.unacked[i].frame)
		i++
	}
	n := copy(r.unacked, r.unacked[i:])
	clear(r.unacked[n:])
	r.unacked = r.unacked[:n]
}

// detach runs from OnClose of the attached socket: a non-terminal drop keeps the
// logical connection for the recovery window (§7.5); a terminal one ends it.
func (r *reliable) detach(sock *conn, terminal bool) {
	r.mu.Lock()
	if r.sock != sock {
		r.mu.Unlock()
		return // already replaced by a recovering socket
	}
	r.sock = nil
	if terminal || r.ended {
		r.ended = true
		r.mu.Unlock()
		r.finalize(sock.closedBy, sock.reason)
		return
	}
	window := sock.srv.settings().cfg.Limits.RecoveryWindow
	r.timer = time.AfterFunc(window, func() {
		r.mu.Lock()
		expired := r.sock == nil && !r.ended
		if expired {
			r.ended = true
		}
		r.mu.Unlock()
		if expired {
			r.finalize(closeNone, "the connection was not recovered within "+window.String())
		}
	})
	r.mu.Unlock()
}

// terminate ends the logical connection for a server-side reason: its socket (if
// any) is closed with 1008 after `disconnected`; a detached one is removed now.
func (r *reliable) terminate(reason closeReason, detail string) {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	sock := r.sock
	if r.timer != nil {
		r.timer.Stop()
	}
	r.mu.Unlock()
	if sock == nil {
		r.finalize(reason, detail)
		return
	}
	_ = sock.lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		sock.close(reason, detail) // OnClose then finalizes through detach
		return nil
	}))
}

// finalize removes the logical connection and sends the upstream disconnected
// event, exactly once. why is the close's category for metrics; reason the event's
// text. It runs on a loop, a timer or a REST worker, so it counts in the shared
// (atomic) counters: once per connection.
func (r *reliable) finalize(why closeReason, reason string) {
	r.mu.Lock()
	done := r.finalized
	r.finalized = true
	r.unacked, r.bytes = nil, 0
	r.mu.Unlock()
	if done {
		return
	}
	a := r.anchor
	a.srv.reg.Remove(a.rc)
	a.srv.reliables.Delete(r)
	sh := &a.srv.shared[a.hubIdx]
	sh.conns[protocolIndex(a.kind)].Add(-1)
	sh.closed[why.categoryIndex()].Add(1)
	if a.sess != nil {
		// The session matches the hub's current handlers (refreshHub keeps it up to
		// date); a.hub may be stale, and is another loop's to write.
		a.sess.Disconnected(reason)
	}
}

// recover attaches a new socket to a detached (or still attached, but replaced)
// logical connection and redelivers every unacknowledged message in order
// (§7.5 steps 3-5). It runs on nc's loop; resp already holds the 101 response. It
// returns what nc must write: the caller writes it after r.mu is released (see
// send), and other senders can only queue behind it on this loop.
func (r *reliable) recover(nc *conn, resp []byte) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return nil, false
	}
	if old := r.sock; old != nil && old != nc {
		// The old socket is still open (the client saw the drop first): it is
		// replaced without ending the logical connection.
		r.sock = nil
		_ = old.lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			old.replaced = true
			old.close(closeClient, "")
			return nil
		}))
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	a := r.anchor
	// a.hub belongs to a's loop: look the hub up afresh rather than read it.
	st := nc.srv.settings()
	nc.rc, nc.kind, nc.hub, nc.hubGen, nc.sess, nc.rel = a.rc, a.kind, st.hub(a.rc.Hub), st.gen, a.sess, r
	nc.hubIdx = a.hubIdx
	now := nc.srv.now().UnixNano()
	nc.lastRead, nc.lastPing = now, now
	nc.state = stateWS
	nc.srv.wsConns.Add(1)
	r.sock = nc
	resp = wsproto.AppendFrame(resp, frameOp(a.kind), appendConnected(a.kind, nil, a.rc.UserID, a.rc.ID, r.token))
	// Redeliver what is unacknowledged, except messages whose TTL ran out while
	// the client was away (rest-api.md §3.5): they are dropped for good, and the
	// client sees a gap in the sequence ids, which the protocol allows.
	kept := r.unacked[:0]
	for _, f := range r.unacked {
		if f.expires != 0 && f.expires < now {
			r.bytes -= len(f.frame)
			continue
		}
		kept = append(kept, f)
		resp = append(resp, f.frame...)
	}
	clear(r.unacked[len(kept):])
	r.unacked = kept
	return resp, true
}
