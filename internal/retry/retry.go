// Package retry is woodpecker's one home for waiting between attempts:
// Sleep, a wait that ends early when its context does, and Policy,
// exponential backoff with jitter within a time budget and an optional
// count of retries. The WAL engine (wal.Config.RetryPolicy), the S3 backend
// (when its Config.MaxRetries is set) and the Raft adapters retry with it.
// Which layer retries which failure, so that one outage is not retried by
// several layers at once, is written down in wal/retry.go ("Which layer
// retries what").
//
// The intervals come from github.com/cenkalti/backoff/v5. Time is read from
// a github.com/jonboulle/clockwork Clock, so a test drives the waits and the
// budget with clockwork's fake clock instead of sleeping.
package retry

import (
	"context"
	"math"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jonboulle/clockwork"
)

// Sleep waits d, or until ctx is done, and returns ctx.Err() then. A d <= 0
// returns at once (with ctx.Err()). The wait is measured on the clock ctx
// carries (clockwork.AddToContext), the real clock when it carries none.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := clockwork.FromContext(ctx).NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Policy says how one operation is retried after a transient failure. The
// wait before retry n (1, 2, ...) is at most Initial·2^(n-1), capped at Max,
// and at least (1-Jitter) times that; a Budget cuts the last wait to what is
// left of it. The zero Policy retries at once and for ever, until the
// context ends: set Budget, MaxRetries or both.
//
// A Policy is a value: copy it freely, and call Retrier once per operation.
type Policy struct {
	// Initial is the longest first wait; each later one may be twice the
	// one before. 0 retries without waiting.
	Initial time.Duration
	// Max caps every wait, the first included. 0 means no cap.
	Max time.Duration
	// Jitter is the random fraction of each wait: the wait is drawn
	// uniformly from [(1-Jitter)·d, d], d the wait's bound. 0 means none,
	// 0.5 draws from the upper half, 1 is "full jitter" ([0, d]). Values
	// outside [0, 1] are clamped to it.
	Jitter float64
	// Budget, when positive, ends the retries this long after the
	// operation's first failure: the last wait is cut to what is left, so
	// the last attempt starts when the budget ends. 0 means no time limit.
	Budget time.Duration
	// MaxRetries, when positive, is how many retries one operation gets at
	// most (Again reports true at most this many times). 0 means no limit
	// on the count.
	MaxRetries int
	// Clock measures the budget and the waits. nil is the real clock.
	Clock clockwork.Clock
}

// Retrier starts counting the retries of one operation against p.
func (p Policy) Retrier() *Retrier {
	initial, maxWait, jitter := p.normal()
	r := &Retrier{p: p, clock: p.Clock, jitter: jitter}
	if r.clock == nil {
		r.clock = clockwork.NewRealClock()
	}
	r.bound = exponential(initial, maxWait, 0, 1)
	// backoff.ExponentialBackOff draws uniformly from c·[1-R, 1+R] around
	// its current interval c. With c = d·(1-J/2) and R = J/(2-J) that range
	// is exactly [(1-J)·d, d]: the same doubling and cap, shifted below the
	// bound d. Draw clamps the result to those bounds, which the float
	// arithmetic may miss by a few nanoseconds.
	r.draw = exponential(initial, maxWait, jitter/(2-jitter), 1-jitter/2)
	return r
}

// Wait returns the bounds of the wait before retry n (1, 2, ...): the
// retrier draws it from [lo, hi], before a Budget cuts it. n < 1 is 1.
func (p Policy) Wait(n int) (lo, hi time.Duration) {
	initial, maxWait, jitter := p.normal()
	b := exponential(initial, maxWait, 0, 1)
	for k := 1; k < n; k++ {
		b.NextBackOff()
	}
	hi = b.NextBackOff()
	return hi - time.Duration(jitter*float64(hi)), hi
}

// Window returns how long a Retrier of p may go on retrying after the
// operation's first failure, not counting the attempts themselves: the
// Budget, or the sum of the longest waits of MaxRetries retries when that
// is shorter. bounded is false when neither limits the retries.
func (p Policy) Window() (d time.Duration, bounded bool) {
	if p.MaxRetries <= 0 {
		return max(p.Budget, 0), p.Budget > 0
	}
	initial, maxWait, _ := p.normal()
	b := exponential(initial, maxWait, 0, 1)
	var waits time.Duration
	for k := 1; k <= p.MaxRetries && (p.Budget <= 0 || waits < p.Budget); k++ {
		waits = satAdd(waits, b.NextBackOff())
	}
	if p.Budget > 0 && waits >= p.Budget {
		return p.Budget, true
	}
	return waits, true
}

// normal returns p's intervals and jitter within their ranges: a cap of
// at least the first wait, or none, and a jitter in [0, 1].
func (p Policy) normal() (initial, maxWait time.Duration, jitter float64) {
	maxWait = p.Max
	if maxWait <= 0 {
		maxWait = math.MaxInt64
	}
	initial = min(max(p.Initial, 0), maxWait)
	if p.Jitter == p.Jitter { // not NaN, which min and max would keep
		jitter = min(max(p.Jitter, 0), 1)
	}
	return initial, maxWait, jitter
}

// exponential returns a doubling backoff from initial capped at maxWait,
// randomized by factor, with both intervals scaled by scale (at most 1).
func exponential(initial, maxWait time.Duration, factor, scale float64) *backoff.ExponentialBackOff {
	s := func(d time.Duration) time.Duration {
		if scale >= 1 {
			return d
		}
		return time.Duration(float64(d) * scale)
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval: s(initial), RandomizationFactor: factor, Multiplier: 2, MaxInterval: s(maxWait),
	}
	b.Reset()
	return b
}

func satAdd(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Retrier counts one operation's retries against its Policy. It is not
// safe for concurrent use: one goroutine retries one operation.
type Retrier struct {
	p           Policy
	clock       clockwork.Clock
	jitter      float64
	bound, draw *backoff.ExponentialBackOff // in step: the bound of each wait, and the wait drawn
	failures    int                         // calls of Next so far
	first       time.Time                   // of the first failure, on clock
}

// Again is called after a transient failure. It waits before the next
// attempt and reports true, or reports false (at once) when the policy
// allows no more retries or ctx is done; if ctx ends during the wait it
// returns false then.
func (r *Retrier) Again(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	d, ok := r.Next()
	if !ok {
		return false
	}
	return Sleep(clockwork.AddToContext(ctx, r.clock), d) == nil
}

// Next is Again without the wait, for a caller that waits itself (to log
// the wait first, or to wait for something else too): it records a
// failure and returns the wait before the next attempt, or false when the
// policy allows no more retries.
func (r *Retrier) Next() (time.Duration, bool) {
	r.failures++
	now := r.clock.Now()
	if r.failures == 1 {
		r.first = now
	}
	if r.p.MaxRetries > 0 && r.failures > r.p.MaxRetries {
		return 0, false
	}
	left := time.Duration(math.MaxInt64)
	if r.p.Budget > 0 {
		if left = r.p.Budget - now.Sub(r.first); left <= 0 {
			return 0, false
		}
	}
	hi := r.bound.NextBackOff()
	lo := hi - time.Duration(r.jitter*float64(hi))
	d := min(max(r.draw.NextBackOff(), lo), hi)
	return min(d, left), true
}

// Attempt returns the number of the attempt being made: 1 until the first
// failure is reported, n+1 after n calls of Again or Next.
func (r *Retrier) Attempt() int { return r.failures + 1 }
