package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrNoProc means /proc/PID could not be read: the process is gone, or this is not Linux.
var ErrNoProc = errors.New("bench: cannot read /proc for the server process")

// userHZ is the unit of utime and stime in /proc/PID/stat (sysconf(_SC_CLK_TCK)). It is
// 100 on every Linux architecture Go supports.
const userHZ = 100

// procStatus holds the /proc/PID/status lines bench reports.
type procStatus struct {
	RSSBytes int64 // VmRSS
	Threads  int64
}

// readStatus reads VmRSS and Threads of pid ("self" for this process).
func readStatus(pid string) (procStatus, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return procStatus{}, fmt.Errorf("%w: %v", ErrNoProc, err)
	}
	var st procStatus
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			st.RSSBytes = n * 1024 // reported in kB
		case "Threads":
			st.Threads = n
		}
	}
	if st.RSSBytes == 0 {
		return st, fmt.Errorf("%w: no VmRSS in /proc/%s/status", ErrNoProc, pid)
	}
	return st, nil
}

// readCPU returns the user plus system CPU time pid ("self" for this process) has used.
func readCPU(pid string) (time.Duration, error) {
	own, _, err := readCPUTimes(pid)
	return own, err
}

// readCPUTimes returns pid's own utime+stime and the cutime+cstime of its children that
// have been waited for.
func readCPUTimes(pid string) (own, children time.Duration, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrNoProc, err)
	}
	// proc(5): the command name (field 2) is in parentheses and may hold spaces, so fields
	// are counted after the last ')': state is field 3, utime 14, stime 15, cutime 16,
	// cstime 17.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("%w: malformed /proc/%s/stat", ErrNoProc, pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("%w: short /proc/%s/stat", ErrNoProc, pid)
	}
	var ticks [4]int64
	for k := range ticks {
		if ticks[k], err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("%w: bad CPU times in /proc/%s/stat", ErrNoProc, pid)
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	return tick(ticks[0] + ticks[1]), tick(ticks[2] + ticks[3]), nil
}

// CPUModel returns the first "model name" of /proc/cpuinfo, or "unknown".
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
