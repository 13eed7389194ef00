package wal

// logView is what a writer publishes for the readers in its process: the
// log as of its last acknowledgement or record update, in one immutable
// value. Readers load it (logState.view) and never take the writer's locks
// or read its fields, so they see either the state before a change or the
// state after it, never a mix (a record already truncated with the old
// durable index, say).
//
// Invariants (for a view published by a writer that has not failed):
//   - rec is the record the writer last stored; it is never modified.
//   - Entries first..last are acknowledged and readable through rec; the
//     log is empty when last < first.
//   - seg is the writer's open segment (0 when none), and its fragments
//     0..frags-1 are acknowledged; nothing at or above frags is.
//
// A writer that fails or closes withdraws its view (unpublishLocked):
// readers then read the record and the bucket, where everything it
// acknowledged is.
type logView struct {
	w           *Writer
	rec         *logRecord
	first, last uint64
	seg, frags  uint64
	// tail, for a tiered writer's view, is its locally durable tail:
	// first and last are its bounds, and the entries from tail.mem.base on
	// are read from memory (everything below is acknowledged by the
	// bucket: fragments 0..frags-1 of seg and the record's segments).
	tail *tailView
}

// cuts is what a reader compares to tell whether entries it returned
// may have been replaced: the record's Cuts, plus the tiered writer's
// local ones.
func (v *logView) cuts(rec *logRecord) uint64 {
	if v == nil || v.tail == nil {
		return rec.Cuts
	}
	return rec.Cuts + v.tail.cuts
}

// publishLocked publishes the writer's current state as the log's view and
// wakes the log's waiting readers. REQUIRES: w.mu held.
func (w *Writer) publishLocked() {
	if w.mu.released {
		return
	}
	v := &logView{w: w, rec: w.mu.rec, first: w.mu.dfirst, last: w.mu.durable, seg: w.mu.seg, frags: w.mu.ackedFrags}
	if w.mu.dempty {
		v.first, v.last = 1, 0
	}
	if t := w.tierOf.Load(); t != nil {
		if tv := t.tail.Load(); tv != nil {
			v.tail, v.first, v.last = tv, tv.first, tv.last
		}
	}
	w.st.view.Store(v)
}

// unpublishLocked withdraws the writer's view for good: readers in this
// process go back to the record and the bucket, starting from the
// writer's last record. REQUIRES: w.mu held.
func (w *Writer) unpublishLocked() {
	if w.mu.released {
		return
	}
	w.mu.released = true
	if w.mu.rec != nil {
		w.st.setRecord(w.mu.rec)
	}
	if v := w.st.view.Load(); v != nil && v.w == w {
		w.st.view.CompareAndSwap(v, nil)
	}
}

// setRecord caches r as the log's record unless the cache already holds a
// newer copy of the same incarnation: records read by OpenLog, GC or a
// reader race with writers' updates, and an older read must not replace a
// newer one.
func (s *logState) setRecord(r *logRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.mu.rec; cur != nil && cur.ID == r.ID && cur.Rev > r.Rev {
		return
	}
	s.mu.rec = r
}
