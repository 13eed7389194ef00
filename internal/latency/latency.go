// Package latency is the one way woodpecker's benchmarks measure and
// summarize per-call latency: Measure makes calls on a fixed number of
// goroutines and records how long each took, Summarize and Percentile read
// p50/p99-style quantiles off the samples, and Report (or Bench, which
// also runs the calls) hands p50 and p99 to a testing.B.
//
// Every quantile is the same order statistic: with n sorted samples, the
// p-quantile is the sample at rank floor(p*n) (the last one for p = 1), so
// numbers from different benchmarks and from the woodpecker bench command
// compare directly.
package latency

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Stats summarizes latency samples.
type Stats struct {
	N                        int
	P50, P90, P99, Max, Mean time.Duration
}

// Percentile returns the p-quantile (0 <= p <= 1) of sorted, which must be
// in ascending order: the sample at rank floor(p*n). It returns 0 for no
// samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// Summarize sorts samples in place and returns their statistics (all zero
// for no samples).
func Summarize(samples []time.Duration) Stats {
	s := Stats{N: len(samples)}
	if len(samples) == 0 {
		return s
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	s.P50, s.P90, s.P99 = Percentile(samples, 0.50), Percentile(samples, 0.90), Percentile(samples, 0.99)
	s.Max, s.Mean = samples[len(samples)-1], sum/time.Duration(len(samples))
	return s
}

// MedianCI returns a 95% confidence interval of the median of sorted
// (ascending) samples, distribution-free: the order statistics
// n/2 -+ 0.98 sqrt(n).
func MedianCI(sorted []time.Duration) (lo, hi time.Duration) {
	n := len(sorted)
	if n == 0 {
		return 0, 0
	}
	h := 0.98 * math.Sqrt(float64(n))
	return sorted[max(0, int(math.Floor(float64(n)/2-h)))], sorted[min(n-1, int(math.Ceil(float64(n)/2+h)))]
}

// Metrics receives reported values; *testing.B is one.
type Metrics interface {
	ReportMetric(n float64, unit string)
}

// Report sorts samples in place and reports their p50 and p99 in
// microseconds as the metrics prefix+"p50-µs" and prefix+"p99-µs". It
// reports nothing for no samples.
func Report(m Metrics, prefix string, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	m.ReportMetric(micros(Percentile(samples, 0.50)), prefix+"p50-µs")
	m.ReportMetric(micros(Percentile(samples, 0.99)), prefix+"p99-µs")
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// Plan says how Measure makes its calls.
type Plan struct {
	// Workers is the number of goroutines, each making one call at a time:
	// exactly Workers calls are in flight, whatever GOMAXPROCS is.
	Workers int
	// Ops is the most calls made.
	Ops int
	// For, when positive, stops Measure from starting calls once it has run
	// this long and at least MinOps calls were started. Zero: make Ops calls.
	For    time.Duration
	MinOps int
}

// Run is what Measure measured.
type Run struct {
	Ops     int             // calls that succeeded
	Bytes   int64           // the sum of what they returned
	Elapsed time.Duration   // from the start of the run to its end
	Samples []time.Duration // each successful call's latency, in no particular order
}

// Measure calls op(ctx, worker, i) for i = 0, 1, ... on p.Workers
// goroutines until p says stop, timing each call. op returns the bytes it
// moved. The first error (or ctx's) stops every worker and is returned
// with what was measured until then.
func Measure(ctx context.Context, p Plan, op func(ctx context.Context, worker, i int) (int64, error)) (Run, error) {
	var (
		next    atomic.Int64
		bytes   atomic.Int64
		stop    atomic.Bool
		mu      sync.Mutex
		all     []time.Duration
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	perWorker := 0
	if p.For <= 0 { // the number of calls is known: no growing the sample slices
		all = make([]time.Duration, 0, p.Ops)
		perWorker = p.Ops/max(p.Workers, 1) + 1
	}
	fail := func(err error) {
		errOnce.Do(func() { first = err })
		stop.Store(true)
	}
	start := time.Now()
	deadline := start.Add(p.For)
	for w := range p.Workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, perWorker)
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= p.Ops || (p.For > 0 && i >= p.MinOps && time.Now().After(deadline)) {
					break
				}
				if err := ctx.Err(); err != nil {
					fail(err)
					break
				}
				t := time.Now()
				n, err := op(ctx, w, i)
				if err != nil {
					fail(err)
					break
				}
				lat = append(lat, time.Since(t))
				bytes.Add(n)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return Run{Ops: len(all), Bytes: bytes.Load(), Elapsed: time.Since(start), Samples: all}, first
}

// Bench makes b.N calls of op(worker, i) on workers goroutines (exactly
// workers in flight) between b.ResetTimer and b.StopTimer, fails b on the
// first error, and reports the calls' p50 and p99 (Report).
func Bench(b *testing.B, workers int, op func(worker, i int) error) {
	b.Helper()
	b.ResetTimer()
	r, err := Measure(context.Background(), Plan{Workers: workers, Ops: b.N}, func(_ context.Context, w, i int) (int64, error) {
		return 0, op(w, i)
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	Report(b, "", r.Samples)
}
