package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// readCPU returns the user plus system CPU time pid has used.
func readCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoProc, err)
	}
	// proc(5): the command name (field 2) is in parentheses and may hold spaces, so fields
	// are counted after the last ')': state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: malformed /proc/%s/stat", ErrNoProc, pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: short /proc/%s/stat", ErrNoProc, pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: bad utime/stime in /proc/%s/stat", ErrNoProc, pid)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// checkFileLimit fails when conns connections (plus a margin for the runtime, the REST
// client and /proc reads) would pass this process's open-file limit.
func checkFileLimit(conns int) error {
	const margin = 64
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil
	}
	if uint64(conns+margin) > rl.Cur {
		return fmt.Errorf("bench: %d connections need %d open files, but ulimit -n is %d: lower the count or raise the limit", conns, conns+margin, rl.Cur)
	}
	return nil
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
