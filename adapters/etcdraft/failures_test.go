package etcdraft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/adaptertest"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// proc is one process: its own client over a fault-injecting view of the
// shared bucket, and a Storage of log "raft".
type proc = adaptertest.Proc[*Storage]

// openProc opens a process over mem. With shared nil the metadata lives in
// the bucket (through this process's fault wrapper, so an outage of the
// bucket is one of the metadata too); otherwise every process shares it.
func openProc(t *testing.T, mem objstore.Bucket, shared meta.Store, seed uint64) *proc {
	t.Helper()
	return adaptertest.OpenProc(t, mem, shared, seed, adaptertest.FastFailing(), func(c logstore.Client) (*Storage, error) {
		return New(context.Background(), c, "raft", Options{TailCacheBytes: 64, // reads go through the WAL too
			Logger: adaptertest.Logger(t)})
	})
}

// openSaved opens a process and saves hs and entries through it.
func openSaved(t *testing.T, mem objstore.Bucket, shared meta.Store, seed uint64, hs *pb.HardState, entries []*pb.Entry) *proc {
	t.Helper()
	p := openProc(t, mem, shared, seed)
	if err := p.S.Save(hs, entries, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// failAfterSnapshotLands lets a snapshot's writes land — its data object,
// and its metadata CAS unless the metadata is apart — and fails every later
// bucket write.
func failAfterSnapshotLands(p *proc, metaApart bool) {
	snapWrites := 2
	if metaApart {
		snapWrites = 1
	}
	adaptertest.FailWritesAfter(p.FB, snapWrites)
}

// snapAt10 is a snapshot a leader sends: index 10, term 2, three voters.
func snapAt10() *pb.Snapshot {
	return &pb.Snapshot{Data: []byte("state at 10"), Metadata: &pb.SnapshotMetadata{
		Index: new(uint64(10)), Term: new(uint64(2)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
}

func ents(first, n, term uint64) []*pb.Entry {
	out := make([]*pb.Entry, n)
	for k := range out {
		i := first + uint64(k)
		out[k] = &pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryNormal.Enum(),
			Data: fmt.Appendf(nil, "entry %d term %d", i, term)}
	}
	return out
}

func hardState(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

// wantState checks s holds exactly the entries want, [1, len(want)], and
// the HardState hs.
func wantState(t *testing.T, s *Storage, want []*pb.Entry, hs *pb.HardState) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first != 1 || last != uint64(len(want)) {
		t.Fatalf("log [%d, %d], want [1, %d]", first, last, len(want))
	}
	got, err := s.Entries(1, last+1, math.MaxUint64)
	if err != nil {
		t.Fatalf("Entries(1, %d): %v", last+1, err)
	}
	for k := range want {
		if !proto.Equal(got[k], want[k]) {
			t.Fatalf("entry %d = %v, want %v", k+1, got[k], want[k])
		}
	}
	for _, e := range want {
		if term, err := s.Term(e.GetIndex()); err != nil || term != e.GetTerm() {
			t.Fatalf("Term(%d) = %d, %v; want %d", e.GetIndex(), term, err, e.GetTerm())
		}
	}
	gotHS, _, err := s.InitialState()
	if err != nil || !proto.Equal(gotHS, hs) {
		t.Fatalf("HardState %v, %v; want %v", gotHS, err, hs)
	}
}

// A storage whose write failed during an outage, while another process
// took the log over, never takes it back once the outage ends: its writes
// fail as fenced, and the new owner's log and HardState stand.
func TestFailedStorageNeverTakesBackALogTakenOver(t *testing.T) {
	adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
		seed := adaptertest.Seed(t)
		want, hs := ents(1, 3, 1), hardState(1, 1, 3)
		a := openSaved(t, mem, shared(), seed, hs, want)

		adaptertest.FailWrites(a.FB)
		if err := a.S.Save(hardState(1, 1, 5), ents(4, 2, 1), nil); err == nil {
			t.Fatal("Save succeeded with every bucket write failing")
		}

		b := openProc(t, mem, shared(), seed+1) // another process takes over
		wantState(t, b.S, want, hs)
		hs = hardState(2, 2, 5)
		if err := b.S.Save(hs, ents(4, 2, 2), nil); err != nil {
			t.Fatal(err)
		}
		want = append(want, ents(4, 2, 2)...)

		a.FB.Heal()
		if err := a.S.Append(ents(4, 1, 1)); !errors.Is(err, wal.ErrFenced) {
			t.Fatalf("the failed storage's Append after the takeover = %v, want ErrFenced", err)
		}
		if err := a.S.SetHardState(hardState(1, 1, 4)); !errors.Is(err, wal.ErrFenced) {
			t.Fatalf("the failed storage's SetHardState after the takeover = %v, want ErrFenced", err)
		}

		hs = hardState(3, 2, 6)
		if err := b.S.Save(hs, ents(6, 1, 3), nil); err != nil {
			t.Fatalf("the new owner's Save: %v", err)
		}
		want = append(want, ents(6, 1, 3)...)
		wantState(t, b.S, want, hs)
		b.Close()
		wantState(t, openProc(t, mem, shared(), seed+2).S, want, hs)
	})
}

// A storage whose writes failed during an outage nobody used to take the
// log over resumes once the outage ends, by itself: its next write reopens
// the log and goes through, with nothing acknowledged lost.
func TestStorageResumesAfterAnOutageWithoutTakeover(t *testing.T) {
	adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
		seed := adaptertest.Seed(t)
		want, hs := ents(1, 3, 1), hardState(1, 1, 3)
		a := openSaved(t, mem, shared(), seed, hs, want)

		adaptertest.FailWrites(a.FB)
		for range 3 { // several writes fail: the storage stays usable
			err := a.S.Save(hardState(2, 1, 6), ents(4, 3, 2), nil)
			if err == nil {
				t.Fatal("Save succeeded with every bucket write failing")
			}
			if errors.Is(err, wal.ErrFenced) || errors.Is(err, ErrClosed) {
				t.Fatalf("Save during the outage = %v, a permanent error", err)
			}
			if !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("Save during the outage = %v, want ErrWriteFailed", err)
			}
		}
		wantState(t, a.S, want, hs) // reads are served meanwhile
		a.FB.Heal()

		hs = hardState(2, 1, 6)
		if err := a.S.Save(hs, ents(4, 3, 2), nil); err != nil { // raft saves the Ready again
			t.Fatalf("Save after the outage: %v", err)
		}
		want = append(want, ents(4, 3, 2)...)
		wantState(t, a.S, want, hs)
		if err := a.S.Compact(2); err != nil {
			t.Fatalf("Compact after the outage: %v", err)
		}
		if err := a.S.Compact(1); err == nil {
			t.Fatal("Compact below the compaction point succeeded")
		}
		a.Close()

		r := openProc(t, mem, shared(), seed+1).S
		if first, _ := r.FirstIndex(); first != 3 {
			t.Fatalf("FirstIndex after reopening = %d, want 3", first)
		}
		got, err := r.Entries(3, 7, math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		for k, e := range want[2:] {
			if !proto.Equal(got[k], e) {
				t.Fatalf("entry %d = %v, want %v", e.GetIndex(), got[k], e)
			}
		}
		if got, _, _ := r.InitialState(); !proto.Equal(got, hs) {
			t.Fatalf("HardState after reopening %v, want %v", got, hs)
		}
	})
}

