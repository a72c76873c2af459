package engine

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/webpubsub/webpubsub/upstream"
	"github.com/webpubsub/webpubsub/wsproto"
)

// Metrics (operations.md §3). The hot path pays nothing for them: every counter a
// connection or a delivery moves is a plain field of its event loop's loopStats,
// written only by that loop's goroutine. At scrape time the collector posts one task
// per loop (EventLoop.Execute) that copies the loop's counters; the copies are summed.
// Work that runs off the loops (REST workers, upstream workers, reliable connections
// that end on a timer) counts once per request or per connection, never per delivery,
// with atomics or prometheus' own counters.

// maxDynamicHubLabels bounds the hub label values given to hubs that are not in the
// configuration; later dynamic hubs are counted as hub="other".
const maxDynamicHubLabels = 100

// otherHubLabel is the hub label of dynamic hubs beyond maxDynamicHubLabels.
const otherHubLabel = "other"

// protocolLabels are the `protocol` label values, indexed by protocolIndex.
var protocolLabels = [...]string{"none", "json", "json.reliable", "protobuf", "protobuf.reliable"}

const numProtocols = len(protocolLabels)

// protocolIndex maps a subprotocol kind to its index in protocolLabels.
func protocolIndex(k wsproto.Kind) int {
	switch k {
	case wsproto.KindJSON:
		return 1
	case wsproto.KindJSONReliable:
		return 2
	case wsproto.KindProtobuf:
		return 3
	case wsproto.KindProtobufReliable:
		return 4
	}
	return 0
}

// closeCategories are the close categories of client-protocol.md §9.6, the
// `category` label values of webpubsub_connections_closed_total.
var closeCategories = [...]string{
	"Normal", "SlowClient", "PingTimeout", "ServiceReload", "ClosedByAppServer", "BadRequest",
	"Unauthorized", "Throttled", "SendEventFailed", "EventHandlerNotFound", "ServiceTransientError",
}

const numCategories = len(closeCategories)

// categoryIndex is the index of r.category() in closeCategories.
func (r closeReason) categoryIndex() int {
	cat := r.category()
	for i, c := range closeCategories {
		if c == cat {
			return i
		}
	}
	return 0
}

// hubCounters are the per-hub counters of one event loop. Only the loop's goroutine
// writes them; the collector reads a copy the loop made (loop.snapshot).
type hubCounters struct {
	conns          [numProtocols]int64 // connections opened minus connections removed, by protocol
	opened         int64
	closed         [numCategories]int64
	received       int64 // client → server data messages
	receivedBytes  int64 // their payload bytes
	delivered      int64 // server → client data messages, one per recipient
	deliveredBytes int64 // their payload bytes
}

// loopStats is everything one event loop counts. Only that loop's goroutine writes
// it, so its fields are plain integers.
type loopStats struct {
	hubs []hubCounters // indexed by hub label index (hubLabels)
	// rejected counts refused WebSocket upgrades by HTTP status (100..599).
	rejected [600]int64
}

// add sums o into st; both have the same number of hubs.
func (st *loopStats) add(o *loopStats) {
	for i := range o.hubs {
		a, b := &st.hubs[i], &o.hubs[i]
		for p := range a.conns {
			a.conns[p] += b.conns[p]
		}
		a.opened += b.opened
		for c := range a.closed {
			a.closed[c] += b.closed[c]
		}
		a.received += b.received
		a.receivedBytes += b.receivedBytes
		a.delivered += b.delivered
		a.deliveredBytes += b.deliveredBytes
	}
	for i, n := range o.rejected {
		st.rejected[i] += n
	}
}

// rejectHandshake counts a refused upgrade. Must run on lp's goroutine.
func (lp *loop) rejectHandshake(status int) {
	if status >= 100 && status < len(lp.stats.rejected) {
		lp.stats.rejected[status]++
	}
}

// sharedHubCounters are per-hub counters moved off the event loops: by reliable
// connections that end on a timer or a REST worker, and by REST sends to reliable
// connections (once per send, not per recipient).
type sharedHubCounters struct {
	conns          [numProtocols]atomic.Int64 // removals (negative)
	closed         [numCategories]atomic.Int64
	delivered      atomic.Int64
	deliveredBytes atomic.Int64
}

// hubLabels assigns each hub a small index into the per-loop counter arrays, once
// per connection (at upgrade): configured hubs first, then up to
// maxDynamicHubLabels dynamic hubs by lower-cased name, then one shared "other".
// Safe for concurrent use.
type hubLabels struct {
	configured map[string]int // lower-cased name → index; immutable after New

	mu      sync.RWMutex
	dynamic map[string]int // lower-cased name → index
	names   []string       // index → label value; "" while unassigned; guarded by mu
	other   int
}

func newHubLabels(configured []string) *hubLabels {
	h := &hubLabels{
		configured: make(map[string]int, len(configured)),
		dynamic:    make(map[string]int),
		names:      make([]string, len(configured)+maxDynamicHubLabels+1),
	}
	for i, name := range configured {
		h.configured[strings.ToLower(name)] = i
		h.names[i] = name
	}
	h.other = len(h.names) - 1
	return h
}

