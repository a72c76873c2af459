//go:build e2e

// End-to-end tests of the upstream (event handler) protocol, upstream-protocol.md, with the
// official SDKs on both sides (STYLE.md §8): the app server is an express app mounting the
// unchanged @azure/web-pubsub-express WebPubSubEventHandler, the clients are
// @azure/web-pubsub-client and plain `ws` WebSocket clients. Each scenario of
// testdata/sdk/upstream.mjs runs in one Node process that is both the app and the clients:
// the harness starts it first (it prints the app's port), then starts the real binary with
// event handlers pointing at that port, hands the script the connection string on stdin, and
// turns the script's JSON observations into test results. It reuses the server helpers of
// e2e_test.go.
//
// Run with `make e2e`, or: go test -tags e2e -count=1 -v ./engine/ -run E2EUpstream
package engine_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// upstreamScenario is one scenario of upstream.mjs.
type upstreamScenario struct {
	name string
	// reliableToo also runs the scenario with json.reliable.webpubsub.azure.v1. Scenarios that
	// wait for `disconnected` after a client's stop() cannot: a reliable connection outlives a
	// client close for its recovery window (client-protocol.md §7.6).
	reliableToo bool
}

// upstreamScenarios must list exactly what `node upstream.mjs --list` prints.
var upstreamScenarios = []upstreamScenario{
	{name: "connectRoles", reliableToo: true},
	{name: "lifecycle"},
	{name: "plainClient"},
	{name: "sendEvent", reliableToo: true},
	{name: "state", reliableToo: true},
	{name: "connectRejected"},
	{name: "abuseProtection"},
}

// upstreamConfig points hubs chat, denied and hostport (the hubs upstream.mjs serves) at the
// express app on port. One quick retry (instead of 1 s, 3 s, 5 s) keeps the 5xx cases short
// and lets connectRejected count it.
func upstreamConfig(port int) string {
	var b strings.Builder
	b.WriteString("hubs:\n")
	for _, hub := range []string{"chat", "denied", "hostport"} {
		fmt.Fprintf(&b, `  %s:
    eventHandlers:
      - urlTemplate: "http://127.0.0.1:%d/api/webpubsub/hubs/{hub}/{event}"
        userEventPattern: "*"
        systemEvents: ["connect", "connected", "disconnected"]
`, hub, port)
	}
	b.WriteString("upstream:\n  retry:\n    delaysSeconds: [0.2]\n")
	return b.String()
}

// TestE2EUpstream runs every upstream scenario with json.webpubsub.azure.v1 for the SDK clients.
func TestE2EUpstream(t *testing.T) {
	runUpstreamScenarios(t, "json.webpubsub.azure.v1", false)
}

// TestE2EUpstreamReliable runs the scenarios that allow it with the JS client's default,
// json.reliable.webpubsub.azure.v1.
func TestE2EUpstreamReliable(t *testing.T) {
	runUpstreamScenarios(t, "json.reliable.webpubsub.azure.v1", true)
}

func runUpstreamScenarios(t *testing.T, protocol string, reliable bool) {
	sdk := requireNode(t)
	for _, pkg := range []string{"@azure/web-pubsub-express", "express", "ws"} {
		if _, err := os.Stat(filepath.Join(sdk, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("%s is not installed in %s/node_modules: run `make npm-deps`", pkg, sdk)
		}
	}
	checkScriptList(t, sdk, "upstream.mjs", scenarioNames(upstreamScenarios, func(sc upstreamScenario) string { return sc.name }))
	for _, sc := range upstreamScenarios {
		if reliable && !sc.reliableToo {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			runUpstreamScenario(t, sdk, sc.name, map[string]string{"WEBPUBSUB_PROTOCOL": protocol})
		})
	}
}

// upstreamObservation is an observation plus the app's port of the "listening" line.
type upstreamObservation struct {
	observation
	Port int `json:"port"`
}

// runUpstreamScenario starts `node upstream.mjs name`, waits for the app's port, starts the
// server with handlers pointing there, sends the script the connection string and reports
// every failed check.
func runUpstreamScenario(t *testing.T, sdk, name string, env map[string]string) {
	t.Helper()
	n := startNode(t, sdk, env, "upstream.mjs", name)
	ctx, stdin, lines, stderrText := n.ctx, n.stdin, n.lines, n.stderrText

	// 1. The app's port.
	port := 0
	deadline := time.NewTimer(serverStartTimeout)
	defer deadline.Stop()
	for port == 0 {
		select {
		case line, ok := <-lines:
			if !ok {
				err := n.wait()
				t.Fatalf("%s: node exited before printing its port (%v)\nstderr:\n%s", name, err, stderrText())
			}
			var o upstreamObservation
			if json.Unmarshal(line, &o) == nil && o.Type == "listening" && o.Port > 0 {
				port = o.Port
			} else {
				t.Logf("node: %s", line)
			}
		case <-deadline.C:
			t.Fatalf("%s: node printed no {\"type\":\"listening\"} line within %v\nstderr:\n%s", name, serverStartTimeout, stderrText())
		}
	}
	t.Logf("express app listening on 127.0.0.1:%d", port)

	// 2. The server, then the connection string for the script.
	srv := startServer(t, upstreamConfig(port))
	msg, _ := json.Marshal(map[string]string{"connectionString": srv.connectionString()})
	if _, err := io.WriteString(stdin, string(msg)+"\n"); err != nil {
		t.Fatalf("write the connection string to node: %v\nstderr:\n%s", err, stderrText())
	}

	// 3. Observations until node exits.
	var summary *observation
	checks := 0
	for line := range lines {
		var o upstreamObservation
		if err := json.Unmarshal(line, &o); err != nil || o.Type == "" {
			t.Logf("node: %s", line)
			continue
		}
		switch o.Type {
		case "check", "info":
			o.report(t, name, &checks)
		case "summary":
			summary = &o.observation
		default:
			t.Logf("node: %s", line)
		}
	}
	waitErr := n.wait()
	if ctx.Err() != nil {
		t.Fatalf("%s: node did not finish within %v\nstderr:\n%s", name, scenarioTimeout, stderrText())
	}
	judgeScenario(t, name, summary, checks, waitErr, stderrText())
	srv.stop(t)
}
