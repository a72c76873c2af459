package bench

import (
	"context"
	"fmt"
	"time"
)

// ChatConfig configures RunChat.
type ChatConfig struct {
	Options
	// Groups is how many groups. Required.
	Groups int
	// MembersPerGroup is how many connections join each group (through the token's
	// webpubsub.group claim). Required.
	MembersPerGroup int
	// Messages is how many messages each connection sends to its group. Required.
	Messages int
	// Rate is each connection's sends per second, paced open-loop. Required.
	Rate float64
	// SizeBytes is each payload's size. Zero or anything below the stamp means
	// minPayloadBytes.
	SizeBytes int
	// Quiet bounds the wait for the last acks, and ends the drain once no delivery has
	// arrived for this long. Zero means 5s.
	Quiet time.Duration
}

// RunChat connects Groups × MembersPerGroup clients with the webpubsub.sendToGroup role,
// connection i in group chat-<i/MembersPerGroup>. Every connection then sends Messages
// stamped messages to its own group with sendToGroup (with an ackId) at Rate per second,
// and every member, the sender included, should receive every acked message of its group.
// Reports deliveries per second, completeness, end-to-end latency, ack latency, and the
// server's and the bench's CPU.
func RunChat(ctx context.Context, cfg ChatConfig) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Groups <= 0 || cfg.MembersPerGroup <= 0 || cfg.Messages <= 0 || cfg.Rate <= 0 {
		return nil, fmt.Errorf("%w: chat needs groups, members-per-group, messages and rate > 0", ErrConfig)
	}
	cfg.SizeBytes = max(cfg.SizeBytes, minPayloadBytes)
	if cfg.Quiet <= 0 {
		cfg.Quiet = 5 * time.Second
	}
	n := cfg.Groups * cfg.MembersPerGroup
	sending := time.Duration(float64(cfg.Messages) / cfg.Rate * float64(time.Second))
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+sending+2*cfg.Quiet+2*closeWait)
	defer cancel()

	r := &Result{Name: "Chat", Started: time.Now()}
	r.param("groups", cfg.Groups)
	r.param("members", cfg.MembersPerGroup)
	r.param("messages", cfg.Messages)
	r.param("rate", formatValue(cfg.Rate))
	r.param("size", cfg.SizeBytes)
	r.param("protocol", cfg.Protocol)

	base := cfg.workerConfig(sending + 2*cfg.Quiet)
	base.GroupSize = cfg.MembersPerGroup
	base.Roles = []string{"webpubsub.sendToGroup"}
	rn, err := start(ctx, &cfg.Options, r, base, n)
	defer rn.abort()
	if err != nil {
		return nil, err
	}

	stop := rn.p.startProgress(&cfg.Options, "Chat", n)
	rn.window()
	// Every worker starts its schedule at the same instant, a moment from now.
	first := time.Now().Add(100 * time.Millisecond)
	err = rn.p.broadcast(workerCommand{Cmd: cmdPublish, Publish: &publishPlan{
		StartNs: first.UnixNano(), Messages: cfg.Messages, Rate: cfg.Rate, SizeBytes: cfg.SizeBytes, AckWait: cfg.Quiet,
	}})
	if err != nil {
		stop()
		return nil, err
	}
	pubs, err := rn.p.await(ctx, reportPublished)
	if err != nil {
		stop()
		return nil, err
	}
	expect := make(map[string]int64)
	var sent, acked, nacked int64
	var ackLatency Histogram
	for _, rep := range pubs {
		addCounts(expect, rep.GroupAcked)
		sent += rep.Sent
		acked += rep.Acked
		nacked += rep.Nacked
		if err := ackLatency.merge(rep.AckLatency); err != nil {
			stop()
			return nil, err
		}
	}
	var expected int64
	for g, k := range rn.ramp.groupUp {
		expected += expect[g] * k
	}
	if err := rn.p.broadcast(workerCommand{Cmd: cmdDrain, Drain: &drainPlan{Expect: expect, Quiet: cfg.Quiet}}); err != nil {
		stop()
		return nil, err
	}
	reps, err := rn.p.await(ctx, reportDrained)
	stop()
	if err != nil {
		return nil, err
	}
	settleAcks(ctx, r, cfg.proto)
	serverCPU := rn.windowEnd()
	d, err := mergeDrained(reps)
	if err != nil {
		return nil, err
	}
	d.report(r, first, expected, serverCPU)
	rn.reportWindow()
	r.metric("sends written", float64(sent), "sends")
	r.metric("sends acked", float64(acked), "acked")
	r.latency("sendToGroup ack", "ack-", &ackLatency)
	var extra map[string]int64
	if nacked > 0 || sent > acked {
		extra = map[string]int64{"send-nack": nacked, "send-unacked": sent - acked - nacked}
	}
	r.notef("every member receives its group's acked messages, its own included; latency is send to frame read")
	err = rn.finish(ctx, extra)
	return r, err
}