// size is the number of indexes, assigned or not: the length of counter arrays.
func (h *hubLabels) size() int { return len(h.names) }

// index returns the label index of hub; hub names are case-insensitive.
func (h *hubLabels) index(hub string) uint16 {
	key := strings.ToLower(hub)
	if i, ok := h.configured[key]; ok {
		return uint16(i)
	}
	h.mu.RLock()
	i, ok := h.dynamic[key]
	h.mu.RUnlock()
	if ok {
		return uint16(i)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if i, ok := h.dynamic[key]; ok {
		return uint16(i)
	}
	if len(h.dynamic) == maxDynamicHubLabels {
		h.names[h.other] = otherHubLabel
		return uint16(h.other)
	}
	i = len(h.configured) + len(h.dynamic)
	h.dynamic[key] = i
	h.names[i] = key
	return uint16(i)
}

// labels returns a copy of index → label value ("" = unassigned).
func (h *hubLabels) labels() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]string(nil), h.names...)
}

// snapshot is what a loop reports to the collector.
type snapshot struct {
	stats         loopStats
	outboundBytes int64
}

// snapshot copies the loop's counters and sums its connections' queued outbound
// bytes. Must run on lp's goroutine.
func (lp *loop) snapshot() *snapshot {
	sn := &snapshot{stats: loopStats{hubs: append([]hubCounters(nil), lp.stats.hubs...), rejected: lp.stats.rejected}}
	for _, c := range lp.conns {
		sn.outboundBytes += int64(c.gc.OutboundBuffered())
	}
	return sn
}

// scrapeWait bounds how long a scrape waits for one loop's snapshot; a loop that
// does not answer in time (busy with a huge fan-out) is reported with its previous
// snapshot, so counters never go backwards.
const scrapeWait = 2 * time.Second

// metrics holds the Prometheus registry and the series that are not per loop.
type metrics struct {
	s   *Server
	reg *prometheus.Registry

	restRequests *prometheus.CounterVec
	restDuration *prometheus.HistogramVec
	upRequests   *prometheus.CounterVec
	upDuration   *prometheus.HistogramVec

	connsDesc, openedDesc, closedDesc, rejectedDesc *prometheus.Desc
	receivedDesc, receivedBytesDesc                 *prometheus.Desc
	deliveredDesc, deliveredBytesDesc               *prometheus.Desc
	outboundDesc, reliableDesc                      *prometheus.Desc

	mu   sync.Mutex          // serialises scrapes; guards last
	last map[*loop]*snapshot // the latest snapshot of each loop
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		s:    s,
		reg:  prometheus.NewRegistry(),
		last: make(map[*loop]*snapshot),
		restRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webpubsub_rest_requests_total",
			Help: "REST API requests by OpenAPI operationId (unknown for unrouted requests) and HTTP status.",
		}, []string{"operation", "code"}),
		restDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "webpubsub_rest_request_duration_seconds",
			Help:    "Time from a whole REST request until its response is queued to the socket (202 sends: accepted, not delivered).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100 µs … 6.5 s
		}, []string{"operation"}),
		upRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webpubsub_upstream_requests_total",
			Help: "HTTP requests to event handlers by event (connect, connected, disconnected, user, validate) and outcome (success, rejected, failed, retried).",
		}, []string{"event", "outcome"}),
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "webpubsub_upstream_request_duration_seconds",
			Help:    "Duration of one attempt of a request to an event handler.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8), // 1 ms … 16 s
		}, []string{"event"}),
		connsDesc: prometheus.NewDesc("webpubsub_connections",
			"Open client connections; recovering reliable connections count until removed.", []string{"hub", "protocol"}, nil),
		openedDesc: prometheus.NewDesc("webpubsub_connections_opened_total",
			"Client connections opened (handshakes completed with 101; a reliable recovery is not a new connection).", []string{"hub"}, nil),
		closedDesc: prometheus.NewDesc("webpubsub_connections_closed_total",
			"Client connections removed, by close category (client-protocol.md §9.6).", []string{"hub", "category"}, nil),
		rejectedDesc: prometheus.NewDesc("webpubsub_handshakes_rejected_total",
			"Refused WebSocket upgrades by HTTP status.", []string{"code"}, nil),
		receivedDesc: prometheus.NewDesc("webpubsub_messages_received_total",
			"Client to server data messages (sendToGroup, event, invoke, simple-client frames).", []string{"hub"}, nil),
		receivedBytesDesc: prometheus.NewDesc("webpubsub_received_bytes_total",
			"Payload bytes of webpubsub_messages_received_total.", []string{"hub"}, nil),
		deliveredDesc: prometheus.NewDesc("webpubsub_messages_delivered_total",
			"Server to client data messages, one per recipient (group and server messages, simple-client frames).", []string{"hub"}, nil),
		deliveredBytesDesc: prometheus.NewDesc("webpubsub_delivered_bytes_total",
			"Payload bytes of webpubsub_messages_delivered_total.", []string{"hub"}, nil),
		outboundDesc: prometheus.NewDesc("webpubsub_outbound_queued_bytes",
			"Bytes waiting in every connection's outbound buffer.", nil, nil),
		reliableDesc: prometheus.NewDesc("webpubsub_reliable_buffered_messages",
			"Messages held for reliable connections until acknowledged.", nil, nil),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.restRequests, m.restDuration, m.upRequests, m.upDuration,
		m,
	)
	return m
}

