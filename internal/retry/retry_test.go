package retry_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// waitFor fails the test if ch is not closed within a real second: a guard
// against a hang, never a wait for time to pass (the clocks are fake).
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatalf("%s did not return", what)
	}
}

// Without jitter the waits double from Initial and stop growing at Max,
// the first wait included when Initial is above Max.
func TestWaitsDoubleUpToTheCap(t *testing.T) {
	p := retry.Policy{Initial: time.Second, Max: 8 * time.Second, Clock: clockwork.NewFakeClock()}
	r := p.Retrier()
	want := []time.Duration{1, 2, 4, 8, 8, 8, 8}
	for i, w := range want {
		d, ok := r.Next()
		if !ok || d != w*time.Second {
			t.Fatalf("wait %d = %v, %v; want %v", i+1, d, ok, w*time.Second)
		}
		if lo, hi := p.Wait(i + 1); lo != hi || hi != w*time.Second {
			t.Fatalf("Wait(%d) = [%v, %v]; want exactly %v", i+1, lo, hi, w*time.Second)
		}
	}
	r = retry.Policy{Initial: time.Minute, Max: time.Second}.Retrier()
	if d, _ := r.Next(); d != time.Second {
		t.Fatalf("first wait with Initial above Max = %v, want the cap", d)
	}
	r = retry.Policy{Initial: time.Hour}.Retrier() // no cap: doubles on, without overflowing
	for i := 0; i < 80; i++ {
		if d, ok := r.Next(); !ok || d < time.Hour {
			t.Fatalf("uncapped wait %d = %v, %v", i+1, d, ok)
		}
	}
}

// The budget runs from the first failure; the last wait is cut to what is
// left of it, so the last attempt starts when it ends, and then no retry is
// allowed.
func TestBudgetIsRespected(t *testing.T) {
	clock := clockwork.NewFakeClock()
	p := retry.Policy{Initial: 4 * time.Second, Max: 4 * time.Second, Budget: 10 * time.Second, Clock: clock}
	r := p.Retrier()
	clock.Advance(time.Hour) // time before the first failure does not count
	var waited time.Duration
	for _, want := range []time.Duration{4 * time.Second, 4 * time.Second, 2 * time.Second} {
		d, ok := r.Next()
		if !ok || d != want {
			t.Fatalf("after %v of retries: wait %v, %v; want %v", waited, d, ok, want)
		}
		clock.Advance(d)
		waited += d
	}
	if d, ok := r.Next(); ok {
		t.Fatalf("a retry (after %v) allowed once the %v budget was spent", d, p.Budget)
	}
	if r.Attempt() != 5 {
		t.Fatalf("Attempt = %d after four failures, want 5", r.Attempt())
	}
	if w, ok := p.Window(); !ok || w != p.Budget {
		t.Fatalf("Window = %v, %v; want the budget", w, ok)
	}
}

// MaxRetries caps the count, and Window then sums the longest waits of
// that many retries when they are shorter than the budget.
func TestMaxRetriesCapsTheCount(t *testing.T) {
	clock := clockwork.NewFakeClock()
	p := retry.Policy{Initial: time.Second, Max: time.Minute, Jitter: 0.5, Budget: time.Hour, MaxRetries: 3, Clock: clock}
	r := p.Retrier()
	for i := 0; i < 3; i++ {
		d, ok := r.Next()
		if !ok {
			t.Fatalf("retry %d refused, want 3 allowed", i+1)
		}
		clock.Advance(d)
	}
	if _, ok := r.Next(); ok {
		t.Fatal("a fourth retry allowed with MaxRetries = 3")
	}
	if w, ok := p.Window(); !ok || w != 7*time.Second {
		t.Fatalf("Window = %v, %v; want 1+2+4 s", w, ok)
	}
	p.Budget = 5 * time.Second
	if w, _ := p.Window(); w != p.Budget {
		t.Fatalf("Window = %v with a shorter budget, want the budget", w)
	}
	if _, ok := (retry.Policy{Initial: time.Second}).Window(); ok {
		t.Fatal("Window bounded without a budget or a cap")
	}
}

