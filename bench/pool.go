package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrWorker means a worker process failed or broke the protocol; the message carries the
// worker's own words (and stderr) and what to do next.
var ErrWorker = errors.New("bench: worker failed")

// pool is the parent's side of its worker processes.
type pool struct {
	workers []*workerProc
	events  chan workerEvent
	extra   func() string // added to the progress line; nil for none
}

// workerProc is one child. Its reader goroutine owns the stdout pipe.
type workerProc struct {
	id     int
	cfg    workerConfig
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	exited chan struct{} // closed once the process has been waited for

	mu   sync.Mutex
	last workerReport // latest report of any type
}

type workerEvent struct {
	w   int
	r   workerReport
	err error // the worker's stdout ended
}

// splitConns splits n connections into the fewest workers of at most per each, as evenly
// as possible, and returns each worker's [first, first+count).
func splitConns(n, per int) (first, count []int) {
	k := (n + per - 1) / per
	at := 0
	for i := range k {
		c := n / k
		if i < n%k {
			c++
		}
		first, count = append(first, at), append(count, c)
		at += c
	}
	return first, count
}

// startPool starts enough workers for n connections, each configured from base with its own
// range and its share of the handshake concurrency.
func startPool(ctx context.Context, o *Options, base workerConfig, n int) (*pool, error) {
	argv := o.WorkerCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("%w: cannot find this executable to start workers: %v", ErrWorker, err)
		}
		argv = []string{exe, "bench", "worker"}
	}
	firsts, counts := splitConns(n, o.ConnsPerWorker)
	p := &pool{events: make(chan workerEvent, 16*len(counts))}
	for i := range counts {
		cfg := base
		cfg.First, cfg.Conns = firsts[i], counts[i]
		cfg.Concurrency = max(1, o.Concurrency/len(counts))
		w, err := p.spawn(i, argv, o.WorkerEnv, cfg)
		if err != nil {
			p.kill()
			return nil, err
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

func (p *pool) spawn(id int, argv, env []string, cfg workerConfig) (*workerProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	// The worker dies with the parent; it also exits when its stdin closes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	w := &workerProc{id: id, cfg: cfg, cmd: cmd, stderr: &tailBuffer{max: 4 << 10}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %v", ErrWorker, argv[0], err)
	}
	w.stdin = stdin
	go p.read(w, stdout)
	if err := w.send(cfg); err != nil {
		return w, fmt.Errorf("%w: worker %d: %v", ErrWorker, id, err)
	}
	return w, nil
}

// read forwards w's reports to p.events until w's stdout ends, then waits for w.
func (p *pool) read(w *workerProc, stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var r workerReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			p.events <- workerEvent{w: w.id, err: fmt.Errorf("bad report %.80q: %v", sc.Bytes(), err)}
			continue
		}
		w.mu.Lock()
		w.last = r
		w.mu.Unlock()
		if r.Type != reportProgress {
			p.events <- workerEvent{w: w.id, r: r}
		}
	}
	err := w.cmd.Wait()
	close(w.exited)
	if err == nil {
		err = errors.New("exited")
	}
	p.events <- workerEvent{w: w.id, err: err}
}

func (w *workerProc) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.stdin.Write(append(b, '\n'))
	return err
}

// broadcast sends c to every worker.
func (p *pool) broadcast(c workerCommand) error {
	for _, w := range p.workers {
		if err := w.send(c); err != nil {
			return fmt.Errorf("%w: worker %d: %v", ErrWorker, w.id, err)
		}
	}
	return nil
}

// await returns one report of type typ from every worker, or fails when a worker reports
// an error, exits, or ctx ends first.
func (p *pool) await(ctx context.Context, typ string) ([]workerReport, error) {
	out := make([]workerReport, len(p.workers))
	have := make([]bool, len(p.workers))
	for n := 0; n < len(p.workers); {
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("waiting for the workers (%s): %w", typ, ctx.Err())
		case ev := <-p.events:
			w := p.workers[ev.w]
			switch {
			case ev.err != nil && have[ev.w] && typ == reportClosed:
				// It exited after its last report, as it should.
			case ev.err != nil:
				return out, fmt.Errorf("%w: worker %d (pid %d): %v%s", ErrWorker, ev.w, w.cmd.Process.Pid, ev.err, w.stderr.suffix())
			case ev.r.Type == reportError:
				return out, fmt.Errorf("%w: worker %d: %s%s", ErrWorker, ev.w, ev.r.Error, hint(ev.r.Error))
			case ev.r.Type == typ && !have[ev.w]:
				out[ev.w], have[ev.w] = ev.r, true
				n++
			}
		}
	}
	return out, nil
}

// hint says what to do next about a worker's error.
func hint(msg string) string {
	if strings.Contains(msg, "too many open files") || strings.Contains(msg, "ulimit") {
		return " (too many open files: lower --conns-per-worker)"
	}
	return ""
}

