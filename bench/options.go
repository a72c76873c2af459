package bench

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Options are the settings every scenario shares. The zero value of each field works
// except Service, which is required.
type Options struct {
	// Service is the server under test.
	Service Service
	// Hub is the hub clients connect to. Empty means "bench".
	Hub string
	// Timeout bounds the waits on the server: the connect ramp, and (fanout) the sending
	// plus the drain. Planned time (an idle hold, M messages at R/s) is added to it. Zero
	// means 60s.
	Timeout time.Duration
	// HandshakeTimeout bounds one connection from dial to its connected event. Zero means 10s.
	HandshakeTimeout time.Duration
	// Concurrency is how many handshakes may be in flight at once. Zero means 200.
	Concurrency int
	// LoopbackSources spreads source addresses over 127.0.0.1–127.0.0.<n> (n ≤ 254) when
	// the server is on IPv4 loopback, so one address's ephemeral ports do not run out.
	// Zero means 254; negative means let the kernel pick.
	LoopbackSources int
	// ServerPID, when positive, is the server's process id: its memory, threads and CPU
	// time are read from /proc/PID.
	ServerPID int
	// Progress receives one status line a second. Nil means none.
	Progress io.Writer
}

// ErrConfig means a scenario's configuration is invalid; the message says which field.
var ErrConfig = errors.New("bench: invalid configuration")

func (o *Options) setDefaults() error {
	if o.Service.Endpoint == "" || o.Service.AccessKey == "" {
		return fmt.Errorf("%w: no service endpoint or access key", ErrConfig)
	}
	if o.Hub == "" {
		o.Hub = "bench"
	}
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
	return nil
}

func (o *Options) pid() string { return strconv.Itoa(o.ServerPID) }

func (o *Options) fleetConfig(conns int, groups []string, onMessage func(int, []byte)) fleetConfig {
	return fleetConfig{
		svc:              o.Service,
		hub:              o.Hub,
		conns:            conns,
		concurrency:      o.Concurrency,
		handshakeTimeout: o.HandshakeTimeout,
		loopbackSources:  o.LoopbackSources,
		groups:           groups,
		onMessage:        onMessage,
	}
}

// closeWait is how long a scenario waits for its clients to close politely.
const closeWait = 10 * time.Second

func fleetStatus(f *fleet, target int) string {
	var failed int64
	for _, n := range f.failureCounts() {
		failed += n
	}
	return fmt.Sprintf("conns up %d/%d  failed %d", f.up.Load(), target, failed)
}
