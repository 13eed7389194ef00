package etcdraftsuite

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/internal/harness"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
)

// EtcdStorage is what TestEtcdStorage drives: etcd raft's Storage with
// MemoryStorage's mutators, and Close.
type EtcdStorage interface {
	raft.Storage
	Append(entries []*pb.Entry) error
	ApplySnapshot(snap *pb.Snapshot) error
	CreateSnapshot(i uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, error)
	Compact(compactIndex uint64) error
	SetHardState(st *pb.HardState) error
	Close() error
}

// EtcdSaver is implemented by storages with a one-call, crash-safe
// persistence of a Ready; TestEtcdStorage exercises it when present.
type EtcdSaver interface {
	Save(hs *pb.HardState, entries []*pb.Entry, snap *pb.Snapshot) error
}

// EtcdStorageFactory builds the storage under test for TestEtcdStorage.
type EtcdStorageFactory struct {
	// Stores returns a fresh, empty bucket and metadata store for one test
	// case. The suite closes neither; register cleanup with t.Cleanup.
	Stores conformance.WALStores
	// Open opens the storage over b and m. It is called at the start of a
	// case, again after a clean Close, and after a simulated crash, each time
	// with new handles over the same data.
	Open func(ctx context.Context, b objstore.Bucket, m meta.Store) (EtcdStorage, error)
}

// TestEtcdStorage is a differential property test: the storage under test
// and raft.NewMemoryStorage() receive the same random operations — Append
// with overlaps, conflicts, compacted heads and gaps; ApplySnapshot,
// CreateSnapshot and Compact at valid and invalid indexes; SetHardState;
// Save when implemented (EtcdSaver); Entries, Term, FirstIndex, LastIndex,
// InitialState and Snapshot with random bounds and size limits — plus
// close/reopen and a crash (the bucket replaced by its fault.CrashView, the
// metadata store cut off). Both must answer identically: values compared
// with proto.Equal, errors with ==. Where MemoryStorage panics, the storage
// under test must return an error. After every step the whole observable
// state is compared.
//
// MemoryStorage reports its panics through raft's global logger: the suite
// silences it while it runs and restores raft's default logger afterwards.
func TestEtcdStorage(t *testing.T, f EtcdStorageFactory, opts conformance.Options) {
	raft.SetLogger(&raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)})
	defer raft.ResetDefaultLogger()
	harness.Machine(t, opts.Checks, func(rt *rapid.T) (map[string]func(*rapid.T), func()) {
		b, m := f.Stores(t)
		sm := &etcdMachine{t: t, f: f, base: b, meta: m, seed: rapid.Uint64().Draw(rt, "seed"),
			oracle: raft.NewMemoryStorage()}
		sm.newProcess(rt)
		sm.check(rt)
		return sm.actions(), sm.cleanup
	})
}

type etcdMachine struct {
	t    *testing.T
	f    EtcdStorageFactory
	base objstore.Bucket
	meta meta.Store
	seed uint64
	n    uint64

	fb *fault.Bucket
	gm *harness.GatedMeta
	st EtcdStorage

	oracle *raft.MemoryStorage
}

func (m *etcdMachine) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	m.t.Cleanup(cancel)
	return ctx
}

func (m *etcdMachine) newProcess(rt *rapid.T) {
	m.fb = fault.Wrap(m.base, m.seed+m.n)
	m.n++
	m.gm = &harness.GatedMeta{Store: m.meta}
	st, err := m.f.Open(m.ctx(), m.fb, m.gm)
	if err != nil {
		rt.Fatalf("open storage: %v", err)
	}
	m.st = st
}

func (m *etcdMachine) cleanup() {
	if m.st != nil {
		m.st.Close()
	}
}

// bounds returns the oracle's compaction point, last index and snapshot
// index.
func (m *etcdMachine) bounds() (off, last, snap uint64) {
	first, _ := m.oracle.FirstIndex()
	last, _ = m.oracle.LastIndex()
	s, _ := m.oracle.Snapshot()
	return first - 1, last, s.GetMetadata().GetIndex()
}

// etcdOracleCall runs fn on MemoryStorage and reports a panic instead of dying.
func etcdOracleCall(fn func() error) (err error, panicked any) {
	defer func() { panicked = recover() }()
	return fn(), nil
}