// stop tells every worker to close its connections and collects their last reports; a
// worker that does not exit in time is killed.
func (p *pool) stop(ctx context.Context) ([]workerReport, error) {
	_ = p.broadcast(workerCommand{Cmd: cmdStop})
	ctx, cancel := context.WithTimeout(ctx, closeWait+5*time.Second)
	defer cancel()
	reps, err := p.await(ctx, reportClosed)
	for _, w := range p.workers {
		_ = w.stdin.Close()
	}
	p.wait(5 * time.Second)
	return reps, err
}

// wait waits for every worker to exit, at most d, and kills those left.
func (p *pool) wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for _, w := range p.workers {
		select {
		case <-w.exited:
		case <-t.C:
			p.kill()
			return
		}
	}
}

// kill ends every worker now.
func (p *pool) kill() {
	for _, w := range p.workers {
		if w.cmd.Process != nil {
			_ = w.cmd.Process.Kill()
		}
		if w.stdin != nil {
			_ = w.stdin.Close()
		}
	}
}

// benchCPU is the CPU time of this process and its live workers, from /proc.
func (p *pool) benchCPU() time.Duration {
	total, _ := readCPU("self")
	for _, w := range p.workers {
		select {
		case <-w.exited:
			continue
		default:
		}
		if t, err := readCPU(strconv.Itoa(w.cmd.Process.Pid)); err == nil {
			total += t
		}
	}
	return total
}

// benchRSS is the resident memory of this process and its live workers.
func (p *pool) benchRSS() int64 {
	st, _ := readStatus("self")
	total := st.RSSBytes
	for _, w := range p.workers {
		if st, err := readStatus(strconv.Itoa(w.cmd.Process.Pid)); err == nil {
			total += st.RSSBytes
		}
	}
	return total
}

// progress sums the workers' latest reports.
func (p *pool) progress() workerReport {
	var sum workerReport
	for _, w := range p.workers {
		w.mu.Lock()
		r := w.last
		w.mu.Unlock()
		sum.Up += r.Up
		sum.Connected += r.Connected
		sum.Failed += r.Failed
		sum.Dropped += r.Dropped
		sum.Received += r.Received
		sum.Sent += r.Sent
	}
	return sum
}

// startProgress prints a status line to o.Progress once a second until stop is called.
func (p *pool) startProgress(o *Options, name string, target int) (stop func()) {
	if o.Progress == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastRecv, lastSent int64
		last := start
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				s := p.progress()
				dt := now.Sub(last).Seconds()
				line := fmt.Sprintf("bench %s %4.0fs  workers %d  conns up %d/%d  errors %d  dropped %d  recv %.0f/s  sent %.0f/s",
					name, now.Sub(start).Seconds(), len(p.workers), s.Up, target, s.Failed, s.Dropped,
					float64(s.Received-lastRecv)/dt, float64(s.Sent-lastSent)/dt)
				if p.extra != nil {
					line += "  " + p.extra()
				}
				fmt.Fprintln(o.Progress, line)
				lastRecv, lastSent, last = s.Received, s.Sent, now
			}
		}
	}()
	return func() { close(quit); <-done }
}

// ramp is what the workers' ready reports add up to.
type ramp struct {
	up, connected int64
	selected      int64 // up and selected by the sends' filter (all up without one)
	failures      map[string]int64
	handshake     Histogram
	firstDial     int64 // unix ns
	lastUp        int64
	groupUp       map[string]int64
}

func mergeReady(reps []workerReport) (*ramp, error) {
	r := &ramp{failures: make(map[string]int64), groupUp: make(map[string]int64)}
	for _, rep := range reps {
		r.up += rep.Up
		r.selected += rep.Selected
		r.connected += rep.Connected
		addCounts(r.failures, rep.Failures)
		addCounts(r.groupUp, rep.GroupUp)
		if err := r.handshake.merge(rep.Handshake); err != nil {
			return nil, err
		}
		if rep.FirstDialNs > 0 && (r.firstDial == 0 || rep.FirstDialNs < r.firstDial) {
			r.firstDial = rep.FirstDialNs
		}
		r.lastUp = max(r.lastUp, rep.LastUpNs)
	}
	return r, nil
}

func (r *ramp) wall() time.Duration {
	if r.firstDial == 0 || r.lastUp < r.firstDial {
		return 0
	}
	return time.Duration(r.lastUp - r.firstDial)
}

func addCounts(dst, src map[string]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

// finalFailures merges the workers' closing failure counts (which include the ramp's).
func finalFailures(reps []workerReport) map[string]int64 {
	out := make(map[string]int64)
	for _, r := range reps {
		addCounts(out, r.Failures)
	}
	return out
}

// tailBuffer keeps the last max bytes written to it. Safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// suffix is ": stderr: …" or "".
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return ""
	}
	return "; its stderr: " + s
}
