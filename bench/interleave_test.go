package bench

// Interleaved comparisons: the contenders of one benchmark are all open at
// once and take turns, in short rounds, so that the noise of a shared VM
// (other jobs' I/O, the host's writeback, CPU steal) falls on all of them
// alike instead of on whichever ran during a bad minute. Each round runs
// every contender for the same number of calls, back to back, starting
// with a different contender each round; the reported p50 and p99 of a
// contender are the medians over the rounds of that round's p50 and p99,
// and the ratios are the medians of the per-round ratios (each taken
// between numbers measured seconds apart).

import (
	"flag"
	"fmt"
	"math"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/latency"
)

var (
	flagRounds = flag.Int("rounds", 7,
		"interleaved benchmarks: rounds per run; each contender's p50/p99 is the median over the rounds")
	flagContenders = flag.String("contenders", "",
		"interleaved benchmarks: run only the contenders whose name matches this regexp (syscalls.sh uses it)")
)

// contender is one store of an interleaved benchmark.
type contender struct {
	name string
	// start opens the store on fresh storage (cleaned up with b) and
	// returns one call of the benchmarked operation and a closer.
	start func(b *testing.B) (call func() error, stop func() error)
}

// warmupCalls per contender, untimed, before the rounds: the first calls
// after an open (lazy allocations, the first segment) are not what is
// compared. A constant, so syscalls.sh's difference of two runs cancels it.
const warmupCalls = 8

// interleave makes b.N calls on each contender, split over -rounds rounds,
// and reports, per contender, "<name>-p50-µs" and "<name>-p99-µs" (medians
// over the rounds), and for every contender but ref "<name>/<ref>-p50-x"
// and "<name>/<ref>-p99-x" (medians of the per-round ratios). ns/op is
// the time of one call on every contender.
func interleave(b *testing.B, ref string, all []contender) {
	cs := all
	if *flagContenders != "" {
		re, err := regexp.Compile(*flagContenders)
		if err != nil {
			b.Fatalf("-contenders: %v", err)
		}
		cs = nil
		for _, c := range all {
			if re.MatchString(c.name) {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			b.Skipf("no contender matches -contenders %q", *flagContenders)
		}
	}
	rounds := max(1, min(*flagRounds, b.N))
	calls := make([]func() error, len(cs))
	for i, c := range cs {
		call, stop := c.start(b)
		calls[i] = call
		defer func() {
			if err := stop(); err != nil {
				b.Errorf("%s: close: %v", c.name, err)
			}
		}()
		for range warmupCalls {
			if err := call(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	p50 := make([][]time.Duration, len(cs)) // [contender][round]
	p99 := make([][]time.Duration, len(cs))
	samples := make([]time.Duration, 0, b.N/rounds+1)
	b.ReportAllocs()
	b.ResetTimer()
	for r := range rounds {
		per := b.N / rounds // the rounds' calls sum to exactly b.N
		if r < b.N%rounds {
			per++
		}
		for k := range cs {
			i := (r + k) % len(cs)
			samples = samples[:0]
			for range per {
				t0 := time.Now()
				if err := calls[i](); err != nil {
					b.Fatalf("%s: %v", cs[i].name, err)
				}
				samples = append(samples, time.Since(t0))
			}
			s := latency.Summarize(samples)
			p50[i] = append(p50[i], s.P50)
			p99[i] = append(p99[i], s.P99)
		}
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	refIdx := slices.IndexFunc(cs, func(c contender) bool { return c.name == ref })
	for i, c := range cs {
		b.ReportMetric(us(medianDur(p50[i])), c.name+"-p50-µs")
		b.ReportMetric(us(medianDur(p99[i])), c.name+"-p99-µs")
		if refIdx < 0 || i == refIdx {
			continue
		}
		b.ReportMetric(medianRatio(p50[i], p50[refIdx]), fmt.Sprintf("%s/%s-p50-x", c.name, ref))
		b.ReportMetric(medianRatio(p99[i], p99[refIdx]), fmt.Sprintf("%s/%s-p99-x", c.name, ref))
	}
	b.ReportMetric(float64(rounds), "rounds")
}

func medianDur(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return latency.Percentile(s, 0.5)
}

// medianRatio is the median over rounds of a[r]/b[r].
func medianRatio(a, b []time.Duration) float64 {
	rs := make([]float64, len(a))
	for r := range a {
		rs[r] = float64(a[r]) / math.Max(1, float64(b[r]))
	}
	slices.Sort(rs)
	return rs[len(rs)/2]
}