// Every wait lies within its bounds [(1-Jitter)·d, d], and the draws
// spread over them.
func TestJitterBounds(t *testing.T) {
	for _, jitter := range []float64{0.5, 1, 0.1} {
		p := retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: jitter}
		const runs, retries = 300, 6
		lowest, highest := make([]time.Duration, retries), make([]time.Duration, retries)
		for run := 0; run < runs; run++ {
			r := p.Retrier()
			for n := 1; n <= retries; n++ {
				d, _ := r.Next()
				lo, hi := p.Wait(n)
				if d < lo || d > hi {
					t.Fatalf("jitter %v: wait %d = %v, outside [%v, %v]", jitter, n, d, lo, hi)
				}
				if run == 0 || d < lowest[n-1] {
					lowest[n-1] = d
				}
				if run == 0 || d > highest[n-1] {
					highest[n-1] = d
				}
			}
		}
		for n := 1; n <= retries; n++ {
			lo, hi := p.Wait(n)
			if want := hi - time.Duration(jitter*float64(hi)); lo != want {
				t.Fatalf("jitter %v: Wait(%d) = [%v, %v], want the low bound %v", jitter, n, lo, hi, want)
			}
			span := float64(hi - lo)
			if float64(lowest[n-1]-lo) > 0.1*span || float64(hi-highest[n-1]) > 0.1*span {
				t.Fatalf("jitter %v: %d draws of wait %d span only [%v, %v] of [%v, %v]",
					jitter, runs, n, lowest[n-1], highest[n-1], lo, hi)
			}
		}
	}
	for _, jitter := range []float64{-1, 2, math.NaN()} {
		lo, hi := retry.Policy{Initial: time.Second, Jitter: jitter}.Wait(1)
		if want := map[bool]time.Duration{true: 0, false: time.Second}[jitter > 1]; lo != want || hi != time.Second {
			t.Fatalf("jitter %v: Wait(1) = [%v, %v], want it clamped into [0, 1]", jitter, lo, hi)
		}
	}
}

// Again waits on the policy's clock before it reports true.
func TestAgainWaitsOnTheClock(t *testing.T) {
	clock := clockwork.NewFakeClock()
	r := retry.Policy{Initial: time.Minute, Budget: time.Hour, Clock: clock}.Retrier()
	got := make(chan bool, 1)
	go func() { got <- r.Again(context.Background()) }()
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-got:
		t.Fatalf("Again returned %v before its wait passed", ok)
	default:
	}
	clock.Advance(time.Minute)
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("Again = false within the budget")
		}
	case <-time.After(time.Second):
		t.Fatal("Again still waiting after its wait passed on the clock")
	}
}

// A cancelled context ends Again at once, before the wait or during it.
func TestAgainReturnsAtOnceWhenCtxEnds(t *testing.T) {
	clock := clockwork.NewFakeClock()
	p := retry.Policy{Initial: time.Hour, Clock: clock}
	ctx, cancel := context.WithCancel(context.Background())
	r := p.Retrier()
	done := make(chan struct{})
	var ok bool
	go func() { ok = r.Again(ctx); close(done) }()
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, done, "Again during its wait, after ctx was cancelled,")
	if ok {
		t.Fatal("Again = true after ctx was cancelled")
	}
	if p.Retrier().Again(ctx) {
		t.Fatal("Again = true on a cancelled ctx")
	}
}

// Sleep waits on the clock ctx carries, returns nil when the wait passed
// and ctx's error when ctx ends first; a wait of zero returns at once.
func TestSleep(t *testing.T) {
	clock := clockwork.NewFakeClock()
	ctx := clockwork.AddToContext(context.Background(), clock)
	done := make(chan struct{})
	var err error
	go func() { err = retry.Sleep(ctx, time.Hour); close(done) }()
	if e := clock.BlockUntilContext(context.Background(), 1); e != nil {
		t.Fatal(e)
	}
	clock.Advance(time.Hour)
	waitFor(t, done, "Sleep after its wait passed on the clock")
	if err != nil {
		t.Fatalf("Sleep = %v after its wait", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	done = make(chan struct{})
	go func() { err = retry.Sleep(cctx, time.Hour); close(done) }()
	if e := clock.BlockUntilContext(context.Background(), 1); e != nil {
		t.Fatal(e)
	}
	cancel()
	waitFor(t, done, "Sleep after ctx was cancelled")
	if err != context.Canceled {
		t.Fatalf("Sleep = %v after cancel, want context.Canceled", err)
	}
	if err := retry.Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
	if err := retry.Sleep(cctx, -time.Second); err != context.Canceled {
		t.Fatalf("Sleep(<0) on a cancelled ctx = %v, want its error at once", err)
	}
}

// The zero Policy retries at once and without end; only the context stops
// it.
func TestZeroPolicyRetriesAtOnceUntilCtxEnds(t *testing.T) {
	clock := clockwork.NewFakeClock()
	r := retry.Policy{Clock: clock}.Retrier()
	for i := 0; i < 1000; i++ {
		if d, ok := r.Next(); !ok || d != 0 {
			t.Fatalf("zero policy, retry %d: %v, %v; want at once", i+1, d, ok)
		}
		clock.Advance(time.Hour)
	}
	if !r.Again(context.Background()) {
		t.Fatal("zero policy refused a retry")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r.Again(ctx) {
		t.Fatal("zero policy retried on a cancelled ctx")
	}
}
