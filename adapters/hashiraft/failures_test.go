package hashiraft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/adaptertest"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

var keyTerm = []byte("CurrentTerm")

// proc is one process: its own client over a fault-injecting view of the
// shared bucket, and a Store of log "raft".
type proc = adaptertest.Proc[*Store]

// openProc opens a process over mem. With shared nil the metadata lives in
// the bucket (through this process's fault wrapper, so an outage of the
// bucket is one of the metadata too); otherwise every process shares it.
func openProc(t *testing.T, mem objstore.Bucket, shared meta.Store, seed uint64) *proc {
	return openProcTimeout(t, mem, shared, seed, 300*time.Millisecond)
}

// openProcTimeout is openProc with the given CallTimeout.
func openProcTimeout(t *testing.T, mem objstore.Bucket, shared meta.Store, seed uint64, callTimeout time.Duration) *proc {
	t.Helper()
	return adaptertest.OpenProc(t, mem, shared, seed, adaptertest.FastFailing(), func(c logstore.Client) (*Store, error) {
		return New(context.Background(), c, "raft", Options{CallTimeout: callTimeout, Logger: adaptertest.Logger(t)})
	})
}

// store stores entries and then the term through p, as raft does.
func store(t *testing.T, p *proc, entries []*raft.Log, term uint64) {
	t.Helper()
	mustStore(t, p.S, entries)
	if err := p.S.SetUint64(keyTerm, term); err != nil {
		t.Fatal(err)
	}
}

func logs(first, n, term uint64) []*raft.Log {
	out := make([]*raft.Log, n)
	for k := range out {
		i := first + uint64(k)
		out[k] = &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d term %d", i, term)}
	}
	return out
}

func mustStore(t *testing.T, s *Store, l []*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(l); err != nil {
		t.Fatalf("StoreLogs [%d, %d]: %v", l[0].Index, l[len(l)-1].Index, err)
	}
}

// wantLog checks s holds exactly the entries want, [1, len(want)], and the
// term.
func wantLog(t *testing.T, s *Store, want []*raft.Log, term uint64) {
	t.Helper()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 1 || last != uint64(len(want)) {
		t.Fatalf("log [%d, %d], want [1, %d]", first, last, len(want))
	}
	for _, w := range want {
		var got raft.Log
		if err := s.GetLog(w.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", w.Index, err)
		}
		if got.Term != w.Term || string(got.Data) != string(w.Data) {
			t.Fatalf("entry %d: term %d %q, want term %d %q", w.Index, got.Term, got.Data, w.Term, w.Data)
		}
	}
	if got, err := s.GetUint64(keyTerm); err != nil || got != term {
		t.Fatalf("CurrentTerm = %d, %v; want %d", got, err, term)
	}
}

// A store whose writer failed during an outage, while another process took
// the log over, never takes it back once the outage ends: its writes fail
// as fenced, and the new owner's log and term stand.
func TestFailedStoreNeverTakesBackALogTakenOver(t *testing.T) {
	adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
		seed := adaptertest.Seed(t)
		a := openProc(t, mem, shared(), seed)
		store(t, a, logs(1, 3, 1), 1)

		adaptertest.FailWrites(a.FB)
		if err := a.S.StoreLogs(logs(4, 2, 1)); err == nil {
			t.Fatal("StoreLogs succeeded with every bucket write failing")
		}

		b := openProc(t, mem, shared(), seed+1) // another process takes over
		want := logs(1, 3, 1)
		wantLog(t, b.S, want, 1)
		if err := b.S.SetUint64(keyTerm, 2); err != nil {
			t.Fatal(err)
		}
		mustStore(t, b.S, logs(4, 2, 2))
		want = append(want, logs(4, 2, 2)...)

		a.FB.Heal()
		if err := a.S.StoreLogs(logs(4, 1, 1)); !errors.Is(err, wal.ErrFenced) {
			t.Fatalf("the failed store's StoreLogs after the takeover = %v, want ErrFenced", err)
		}
		if err := a.S.SetUint64(keyTerm, 1); !errors.Is(err, wal.ErrFenced) {
			t.Fatalf("the failed store's SetUint64 after the takeover = %v, want ErrFenced", err)
		}

		mustStore(t, b.S, logs(6, 1, 2))
		want = append(want, logs(6, 1, 2)...)
		if err := b.S.SetUint64(keyTerm, 3); err != nil {
			t.Fatalf("the new owner's SetUint64: %v", err)
		}
		wantLog(t, b.S, want, 3)
		b.Close()
		wantLog(t, openProc(t, mem, shared(), seed+2).S, want, 3)
	})
}

