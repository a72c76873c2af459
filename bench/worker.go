package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The worker protocol. The parent starts each worker as `webpubsub bench worker` (or
// Options.WorkerCommand) and talks to it in JSON lines: the first line on the worker's
// stdin is a workerConfig, the next ones are workerCommands; the worker answers each phase
// with one workerReport line on stdout and adds a "progress" report every second. A
// worker exits when it is told to stop, when its stdin closes (the parent is gone), or when
// its Lifetime has passed, whichever comes first; it also dies with the parent
// (Pdeathsig).

// workerConfig is the first line a worker reads.
type workerConfig struct {
	Service          Service       `json:"service"`
	Hub              string        `json:"hub"`
	First            int           `json:"first"` // global index of the worker's first connection
	Conns            int           `json:"conns"`
	Concurrency      int           `json:"concurrency"`
	HandshakeTimeout time.Duration `json:"handshake_timeout_ns"`
	LoopbackSources  int           `json:"loopback_sources"`
	// Group, when set, is joined by every connection (fanout).
	Group string `json:"group,omitempty"`
	// GroupSize, when positive, puts connection i in group chatGroup(i / GroupSize) (chat).
	GroupSize int `json:"group_size,omitempty"`
	// GroupCycle, when positive, puts connection i in group cycleGroup(i % GroupCycle)
	// (fanout to all).
	GroupCycle int `json:"group_cycle,omitempty"`
	// Unselected, when set, is a bitmap by connection index (see unselectedBits): the
	// fanout's filter is not true for a connection whose bit is set, so it expects none
	// of the sends. Encoded as base64 in JSON.
	Unselected []byte   `json:"unselected,omitempty"`
	Roles      []string `json:"roles,omitempty"`
	// Plain makes plain WebSocket clients (no subprotocol) whose publish plan sends echo
	// payloads and who count the echoes they receive (echo).
	Plain bool `json:"plain,omitempty"`
	// Protocol is the subprotocol of the clients that are not plain, one of Protocols;
	// empty means json.
	Protocol string `json:"protocol,omitempty"`
	// Lifetime bounds the worker's whole run, whatever the parent says.
	Lifetime time.Duration `json:"lifetime_ns"`
}

func (c *workerConfig) groupOf(i int) string {
	switch {
	case c.Group != "":
		return c.Group
	case c.GroupSize > 0:
		return chatGroup(i / c.GroupSize)
	case c.GroupCycle > 0:
		return cycleGroup(i % c.GroupCycle)
	}
	return ""
}

// chatGroup names chat group g.
func chatGroup(g int) string { return "chat-" + strconv.Itoa(g) }

// cycleGroup names group g of a fanout to all: g0, g1, ...
func cycleGroup(g int) string { return "g" + strconv.Itoa(g) }

// Worker commands.
const (
	cmdPublish = "publish" // chat, echo: every connection sends; answered by reportPublished
	cmdDrain   = "drain"   // wait for the expected deliveries; answered by reportDrained
	cmdStop    = "stop"    // close every connection; answered by reportClosed, then exit
	// cmdAwaitClose: expect the server to close every connection (drain); answered by
	// reportArmed at once, then reportServerClosed.
	cmdAwaitClose = "await-close"
)

// workerCommand is every line after the config.
type workerCommand struct {
	Cmd     string       `json:"cmd"`
	Publish *publishPlan `json:"publish,omitempty"`
	Drain   *drainPlan   `json:"drain,omitempty"`
	// AwaitClose is the plan of cmdAwaitClose.
	AwaitClose *awaitClosePlan `json:"await_close,omitempty"`
}

// publishPlan paces sends open-loop: each of the worker's n connections that are up sends
// Messages messages, the worker's sends evenly spread at n*Rate per second from StartNs.
// The messages are sendToGroup with an ackId, or echo payloads for plain clients.
type publishPlan struct {
	StartNs   int64   `json:"start_ns"` // unix ns
	Messages  int     `json:"messages"` // per connection
	Rate      float64 `json:"rate"`     // per connection, messages per second
	SizeBytes int     `json:"size_bytes"`
	// AckWait bounds the wait for the last acks after the last send.
	AckWait time.Duration `json:"ack_wait_ns"`
}

// drainPlan says how many stamped messages each member of a group should receive.
type drainPlan struct {
	Expect map[string]int64 `json:"expect"` // by group name
	// All, when positive, is what every connection should receive whatever its groups
	// (a send to all); it replaces Expect.
	All int64 `json:"all,omitempty"`
	// Quiet ends the wait once no delivery has arrived for this long.
	Quiet time.Duration `json:"quiet_ns"`
	// Until, when positive, ends the wait at this instant (unix ns) whatever arrives.
	Until int64 `json:"until_ns,omitempty"`
}

// want is how many stamped messages cl should receive under p: none when the sends'
// filter does not select it.
func (p *drainPlan) want(cl *client) int64 {
	switch {
	case cl.unselected:
		return 0
	case p.All > 0:
		return p.All
	}
	return p.Expect[cl.group]
}

// Worker report types.
const (
	reportProgress     = "progress"
	reportReady        = "ready"     // every connection connected or failed
	reportPublished    = "published" // the publish plan is done and its acks are in
	reportDrained      = "drained"
	reportClosed       = "closed"
	reportArmed        = "armed"         // cmdAwaitClose: the server's closes are now expected
	reportServerClosed = "server-closed" // cmdAwaitClose: every connection closed (and reconnected)
	reportError        = "error"         // the worker cannot go on; Error says why
)

// workerReport is every line a worker writes. Fields a report type does not use are empty.
type workerReport struct {
	Type string `json:"type"`
	Up   int64  `json:"up"`
	// Selected counts the connections up that the sends' filter selects (ready); without
	// a filter, all of them.
	Selected  int64            `json:"selected,omitempty"`
	Connected int64            `json:"connected"`
	Dropped   int64            `json:"dropped"`
	Failed    int64            `json:"failed"`
	Failures  map[string]int64 `json:"failures,omitempty"`
	Received  int64            `json:"received"`
	Sent      int64            `json:"sent"`
	Acked     int64            `json:"acked"`
	Nacked    int64            `json:"nacked"`
	Unparsed  int64            `json:"unparsed,omitempty"`
	Misrouted int64            `json:"misrouted,omitempty"`
	// SeqAcks, SeqGaps and Unsequenced count, on the reliable subprotocols, the
	// sequenceAck frames written, the messages whose sequenceId was not the previous + 1,
	// and the messages without one.
	SeqAcks     int64 `json:"seq_acks,omitempty"`
	SeqGaps     int64 `json:"seq_gaps,omitempty"`
	Unsequenced int64 `json:"unsequenced,omitempty"`
	// FirstDialNs and LastUpNs (unix ns) bound the ramp.
	FirstDialNs int64 `json:"first_dial_ns,omitempty"`
	LastUpNs    int64 `json:"last_up_ns,omitempty"`
	LastRecvNs  int64 `json:"last_recv_ns,omitempty"`
	// GroupUp counts the connections up by group (ready); GroupAcked the sends acked by
	// group (published).
	GroupUp    map[string]int64 `json:"group_up,omitempty"`
	GroupAcked map[string]int64 `json:"group_acked,omitempty"`
	// Short and Over count members that received fewer or more than expected (drained).
	Short      int64          `json:"short,omitempty"`
	Over       int64          `json:"over,omitempty"`
	Handshake  *histogramData `json:"handshake,omitempty"`
	Latency    *histogramData `json:"latency,omitempty"`
	AckLatency *histogramData `json:"ack_latency,omitempty"`
	// Drain is what the clients saw of the server's drain (reportServerClosed).
	Drain *drainReport `json:"drain,omitempty"`
	Error string       `json:"error,omitempty"`
}

// WorkerProfileEnv names an environment variable: when set, each worker writes a CPU
// profile of its run to $WEBPUBSUB_BENCH_WORKER_CPUPROFILE.<pid>, to show where the load
// generator's own CPU goes.
const WorkerProfileEnv = "WEBPUBSUB_BENCH_WORKER_CPUPROFILE"

// WorkerMain runs one bench worker on stdin and stdout and returns the process exit code.
// `webpubsub bench worker` calls it; people do not.
func WorkerMain(stdin io.Reader, stdout io.Writer) int {
	w := &worker{out: json.NewEncoder(stdout)}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	if !sc.Scan() {
		w.report(workerReport{Type: reportError, Error: "no configuration on stdin"})
		return 2
	}
	if err := json.Unmarshal(sc.Bytes(), &w.cfg); err != nil {
		w.report(workerReport{Type: reportError, Error: "configuration: " + err.Error()})
		return 2
	}
	if prefix := os.Getenv(WorkerProfileEnv); prefix != "" {
		if f, err := os.Create(prefix + "." + strconv.Itoa(os.Getpid())); err == nil {
			defer f.Close()
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile() // before the Close above
			}
		}
	}
	if w.cfg.Lifetime <= 0 {
		w.cfg.Lifetime = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Lifetime)
	defer cancel()

	cmds := make(chan workerCommand)
	go func() {
		// Stdin closing means the parent is gone (or done): end the worker's context too, so
		// a ramp or a drain in progress stops.
		defer cancel()
		defer close(cmds)
		for sc.Scan() {
			var c workerCommand
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				w.report(workerReport{Type: reportError, Error: "command: " + err.Error()})
				return
			}
			select {
			case cmds <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := w.run(ctx, cmds); err != nil {
		w.report(workerReport{Type: reportError, Error: err.Error()})
		return 1
	}
	return 0
}

type worker struct {
	cfg    workerConfig
	f      *fleet
	rv     receiver
	drainW *drainWatch // set by cmdAwaitClose

	mu  sync.Mutex // serializes writes to out
	out *json.Encoder

	sent atomic.Int64 // sendToGroup frames handed to the loops
}

func (w *worker) report(r workerReport) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.out.Encode(r)
}

// counts fills the counters every report carries.
func (w *worker) counts(typ string) workerReport {
	r := workerReport{Type: typ}
	if w.f != nil {
		r.Up, r.Connected, r.Dropped, r.Failed = w.f.up.Load(), w.f.connected.Load(), w.f.dropped.Load(), w.f.failed()
		r.SeqAcks, r.SeqGaps, r.Unsequenced = w.f.seqAcks.Load(), w.f.seqGaps.Load(), w.f.unsequenced.Load()
	}
	r.Received, r.Acked, r.Nacked, r.Unparsed = w.rv.received.Load(), w.rv.acked.Load(), w.rv.nacked.Load(), w.rv.unparsed.Load()
	r.Misrouted = w.rv.misrouted.Load()
	return r
}

func (w *worker) run(ctx context.Context, cmds <-chan workerCommand) error {
	cfg := &w.cfg
	if cfg.Conns <= 0 {
		return errors.New("bench worker: no connections to open")
	}
	if err := checkFileLimit(cfg.Conns); err != nil {
		return err
	}
	proto, err := parseProtocol(cfg.Protocol)
	if err != nil {
		return err
	}
	w.rv.proto = proto
	onMessage := w.rv.onMessage
	if cfg.Plain {
		onMessage = w.rv.onEcho
	}
	f, err := newFleet(fleetConfig{
		svc: cfg.Service, hub: cfg.Hub, first: cfg.First, conns: cfg.Conns,
		concurrency: cfg.Concurrency, handshakeTimeout: cfg.HandshakeTimeout,
		loopbackSources: cfg.LoopbackSources, groupOf: cfg.groupOf, roles: cfg.Roles,
		proto: proto, plain: cfg.Plain, onMessage: onMessage,
	})
	if err != nil {
		return err
	}
	w.f = f
	for _, cl := range f.clients {
		cl.unselected = bitSet(cfg.Unselected, cl.idx)
	}
	stopped := false
	defer func() {
		if !stopped {
			f.close(time.Second)
		}
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	progressDone := make(chan struct{})
	defer close(progressDone)
	go func() {
		for {
			select {
			case <-progressDone:
				return
			case <-tick.C:
				r := w.counts(reportProgress)
				r.Sent = w.sent.Load()
				w.report(r)
			}
		}
	}()

	f.open(ctx)
	ready := w.counts(reportReady)
	ready.Failures = f.failureCounts()
	ready.FirstDialNs, ready.LastUpNs = f.firstDial.Load(), f.lastUp.Load()
	ready.Handshake = f.handshake.snapshot()
	if cfg.Group != "" || cfg.GroupSize > 0 || cfg.GroupCycle > 0 {
		ready.GroupUp = make(map[string]int64)
		for _, cl := range f.clients {
			if cl.state.Load() == stateUp {
				ready.GroupUp[cl.group]++
			}
		}
	}
	for _, cl := range f.clients {
		if cl.state.Load() == stateUp && !cl.unselected {
			ready.Selected++
		}
	}
	w.report(ready)

	for {
		var c workerCommand
		var ok bool
		select {
		case c, ok = <-cmds:
		case <-ctx.Done():
			return fmt.Errorf("bench worker: lifetime of %s over: %w", cfg.Lifetime, ctx.Err())
		}
		if !ok {
			return errors.New("bench worker: stdin closed: the parent is gone")
		}
		switch c.Cmd {
		case cmdPublish:
			if c.Publish == nil {
				return errors.New("bench worker: publish without a plan")
			}
			w.publish(ctx, c.Publish)
		case cmdDrain:
			if c.Drain == nil {
				return errors.New("bench worker: drain without a plan")
			}
			w.drain(ctx, c.Drain)
		case cmdAwaitClose:
			if c.AwaitClose == nil {
				return errors.New("bench worker: await-close without a plan")
			}
			w.awaitClose(ctx, c.AwaitClose)
		case cmdStop:
			stopped = true
			f.close(closeWait)
			if w.drainW != nil {
				w.drainW.close()
			}
			r := w.counts(reportClosed)
			r.Failures = f.failureCounts()
			w.report(r)
			return nil
		default:
			return fmt.Errorf("bench worker: unknown command %q", c.Cmd)
		}
	}
}

// publish runs plan p on the connections up now and reports reportPublished.
func (w *worker) publish(ctx context.Context, p *publishPlan) {
	var senders []*client
	for _, cl := range w.f.clients {
		if cl.state.Load() == stateUp {
			cl.sentAtNs = make([]int64, p.Messages)
			senders = append(senders, cl)
		}
	}
	total := len(senders) * p.Messages
	perSecond := float64(len(senders)) * p.Rate
	start := time.Unix(0, p.StartNs)
	for s := 0; s < total && perSecond > 0; {
		if ctx.Err() != nil {
			break
		}
		due := min(total, int(time.Since(start).Seconds()*perSecond)+1)
		if due <= s {
			next := start.Add(time.Duration(float64(s) / perSecond * float64(time.Second)))
			time.Sleep(max(time.Until(next), 200*time.Microsecond))
			continue
		}
		for ; s < due; s++ {
			cl := senders[s%len(senders)]
			c := cl.conn.Load()
			if c == nil || cl.state.Load() != stateUp {
				continue
			}
			now := time.Now().UnixNano()
			k := cl.sent
			cl.sentAtNs[k] = now
			cl.sent++
			var frame []byte
			if w.cfg.Plain {
				frame = echoFrame(now, k, cl.idx, p.SizeBytes)
			} else {
				frame = sendToGroupFrame(w.rv.proto, cl.group, now, k, p.SizeBytes, k+1)
			}
			if c.AsyncWrite(frame, nil) == nil {
				w.sent.Add(1)
			}
		}
	}
	// Wait for the acks, bounded.
	deadline := time.Now().Add(p.AckWait)
	for w.rv.acked.Load()+w.rv.nacked.Load() < w.sent.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	r := w.counts(reportPublished)
	r.Sent = w.sent.Load()
	r.GroupAcked = make(map[string]int64)
	for _, cl := range senders {
		if n := cl.acked.Load(); n > 0 {
			r.GroupAcked[cl.group] += n
		}
	}
	r.AckLatency = w.rv.ackLatency.snapshot()
	w.report(r)
}

// drain waits until the members up now have received what p expects, no delivery arrived
// for p.Quiet, p.Until has passed, or ctx is done, and reports reportDrained.
func (w *worker) drain(ctx context.Context, p *drainPlan) {
	var expected int64
	for _, cl := range w.f.clients {
		if cl.state.Load() == stateUp {
			expected += p.want(cl)
		}
	}
	last, lastChange := w.rv.received.Load(), time.Now()
	for ctx.Err() == nil {
		got := w.rv.received.Load()
		if got >= expected {
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > p.Quiet {
			break
		}
		if p.Until > 0 && time.Now().UnixNano() > p.Until {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := w.counts(reportDrained)
	r.LastRecvNs = w.rv.lastRecvNs.Load()
	r.Latency = w.rv.latency.snapshot()
	for _, cl := range w.f.clients {
		want := p.want(cl)
		switch got := cl.received.Load(); {
		case cl.state.Load() == stateUp && got < want:
			r.Short++
		case got > want:
			r.Over++
		}
	}
	w.report(r)
}
