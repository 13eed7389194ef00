package etcdraft_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// memStorage opens a Storage over fresh in-memory stores. A tiny tail cache
// makes reads go through the WAL too.
func memStorage(t testing.TB) ownedStorage {
	t.Helper()
	s, err := openOwned(testCtx(t), objmem.New(), metamem.New(), 64)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

type index uint64

// terms returns entries at indexes i, i+1, ... with the given terms (etcd's
// storage_test.go helper).
func (i index) terms(terms ...uint64) []*pb.Entry {
	out := make([]*pb.Entry, len(terms))
	for k, t := range terms {
		out[k] = &pb.Entry{Index: new(uint64(i) + uint64(k)), Term: new(t)}
	}
	return out
}

// seeded returns a Storage holding ents, where ents[0] is the compaction
// point (MemoryStorage's dummy entry): seeded by ApplySnapshot + Append.
func seeded(t testing.TB, ents []*pb.Entry) ownedStorage {
	t.Helper()
	s := memStorage(t)
	require.NoError(t, s.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{
		Index: new(ents[0].GetIndex()), Term: new(ents[0].GetTerm())}}))
	require.NoError(t, s.Append(ents[1:]))
	return s
}

func requireEqualEntries(t testing.TB, want, got []*pb.Entry) {
	t.Helper()
	require.Equal(t, len(want), len(got))
	for i := range want {
		require.True(t, proto.Equal(want[i], got[i]), "entry %d: %v, want %v", i, got[i], want[i])
	}
}

// logOf returns the compaction point entry (index and term only) followed
// by every entry, like MemoryStorage's ents.
func logOf(t testing.TB, s raft.Storage) []*pb.Entry {
	t.Helper()
	first, err := s.FirstIndex()
	require.NoError(t, err)
	last, err := s.LastIndex()
	require.NoError(t, err)
	term, err := s.Term(first - 1)
	require.NoError(t, err)
	out := []*pb.Entry{{Index: new(first - 1), Term: new(term)}}
	if last >= first {
		ents, err := s.Entries(first, last+1, math.MaxUint64)
		require.NoError(t, err)
		out = append(out, ents...)
	}
	return out
}

// The eight tests of etcd raft's storage_test.go, on our Storage.

func TestStorageTerm(t *testing.T) {
	ents := index(3).terms(3, 4, 5)
	tests := []struct {
		i     uint64
		werr  error
		wterm uint64
	}{
		{2, raft.ErrCompacted, 0},
		{3, nil, 3},
		{4, nil, 4},
		{5, nil, 5},
		{6, raft.ErrUnavailable, 0},
	}
	s := seeded(t, ents)
	for _, tt := range tests {
		term, err := s.Term(tt.i)
		require.Equal(t, tt.werr, err, "Term(%d)", tt.i)
		require.Equal(t, tt.wterm, term, "Term(%d)", tt.i)
	}
}

func TestStorageEntries(t *testing.T) {
	ents := index(3).terms(3, 4, 5, 6)
	size := func(k int) uint64 { return uint64(proto.Size(ents[k])) }
	tests := []struct {
		lo, hi, maxsize uint64
		werr            error
		wentries        []*pb.Entry
	}{
		{2, 6, math.MaxUint64, raft.ErrCompacted, nil},
		{3, 4, math.MaxUint64, raft.ErrCompacted, nil},
		{4, 5, math.MaxUint64, nil, index(4).terms(4)},
		{4, 6, math.MaxUint64, nil, index(4).terms(4, 5)},
		{4, 7, math.MaxUint64, nil, index(4).terms(4, 5, 6)},
		// even if maxsize is zero, the first entry should be returned
		{4, 7, 0, nil, index(4).terms(4)},
		// limit to 2
		{4, 7, size(1) + size(2), nil, index(4).terms(4, 5)},
		{4, 7, size(1) + size(2) + size(3)/2, nil, index(4).terms(4, 5)},
		{4, 7, size(1) + size(2) + size(3) - 1, nil, index(4).terms(4, 5)},
		// all
		{4, 7, size(1) + size(2) + size(3), nil, index(4).terms(4, 5, 6)},
		// beyond the last index: MemoryStorage panics, we answer ErrUnavailable
		{4, 8, math.MaxUint64, raft.ErrUnavailable, nil},
	}
	for _, cache := range []int64{64, 1 << 20} { // through the WAL, and from the tail cache
		s, err := openOwned(testCtx(t), objmem.New(), metamem.New(), cache)
		require.NoError(t, err)
		require.NoError(t, s.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(3))}}))
		require.NoError(t, s.Append(ents[1:]))
		for _, tt := range tests {
			entries, err := s.Entries(tt.lo, tt.hi, tt.maxsize)
			require.Equal(t, tt.werr, err, "Entries(%d, %d, %d)", tt.lo, tt.hi, tt.maxsize)
			requireEqualEntries(t, tt.wentries, entries)
		}
		s.Close()
	}
}