// etcdSameErr checks the storage under test answered like MemoryStorage.
func etcdSameErr(rt *rapid.T, what string, ours, theirs error, panicked any) {
	if panicked != nil {
		if ours == nil {
			rt.Fatalf("%s: MemoryStorage panics (%v); the storage under test returned no error", what, panicked)
		}
		return
	}
	if ours != theirs {
		rt.Fatalf("%s: error %v, MemoryStorage %v (errors must be identical, unwrapped)", what, ours, theirs)
	}
}

func etcdDrawOpt[T any](rt *rapid.T, label string, gen *rapid.Generator[T]) *T {
	if rapid.Bool().Draw(rt, label+"Set") {
		return new(gen.Draw(rt, label))
	}
	return nil
}

func etcdGenEntry(rt *rapid.T, i uint64) *pb.Entry {
	e := &pb.Entry{Index: new(i), Term: new(rapid.Uint64Range(0, 6).Draw(rt, "term"))}
	switch rapid.IntRange(0, 2).Draw(rt, "type") {
	case 1:
		e.Type = pb.EntryNormal.Enum()
	case 2:
		e.Type = pb.EntryConfChange.Enum()
	}
	e.Data = etcdGenBytes(rt, "data")
	return e
}

// etcdGenBytes draws nil, empty (but not nil) or some bytes: presence matters
// to proto.Equal.
func etcdGenBytes(rt *rapid.T, label string) []byte {
	switch rapid.IntRange(0, 3).Draw(rt, label+"Kind") {
	case 0:
		return nil
	case 1:
		return []byte{}
	default:
		return rapid.SliceOfN(rapid.Byte(), 1, 40).Draw(rt, label)
	}
}

func etcdGenEntries(rt *rapid.T, first uint64) []*pb.Entry {
	n := rapid.IntRange(0, 6).Draw(rt, "n")
	out := make([]*pb.Entry, n)
	for k := range out {
		out[k] = etcdGenEntry(rt, first+uint64(k))
	}
	return out
}

func etcdGenHardState(rt *rapid.T) *pb.HardState {
	if rapid.IntRange(0, 9).Draw(rt, "hsNil") == 0 {
		return nil
	}
	v := rapid.Uint64Range(0, 12)
	return &pb.HardState{Term: etcdDrawOpt(rt, "hsTerm", v), Vote: etcdDrawOpt(rt, "hsVote", v), Commit: etcdDrawOpt(rt, "hsCommit", v)}
}

func etcdGenConfState(rt *rapid.T) *pb.ConfState {
	if rapid.IntRange(0, 4).Draw(rt, "csNil") == 0 {
		return nil
	}
	ids := rapid.SliceOfNDistinct(rapid.Uint64Range(1, 7), 0, 5, rapid.ID[uint64])
	cs := &pb.ConfState{Voters: ids.Draw(rt, "voters"), Learners: ids.Draw(rt, "learners")}
	if rapid.Bool().Draw(rt, "joint") {
		cs.VotersOutgoing = ids.Draw(rt, "votersOut")
	}
	cs.AutoLeave = etcdDrawOpt(rt, "autoLeave", rapid.Bool())
	return cs
}

// etcdGenSnapshot draws a snapshot at an index in [lo, max(lo, hi)].
func etcdGenSnapshot(rt *rapid.T, lo, hi uint64) *pb.Snapshot {
	hi = max(lo, hi)
	s := &pb.Snapshot{Data: etcdGenBytes(rt, "snapData")}
	if rapid.IntRange(0, 9).Draw(rt, "mdNil") > 0 {
		s.Metadata = &pb.SnapshotMetadata{
			Index:     new(rapid.Uint64Range(lo, hi).Draw(rt, "snapIndex")),
			Term:      new(rapid.Uint64Range(0, 6).Draw(rt, "snapTerm")),
			ConfState: etcdGenConfState(rt),
		}
	}
	return s
}

func etcdCloneEntries(ents []*pb.Entry) []*pb.Entry {
	out := make([]*pb.Entry, len(ents))
	for i, e := range ents {
		out[i] = proto.CloneOf(e)
	}
	return out
}

func etcdSub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// etcdDrawAppendStart draws where an append starts: mostly overlapping or right
// after the end, sometimes below the compaction point, rarely with a gap.
func etcdDrawAppendStart(rt *rapid.T, off, last uint64) uint64 {
	if rapid.IntRange(0, 9).Draw(rt, "gap") == 0 {
		return last + 2
	}
	return rapid.Uint64Range(max(1, etcdSub(off, 2)), last+1).Draw(rt, "first")
}

