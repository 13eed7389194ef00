// Package retry is woodpecker's one home for waiting between attempts.
package retry

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, and returns ctx.Err() then. A d <= 0
// returns at once (with ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
