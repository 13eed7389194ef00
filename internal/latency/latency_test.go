package latency_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/latency"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- { // 1..100 ms, unsorted
		samples = append(samples, ms(i))
	}
	s := latency.Summarize(samples)
	want := latency.Stats{N: 100, P50: ms(51), P90: ms(91), P99: ms(100), Max: ms(100), Mean: 50500 * time.Microsecond}
	if s != want {
		t.Fatalf("Summarize = %+v, want %+v", s, want)
	}
	if samples[0] != ms(1) {
		t.Fatalf("samples not sorted in place: %v first", samples[0])
	}
	if got := latency.Percentile(samples, 1); got != ms(100) {
		t.Fatalf("Percentile(1) = %v, want the maximum", got)
	}
	if s := latency.Summarize(nil); s != (latency.Stats{}) || latency.Percentile(nil, 0.5) != 0 {
		t.Fatalf("no samples: %+v", s)
	}
	lo, hi := latency.MedianCI(samples)
	if lo >= s.P50 || hi <= s.P50 {
		t.Fatalf("MedianCI = %v..%v, want it around the median %v", lo, hi, s.P50)
	}
}

type metrics map[string]float64

func (m metrics) ReportMetric(n float64, unit string) { m[unit] = n }

func TestReport(t *testing.T) {
	m := metrics{}
	latency.Report(m, "put-", []time.Duration{3 * time.Microsecond, time.Microsecond, 2 * time.Microsecond})
	if m["put-p50-µs"] != 2 || m["put-p99-µs"] != 3 || len(m) != 2 {
		t.Fatalf("reported %v", m)
	}
	latency.Report(m, "none-", nil)
	if len(m) != 2 {
		t.Fatalf("no samples reported %v", m)
	}
}

func TestMeasure(t *testing.T) {
	ctx := context.Background()
	var inFlight, peak atomic.Int64
	r, err := latency.Measure(ctx, latency.Plan{Workers: 3, Ops: 30}, func(_ context.Context, w, i int) (int64, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		return 10, nil
	})
	if err != nil || r.Ops != 30 || r.Bytes != 300 || len(r.Samples) != 30 || peak.Load() > 3 {
		t.Fatalf("Measure = %+v (peak %d in flight), %v", r, peak.Load(), err)
	}

	// For: runs about that long, and at least MinOps calls.
	start := time.Now()
	r, err = latency.Measure(ctx, latency.Plan{Workers: 1, Ops: 1 << 30, For: 20 * time.Millisecond, MinOps: 2},
		func(context.Context, int, int) (int64, error) { time.Sleep(time.Millisecond); return 0, nil })
	if err != nil || r.Ops < 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("Measure with For = %d calls in %v, %v", r.Ops, time.Since(start), err)
	}

	boom := errors.New("boom")
	r, err = latency.Measure(ctx, latency.Plan{Workers: 2, Ops: 100}, func(_ context.Context, _, i int) (int64, error) {
		if i == 5 {
			return 0, boom
		}
		return 0, nil
	})
	if !errors.Is(err, boom) || r.Ops >= 100 {
		t.Fatalf("Measure with a failing call = %d calls, %v", r.Ops, err)
	}
}

func BenchmarkBench(b *testing.B) {
	latency.Bench(b, 2, func(int, int) error { return nil })
}
