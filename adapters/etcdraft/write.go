package etcdraft

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/logstore"
)

// maxEntrySize is the largest encoded entry the WAL can ever take (its
// MaxFlushSize is at most 15 MiB; a smaller configured limit is enforced by
// the WAL itself).
const maxEntrySize = 15 << 20

// beginWrite takes the mutator lock and checks the storage can be written,
// reopening the log first if the last write failed. It returns the unlock
// function and a context bounded by CallTimeout.
func (s *Storage) beginWrite() (context.Context, func(), error) {
	s.wmu.Lock()
	ctx, cancel := s.callCtx()
	unlock := func() { cancel(); s.wmu.Unlock() }
	if err := s.writableLocked(ctx); err != nil {
		unlock()
		return nil, nil, err
	}
	return ctx, unlock, nil
}

// writableLocked reports why mutators must fail, if they must, after
// resuming from a failed write. REQUIRES: wmu.
func (s *Storage) writableLocked(ctx context.Context) error {
	if s.closed {
		return ErrClosed
	}
	if s.dead != nil {
		return s.dead
	}
	if s.w == nil {
		if err := s.resumeLocked(ctx); err != nil {
			return err
		}
	}
	// Invariant: the WAL holds exactly the entries (off, last].
	off, last := s.mu.ls.off, s.mu.last
	wf, wl := s.w.FirstIndex(), s.w.LastIndex()
	if (last == off && wl != 0) || (last != off && (wf != off+1 || wl != last)) {
		s.dead = fmt.Errorf("etcdraft: internal: WAL holds [%d, %d], storage expects (%d, %d]", wf, wl, off, last)
		return s.dead
	}
	return nil
}

// fail handles a write that failed with err; it returns the mutator's
// error. The outcome is unknown (an ambiguous write may still land), so the
// writer is abandoned: the next mutator reopens the log and takes up what
// the reopened writer recovers (resumeLocked), and err is returned wrapped
// in ErrWriteFailed. A failure no reopening can cure — the log taken over
// by another writer (logstore.ErrFenced), damaged data, an inconsistency — makes
// the Storage unusable instead. REQUIRES: wmu.
func (s *Storage) fail(err error) error {
	if s.w != nil {
		w := s.w
		s.w = nil
		done := make(chan struct{})
		s.closing = done
		go func() {
			defer close(done)
			_ = w.Close() // its error is err, or what the reopened writer recovers
		}()
	}
	for _, target := range []error{logstore.ErrBadIndex, logstore.ErrCorrupt, logstore.ErrUnsupportedVersion, logstore.ErrLogNotFound, logstore.ErrClosed} {
		if errors.Is(err, target) {
			s.dead = fmt.Errorf("etcdraft: storage unusable: %w", err)
			return s.dead
		}
	}
	if errors.Is(err, logstore.ErrFenced) {
		s.dead = fmt.Errorf("etcdraft: log %q was opened by another writer; this storage can no longer write it: %w", s.name, err)
		s.logger.Info("etcdraft: fenced by a newer writer; every later mutator fails", "log", s.name, "err", err)
		return s.dead
	}
	s.failed = err
	s.logger.Warn("etcdraft: write failed; the next write reopens the log", "log", s.name, "err", err)
	return fmt.Errorf("%w: %w", ErrWriteFailed, err)
}

// beginRewriteLocked starts replacing entries: readers going to the WAL wait.
// REQUIRES: wmu and mu.
func (s *Storage) beginRewriteLocked() {
	s.mu.rw++
	s.mu.rwDone = make(chan struct{})
}

// endRewriteLocked ends it. REQUIRES: wmu and mu.
func (s *Storage) endRewriteLocked() {
	s.mu.rw++
	close(s.mu.rwDone)
}

// cacheAppendLocked appends entries last+1, last+2, ... to the view and the
// tail cache, which keeps its budget (and the last entry). REQUIRES: wmu
// and mu.
func (s *Storage) cacheAppendLocked(ents []*pb.Entry) {
	s.mu.tail.Append(s.mu.last+1, ents, entrySize)
	s.mu.last += uint64(len(ents))
}

// truncateLocked sets the last index to newLast <= last. REQUIRES: wmu, mu.
func (s *Storage) truncateLocked(newLast uint64) {
	s.mu.last = newLast
	s.mu.tail.TruncateFrom(newLast + 1)
}

