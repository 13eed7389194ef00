package wal

import (
	"context"
	"fmt"
	"time"
)

// Which layer retries what:
//
//   - Backends (objstore, meta) make one attempt per call; each is bounded
//     by the caller's context. They translate answers into sentinels and do
//     not retry transient failures on their own (the S3 backend's
//     MaxRetries is 0 for the engine, minio-go's own retries are off).
//   - The engine owns the outage budget: a fragment PUT, a fence, or a
//     record update that fails transiently is retried with exponential
//     backoff (from Config.RetryInterval) until Config.RetryBudget has
//     passed since that operation's first failure, each attempt bounded by
//     Config.RequestTimeout. Only then is the writer ErrBroken.
//   - The adapters do not retry what the engine retried; their per-call
//     timeout is at least the budget, so a call outlives the engine's
//     retries instead of cutting them short.

// retrier counts one operation's retries against the budget.
type retrier struct {
	cfg     *Config
	attempt int
	first   time.Time // of the first failure
}

func (c *Client) retrier() retrier { return retrier{cfg: &c.cfg} }

// again is called after a transient failure. It waits the backoff and
// reports true if another attempt is within the budget, false (at once)
// when the budget — RetryBudget since the first failure, and
// MaxFlushRetries when set — is spent, or when ctx is done.
func (r *retrier) again(ctx context.Context) bool {
	r.attempt++
	if r.attempt == 1 {
		r.first = time.Now()
	}
	if r.cfg.MaxFlushRetries > 0 && r.attempt > r.cfg.MaxFlushRetries {
		return false
	}
	left := r.cfg.RetryBudget - time.Since(r.first)
	if left <= 0 {
		return false
	}
	// The last wait is cut to what is left, so the last attempt is made
	// when the budget ends, not a backoff before.
	return sleepCtx(ctx, min(backoff(r.cfg.RetryInterval, r.attempt), left)) == nil
}

// backoff returns the wait before retry attempt (1, 2, ...): base doubled
// per attempt up to 64×base, with jitter in its upper half.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base << min(attempt-1, 6)
	return d/2 + time.Duration(random64()%uint64(d/2+1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RetryWindow returns how long the engine of a client configured by c
// (with defaults filled in, as Client.Config returns it) may go on
// retrying one operation after its first failure — RetryBudget, or the
// waits of MaxFlushRetries retries when that cap is shorter — and a text
// naming the fields that set it, for error messages.
func (c Config) RetryWindow() (time.Duration, string) {
	what := fmt.Sprintf("wal.Config.RetryBudget = %v", c.RetryBudget)
	if n := c.MaxFlushRetries; n > 0 {
		var waits time.Duration
		for k := 1; k <= n && waits < c.RetryBudget; k++ {
			waits += c.RetryInterval << min(k-1, 6)
		}
		if waits < c.RetryBudget {
			return waits, fmt.Sprintf("%s, capped at %v by MaxFlushRetries = %d (RetryInterval = %v)",
				what, waits, n, c.RetryInterval)
		}
	}
	return c.RetryBudget, what
}

// OperationBound is how long one engine operation may take against a
// failing store: RetryBudget plus two RequestTimeouts — the budget runs
// from the first failure, which against a hung store comes one
// RequestTimeout after the call started, and the last attempt may start as
// the budget ends. A caller's timeout for one operation should be at least
// this.
func (c Config) OperationBound() time.Duration {
	return c.RetryBudget + 2*c.RequestTimeout
}
