package raftlog

import (
	"context"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/logstore"
)

// CallRetry is how the adapters retry within one call what the engine does
// not retry for them (a read's failed or timed-out GET, the reopening of a
// failed writer): 10ms doubling to 1.28s, jitter in the upper
// half, until the call's context ends.
var CallRetry = retry.Policy{Initial: 10 * time.Millisecond, Max: 1280 * time.Millisecond, Jitter: 0.5}

// WriteRetry is how an adapter retries its own blob writes, which the engine
// does not make, the way the engine of l retries its writes: from
// RetryInterval, doubling to 64 times it, jitter in the upper half, for
// RetryWindow after the first failure.
func WriteRetry(l logstore.Limits) retry.Policy {
	return retry.Policy{Initial: l.RetryInterval, Max: 64 * l.RetryInterval, Jitter: 0.5, Budget: l.RetryWindow}
}

// Retry runs one operation under a retry policy.
type Retry struct {
	Policy retry.Policy
	// AttemptTimeout bounds each attempt; 0 means only ctx does.
	AttemptTimeout time.Duration
	// Permanent reports a failure that no retry can mend; nil means none.
	Permanent func(error) bool
	// OnRetry is called before each wait for another attempt, with the
	// failed attempt's number and error; nil says nothing.
	OnRetry func(attempt int, err error)
}

// Do runs op until it succeeds, fails permanently, the policy gives up, or
// ctx ends, and returns the number of attempts made and the last error. An
// attempt cut short by AttemptTimeout is a transient failure whatever its
// error says, as long as ctx itself has not ended.
func (r Retry) Do(ctx context.Context, op func(ctx context.Context) error) (int, error) {
	rt := r.Policy.Retrier()
	for {
		attempt := rt.Attempt()
		actx, cancel := ctx, context.CancelFunc(func() {})
		if r.AttemptTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, r.AttemptTimeout)
		}
		err := op(actx)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return attempt, nil
		}
		if ctx.Err() != nil || (!timedOut && r.Permanent != nil && r.Permanent(err)) {
			return attempt, err
		}
		wait, again := rt.Next()
		if !again {
			return attempt, err
		}
		if r.OnRetry != nil {
			r.OnRetry(attempt, err)
		}
		if retry.Sleep(ctx, wait) != nil {
			return attempt, err
		}
	}
}
