package hashiraft

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/adaptertest"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// landThenFail makes the first fragment PUT land while its caller sees an
// error (a lost reply), and every later write fail: a StoreLogs whose
// entries are in the bucket but that the store reports as failed.
func landThenFail(fb *fault.Bucket) {
	var landed atomic.Bool
	fb.SetHook(func(op fault.Op, key string) fault.Action {
		if op&fault.OpWrite == 0 {
			return fault.Pass
		}
		if _, _, ok := codec.ParseFragmentKey(key); ok && op == fault.OpPutIfAbsent && !landed.Swap(true) {
			return fault.Ambiguous
		}
		return fault.Fail
	})
}

// After a StoreLogs fails, raft's log is what it last saw acknowledged:
// GetLog of an index from the failed batch must be ErrLogNotFound. And a
// raft follower that trusts GetLog (appendEntries checks PrevLogEntry with
// GetLog without comparing it to its last index, raft.go:1502) must not be
// able to lose the acknowledged log through it.
func TestGetLogNeverServesAFailedStoreLogs(t *testing.T) {
	adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
		seed := adaptertest.Seed(t)
		a := openProc(t, mem, shared(), seed)
		mustStore(t, a.S, logs(1, 3, 1)) // acknowledged: [1, 3]

		landThenFail(a.FB)
		if err := a.S.StoreLogs(logs(4, 3, 1)); err == nil {
			t.Fatal("StoreLogs [4, 6] succeeded with every write after its fragment failing")
		}
		last, _ := a.S.LastIndex()
		t.Logf("after the failed StoreLogs [4, 6]: LastIndex = %d", last)

		var got raft.Log
		err := a.S.GetLog(6, &got)
		if !errors.Is(err, raft.ErrLogNotFound) {
			t.Errorf("GetLog(6) after StoreLogs [4, 6] failed = (index %d term %d %q, %v); want raft.ErrLogNotFound",
				got.Index, got.Term, got.Data, err)
		}

		// What raft does next as a follower when a pipelined AppendEntries
		// {PrevLogEntry: 6, PrevLogTerm: 1, Entries: [7, 9]} arrives: GetLog(6)
		// matched the term, every entry is beyond raft's last index (3), so
		// it calls StoreLogs([7, 9]).
		a.FB.Heal()
		if err == nil && got.Term == 1 {
			if err := a.S.StoreLogs(logs(7, 3, 1)); err != nil {
				t.Logf("StoreLogs [7, 9]: %v", err)
			}
			first, _ := a.S.FirstIndex()
			last, _ := a.S.LastIndex()
			var e raft.Log
			gerr := a.S.GetLog(1, &e)
			t.Logf("after StoreLogs [7, 9]: log [%d, %d], GetLog(1) = %v", first, last, gerr)
			if gerr != nil {
				t.Errorf("acknowledged entry 1 lost: log is now [%d, %d]; raft believes it holds [1, 9]", first, last)
			}
		}
	})
}

// The default CallTimeout outlives the engine's retries, so a call never
// gives up while the engine still retries. The engine's budget runs from an
// operation's first
// failure, which against a hung store comes one RequestTimeout after the
// call started; its last attempt may start when the budget ends and take
// another RequestTimeout. A store that hangs and then answers slowly (but
// within RequestTimeout) before the engine's budget ends makes the call
// fail although the engine's write succeeds.
func TestDefaultCallTimeoutWaitsOutTheEnginesRetries(t *testing.T) {
	ctx := context.Background()
	fb := fault.Wrap(objmem.New(), adaptertest.Seed(t))
	c := adaptertest.Client(t, fb, wal.Config{MaxInterval: time.Millisecond, Logger: adaptertest.Logger(t), RetryInterval: 100 * time.Millisecond, RetryBudget: 800 * time.Millisecond, RequestTimeout: 400 * time.Millisecond})
	s, err := New(ctx, c.LogStore(), "raft", Options{Logger: adaptertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("CallTimeout %v", s.opts.CallTimeout)
	mustStore(t, s, logs(1, 3, 1))

	fb.SetLatency(600*time.Millisecond, 0) // hung: every attempt times out
	go func() {
		time.Sleep(920 * time.Millisecond)
		fb.SetLatency(300*time.Millisecond, 0) // back, slow but within RequestTimeout
	}()
	start := time.Now()
	err = s.StoreLogs(logs(4, 3, 1))
	took := time.Since(start)
	time.Sleep(time.Second) // let the dropped writer's queue finish
	fb.SetLatency(0, 0)
	landed, _ := c.Bucket().List(ctx, objstore.ListOptions{Prefix: "wal/"})
	for _, o := range landed {
		t.Logf("bucket: %s (%d bytes)", o.Key, o.Size)
	}
	t.Logf("StoreLogs [4, 6] took %v: %v", took.Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("StoreLogs failed after %v although the store answered within the engine's retry budget: %v",
			took.Round(time.Millisecond), err)
		// And the failed batch is served: the same state as
		// TestGetLogNeverServesAFailedStoreLogs, reached with no
		// lost reply, only a hung store.
		var got raft.Log
		if gerr := s.GetLog(6, &got); !errors.Is(gerr, raft.ErrLogNotFound) {
			t.Errorf("GetLog(6) after the failed StoreLogs [4, 6] = (term %d %q, %v); want raft.ErrLogNotFound", got.Term, got.Data, gerr)
		}
	}
}