// termLocked returns the term of entry i in [off, last]. REQUIRES: wmu.
func (s *Storage) termLocked(ctx context.Context, i uint64) (uint64, error) {
	switch {
	case i == s.mu.ls.off:
		return s.mu.ls.offTerm, nil
	case i >= s.mu.tail.First():
		e, _, _ := s.mu.tail.Get(i)
		return e.GetTerm(), nil
	}
	e, err := s.fetch(ctx, i)
	if err != nil && retryableRead(err) || errors.Is(err, context.DeadlineExceeded) {
		// Nothing was written: the mutator may simply be tried again.
		return 0, fmt.Errorf("%w: etcdraft: term of entry %d: %w", ErrWriteFailed, i, err)
	}
	if err != nil {
		return 0, fmt.Errorf("etcdraft: term of entry %d: %w", i, err)
	}
	return e.GetTerm(), nil
}

// appendPlan is an Append checked against the current state and encoded.
type appendPlan struct {
	ents     []*pb.Entry // to append, after cutting the compacted head; may be empty
	enc      [][]byte
	truncate bool // ents overwrite existing entries: TruncateBack(first-1) first
}

// planAppend mirrors MemoryStorage.Append on a log with compaction point off
// and last index last: already-compacted entries are ignored, the compacted
// head of entries is cut, an overlap truncates the log at the first new
// index, and a gap is an error (MemoryStorage panics).
func planAppend(entries []*pb.Entry, off, last, gen uint64) (appendPlan, error) {
	var p appendPlan
	if len(entries) == 0 {
		return p, nil
	}
	for k, e := range entries {
		if e == nil {
			return p, fmt.Errorf("etcdraft: append: entry %d of %d is nil", k, len(entries))
		}
		if k > 0 && e.GetIndex() != entries[0].GetIndex()+uint64(k) {
			return p, fmt.Errorf("etcdraft: append: entries not contiguous: index %d follows %d",
				e.GetIndex(), entries[k-1].GetIndex())
		}
	}
	e0 := entries[0].GetIndex()
	first := off + 1
	if e0+uint64(len(entries))-1 < first {
		return p, nil // all compacted
	}
	if first > e0 {
		entries = entries[first-e0:]
		e0 = first
	}
	if e0 > last+1 {
		return p, fmt.Errorf("etcdraft: append at %d leaves a gap: the last index is %d", e0, last)
	}
	p.ents, p.truncate = entries, e0 <= last
	p.enc = make([][]byte, len(entries))
	for k, e := range entries {
		b, err := encodeEntry(e, gen)
		if err != nil {
			return appendPlan{}, fmt.Errorf("etcdraft: append: encode entry %d: %w", e.GetIndex(), err)
		}
		if len(b) > maxEntrySize {
			return appendPlan{}, fmt.Errorf("etcdraft: append: entry %d is %d bytes encoded; the WAL takes at most %d",
				e.GetIndex(), len(b), maxEntrySize)
		}
		p.enc[k] = b
	}
	return p, nil
}

// doAppend carries out p, then (if hs is not nil) stores hs once the entries
// are durable. REQUIRES: wmu.
func (s *Storage) doAppend(ctx context.Context, p appendPlan, hs *pb.HardState) error {
	if len(p.ents) == 0 {
		if hs != nil {
			return s.setHardStateLocked(ctx, hs)
		}
		return nil
	}
	first := p.ents[0].GetIndex()
	if p.truncate {
		s.mu.Lock()
		s.beginRewriteLocked()
		s.mu.Unlock()
		// Truncating below the WAL's first index (first == off+1) empties it,
		// and the append below then starts it afresh at first.
		err := s.w.TruncateBack(ctx, first-1)
		s.mu.Lock()
		if err == nil {
			s.truncateLocked(first - 1)
		}
		s.endRewriteLocked()
		s.mu.Unlock()
		if err != nil {
			return s.fail(fmt.Errorf("etcdraft: truncate the log after %d: %w", first-1, err))
		}
	}
	fut := s.w.AppendAsync(first, p.enc)
	s.w.Flush()
	var merr error
	if hs != nil {
		b, err := encodeHardState(hs)
		if err != nil {
			merr = err
		} else {
			// Queued behind the append: applied only once it is durable.
			merr = s.w.SetMeta(ctx, map[string][]byte{metaHardState: b})
		}
	}
	if err := fut.Wait(ctx); err != nil {
		return s.fail(fmt.Errorf("etcdraft: append [%d, %d]: %w", first, first+uint64(len(p.ents))-1, err))
	}
	s.mu.Lock()
	s.cacheAppendLocked(p.ents)
	if merr == nil && hs != nil {
		s.mu.hs = proto.CloneOf(hs)
	}
	s.mu.Unlock()
	if merr != nil {
		return s.fail(fmt.Errorf("etcdraft: store HardState: %w", merr))
	}
	return nil
}