// A store whose writer failed during an outage nobody used to take the log
// over resumes once the outage ends, in the same Store, with nothing
// acknowledged lost.
func TestStoreResumesAfterAnOutageWithoutTakeover(t *testing.T) {
	adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
		seed := adaptertest.Seed(t)
		a := openProc(t, mem, shared(), seed)
		want := logs(1, 3, 1)
		store(t, a, want, 1)

		adaptertest.FailWrites(a.FB)
		if err := a.S.StoreLogs(logs(4, 3, 1)); err == nil {
			t.Fatal("StoreLogs succeeded with every bucket write failing")
		}
		if err := a.S.SetUint64(keyTerm, 2); err == nil {
			t.Fatal("SetUint64 succeeded with every bucket write failing")
		}
		a.FB.Heal()

		mustStore(t, a.S, logs(4, 3, 1)) // raft retries from its last index
		want = append(want, logs(4, 3, 1)...)
		if err := a.S.SetUint64(keyTerm, 2); err != nil {
			t.Fatalf("SetUint64 after the outage: %v", err)
		}
		wantLog(t, a.S, want, 2)
		a.Close()
		wantLog(t, openProc(t, mem, shared(), seed+1).S, want, 2)
	})
}

// Failures that break the WAL's writer (and the reopened one) but end
// within the call are ridden out inside it.
func TestStoreRidesOutFailuresEndingWithinTheCall(t *testing.T) {
	adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
		seed := adaptertest.Seed(t)
		rng := rand.New(rand.NewPCG(seed, 1))
		a := openProcTimeout(t, mem, shared(), seed, time.Minute) // the failures end: the call must not give up first
		want := logs(1, 2, 1)
		store(t, a, want, 1)
		for round := range 5 {
			var left atomic.Int64 // the next writes that fail
			left.Store(int64(3 + rng.IntN(6)))
			a.FB.SetHook(func(op fault.Op, _ string) fault.Action {
				if op&fault.OpWrite != 0 && left.Add(-1) >= 0 {
					return fault.Fail
				}
				return fault.Pass
			})
			next := logs(uint64(len(want))+1, 2, 1)
			mustStore(t, a.S, next)
			want = append(want, next...)
			if err := a.S.SetUint64(keyTerm, uint64(round+2)); err != nil {
				t.Fatalf("round %d: SetUint64: %v", round, err)
			}
			a.FB.Heal()
		}
		wantLog(t, a.S, want, 6)
		a.Close()
		wantLog(t, openProc(t, mem, shared(), seed+1).S, want, 6)
	})
}

// By default a call outlives the engine's retries: CallTimeout is at least
// the client's RetryBudget plus one RequestTimeout, for the log and the
// snapshots.
func TestDefaultCallTimeoutOutlivesTheRetryBudget(t *testing.T) {
	adaptertest.DefaultCallTimeoutOutlivesTheRetryBudget(t, opener, func(c io.Closer) []time.Duration {
		s := c.(*Store)
		return []time.Duration{s.opts.CallTimeout, s.snaps.timeout}
	})
}

// A CallTimeout shorter than the engine's retry budget would give up on
// calls the engine is still retrying: Open and New refuse it, naming both.
func TestCallTimeoutShorterThanTheRetryBudgetIsRejected(t *testing.T) {
	adaptertest.CallTimeoutIsCheckedAgainstTheRetryBudget(t, opener)
}

// opener opens a Store with a given CallTimeout, over a client or a URL.
var opener = adaptertest.Opener{
	New: func(ctx context.Context, c logstore.Client, d time.Duration) (io.Closer, error) {
		return New(ctx, c, "raft", Options{CallTimeout: d})
	},
	Open: func(ctx context.Context, u string, d time.Duration) (io.Closer, error) {
		return Open(ctx, u, "", Options{CallTimeout: d, WAL: wal.Config{GCInterval: -1}})
	},
}

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
