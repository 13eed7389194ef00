package etcdraft_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// TestConcurrentReadsAndWrites races readers (Entries, Term, the index
// bounds, Snapshot) against a writer that appends, overwrites suffixes with
// a higher term, compacts, creates and applies snapshots. Every entry's data
// names its index and term, and terms never decrease along the log, so a
// torn read (a new prefix followed by an old suffix) or a misplaced entry is
// detected. Readers may only see raft's sentinels as errors.
func TestConcurrentReadsAndWrites(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	s, err := openOwned(testCtx(t), objmem.New(), metamem.New(), 512) // small cache: most reads go to the WAL
	require.NoError(t, err)
	defer s.Close()

	mk := func(first, term uint64, n int) []*pb.Entry {
		out := make([]*pb.Entry, n)
		for k := range out {
			i := first + uint64(k)
			out[k] = &pb.Entry{Index: new(i), Term: new(term), Data: fmt.Appendf(nil, "%d/%d", i, term)}
		}
		return out
	}
	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
		done.Store(true)
	}
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewPCG(uint64(seed), uint64(r)+2))
			for !done.Load() {
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				lo := first + uint64(rr.IntN(int(last-first+2)+1)) - 1
				hi := lo + uint64(rr.IntN(40))
				maxSize := uint64(math.MaxUint64)
				if rr.IntN(2) == 0 {
					maxSize = uint64(rr.IntN(300))
				}
				ents, err := s.Entries(lo, hi, maxSize)
				reads.Add(1)
				switch {
				case err == raft.ErrCompacted || err == raft.ErrUnavailable:
				case err != nil:
					if lo <= hi {
						report(fmt.Errorf("Entries(%d, %d): %v", lo, hi, err))
						return
					}
				case lo < hi && len(ents) == 0:
					report(fmt.Errorf("Entries(%d, %d): no entry", lo, hi))
					return
				}
				var prevTerm uint64
				for k, e := range ents {
					i := lo + uint64(k)
					if e.GetIndex() != i || string(e.GetData()) != fmt.Sprintf("%d/%d", i, e.GetTerm()) || e.GetTerm() < prevTerm {
						report(fmt.Errorf("Entries(%d, %d)[%d] = %v after term %d: torn or misplaced", lo, hi, k, e, prevTerm))
						return
					}
					prevTerm = e.GetTerm()
				}
				i := lo + uint64(rr.IntN(3))
				if term, err := s.Term(i); err != nil && err != raft.ErrCompacted && err != raft.ErrUnavailable {
					report(fmt.Errorf("Term(%d) = %d, %v", i, term, err))
					return
				}
				if rr.IntN(50) == 0 {
					if _, err := s.Snapshot(); err != nil {
						report(fmt.Errorf("Snapshot: %v", err))
						return
					}
				}
			}
		}()
	}

	term := uint64(1)
	deadline := time.Now().Add(2 * time.Second)
	ops := 0
	for ; time.Now().Before(deadline) && !done.Load(); ops++ {
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		snap, _ := s.Snapshot()
		var err error
		switch p := rng.IntN(100); {
		case p < 60:
			err = s.Append(mk(last+1, term, 1+rng.IntN(8)))
		case p < 80 && last >= first: // overwrite a suffix with a higher term
			term++
			from := first + uint64(rng.IntN(int(last-first+1)))
			err = s.Save(&pb.HardState{Term: new(term), Commit: new(from - 1)}, mk(from, term, 1+rng.IntN(8)), nil)
		case p < 88 && last > first:
			err = s.Compact(first + uint64(rng.IntN(int(last-first))))
		case p < 94 && last >= first && last > snap.GetMetadata().GetIndex():
			_, err = s.CreateSnapshot(last, nil, []byte("state"))
		case p < 97:
			at := max(last, snap.GetMetadata().GetIndex()) + uint64(rng.IntN(5)) + 1
			err = s.Save(&pb.HardState{Term: new(term), Commit: new(at)}, mk(at+1, term, rng.IntN(4)),
				&pb.Snapshot{Data: []byte("snap"), Metadata: &pb.SnapshotMetadata{Index: new(at), Term: new(term)}})
		}
		if err != nil {
			done.Store(true)
			wg.Wait()
			t.Fatalf("writer op %d: %v", ops, err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d writes, %d reads", ops, reads.Load())
}