// Append appends entries like MemoryStorage.Append and returns when they are
// durable: entries at or below the compaction point are ignored, and an
// entry at an existing index replaces it and everything after it. Entries
// must be contiguous; a gap after the last index is an error (MemoryStorage
// panics). The entries must not be modified afterwards (they are cached).
func (s *Storage) Append(entries []*pb.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	ctx, unlock, err := s.beginWrite()
	if err != nil {
		return err
	}
	defer unlock()
	p, err := planAppend(entries, s.mu.ls.off, s.mu.last, s.mu.ls.gen)
	if err != nil {
		return err
	}
	return s.doAppend(ctx, p, nil)
}

// SetHardState durably saves st (nil removes the saved HardState, as
// MemoryStorage does).
func (s *Storage) SetHardState(st *pb.HardState) error {
	ctx, unlock, err := s.beginWrite()
	if err != nil {
		return err
	}
	defer unlock()
	return s.setHardStateLocked(ctx, st)
}

func (s *Storage) setHardStateLocked(ctx context.Context, st *pb.HardState) error {
	var b []byte // nil deletes the key
	if st != nil {
		var err error
		if b, err = encodeHardState(st); err != nil {
			return fmt.Errorf("etcdraft: encode HardState: %w", err)
		}
	}
	if err := s.w.SetMeta(ctx, map[string][]byte{metaHardState: b}); err != nil {
		return s.fail(fmt.Errorf("etcdraft: store HardState: %w", err))
	}
	s.mu.Lock()
	s.mu.hs = nil
	if st != nil {
		s.mu.hs = proto.CloneOf(st)
	}
	s.mu.Unlock()
	return nil
}

// Compact discards entries up to and including compactIndex, like
// MemoryStorage.Compact: exactly raft.ErrCompacted if compactIndex is at or
// below the compaction point; an error wrapping raft.ErrUnavailable beyond
// the last index (MemoryStorage panics). Term(compactIndex) stays available.
// The WAL's objects are deleted later by its garbage collector.
func (s *Storage) Compact(compactIndex uint64) error {
	ctx, unlock, err := s.beginWrite()
	if err != nil {
		return err
	}
	defer unlock()
	off, last := s.mu.ls.off, s.mu.last
	if compactIndex <= off {
		return raft.ErrCompacted
	}
	if compactIndex > last {
		return fmt.Errorf("etcdraft: compact %d is beyond the last index %d: %w", compactIndex, last, raft.ErrUnavailable)
	}
	term, err := s.termLocked(ctx, compactIndex)
	if err != nil {
		return err
	}
	ls := logState{off: compactIndex, offTerm: term, gen: s.mu.ls.gen}
	// The compaction point first: a crash before the WAL is truncated leaves
	// entries below it, which recovery removes.
	if err := s.w.SetMeta(ctx, map[string][]byte{metaLog: encodeLogState(ls)}); err != nil {
		return s.fail(fmt.Errorf("etcdraft: compact %d: %w", compactIndex, err))
	}
	s.mu.Lock()
	s.mu.ls = ls
	s.mu.tail.DropBelow(compactIndex + 1)
	s.mu.Unlock()
	// Past the last index this empties the WAL; the next append then starts
	// it at compactIndex+1.
	if err := s.w.TruncateFront(ctx, compactIndex+1); err != nil {
		return s.fail(fmt.Errorf("etcdraft: compact %d: %w", compactIndex, err))
	}
	return nil
}

