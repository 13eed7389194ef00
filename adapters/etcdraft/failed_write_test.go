package etcdraft

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/adaptertest"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// After ErrWriteFailed a Raft loop may save the same Ready again, also when
// the failed Save's snapshot had landed: the snapshot is recognised as the
// current one and the entries and HardState are persisted.
func TestSavingTheSameReadyAgainAfterItsSnapshotLanded(t *testing.T) {
	adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
		seed := adaptertest.Seed(t)
		a := openSaved(t, mem, shared(), seed, hardState(1, 1, 4), ents(1, 4, 1))
		failAfterSnapshotLands(a, shared() != nil)
		snap := snapAt10()
		hs := hardState(2, 0, 12)
		err := a.S.Save(hs, ents(11, 2, 2), snap)
		if !errors.Is(err, ErrWriteFailed) {
			t.Fatalf("Save = %v, want ErrWriteFailed", err)
		}
		a.FB.Heal()
		err = a.S.Save(hs, ents(11, 2, 2), snap) // the same Ready again
		last, _ := a.S.LastIndex()
		gotHS, _, _ := a.S.InitialState()
		if err != nil {
			t.Errorf("saving the same Ready again after ErrWriteFailed = %v (LastIndex %d, HardState %v); want nil, LastIndex 12, HardState %v",
				err, last, gotHS, hs)
		}
	})
}

// As in hashiraft: a hung store whose first attempt times out shifts the
// engine's budget by one RequestTimeout; the default CallTimeout gives up
// while the engine still retries unless it allows for that.
func TestDefaultCallTimeoutWaitsOutTheEnginesRetries(t *testing.T) {
	ctx := context.Background()
	fb := fault.Wrap(objmem.New(), adaptertest.Seed(t))
	c := adaptertest.Client(t, fb, wal.Config{MaxInterval: time.Millisecond, RetryInterval: 100 * time.Millisecond, RetryBudget: 800 * time.Millisecond, RequestTimeout: 400 * time.Millisecond})
	s, err := New(ctx, c.LogStore(), "raft", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(hardState(1, 1, 3), ents(1, 3, 1), nil); err != nil {
		t.Fatal(err)
	}
	fb.SetLatency(600*time.Millisecond, 0)
	go func() {
		time.Sleep(920 * time.Millisecond)
		fb.SetLatency(300*time.Millisecond, 0)
	}()
	start := time.Now()
	err = s.Append(ents(4, 3, 1))
	took := time.Since(start)
	if err != nil {
		t.Errorf("Append failed after %v (CallTimeout %v) although the store answered within the engine's retry budget: %v",
			took.Round(time.Millisecond), s.opts.CallTimeout, err)
	}
}