func (m *etcdMachine) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"Append": func(rt *rapid.T) {
			off, last, _ := m.bounds()
			ents := etcdGenEntries(rt, etcdDrawAppendStart(rt, off, last))
			err, p := etcdOracleCall(func() error { return m.oracle.Append(etcdCloneEntries(ents)) })
			etcdSameErr(rt, "Append", m.st.Append(ents), err, p)
			m.check(rt)
		},
		"ApplySnapshot": func(rt *rapid.T) {
			_, last, snap := m.bounds()
			s := etcdGenSnapshot(rt, etcdSub(snap, 1), last+4)
			err, p := etcdOracleCall(func() error { return m.oracle.ApplySnapshot(proto.CloneOf(s)) })
			etcdSameErr(rt, "ApplySnapshot", m.st.ApplySnapshot(proto.CloneOf(s)), err, p)
			m.check(rt)
		},
		"CreateSnapshot": func(rt *rapid.T) {
			off, last, snap := m.bounds()
			i := rapid.Uint64Range(etcdSub(off, 2), last+2).Draw(rt, "i")
			cs := etcdGenConfState(rt)
			data := etcdGenBytes(rt, "data")
			got, ours := m.st.CreateSnapshot(i, proto.CloneOf(cs), data)
			if i > snap && i < off {
				// MemoryStorage panics half-way, with its snapshot index
				// already changed: do not ask it.
				if ours == nil {
					rt.Fatalf("CreateSnapshot(%d) below the compaction point %d: no error", i, off)
				}
				return
			}
			var want *pb.Snapshot
			err, p := etcdOracleCall(func() (err error) {
				want, err = m.oracle.CreateSnapshot(i, proto.CloneOf(cs), data)
				return err
			})
			etcdSameErr(rt, fmt.Sprintf("CreateSnapshot(%d)", i), ours, err, p)
			if p == nil && !proto.Equal(got, want) {
				rt.Fatalf("CreateSnapshot(%d) = %v, MemoryStorage %v", i, got, want)
			}
			m.check(rt)
		},
		"Compact": func(rt *rapid.T) {
			off, last, _ := m.bounds()
			i := rapid.Uint64Range(etcdSub(off, 1), last+2).Draw(rt, "i")
			err, p := etcdOracleCall(func() error { return m.oracle.Compact(i) })
			etcdSameErr(rt, fmt.Sprintf("Compact(%d)", i), m.st.Compact(i), err, p)
			m.check(rt)
		},
		"SetHardState": func(rt *rapid.T) {
			hs := etcdGenHardState(rt)
			err, p := etcdOracleCall(func() error { return m.oracle.SetHardState(proto.CloneOf(hs)) })
			etcdSameErr(rt, "SetHardState", m.st.SetHardState(proto.CloneOf(hs)), err, p)
			m.check(rt)
		},
		"Save": func(rt *rapid.T) {
			sv, ok := m.st.(EtcdSaver)
			if !ok {
				rt.Skip("no Save")
			}
			off, last, snapIdx := m.bounds()
			var snap *pb.Snapshot
			if rapid.IntRange(0, 3).Draw(rt, "withSnap") == 0 {
				snap = etcdGenSnapshot(rt, snapIdx+1, last+4)
			}
			postOff, postLast := off, last
			if si := snap.GetMetadata().GetIndex(); si != 0 {
				postOff, postLast = si, si
			}
			ents := etcdGenEntries(rt, etcdDrawAppendStart(rt, postOff, postLast))
			hs := etcdGenHardState(rt)
			ours := sv.Save(proto.CloneOf(hs), ents, proto.CloneOf(snap))
			if len(ents) > 0 && ents[0].GetIndex() > postLast+1 {
				if ours == nil {
					rt.Fatalf("Save with entries from %d after last index %d: no error", ents[0].GetIndex(), postLast)
				}
				m.check(rt) // nothing may have been written
				return
			}
			if ours != nil {
				rt.Fatalf("Save: %v", ours)
			}
			if snap.GetMetadata().GetIndex() != 0 {
				if err := m.oracle.ApplySnapshot(proto.CloneOf(snap)); err != nil {
					rt.Fatalf("MemoryStorage.ApplySnapshot: %v", err)
				}
			}
			if err := m.oracle.Append(etcdCloneEntries(ents)); err != nil {
				rt.Fatalf("MemoryStorage.Append: %v", err)
			}
			if hs != nil && !raft.IsEmptyHardState(hs) {
				_ = m.oracle.SetHardState(proto.CloneOf(hs))
			}
			m.check(rt)
		},
		"Entries": func(rt *rapid.T) {
			off, last, _ := m.bounds()
			lo := rapid.Uint64Range(etcdSub(off, 1), last+2).Draw(rt, "lo")
			hi := rapid.Uint64Range(etcdSub(lo, 1), last+3).Draw(rt, "hi")
			var maxSize uint64
			switch rapid.IntRange(0, 2).Draw(rt, "maxKind") {
			case 0:
				maxSize = math.MaxUint64
			case 1:
				maxSize = rapid.Uint64Range(0, 120).Draw(rt, "maxSize")
			}
			m.compareEntries(rt, lo, hi, maxSize)
		},
		"Term": func(rt *rapid.T) {
			off, last, _ := m.bounds()
			m.compareTerm(rt, rapid.Uint64Range(etcdSub(off, 2), last+2).Draw(rt, "i"))
		},
		"Reopen": func(rt *rapid.T) {
			if err := m.st.Close(); err != nil {
				rt.Fatalf("Close: %v", err)
			}
			m.newProcess(rt)
			m.check(rt)
		},
		"Crash": func(rt *rapid.T) {
			view := harness.Crash(rt, m.gm, m.fb)
			m.st.Close() // the dead process's handle: it fails, harmlessly
			m.base = view
			m.newProcess(rt)
			m.check(rt)
		},
	}
}

