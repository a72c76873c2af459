package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchEchoPrintConfig: the configuration `bench echo --print-config` prints is one
// the server loads, with the event handler the echo scenario needs.
func TestBenchEchoPrintConfig(t *testing.T) {
	var out, errOut strings.Builder
	if code := benchCmd([]string{"echo", "--hub", "slow", "--upstream-listen", "127.0.0.1:18081", "--print-config"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	path := filepath.Join(t.TempDir(), "echo.yaml")
	if err := os.WriteFile(path, []byte(out.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := loadConfig(path, nil)
	if err != nil {
		t.Fatalf("%v loading\n%s", err, out.String())
	}
	hs := cfg.Hubs["slow"].EventHandlers
	if len(cfg.Hubs) != 1 || len(hs) != 1 || hs[0].URLTemplate != "http://127.0.0.1:18081/upstream/{hub}/{event}" ||
		hs[0].UserEventPattern != "*" || strings.Join(hs[0].SystemEvents, ",") != "connected,disconnected" {
		t.Fatalf("hubs %+v from\n%s", cfg.Hubs, out.String())
	}
	if code := benchCmd([]string{"echo", "--upstream-listen", "127.0.0.1:0", "--print-config"}, &out, &errOut); code != exitUsage {
		t.Fatalf("port 0: exit %d, want %d", code, exitUsage)
	}
}

// TestBenchProtocolFlag: --protocol belongs to the subprotocol scenarios, and a value the
// bench does not speak is a usage error before anything connects.
func TestBenchProtocolFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"fanout", "--protocol", "xml", "--connection-string", "Endpoint=http://127.0.0.1:1;AccessKey=k;"}, exitUsage},
		{[]string{"echo", "--protocol", "json.reliable"}, exitUsage}, // plain clients: no such flag
		{[]string{"chat", "--protocol", "protobuf.reliable", "--help"}, exitOK},
	} {
		var out, errOut strings.Builder
		if code := benchCmd(tc.args, &out, &errOut); code != tc.code {
			t.Errorf("%v: exit %d, want %d: %s", tc.args, code, tc.code, errOut.String())
		}
	}
}

// TestBenchFilterSelector: the bench reads --filter with the server's compiler, on a
// bench member's user id and groups, and a filter the server would refuse is a usage
// error before anything connects.
func TestBenchFilterSelector(t *testing.T) {
	for _, tc := range []struct {
		filter, user string
		groups       []string
		want         bool
	}{
		{"'g0' in groups", "bench-3", []string{"g0"}, true},
		{"'g0' in groups", "bench-3", []string{"g1"}, false},
		{"'g0' in groups", "bench-3", nil, false},
		{"userId ne null and not endswith(userId, '7')", "bench-17", nil, false},
		{"userId ne null and not endswith(userId, '7')", "bench-18", nil, true},
		{"length(groups) gt 0 and startswith(userId, 'bench-1')", "bench-12", []string{"g1"}, true},
		{"length(groups) gt 0 and startswith(userId, 'bench-1')", "bench-12", nil, false},
		{"userId eq null", "", nil, true},
	} {
		sel, err := filterSelector(tc.filter)
		if err != nil {
			t.Fatalf("%q: %v", tc.filter, err)
		}
		if got := sel(tc.user, tc.groups); got != tc.want {
			t.Errorf("%q on %s %v = %v, want %v", tc.filter, tc.user, tc.groups, got, tc.want)
		}
	}
	var out, errOut strings.Builder
	code := benchCmd([]string{"fanout", "--target", "all", "--filter", "userId eq", "--connection-string", "Endpoint=http://127.0.0.1:1;AccessKey=k;Version=1.0;"}, &out, &errOut)
	if code != exitUsage || !strings.Contains(errOut.String(), "position 9") {
		t.Fatalf("bad filter: exit %d, stderr %q; want a usage error naming the position", code, errOut.String())
	}
}
