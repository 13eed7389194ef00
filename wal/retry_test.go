package wal_test

import (
	"context"
	"errors"
	"testing"
	"time"

	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// The outage budget is a duration: a store that refuses every PUT for a
// while (many retries' worth) is ridden out, and the append succeeds once
// it comes back.
func TestWriterRidesOutAnOutageShorterThanTheBudget(t *testing.T) {
	ctx := context.Background()
	hb := newHeldBucket(objmem.New())
	c := newClient(t, hb, metamem.New(), func(c *wal.Config) {
		c.RetryInterval = time.Millisecond // ~64 ms between retries at most: hundreds of them
		c.RetryBudget = time.Minute
	})
	c.CreateLog(ctx, "o")
	l, _ := c.OpenLog(ctx, "o")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	hb.fail.Store(true)
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
	if got := mustGet(t, l, 3); got != "entry-3" {
		t.Fatal(got)
	}
}

// When the outage outlasts the budget, the writer breaks — not before the
// budget has passed.
func TestWriterBreaksWhenTheBudgetIsSpent(t *testing.T) {
	ctx := context.Background()
	hb := newHeldBucket(objmem.New())
	const budget = 300 * time.Millisecond
	c := newClient(t, hb, metamem.New(), func(c *wal.Config) {
		c.RetryInterval = time.Millisecond
		c.RetryBudget = budget
	})
	c.CreateLog(ctx, "o")
	l, _ := c.OpenLog(ctx, "o")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	hb.fail.Store(true)
	start := time.Now()
	err = w.Append(ctx, 1, entries(1, 1))
	took := time.Since(start)
	if !errors.Is(err, wal.ErrBroken) {
		t.Fatalf("Append during an endless outage = %v, want ErrBroken", err)
	}
	if took < budget {
		t.Fatalf("the writer broke after %v, before its %v budget", took, budget)
	}
	t.Logf("broke after %v with a %v budget", took, budget)
}