func TestStorageLastIndex(t *testing.T) {
	s := seeded(t, index(3).terms(3, 4, 5))
	last, err := s.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(5), last)

	require.NoError(t, s.Append(index(6).terms(5)))
	last, err = s.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(6), last)
}

func TestStorageFirstIndex(t *testing.T) {
	s := seeded(t, index(3).terms(3, 4, 5))
	first, err := s.FirstIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(4), first)

	require.NoError(t, s.Compact(4))
	first, err = s.FirstIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(5), first)
}

func TestStorageCompact(t *testing.T) {
	tests := []struct {
		i            uint64
		werr         error
		windex       uint64
		wterm        uint64
		wlen         int
		wbeyondError bool
	}{
		{2, raft.ErrCompacted, 3, 3, 3, false},
		{3, raft.ErrCompacted, 3, 3, 3, false},
		{4, nil, 4, 4, 2, false},
		{5, nil, 5, 5, 1, false},
		{6, nil, 3, 3, 3, true}, // MemoryStorage panics
	}
	for _, tt := range tests {
		s := seeded(t, index(3).terms(3, 4, 5))
		err := s.Compact(tt.i)
		if tt.wbeyondError {
			require.Error(t, err)
			require.ErrorIs(t, err, raft.ErrUnavailable)
		} else {
			require.Equal(t, tt.werr, err)
		}
		l := logOf(t, s)
		require.Equal(t, tt.windex, l[0].GetIndex())
		require.Equal(t, tt.wterm, l[0].GetTerm())
		require.Equal(t, tt.wlen, len(l))
	}
}

func TestStorageCreateSnapshot(t *testing.T) {
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	data := []byte("data")
	tests := []struct {
		i     uint64
		werr  error
		wsnap *pb.Snapshot
	}{
		{4, nil, &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(4)), Term: new(uint64(4)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}},
		{5, nil, &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(5)), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}},
		{3, raft.ErrSnapOutOfDate, nil},
	}
	for _, tt := range tests {
		s := seeded(t, index(3).terms(3, 4, 5))
		snap, err := s.CreateSnapshot(tt.i, cs, data)
		require.Equal(t, tt.werr, err)
		require.True(t, proto.Equal(tt.wsnap, snap), "%v, want %v", snap, tt.wsnap)
		if tt.werr == nil {
			got, err := s.Snapshot()
			require.NoError(t, err)
			require.True(t, proto.Equal(pb.EnsureSnapshot(proto.CloneOf(tt.wsnap)), got))
		}
	}
	// Beyond the last index MemoryStorage panics; we return an error.
	s := seeded(t, index(3).terms(3, 4, 5))
	_, err := s.CreateSnapshot(6, cs, data)
	require.ErrorIs(t, err, raft.ErrUnavailable)
}

