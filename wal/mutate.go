package wal

// Record mutations: every change an open writer makes to its log's record
// (docs/design.md, decision 1) goes through mutate, a compare-and-swap
// fenced by the log ID and the writer's epoch. openSegment rolls segments;
// runOp runs the queued control items — a reset of an emptied log at a new
// index, TruncateBack, TruncateFront, SetMeta — for the flush loop, once
// every item before them is durable.

import (
	"context"
	"errors"
	"fmt"

	"github.com/woodpecker-wal/woodpecker/meta"
)

// mutate applies fn to the log record and stores it with a compare-and-swap
// that also checks the record is still our incarnation's (log ID) and our
// epoch. A conflict alone is not proof of being fenced: the record is
// re-read and fn re-applied unless the epoch moved or the log was deleted
// and created again (a new ID, whose first writer may have our epoch
// number), which is ErrFenced.
//
// mutate does not publish the record to readers: the caller updates its
// own state to match and then publishes both at once (publishLocked).
func (w *Writer) mutate(ctx context.Context, fn func(*logRecord) error) error {
	w.casMu.Lock()
	defer w.casMu.Unlock()
	c := w.c
	for rt := w.retrier(); ; {
		r := w.rec.clone()
		if err := fn(r); err != nil {
			return err
		}
		r.Rev = w.rec.Rev + 1
		b, err := r.marshal()
		if err != nil {
			return err
		}
		actx, cancel := c.requestCtx(ctx)
		v, err := c.cfg.Meta.Update(actx, c.metaKey(w.name), b, w.ver)
		cancel()
		if err == nil {
			w.rec, w.ver = r, v // r is never modified from now on: fn works on clones
			w.mu.Lock()
			w.mu.rec = r
			w.mu.Unlock()
			return nil
		}
		if !errors.Is(err, meta.ErrPrecondition) {
			// Ambiguous: the update may have landed. Re-read and retry; if it
			// landed, the re-read shows our change, and fn must then change
			// nothing more: every fn passed to mutate is idempotent.
			c.cfg.Logger.Warn("wal: record update failed; retrying", "log", w.name, "err", err)
			if !rt.Again(ctx) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%w: log %q: update record: %v", ErrBroken, w.name, err)
			}
		}
		rctx, rcancel := c.requestCtx(ctx)
		fresh, fv, rerr := c.readRecord(rctx, w.name)
		rcancel()
		if errors.Is(rerr, ErrLogNotFound) {
			return fmt.Errorf("%w: log %q was deleted", ErrFenced, w.name)
		}
		if rerr != nil {
			if !rt.Again(ctx) {
				return fmt.Errorf("%w: log %q: re-read record: %v", ErrBroken, w.name, rerr)
			}
			continue
		}
		if fresh.ID != w.logID {
			return fmt.Errorf("%w: log %q was deleted and created again (incarnation %d, ours %d)", ErrFenced, w.name, fresh.ID, w.logID)
		}
		if fresh.Epoch != w.epoch {
			return fmt.Errorf("%w: log %q: epoch %d, ours %d", ErrFenced, w.name, fresh.Epoch, w.epoch)
		}
		w.rec, w.ver = fresh, fv
	}
}

