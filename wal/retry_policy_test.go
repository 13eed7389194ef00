package wal

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// The engine's retry policy: waits from RetryInterval doubling up to 64
// times it, each drawn from the upper half of its bound, within
// RetryBudget, at most MaxFlushRetries times, on the configured clock.
func TestEngineRetryPolicy(t *testing.T) {
	clock := clockwork.NewFakeClock()
	cfg := Config{RetryInterval: 10 * time.Millisecond, RetryBudget: time.Minute, MaxFlushRetries: 3, Clock: clock}
	p := cfg.retryPolicy()
	for n := 1; n <= 9; n++ {
		lo, hi := p.Wait(n)
		want := cfg.RetryInterval << min(n-1, 6)
		if hi != want || lo != want/2 {
			t.Fatalf("wait %d in [%v, %v], want [%v, %v]", n, lo, hi, want/2, want)
		}
	}
	// internal/retry's tests show that a Policy keeps its Budget,
	// MaxRetries and Clock.
	if p.Budget != cfg.RetryBudget || p.MaxRetries != cfg.MaxFlushRetries || p.Clock != clock {
		t.Fatalf("policy %+v does not carry RetryBudget, MaxFlushRetries and Clock of %+v", p, cfg)
	}
}

// RetryWindow is the policy's window: the budget, or the longest waits of
// MaxFlushRetries retries when they add up to less.
func TestRetryWindowIsThePolicysWindow(t *testing.T) {
	for _, cfg := range []Config{
		{RetryInterval: 50 * time.Millisecond, RetryBudget: 30 * time.Second},
		{RetryInterval: 50 * time.Millisecond, RetryBudget: 30 * time.Second, MaxFlushRetries: 3},
		{RetryInterval: time.Second, RetryBudget: 30 * time.Second, MaxFlushRetries: 8},
	} {
		got, what := cfg.RetryWindow()
		want, _ := cfg.retryPolicy().Window()
		if got != want {
			t.Fatalf("%+v: RetryWindow = %v, the policy's window %v", cfg, got, want)
		}
		if capped := strings.Contains(what, "MaxFlushRetries"); capped != (got < cfg.RetryBudget) {
			t.Fatalf("%+v: RetryWindow's text %q for a window of %v (budget %v)", cfg, what, got, cfg.RetryBudget)
		}
	}
	cfg := Config{RetryInterval: 50 * time.Millisecond, RetryBudget: 30 * time.Second, MaxFlushRetries: 3}
	if got, _ := cfg.RetryWindow(); got != 350*time.Millisecond {
		t.Fatalf("RetryWindow with 3 retries from 50ms = %v, want 50+100+200 ms", got)
	}
}