func TestStorageAppend(t *testing.T) {
	tests := []struct {
		entries  []*pb.Entry
		werr     error
		wentries []*pb.Entry
	}{
		{index(1).terms(1, 2), nil, index(3).terms(3, 4, 5)},
		{index(3).terms(3, 4, 5), nil, index(3).terms(3, 4, 5)},
		{index(3).terms(3, 6, 6), nil, index(3).terms(3, 6, 6)},
		{index(3).terms(3, 4, 5, 5), nil, index(3).terms(3, 4, 5, 5)},
		// Truncate incoming entries, truncate the existing entries and append.
		{index(2).terms(3, 3, 5), nil, index(3).terms(3, 5)},
		// Truncate the existing entries and append.
		{index(4).terms(5), nil, index(3).terms(3, 5)},
		// Direct append.
		{index(6).terms(5), nil, index(3).terms(3, 4, 5, 5)},
	}
	for _, tt := range tests {
		s := seeded(t, index(3).terms(3, 4, 5))
		require.Equal(t, tt.werr, s.Append(tt.entries))
		requireEqualEntries(t, tt.wentries, logOf(t, s))
	}
	// A gap: MemoryStorage panics; we return an error and change nothing.
	s := seeded(t, index(3).terms(3, 4, 5))
	require.Error(t, s.Append(index(7).terms(5)))
	requireEqualEntries(t, index(3).terms(3, 4, 5), logOf(t, s))
}