// restDone counts one REST request. Safe for concurrent use; called once per
// request, off the loops (and on a loop for the rare answers given there).
func (m *metrics) restDone(op string, status int, d time.Duration) {
	m.restRequests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.restDuration.WithLabelValues(op).Observe(d.Seconds())
}

// upstreamAttempt is upstream.Config.OnAttempt.
func (m *metrics) upstreamAttempt(a upstream.Attempt) {
	m.upRequests.WithLabelValues(a.Event, a.Outcome.String()).Inc()
	m.upDuration.WithLabelValues(a.Event).Observe(a.Duration.Seconds())
}

// Describe implements prometheus.Collector for the per-loop series.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.connsDesc, m.openedDesc, m.closedDesc, m.rejectedDesc,
		m.receivedDesc, m.receivedBytesDesc, m.deliveredDesc, m.deliveredBytesDesc, m.outboundDesc, m.reliableDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one snapshot task per loop, summed with
// the shared counters.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.s
	loops := *s.loopArr.Load()
	type reply struct {
		lp *loop
		sn *snapshot
	}
	replies := make(chan reply, len(loops)) // buffered: a late loop never blocks on a scrape that gave up
	asked := 0
	for _, lp := range loops {
		lp := lp
		err := lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			replies <- reply{lp, lp.snapshot()}
			return nil
		}))
		if err == nil {
			asked++
		}
	}
	timeout := time.NewTimer(scrapeWait)
	defer timeout.Stop()
wait:
	for ; asked > 0; asked-- {
		select {
		case r := <-replies:
			m.last[r.lp] = r.sn
		case <-timeout.C:
			break wait
		}
	}

	labels := s.labels.labels()
	total := loopStats{hubs: make([]hubCounters, len(labels))}
	var outbound int64
	for _, sn := range m.last {
		total.add(&sn.stats)
		outbound += sn.outboundBytes
	}
	for i := range s.shared {
		sh, h := &s.shared[i], &total.hubs[i]
		for p := range h.conns {
			h.conns[p] += sh.conns[p].Load()
		}
		for c := range h.closed {
			h.closed[c] += sh.closed[c].Load()
		}
		h.delivered += sh.delivered.Load()
		h.deliveredBytes += sh.deliveredBytes.Load()
	}

	for i, hub := range labels {
		if hub == "" {
			continue
		}
		h := &total.hubs[i]
		for p, proto := range protocolLabels {
			ch <- prometheus.MustNewConstMetric(m.connsDesc, prometheus.GaugeValue, float64(h.conns[p]), hub, proto)
		}
		ch <- prometheus.MustNewConstMetric(m.openedDesc, prometheus.CounterValue, float64(h.opened), hub)
		for c, cat := range closeCategories {
			ch <- prometheus.MustNewConstMetric(m.closedDesc, prometheus.CounterValue, float64(h.closed[c]), hub, cat)
		}
		ch <- prometheus.MustNewConstMetric(m.receivedDesc, prometheus.CounterValue, float64(h.received), hub)
		ch <- prometheus.MustNewConstMetric(m.receivedBytesDesc, prometheus.CounterValue, float64(h.receivedBytes), hub)
		ch <- prometheus.MustNewConstMetric(m.deliveredDesc, prometheus.CounterValue, float64(h.delivered), hub)
		ch <- prometheus.MustNewConstMetric(m.deliveredBytesDesc, prometheus.CounterValue, float64(h.deliveredBytes), hub)
	}
	for code, n := range total.rejected {
		if n > 0 {
			ch <- prometheus.MustNewConstMetric(m.rejectedDesc, prometheus.CounterValue, float64(n), strconv.Itoa(code))
		}
	}
	ch <- prometheus.MustNewConstMetric(m.outboundDesc, prometheus.GaugeValue, float64(outbound))
	ch <- prometheus.MustNewConstMetric(m.reliableDesc, prometheus.GaugeValue, float64(s.reliableBuffered()))
}

// reliableBuffered sums the unacknowledged messages of every reliable connection.
// It takes each connection's lock once; a scrape, not a delivery, pays for it.
func (s *Server) reliableBuffered() int64 {
	var n int64
	s.reliables.Range(func(k, _ any) bool {
		r := k.(*reliable)
		r.mu.Lock()
		n += int64(len(r.unacked))
		r.mu.Unlock()
		return true
	})
	return n
}
