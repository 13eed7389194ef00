package wal

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// The engine reads time only from the client's clock (Config.Clock; the
// real clock when it is nil): every duration it measures — batching,
// segment age, request timeouts, retry waits and budgets, GC grace, reader
// leases, the janitor's interval, reader polls, latencies — runs on it
// (docs/design.md, decision 12), so a test with a fake clock controls all
// of them.

// clockOf returns the clock cfg names: cfg.Clock, or the real clock.
func clockOf(cfg *Config) clockwork.Clock {
	if cfg.Clock != nil {
		return cfg.Clock
	}
	return clockwork.NewRealClock()
}

// withTimeout is context.WithTimeout on the client's clock. On a fake
// clock the context ends with context.Canceled, its
// cause (context.Cause) being context.DeadlineExceeded, when d has passed
// on that clock; like context.WithTimeout, it also ends with its parent,
// whatever ended the parent.
func (c *Client) withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, fake := c.clock.(*clockwork.FakeClock); !fake {
		return context.WithTimeout(ctx, d)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	t := c.clock.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() {
		t.Stop()
		cancel(context.Canceled)
	}
}

// requestCtx bounds one attempt of a store request by RequestTimeout.
func (c *Client) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return c.withTimeout(ctx, c.cfg.RequestTimeout)
}
