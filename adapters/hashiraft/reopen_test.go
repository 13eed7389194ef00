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
	"github.com/woodpecker-wal/woodpecker/wal"
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