// A write that failed after part of it landed (a snapshot's data and
// metadata, then not its entries) leaves the storage in one of the states a
// crash there would: the next write goes on from it, whether it saves just
// the entries again (raft's retry of an append) or the same Ready again,
// snapshot and all (a Raft loop that resumes after ErrWriteFailed: the
// snapshot is recognised as the current one).
func TestStorageResumesFromWhatAFailedWriteLeft(t *testing.T) {
	for _, again := range []struct {
		name string
		snap bool
	}{{"EntriesAgain", false}, {"SameReadyAgain", true}} {
		t.Run(again.name, func(t *testing.T) {
			adaptertest.MetaPlacements(t, func(t *testing.T, mem objstore.Bucket, shared func() meta.Store) {
				a := openSaved(t, mem, shared(), adaptertest.Seed(t), hardState(1, 1, 4), ents(1, 4, 1))
				failAfterSnapshotLands(a, shared() != nil)
				snap, hs := snapAt10(), hardState(2, 0, 12)
				if err := a.S.Save(hs, ents(11, 2, 2), snap); !errors.Is(err, ErrWriteFailed) {
					t.Fatalf("Save with the bucket failing after the snapshot's metadata = %v, want ErrWriteFailed", err)
				}
				a.FB.Heal()
				var resend *pb.Snapshot
				if again.snap {
					resend = snap
				}
				if err := a.S.Save(hs, ents(11, 2, 2), resend); err != nil {
					t.Fatalf("Save after the failure: %v", err)
				}
				first, _ := a.S.FirstIndex()
				last, _ := a.S.LastIndex()
				if first != 11 || last != 12 {
					t.Fatalf("log [%d, %d] after the snapshot at 10 and entries 11, 12; want [11, 12]", first, last)
				}
				got, err := a.S.Snapshot()
				if want := pb.EnsureSnapshot(proto.CloneOf(snap)); err != nil || !proto.Equal(got, want) {
					t.Fatalf("Snapshot() = %v, %v; want %v", got, err, want)
				}
				if term, err := a.S.Term(10); err != nil || term != 2 {
					t.Fatalf("Term(10) = %d, %v; want 2", term, err)
				}
				if got, _, _ := a.S.InitialState(); !proto.Equal(got, hs) {
					t.Fatalf("HardState %v, want %v", got, hs)
				}
			})
		})
	}
}

// By default a call outlives the engine's retries: CallTimeout is at least
// the client's RetryBudget plus one RequestTimeout.
func TestDefaultCallTimeoutOutlivesTheRetryBudget(t *testing.T) {
	adaptertest.DefaultCallTimeoutOutlivesTheRetryBudget(t, opener, func(c io.Closer) []time.Duration {
		s := c.(*Storage)
		return []time.Duration{s.opts.CallTimeout}
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