// openSegment seals the open segment (if any) at the current durable index
// and opens a new one whose first entry is first, applying extra (if not
// nil) in the same compare-and-swap. REQUIRES: nothing in flight; called by
// the flusher or before it starts.
func (w *Writer) openSegment(ctx context.Context, first uint64, extra func(*logRecord)) error {
	w.mu.Lock()
	cur, frags, durable := w.mu.seg, w.mu.nextSeq, w.mu.durable
	w.mu.Unlock()
	id := uint64(0) // chosen on the first application, so a re-applied fn opens no second segment
	err := w.mutate(ctx, func(r *logRecord) error {
		r.sealSegment(cur, frags, durable)
		r.addOpenSegment(&id, w.epoch, first)
		if extra != nil {
			extra(r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.startSegmentLocked(id)
	w.publishLocked()
	w.mu.Unlock()
	return nil
}

// startSegmentLocked makes id (0: none) the writer's open segment, with no
// fragment cut yet. REQUIRES: w.mu held, nothing in flight.
func (w *Writer) startSegmentLocked(id uint64) {
	w.mu.seg, w.mu.nextSeq, w.mu.ackedFrags, w.mu.segBytes, w.mu.segOpened = id, 0, 0, 0, w.c.clock.Now()
}

// runOp applies a control operation. REQUIRES: nothing in flight and every
// earlier item durable.
func (w *Writer) runOp(it *item) error {
	ctx := w.bgCtx
	var err error
	switch it.op {
	case opReset:
		cut := uint64(0) // chosen on the first application (mutate's fns are idempotent)
		err = w.openSegment(ctx, it.arg, func(r *logRecord) {
			if cut == 0 {
				cut = r.Cuts
				if it.arg != r.First {
					cut++ // entries at indexes a reader may have read come back different
				}
			}
			r.Empty, r.First, r.Cuts = false, it.arg, max(r.Cuts, cut)
		})
		if err == nil {
			w.mu.Lock()
			w.mu.dfirst, w.mu.dempty = it.arg, false
			w.mu.Unlock()
			w.setDurable(it.arg - 1)
		}
	case opTruncateBack:
		err = w.truncateBack(ctx, it.arg)
	case opTruncateFront:
		err = w.truncateFront(ctx, it.arg)
	case opSetMeta:
		err = w.mutate(ctx, func(r *logRecord) error { return w.mergeMeta(r, it.kv) })
		if err != nil && !errors.Is(err, ErrFenced) && !errors.Is(err, ErrBroken) {
			it.fut.resolve(err) // a rejected value is the caller's error, not the writer's
			return nil
		}
		if err == nil {
			w.mu.Lock()
			w.publishLocked()
			w.mu.Unlock()
		}
	}
	it.fut.resolve(err)
	return err
}

// setDurable sets the durable index after a control operation and
// publishes the writer's state.
func (w *Writer) setDurable(d uint64) {
	w.mu.Lock()
	w.mu.durable = d
	w.publishLocked()
	w.mu.Unlock()
	w.st.wake()
}

// truncateBack runs TruncateBack(i): in one record update it counts a cut,
// seals the open segment, lowers the last index of the segments it cuts
// into and marks deleted those wholly above i; then it opens a new segment
// at i+1, or, when i is below the first index, empties the log.
func (w *Writer) truncateBack(ctx context.Context, i uint64) error {
	w.mu.Lock()
	cur, frags := w.mu.seg, w.mu.nextSeq
	w.mu.Unlock()
	var newSeg uint64 // chosen on the first application: a re-applied fn opens no second segment
	var emptied bool
	cut := uint64(0)
	err := w.mutate(ctx, func(r *logRecord) error {
		if cut == 0 {
			cut = r.Cuts + 1
		}
		r.Cuts = max(r.Cuts, cut)
		emptied = i < r.First
		r.sealSegment(cur, frags, w.DurableIndex())
		for k := range r.Segments {
			s := &r.Segments[k]
			if s.State == segDeleted || (newSeg != 0 && s.ID == newSeg) {
				continue
			}
			switch {
			case emptied || s.First > i:
				s.State = segDeleted
			case s.Last > i:
				s.Last = i
			}
		}
		if emptied {
			r.Empty = true
			return nil
		}
		r.addOpenSegment(&newSeg, w.epoch, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.startSegmentLocked(newSeg)
	if emptied {
		w.mu.dempty = true
	}
	w.mu.Unlock()
	if emptied {
		w.setDurable(0)
	} else {
		w.setDurable(i)
	}
	return nil
}

// truncateFront runs TruncateFront(i): in one record update it moves the
// first index to i and marks deleted the sealed segments wholly below it;
// past the last durable index it also seals the open segment and empties
// the log.
func (w *Writer) truncateFront(ctx context.Context, i uint64) error {
	w.mu.Lock()
	cur, frags, durable := w.mu.seg, w.mu.nextSeq, w.mu.durable
	w.mu.Unlock()
	emptied := false
	err := w.mutate(ctx, func(r *logRecord) error {
		if i <= r.First && !r.Empty {
			return nil
		}
		r.First = i
		emptied = i > durable
		if emptied {
			r.Empty = true
			r.sealSegment(cur, frags, durable)
		}
		for k := range r.Segments {
			s := &r.Segments[k]
			if s.State == segSealed && s.Last < i {
				s.State = segDeleted
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.mu.dfirst = max(w.mu.dfirst, i)
	if emptied {
		w.startSegmentLocked(0)
		w.mu.dempty, w.mu.durable = true, 0
	}
	w.publishLocked()
	w.mu.Unlock()
	w.st.wake()
	return nil
}
