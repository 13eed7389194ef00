package etcdraft_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
	"github.com/woodpecker-wal/woodpecker/meta"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
)

var errCrashed = errors.New("test: process crashed")

// crasher kills the process at its at-th write, counting bucket and
// metadata writes together. With ambiguous set, that write lands before the
// process dies (its reply is lost); otherwise it does not. Every later call
// fails.
type crasher struct {
	mu        sync.Mutex
	writes    int
	at        int // 0: never
	ambiguous bool
	dead      bool
}

// write decides a write's fate: whether it lands and whether it fails.
func (c *crasher) write() (land, fail bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return false, true
	}
	c.writes++
	if c.at != 0 && c.writes == c.at {
		c.dead = true
		return c.ambiguous, true
	}
	return true, false
}

func (c *crasher) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func (c *crasher) hook(op fault.Op, _ string) fault.Action {
	if op&fault.OpWrite != 0 {
		switch land, fail := c.write(); {
		case !fail:
			return fault.Pass
		case land:
			return fault.Ambiguous
		default:
			return fault.Fail
		}
	}
	if c.isDead() {
		return fault.Fail
	}
	return fault.Pass
}

// crashMeta is a metadata store dying with its crasher.
type crashMeta struct {
	meta.Store
	c *crasher
}

func (m crashMeta) write(fn func() error) error {
	land, fail := m.c.write()
	if !fail {
		return fn()
	}
	if land {
		_ = fn()
	}
	return errCrashed
}

func (m crashMeta) Get(ctx context.Context, k string) (meta.Record, error) {
	if m.c.isDead() {
		return meta.Record{}, errCrashed
	}
	return m.Store.Get(ctx, k)
}

func (m crashMeta) List(ctx context.Context, p string) ([]meta.Record, error) {
	if m.c.isDead() {
		return nil, errCrashed
	}
	return m.Store.List(ctx, p)
}

func (m crashMeta) Create(ctx context.Context, k string, v []byte) (ver meta.Version, err error) {
	err = m.write(func() error { ver, err = m.Store.Create(ctx, k, v); return err })
	return ver, err
}

func (m crashMeta) Update(ctx context.Context, k string, v []byte, old meta.Version) (ver meta.Version, err error) {
	err = m.write(func() error { ver, err = m.Store.Update(ctx, k, v, old); return err })
	return ver, err
}

func (m crashMeta) Delete(ctx context.Context, k string, ver meta.Version) error {
	return m.write(func() error { return m.Store.Delete(ctx, k, ver) })
}

func (m crashMeta) Close() error { return nil }

// storage is what the crash scenarios drive on both our Storage and the
// MemoryStorage oracle.
type storage interface {
	raft.Storage
	Append([]*pb.Entry) error
	ApplySnapshot(*pb.Snapshot) error
	CreateSnapshot(uint64, *pb.ConfState, []byte) (*pb.Snapshot, error)
	Compact(uint64) error
	SetHardState(*pb.HardState) error
}

// memSave is Save's meaning, on MemoryStorage.
func memSave(ms storage, hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	if s, ok := ms.(*etcdraft.Storage); ok {
		return s.Save(hs, ents, snap)
	}
	if snap.GetMetadata().GetIndex() != 0 {
		if err := ms.ApplySnapshot(proto.CloneOf(snap)); err != nil {
			return err
		}
	}
	if err := ms.Append(ents); err != nil {
		return err
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		return ms.SetHardState(hs)
	}
	return nil
}