func (m *etcdMachine) compareEntries(rt *rapid.T, lo, hi, maxSize uint64) {
	got, ours := m.st.Entries(lo, hi, maxSize)
	var want []*pb.Entry
	err, p := etcdOracleCall(func() (err error) {
		want, err = m.oracle.Entries(lo, hi, maxSize)
		return err
	})
	what := fmt.Sprintf("Entries(%d, %d, %d)", lo, hi, maxSize)
	etcdSameErr(rt, what, ours, err, p)
	if p != nil || err != nil {
		return
	}
	if len(got) != len(want) {
		rt.Fatalf("%s: %d entries, MemoryStorage %d", what, len(got), len(want))
	}
	for k := range got {
		if !proto.Equal(got[k], want[k]) {
			rt.Fatalf("%s: entry %d = %v, MemoryStorage %v", what, k, got[k], want[k])
		}
	}
	if len(got) > 0 {
		// The caller owns the slice: appending must not disturb the storage.
		_ = append(got, &pb.Entry{Index: new(uint64(math.MaxUint64))})
	}
}

func (m *etcdMachine) compareTerm(rt *rapid.T, i uint64) {
	got, ours := m.st.Term(i)
	var want uint64
	err, p := etcdOracleCall(func() (err error) {
		want, err = m.oracle.Term(i)
		return err
	})
	etcdSameErr(rt, fmt.Sprintf("Term(%d)", i), ours, err, p)
	if got != want {
		rt.Fatalf("Term(%d) = %d, MemoryStorage %d", i, got, want)
	}
}

// check compares the whole observable state.
func (m *etcdMachine) check(rt *rapid.T) {
	off, last, _ := m.bounds()
	if got, err := m.st.FirstIndex(); err != nil || got != off+1 {
		rt.Fatalf("FirstIndex = %d, %v; MemoryStorage %d", got, err, off+1)
	}
	if got, err := m.st.LastIndex(); err != nil || got != last {
		rt.Fatalf("LastIndex = %d, %v; MemoryStorage %d", got, err, last)
	}
	hs, cs, err := m.st.InitialState()
	whs, wcs, _ := m.oracle.InitialState()
	if err != nil || !proto.Equal(hs, whs) || !proto.Equal(cs, wcs) || cs == nil {
		rt.Fatalf("InitialState = %v, %v, %v; MemoryStorage %v, %v", hs, cs, err, whs, wcs)
	}
	snap, err := m.st.Snapshot()
	wsnap, _ := m.oracle.Snapshot()
	if err != nil || !proto.Equal(snap, wsnap) {
		rt.Fatalf("Snapshot = %v, %v; MemoryStorage %v", snap, err, wsnap)
	}
	for i := etcdSub(off, 1); i <= last+1; i++ {
		m.compareTerm(rt, i)
	}
	m.compareEntries(rt, off+1, last+1, math.MaxUint64)
	m.compareEntries(rt, off, last+1, math.MaxUint64)
}