func TestStorageApplySnapshot(t *testing.T) {
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	data := []byte("data")
	tests := []struct {
		name          string
		snapshots     []*pb.Snapshot
		expectedError error
	}{
		{"normal case", []*pb.Snapshot{
			{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(4)), Term: new(uint64(4)), ConfState: cs}},
		}, nil},
		{"snapshot out of date", []*pb.Snapshot{
			{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(4)), Term: new(uint64(4)), ConfState: cs}},
			{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(3)), ConfState: cs}},
		}, raft.ErrSnapOutOfDate},
		{"bootstrap with confState", []*pb.Snapshot{
			{Data: data, Metadata: &pb.SnapshotMetadata{ConfState: cs}},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := memStorage(t)
			var err error
			for _, sn := range tt.snapshots {
				err = s.ApplySnapshot(sn)
			}
			if tt.expectedError != nil {
				require.Equal(t, tt.expectedError, err)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

// Beyond etcd's tests.

func TestFreshStorage(t *testing.T) {
	s := memStorage(t)
	first, err := s.FirstIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(1), first)
	last, err := s.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(0), last)
	term, err := s.Term(0)
	require.NoError(t, err)
	require.Equal(t, uint64(0), term)
	_, err = s.Term(1)
	require.Equal(t, raft.ErrUnavailable, err)
	_, err = s.Entries(1, 1, math.MaxUint64)
	require.Equal(t, raft.ErrUnavailable, err)
	hs, cs, err := s.InitialState()
	require.NoError(t, err)
	require.Nil(t, hs)
	require.NotNil(t, cs)
	snap, err := s.Snapshot()
	require.NoError(t, err)
	require.True(t, proto.Equal(pb.EnsureSnapshot(nil), snap))
}

// Where MemoryStorage panics, we return errors (never panic) and change
// nothing.
func TestBadInputIsAnError(t *testing.T) {
	s := seeded(t, index(3).terms(3, 4, 5))
	before := logOf(t, s)
	_, err := s.Entries(5, 4, math.MaxUint64)
	require.Error(t, err)
	_, err = s.Entries(4, 7, math.MaxUint64)
	require.Equal(t, raft.ErrUnavailable, err)
	require.Error(t, s.Append(index(7).terms(5)), "gap")
	require.Error(t, s.Append([]*pb.Entry{index(4).terms(4)[0], index(6).terms(4)[0]}), "not contiguous")
	require.Error(t, s.Append([]*pb.Entry{index(6).terms(4)[0], nil}), "nil entry")
	require.ErrorIs(t, s.Compact(6), raft.ErrUnavailable, "beyond the last index")
	require.Equal(t, raft.ErrCompacted, s.Compact(3), "at the compaction point")
	_, err = s.CreateSnapshot(3, nil, nil)
	require.Equal(t, raft.ErrSnapOutOfDate, err, "at the snapshot index")
	requireEqualEntries(t, before, logOf(t, s))
	require.NoError(t, s.Save(nil, nil, nil))
	require.Error(t, s.Save(&pb.HardState{Commit: new(uint64(9))}, index(9).terms(9), nil), "gap: nothing written")
	requireEqualEntries(t, before, logOf(t, s))
	hs, _, err := s.InitialState()
	require.NoError(t, err)
	require.Nil(t, hs)
}

// CreateSnapshot below the compaction point but above the snapshot makes
// MemoryStorage panic half-way; we return an error.
func TestCreateSnapshotBelowCompaction(t *testing.T) {
	s := memStorage(t)
	require.NoError(t, s.Append(index(1).terms(1, 1, 1, 1, 1)))
	require.NoError(t, s.Compact(4))
	_, err := s.CreateSnapshot(2, nil, []byte("x"))
	require.ErrorIs(t, err, raft.ErrCompacted)
	snap, err := s.CreateSnapshot(4, nil, []byte("x"))
	require.NoError(t, err)
	require.Equal(t, uint64(4), snap.GetMetadata().GetIndex())
	require.Equal(t, uint64(1), snap.GetMetadata().GetTerm())
}

func TestEntriesSliceIsCallers(t *testing.T) {
	for _, cache := range []int64{64, 1 << 20} {
		s, err := openOwned(testCtx(t), objmem.New(), metamem.New(), cache)
		require.NoError(t, err)
		require.NoError(t, s.Append(index(1).terms(1, 1, 2, 2)))
		ents, err := s.Entries(1, 3, math.MaxUint64)
		require.NoError(t, err)
		_ = append(ents, &pb.Entry{Index: new(uint64(99))})
		ents[0] = nil
		got, err := s.Entries(1, 5, math.MaxUint64)
		require.NoError(t, err)
		requireEqualEntries(t, index(1).terms(1, 1, 2, 2), got)
		s.Close()
	}
}

// Everything survives a reopen from the same URLs, and superseded snapshot
// objects are deleted.
func TestReopenRestoresEverything(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	url := "file://" + dir
	s, err := etcdraft.Open(ctx, url, "", etcdraft.Options{LogName: "node1"})
	require.NoError(t, err)
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	require.NoError(t, s.ApplySnapshot(&pb.Snapshot{Data: []byte("snap10"), Metadata: &pb.SnapshotMetadata{
		Index: new(uint64(10)), Term: new(uint64(2)), ConfState: cs}}))
	ents := index(11).terms(2, 2, 3, 3, 3, 4)
	ents[2].Data = []byte("hello")
	ents[3].Type = pb.EntryConfChange.Enum()
	ents[4].Data = []byte{}
	hs := &pb.HardState{Term: new(uint64(4)), Vote: new(uint64(1)), Commit: new(uint64(15))}
	require.NoError(t, s.Save(hs, ents, nil))
	require.NoError(t, s.Compact(12))
	_, err = s.CreateSnapshot(14, nil, []byte("snap14"))
	require.NoError(t, err)
	want := logOf(t, s)
	wantSnap, err := s.Snapshot()
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close()) // idempotent
	_, err = s.LastIndex()
	require.Equal(t, etcdraft.ErrClosed, err)

	s, err = etcdraft.Open(ctx, url, "", etcdraft.Options{LogName: "node1"})
	require.NoError(t, err)
	defer s.Close()
	requireEqualEntries(t, want, logOf(t, s))
	gotHS, gotCS, err := s.InitialState()
	require.NoError(t, err)
	require.True(t, proto.Equal(hs, gotHS))
	require.True(t, proto.Equal(pb.EnsureConfState(proto.CloneOf(cs)), gotCS))
	gotSnap, err := s.Snapshot()
	require.NoError(t, err)
	require.True(t, proto.Equal(wantSnap, gotSnap), "%v\n%v", gotSnap, wantSnap)
	require.Equal(t, "snap14", string(gotSnap.GetData()))

	// One snapshot object is left, a leaf under <prefix>/<log>/snap/.
	b, err := file.New(dir, file.Options{})
	require.NoError(t, err)
	defer b.Close()
	var keys []string
	require.NoError(t, objstore.ListAll(ctx, b, "wal/node1/snap/", 0, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}))
	require.Len(t, keys, 1)
	require.True(t, strings.HasPrefix(keys[0], "wal/node1/snap/00000000000000000014_"), keys[0])
	for _, c := range keys[0] {
		require.True(t, c == '/' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z', keys[0])
	}
}