// CreateSnapshot records a snapshot at index i (in [FirstIndex()-1,
// LastIndex()]) with data and, if cs is not nil, cs as its ConfState, like
// MemoryStorage.CreateSnapshot: exactly raft.ErrSnapOutOfDate if i is not
// above the current snapshot's index; an error (not a panic) outside the
// log. It does not compact. The data object is written before the metadata
// that references it; the previous snapshot's object is deleted afterwards.
// data must not be modified afterwards.
func (s *Storage) CreateSnapshot(i uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, error) {
	ctx, unlock, err := s.beginWrite()
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur := s.mu.snap.rec.md
	off, last := s.mu.ls.off, s.mu.last
	switch {
	case i <= cur.GetIndex():
		return nil, raft.ErrSnapOutOfDate
	case i > last:
		return nil, fmt.Errorf("etcdraft: snapshot %d is beyond the last index %d: %w", i, last, raft.ErrUnavailable)
	case i < off:
		return nil, fmt.Errorf("etcdraft: snapshot %d is below the compaction point %d: %w", i, off, raft.ErrCompacted)
	}
	term, err := s.termLocked(ctx, i)
	if err != nil {
		return nil, err
	}
	md := pb.EnsureSnapshotMetadata(proto.CloneOf(cur))
	md.Index, md.Term = new(i), new(term)
	if cs != nil {
		md.ConfState = proto.CloneOf(cs)
	}
	rec, err := s.putSnapshot(ctx, md, data)
	if err != nil {
		return nil, err
	}
	enc, err := encodeSnapRecord(rec)
	if err != nil {
		return nil, err
	}
	if err := s.w.SetMeta(ctx, map[string][]byte{metaSnap: enc}); err != nil {
		return nil, s.fail(fmt.Errorf("etcdraft: create snapshot %d: %w", i, err))
	}
	old := s.mu.snap.rec.key
	s.mu.Lock()
	s.mu.snap = snapState{rec: rec, data: data, loaded: true}
	s.mu.Unlock()
	s.deleteSnapObject(ctx, old)
	out := &pb.Snapshot{Metadata: proto.CloneOf(md)}
	if data != nil {
		out.Data = append([]byte{}, data...)
	}
	return out, nil
}

// ApplySnapshot replaces the whole log with snap, like
// MemoryStorage.ApplySnapshot: exactly raft.ErrSnapOutOfDate unless snap is
// newer than the current snapshot (a ConfState-only snapshot at index 0 is
// accepted while the current one is at 0). The data object is written first,
// then the snapshot metadata and the new compaction point in one
// compare-and-swap, then the WAL is emptied. The HardState is unchanged.
func (s *Storage) ApplySnapshot(snap *pb.Snapshot) error {
	ctx, unlock, err := s.beginWrite()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := s.checkSnapshot(snap)
	if err != nil {
		return err
	}
	old, err := s.applySnapshotLocked(ctx, c, nil)
	if err != nil {
		return err
	}
	s.deleteSnapObject(ctx, old)
	return nil
}

// checkSnapshot returns a private copy of snap with every metadata field set,
// or exactly raft.ErrSnapOutOfDate. REQUIRES: wmu.
// isCurrentSnapshot reports whether md names the snapshot the storage
// already holds (same index and term). REQUIRES: wmu or mu.
func (s *Storage) isCurrentSnapshot(md *pb.SnapshotMetadata) bool {
	cur := s.mu.snap.rec.md
	return cur.GetIndex() != 0 && cur.GetIndex() == md.GetIndex() && cur.GetTerm() == md.GetTerm()
}

func (s *Storage) checkSnapshot(snap *pb.Snapshot) (*pb.Snapshot, error) {
	c := pb.EnsureSnapshot(proto.CloneOf(snap))
	cur := s.mu.snap.rec.md.GetIndex()
	if cur != 0 && cur >= c.GetMetadata().GetIndex() {
		return nil, raft.ErrSnapOutOfDate
	}
	return c, nil
}