func hardState(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func dataEntries(first uint64, term uint64, tag string, n int) []*pb.Entry {
	out := index(first).terms(make([]uint64, n)...)
	for k, e := range out {
		e.Term = new(term)
		e.Data = fmt.Appendf(nil, "%s%d", tag, first+uint64(k))
	}
	return out
}

var crashCS = &pb.ConfState{Voters: []uint64{1, 2, 3}}

func snapAt(i, term uint64) *pb.Snapshot {
	return &pb.Snapshot{Data: fmt.Appendf(nil, "snap%d", i),
		Metadata: &pb.SnapshotMetadata{Index: new(i), Term: new(term), ConfState: crashCS}}
}

// crashBase builds the state every scenario starts from: compaction point
// 3, entries 4..10 of term 1, a snapshot at 3, HardState commit 3.
func crashBase(t testing.TB, s storage) {
	ents := dataEntries(1, 1, "a", 10)
	require.NoError(t, memSave(s, hardState(1, 1, 0), ents, nil))
	require.NoError(t, memSave(s, hardState(1, 1, 3), nil, nil))
	_, err := s.CreateSnapshot(3, crashCS, []byte("snap3"))
	require.NoError(t, err)
	require.NoError(t, s.Compact(3))
}

type crashScenario struct {
	name string
	op   func(storage) error
	// redo finishes the operation after recovery from state got, the way
	// raft would: it must leave the final state.
	redo func(s storage, got state) error
}

func saveScenario(name string, hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) crashScenario {
	return crashScenario{
		name: name,
		op:   func(s storage) error { return memSave(s, hs, ents, snap) },
		redo: func(s storage, got state) error {
			sn := snap
			if got.snap.GetMetadata().GetIndex() == snap.GetMetadata().GetIndex() {
				sn = nil // already applied
			}
			return memSave(s, hs, ents, sn)
		},
	}
}

// state is a storage's whole observable state.
type state struct {
	hs   *pb.HardState
	cs   *pb.ConfState
	snap *pb.Snapshot
	log  []*pb.Entry // the compaction point (index and term), then the entries
}

func (st state) last() uint64 { return st.log[len(st.log)-1].GetIndex() }

func (st state) entry(i uint64) *pb.Entry {
	off := st.log[0].GetIndex()
	if i <= off || i > st.last() {
		return nil
	}
	return st.log[i-off]
}

func stateOf(t testing.TB, s storage) state {
	t.Helper()
	hs, cs, err := s.InitialState()
	require.NoError(t, err)
	snap, err := s.Snapshot()
	require.NoError(t, err)
	return state{hs: proto.CloneOf(hs), cs: cs, snap: snap, log: logOf(t, s)}
}

func requireSameState(t testing.TB, want, got state) {
	t.Helper()
	require.True(t, proto.Equal(want.hs, got.hs), "HardState %v, want %v", got.hs, want.hs)
	require.True(t, proto.Equal(want.cs, got.cs), "ConfState %v, want %v", got.cs, want.cs)
	require.True(t, proto.Equal(want.snap, got.snap), "snapshot %v, want %v", got.snap, want.snap)
	requireEqualEntries(t, want.log, got.log)
}

// TestSaveCrashPoints crashes the process at each write (bucket PUT/DELETE
// or metadata compare-and-swap) of a Save — and of Compact and
// CreateSnapshot — with the write either lost or landed, reopens from what
// a crash leaves, and checks: HardState.Commit <= LastIndex (which counts
// the snapshot index); the recovered log is the old log's prefix followed
// by the new entries (no stale entry after an applied snapshot); a
// HardState is there only with the entries it relies on; the snapshot's
// data is readable; and finishing the operation reaches the final state.
func TestSaveCrashPoints(t *testing.T) {
	scenarios := []crashScenario{
		saveScenario("append", hardState(1, 1, 10), dataEntries(11, 1, "b", 3), nil),
		saveScenario("overlap", hardState(2, 2, 9), dataEntries(8, 2, "b", 7), nil),
		saveScenario("overlap_all", hardState(2, 2, 4), dataEntries(4, 2, "b", 3), nil),
		saveScenario("hardstate", hardState(2, 3, 7), nil, nil),
		saveScenario("snapshot", hardState(3, 0, 20), nil, snapAt(20, 3)),
		saveScenario("snapshot_entries", hardState(3, 0, 20), dataEntries(21, 3, "c", 3), snapAt(20, 3)),
		saveScenario("snapshot_inside_log", hardState(3, 2, 8), dataEntries(9, 3, "c", 3), snapAt(8, 2)),
		{
			name: "compact",
			op:   func(s storage) error { return s.Compact(8) },
			redo: func(s storage, got state) error {
				if err := s.Compact(8); err != nil && err != raft.ErrCompacted {
					return err
				}
				return nil
			},
		},
		{
			name: "create_snapshot",
			op: func(s storage) error {
				_, err := s.CreateSnapshot(6, &pb.ConfState{Voters: []uint64{1, 2}}, []byte("snap6"))
				return err
			},
			redo: func(s storage, got state) error {
				_, err := s.CreateSnapshot(6, &pb.ConfState{Voters: []uint64{1, 2}}, []byte("snap6"))
				if err == raft.ErrSnapOutOfDate {
					return nil
				}
				return err
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			ms := raft.NewMemoryStorage()
			crashBase(t, ms)
			before := stateOf(t, ms)
			require.NoError(t, sc.op(ms))
			after := stateOf(t, ms)

			steps := runCrash(t, sc, 0, 0, false, before, after)
			require.Greater(t, steps, 0)
			for at := 1; at <= steps; at++ {
				for _, ambiguous := range []bool{false, true} {
					runCrash(t, sc, at, steps, ambiguous, before, after)
				}
			}
			t.Logf("%d crash points", steps)
		})
	}
}

// runCrash builds the base state, runs the scenario with a crash at the
// at-th write (at 0: no crash) and checks the recovery. It returns how many
// writes the operation made.
func runCrash(t *testing.T, sc crashScenario, at, total int, ambiguous bool, before, after state) int {
	t.Helper()
	ctx := testCtx(t)
	base, m := objmem.New(), metamem.New()
	s, err := openOwned(ctx, base, m, 1<<20)
	require.NoError(t, err)
	crashBase(t, s.Storage)
	require.NoError(t, s.Close())

	c := &crasher{}
	fb := fault.Wrap(base, uint64(at))
	cm := crashMeta{Store: m, c: c}
	s, err = openOwned(ctx, fb, cm, 1<<20)
	require.NoError(t, err)
	c.mu.Lock() // arm it: count the operation's writes only
	c.writes, c.at, c.ambiguous = 0, at, ambiguous
	c.mu.Unlock()
	fb.SetHook(c.hook)
	err = sc.op(s.Storage)
	c.mu.Lock()
	steps, dead := c.writes, c.dead
	c.dead = true // whatever still runs in the old process fails
	c.mu.Unlock()
	s.Close()
	if !dead {
		require.NoError(t, err)
	}
	view, err := fb.CrashView()
	require.NoError(t, err)

	what := fmt.Sprintf("crash at write %d of %d (landed: %v)", at, total, ambiguous)
	r, err := openOwned(ctx, view, m, 1<<20)
	require.NoError(t, err, what)
	defer r.Close()
	got := stateOf(t, r.Storage)
	checkRecovered(t, what, before, after, got)
	require.NoError(t, sc.redo(r.Storage, got), what)
	requireSameState(t, after, stateOf(t, r.Storage))
	return steps
}

func checkRecovered(t *testing.T, what string, before, after, got state) {
	t.Helper()
	last := got.last()
	require.LessOrEqual(t, got.hs.GetCommit(), last, "%s: Commit beyond LastIndex", what)
	newHS := !proto.Equal(before.hs, after.hs) && proto.Equal(got.hs, after.hs)
	require.True(t, proto.Equal(got.hs, before.hs) || proto.Equal(got.hs, after.hs), "%s: HardState %v", what, got.hs)
	oldSnap, newSnap := proto.Equal(got.snap, before.snap), proto.Equal(got.snap, after.snap)
	require.True(t, oldSnap || newSnap, "%s: snapshot %v", what, got.snap)
	snapApplied := newSnap && !oldSnap && after.snap.GetMetadata().GetIndex() == after.log[0].GetIndex()
	if snapApplied {
		require.Equal(t, after.log[0].GetIndex(), got.log[0].GetIndex(), "%s: compaction point after the snapshot", what)
	}
	// Old prefix, then new suffix; after an applied snapshot, only new.
	sawNew := false
	for i := got.log[0].GetIndex() + 1; i <= last; i++ {
		e := got.entry(i)
		isOld, isNew := proto.Equal(e, before.entry(i)), proto.Equal(e, after.entry(i))
		require.True(t, isOld || isNew, "%s: entry %d = %v is neither old nor new", what, i, e)
		if !isOld {
			sawNew = true
		}
		require.False(t, sawNew && !isNew, "%s: old entry %d after a new one", what, i)
		require.False(t, snapApplied && !isNew, "%s: stale entry %d after the snapshot", what, i)
	}
	if newHS {
		require.GreaterOrEqual(t, last, after.last(), "%s: new HardState without all its entries", what)
	}
	if got.snap.GetMetadata().GetIndex() > 0 {
		require.NotNil(t, got.snap.GetData(), "%s: snapshot data", what)
	}
}

// The raft.Storage reads never wait on a failed write, and the storage
// does not stay broken: the write fails with ErrWriteFailed, the reads go
// on, and the next write, once the bucket is back, reopens the log and goes
// through.
func TestWritesResumeAfterBrokenWrite(t *testing.T) {
	ctx := testCtx(t)
	base, m := objmem.New(), metamem.New()
	fb := fault.Wrap(base, 1)
	s, err := openOwned(ctx, fb, m, 1<<20)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Append(index(1).terms(1, 1)))
	fb.FailRate(fault.OpWrite, 1)
	err = s.Append(index(3).terms(1))
	require.ErrorIs(t, err, etcdraft.ErrWriteFailed)
	last, err := s.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(2), last)
	ents, err := s.Entries(1, 3, math.MaxUint64)
	require.NoError(t, err)
	requireEqualEntries(t, index(1).terms(1, 1), ents)
	fb.Heal()
	require.NoError(t, s.Append(index(3).terms(1)))
	ents, err = s.Entries(1, 4, math.MaxUint64)
	require.NoError(t, err)
	requireEqualEntries(t, index(1).terms(1, 1, 1), ents)
}