// An orphaned snapshot object (a crash between its PUT and the metadata
// update) is deleted by the next Open.
func TestOrphanSnapshotSwept(t *testing.T) {
	ctx := testCtx(t)
	b, m := objmem.New(), metamem.New()
	s, err := openOwned(ctx, b, m, 0)
	require.NoError(t, err)
	_, err = s.CreateSnapshot(0, nil, nil)
	require.Equal(t, raft.ErrSnapOutOfDate, err)
	require.NoError(t, s.Append(index(1).terms(1, 1)))
	_, err = s.CreateSnapshot(2, nil, []byte("two"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = b.PutIfAbsent(ctx, "wal/raft/snap/00000000000000000009_00000000deadbeef", []byte("orphan"))
	require.NoError(t, err)

	s, err = openOwned(ctx, b, m, 0)
	require.NoError(t, err)
	defer s.Close()
	page, err := b.List(ctx, objstore.ListOptions{Prefix: "wal/raft/snap/"})
	require.NoError(t, err)
	require.Len(t, page, 1)
	snap, err := s.Snapshot()
	require.NoError(t, err)
	require.Equal(t, "two", string(snap.GetData()))
}

// Opening a second Storage on the same log fences the first.
func TestSecondOpenFencesFirst(t *testing.T) {
	ctx := testCtx(t)
	b, m := objmem.New(), metamem.New()
	a, err := openOwned(ctx, b, m, 0)
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, a.Append(index(1).terms(1)))
	c, err := openOwned(ctx, b, m, 0)
	require.NoError(t, err)
	defer c.Close()
	err = a.Append(index(2).terms(1))
	require.ErrorIs(t, err, wal.ErrFenced)
	require.Error(t, a.SetHardState(&pb.HardState{Term: new(uint64(5))})) // still refused
	require.NoError(t, c.Append(index(2).terms(2)))
	requireEqualEntries(t, index(0).terms(0, 1, 2), logOf(t, c))
}

// A corrupted snapshot object makes Snapshot answer
// ErrSnapshotTemporarilyUnavailable, not wrong data.
func TestCorruptSnapshotData(t *testing.T) {
	ctx := testCtx(t)
	b, m := objmem.New(), metamem.New()
	s, err := openOwned(ctx, b, m, 0)
	require.NoError(t, err)
	require.NoError(t, s.ApplySnapshot(&pb.Snapshot{Data: []byte("payload"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(1))}}))
	require.NoError(t, s.Close())
	page, err := b.List(ctx, objstore.ListOptions{Prefix: "wal/raft/snap/"})
	require.NoError(t, err)
	require.Len(t, page, 1)
	_, err = b.Put(ctx, page[0].Key, strings.NewReader("paylaod"), 7)
	require.NoError(t, err)
	s, err = openOwned(ctx, b, m, 0)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Snapshot()
	require.Equal(t, raft.ErrSnapshotTemporarilyUnavailable, err)
}

func TestOptionsValidation(t *testing.T) {
	ctx := testCtx(t)
	c, err := wal.Open(ctx, wal.Config{Bucket: objmem.New(), Meta: metamem.New()})
	require.NoError(t, err)
	defer c.Close()
	_, err = etcdraft.New(ctx, c.LogStore(), "Bad-Name", etcdraft.Options{})
	require.Error(t, err)
	_, err = etcdraft.Open(ctx, "mem://", "", etcdraft.Options{CallTimeout: -1})
	require.Error(t, err)
	_, err = etcdraft.Open(ctx, "nope://", "", etcdraft.Options{})
	require.Error(t, err)
	require.False(t, errors.Is(err, raft.ErrCompacted))
}

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
