package wal_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/wal"
)

// writerInOutage opens a writer, retrying every millisecond for at most
// budget, over a bucket that then refuses every PUT until the test clears
// its fail.
func writerInOutage(t *testing.T, budget time.Duration) (*wal.Log, *wal.Writer, *heldBucket) {
	t.Helper()
	b, m := memStores()
	hb := newHeldBucket(b)
	l, w := newLog(t, newClient(t, hb, m, func(c *wal.Config) {
		c.RetryInterval = time.Millisecond // ~64 ms between retries at most: hundreds of them
		c.RetryBudget = budget
	}), "o")
	hb.fail.Store(true)
	return l, w, hb
}

// The outage budget is a duration: a store that refuses every PUT for a
// while (many retries' worth) is ridden out, and the append succeeds once
// it comes back.
func TestWriterRidesOutAnOutageShorterThanTheBudget(t *testing.T) {
	ctx := context.Background()
	l, w, hb := writerInOutage(t, time.Minute)
	f := w.AppendAsync(1, entries(1, 3))
	w.Flush()
	// Let the writer retry well past any count-based limit (the old
	// default broke after 5).
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-f.Done():
			t.Fatalf("append resolved during the outage: %v", f.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	hb.fail.Store(false)
	if err := f.Wait(ctx); err != nil {
		t.Fatalf("append after a 1 s outage within a 1 min budget: %v", err)
	}
	wantEntries(t, l, 1, 3)
}

// When the outage outlasts the budget, the writer breaks — not before the
// budget has passed.
func TestWriterBreaksWhenTheBudgetIsSpent(t *testing.T) {
	const budget = 300 * time.Millisecond
	_, w, _ := writerInOutage(t, budget)
	start := time.Now()
	err := w.Append(context.Background(), 1, entries(1, 1))
	took := time.Since(start)
	if !errors.Is(err, wal.ErrBroken) {
		t.Fatalf("Append during an endless outage = %v, want ErrBroken", err)
	}
	if took < budget {
		t.Fatalf("the writer broke after %v, before its %v budget", took, budget)
	}
	t.Logf("broke after %v with a %v budget", took, budget)
}