// applySnapshotLocked installs snap (checked by checkSnapshot) and, if hs is
// not nil, hs in the same compare-and-swap. It returns the key of the
// superseded snapshot object, for the caller to delete once everything else
// is durable. REQUIRES: wmu.
//
// Crash safety: the snapshot's metadata, the new compaction point and a new
// log generation are one compare-and-swap. Entries still in the WAL after it
// carry the old generation, so recovery discards them even if the crash came
// before the WAL was emptied.
func (s *Storage) applySnapshotLocked(ctx context.Context, snap *pb.Snapshot, hs *pb.HardState) (string, error) {
	md := snap.GetMetadata()
	rec, err := s.putSnapshot(ctx, md, snap.Data)
	if err != nil {
		return "", err
	}
	ls := logState{off: md.GetIndex(), offTerm: md.GetTerm(), gen: s.mu.ls.gen + 1}
	enc, err := encodeSnapRecord(rec)
	if err != nil {
		return "", err
	}
	kv := map[string][]byte{metaSnap: enc, metaLog: encodeLogState(ls)}
	if hs != nil {
		if kv[metaHardState], err = encodeHardState(hs); err != nil {
			return "", fmt.Errorf("etcdraft: encode HardState: %w", err)
		}
	}
	old := s.mu.snap.rec.key
	s.mu.Lock()
	s.beginRewriteLocked()
	s.mu.Unlock()
	err = s.w.SetMeta(ctx, kv)
	s.mu.Lock()
	if err == nil {
		s.mu.snap = snapState{rec: rec, data: snap.Data, loaded: true}
		s.mu.ls = ls
		s.mu.last = ls.off
		s.mu.tail.Reset(ls.off + 1)
		if hs != nil {
			s.mu.hs = proto.CloneOf(hs)
		}
	}
	s.endRewriteLocked()
	s.mu.Unlock()
	if err != nil {
		return "", s.fail(fmt.Errorf("etcdraft: apply snapshot %d: %w", ls.off, err))
	}
	if err := s.emptyWAL(ctx); err != nil {
		return "", s.fail(err)
	}
	return old, nil
}

// Save persists one Ready (or one MsgStorageAppend) crash-safely, in the
// order etcd's server uses: the snapshot first (its data object, then its
// metadata with the log reset to the snapshot index), then the entries
// (overwriting any conflicting suffix), then the HardState. After a crash at
// any point, the recovered HardState.Commit <= LastIndex (counting the
// snapshot index) and every entry the recovered HardState relies on is
// present. It returns when all of it is durable; the new state is visible
// through the raft.Storage methods by then.
//
// hs is written only if it is non-nil, not raft.IsEmptyHardState and
// different from the saved one (a MsgStorageAppend without a HardState
// yields an empty one). snap is applied only if it is non-nil with a
// non-zero index; it must be newer than the current snapshot
// (raft.ErrSnapOutOfDate). Entries follow Append's rules, after the
// snapshot. Nothing is written when the arguments are invalid.
//
// Cost: entries are one fragment PUT; a changed HardState is one
// compare-and-swap of the log record after it; a snapshot adds a PUT for its
// data and two compare-and-swaps.
func (s *Storage) Save(hs *pb.HardState, entries []*pb.Entry, snap *pb.Snapshot) error {
	ctx, unlock, err := s.beginWrite()
	if err != nil {
		return err
	}
	defer unlock()
	off, last, gen := s.mu.ls.off, s.mu.last, s.mu.ls.gen
	var sc *pb.Snapshot
	if md := snap.GetMetadata(); snap != nil && md.GetIndex() != 0 && !s.isCurrentSnapshot(md) {
		if sc, err = s.checkSnapshot(snap); err != nil {
			return err
		}
		off, last, gen = sc.GetMetadata().GetIndex(), sc.GetMetadata().GetIndex(), gen+1
	}
	// A snapshot that is already the current one (a Save retried after
	// ErrWriteFailed, whose snapshot had landed) is not applied again: the
	// entries and HardState go on from the state it left.
	p, err := planAppend(entries, off, last, gen)
	if err != nil {
		return err
	}
	if hs != nil && (raft.IsEmptyHardState(hs) || (s.mu.hs != nil && proto.Equal(hs, s.mu.hs))) {
		hs = nil
	}
	var old string
	if sc != nil {
		var withSnap *pb.HardState
		if len(p.ents) == 0 {
			withSnap, hs = hs, nil // no entries to wait for: one compare-and-swap
		}
		if old, err = s.applySnapshotLocked(ctx, sc, withSnap); err != nil {
			return err
		}
	}
	if err := s.doAppend(ctx, p, hs); err != nil {
		return err
	}
	s.deleteSnapObject(ctx, old)
	return nil
}
