package benchharness

// What the run reads of the machine and of its own process: /proc and
// getrusage (Linux; elsewhere the figures are empty or zero).

import (
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procField returns the value of the first line "name: value" of the file
// path (name compared without surrounding blanks, value trimmed), or "".
func procField(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// procBytes returns a "name: N kB" value of the file path in bytes, or 0.
func procBytes(path, name string) int64 {
	f := strings.Fields(procField(path, name))
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(f[0], 10, 64)
	return kb << 10
}

func cpuModel() string { return procField("/proc/cpuinfo", "model name") }

func memTotal() int64 { return procBytes("/proc/meminfo", "MemTotal") }

// readPeakRSS returns VmHWM from /proc/self/status in bytes, or 0.
func readPeakRSS() int64 { return procBytes("/proc/self/status", "VmHWM") }

// resetPeakRSS resets the kernel's peak-RSS mark (VmHWM) of this process to
// its current RSS, so each step's peak is its own. It reports whether that
// worked; if not, the peaks are cumulative.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// usage is the process's CPU time and heap allocation count at a moment.
type usage struct {
	at     time.Time
	cpu    time.Duration // user + system, every thread of the process
	allocs uint64        // heap objects allocated since the process started
	faults int64         // minor page faults of the process
}

func readUsage() usage {
	u := usage{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		u.faults = ru.Minflt
	}
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		u.allocs = s[0].Value.Uint64()
	}
	return u
}

// cores returns the CPU cores the process used on average since o.
func (u usage) cores(o usage) float64 {
	d := u.at.Sub(o.at).Seconds()
	if d <= 0 {
		return 0
	}
	return (u.cpu - o.cpu).Seconds() / d
}
