package bench

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"syscall"
	"time"
)

// Options are the settings every scenario shares. The zero value of each field works
// except Service, which is required.
type Options struct {
	// Service is the server under test.
	Service Service
	// Hub is the hub clients connect to. Empty means "bench".
	Hub string
	// Timeout bounds the waits on the server: the connect ramp, and (fanout, chat) the
	// sending plus the drain. Planned time (an idle hold, M messages at R/s) is added to
	// it. Zero means 60s.
	Timeout time.Duration
	// HandshakeTimeout bounds one connection from dial to its connected event. Zero means 10s.
	HandshakeTimeout time.Duration
	// Concurrency is how many handshakes may be in flight at once, over all workers. Zero
	// means 200.
	Concurrency int
	// LoopbackSources spreads source addresses over 127.0.0.1–127.0.0.<n> (n ≤ 254) when
	// the server is on IPv4 loopback, so one address's ephemeral ports do not run out.
	// Zero means 254; negative means let the kernel pick.
	LoopbackSources int
	// ConnsPerWorker caps the connections of one worker process, so that none passes the
	// open-file limit. Zero means 15000, or less when ulimit -n is lower.
	ConnsPerWorker int
	// WorkerCommand is the argv that starts a worker process, which runs WorkerMain on its
	// stdin and stdout. Empty means this executable with "bench worker".
	WorkerCommand []string
	// WorkerEnv is added to the environment of each worker.
	WorkerEnv []string
	// ServerPID, when positive, is the server's process id: its memory, threads and CPU
	// time are read from /proc/PID.
	ServerPID int
	// Progress receives one status line a second. Nil means none.
	Progress io.Writer
	// Protocol is the subprotocol the clients of the idle, connect, fanout and chat
	// scenarios speak, one of Protocols: json, json.reliable (client-protocol.md §7;
	// clients acknowledge sequence ids like the JS SDK), protobuf or protobuf.reliable
	// (§8). Empty means json. The echo scenario's clients are plain and take none.
	Protocol string

	proto protocol // Protocol, parsed by setDefaults
}

// ErrConfig means a scenario's configuration is invalid; the message says which field.
var ErrConfig = errors.New("bench: invalid configuration")

// fileMargin is the descriptors a worker needs beside its connections: the runtime, the
// pollers, pipes, /proc reads.
const fileMargin = 64

func (o *Options) setDefaults() error {
	if o.Service.Endpoint == "" || o.Service.AccessKey == "" {
		return fmt.Errorf("%w: no service endpoint or access key", ErrConfig)
	}
	if o.Hub == "" {
		o.Hub = "bench"
	}
	proto, err := parseProtocol(o.Protocol)
	if err != nil {
		return err
	}
	o.proto, o.Protocol = proto, proto.name
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 200
	}
	if o.LoopbackSources == 0 {
		o.LoopbackSources = 254
	}
	limit := fileLimit()
	if o.ConnsPerWorker <= 0 {
		o.ConnsPerWorker = 15000
		if limit > 0 && uint64(o.ConnsPerWorker+fileMargin) > limit {
			o.ConnsPerWorker = int(limit) - fileMargin
		}
	}
	if limit > 0 && uint64(o.ConnsPerWorker+fileMargin) > limit {
		return fmt.Errorf("%w: --conns-per-worker %d needs %d open files per worker, but ulimit -n is %d: lower --conns-per-worker to %d or less",
			ErrConfig, o.ConnsPerWorker, o.ConnsPerWorker+fileMargin, limit, int(limit)-fileMargin)
	}
	if o.ConnsPerWorker <= 0 {
		return fmt.Errorf("%w: ulimit -n is %d, too low for a worker", ErrConfig, limit)
	}
	return nil
}

func (o *Options) pid() string { return strconv.Itoa(o.ServerPID) }

// fileLimit is this process's soft open-file limit, or 0 when unknown. Workers inherit it.
func fileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// checkFileLimit fails when conns connections would pass this process's open-file limit.
func checkFileLimit(conns int) error {
	if limit := fileLimit(); limit > 0 && uint64(conns+fileMargin) > limit {
		return fmt.Errorf("bench: %d connections need %d open files, but ulimit -n is %d: too many open files: lower --conns-per-worker",
			conns, conns+fileMargin, limit)
	}
	return nil
}

// closeWait is how long a scenario waits for its clients to close politely.
const closeWait = 10 * time.Second
