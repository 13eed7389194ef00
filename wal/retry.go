package wal

import (
	"fmt"
	"math"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
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
//     retries instead of cutting them short (logstore.Limits tells them
//     the window).
//
// Every one of these retries is an internal/retry Policy: the engine's is
// Config.retryPolicy, the S3 backend's (when its MaxRetries is set) is
// s3Policy in objstore/s3/errors.go.

// retryPolicy returns the policy by which the engine of a client
// configured by c (with defaults filled in) retries a fragment PUT, a fence
// or a record update after a transient failure: waits from RetryInterval,
// doubling up to 64 times it, each drawn from the upper half of its bound;
// until RetryBudget has passed since the operation's first failure (the
// last wait cut to what is left), and at most MaxFlushRetries times when
// that is set; measured on c.Clock. Each attempt is bounded by
// RequestTimeout, which the policy does not see.
func (c Config) retryPolicy() retry.Policy {
	capped := 64 * c.RetryInterval
	if c.RetryInterval > math.MaxInt64/64 {
		capped = 0 // no cap: 64 times it would overflow
	}
	return retry.Policy{
		Initial: c.RetryInterval, Max: capped, Jitter: 0.5,
		Budget: c.RetryBudget, MaxRetries: c.MaxFlushRetries, Clock: c.Clock,
	}
}

// retrier starts counting one operation's retries against the engine's
// policy.
func (c *Client) retrier() *retry.Retrier { return c.cfg.retryPolicy().Retrier() }

// retrier is the client's, except for a tiered writer's uploader, which
// retries without a time budget (MaxUploadLag stops its appenders instead)
// until the writer closes or fails.
func (w *Writer) retrier() *retry.Retrier {
	p := w.c.cfg.retryPolicy()
	if w.unbudgeted {
		p.Budget, p.MaxRetries = 0, 0
	}
	return p.Retrier()
}

// RetryWindow returns how long the engine of a client configured by c
// (with defaults filled in, as Client.Config returns it) may go on
// retrying one operation after its first failure — RetryBudget, or the
// longest waits of MaxFlushRetries retries when that cap is shorter, as
// retryPolicy().Window() computes them — and a text naming the fields that
// set it, for error messages.
func (c Config) RetryWindow() (time.Duration, string) {
	what := fmt.Sprintf("wal.Config.RetryBudget = %v", c.RetryBudget)
	if waits, _ := c.retryPolicy().Window(); waits < c.RetryBudget {
		return waits, fmt.Sprintf("%s, capped at %v by MaxFlushRetries = %d (RetryInterval = %v)",
			what, waits, c.MaxFlushRetries, c.RetryInterval)
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
