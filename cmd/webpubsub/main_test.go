package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestServeAdminFlag: --admin is checked like admin.address, and --pprof is gone
// (admin.pprof replaces it).
func TestServeAdminFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"serve", "--admin", "127.0.0.1:0", "--check"}, exitOK, ""},
		{[]string{"serve", "--admin", "nohost", "--check"}, exitUsage, `--admin "nohost"`},
		{[]string{"serve", "--pprof", "127.0.0.1:6060", "--check"}, exitUsage, "flag provided but not defined: -pprof"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.err)
		}
	}
}
