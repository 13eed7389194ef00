package wal

import (
	"context"
	"fmt"
)

// The lost-tail marker (docs/design.md, tiered mode): a tiered writer's
// record says Tier{epoch, tier id} while its local tier may hold
// acknowledged entries that are not in the bucket. A writer that takes the
// log over without that local tier — any writer of another tier, or of
// none — turns it into LostTail{After: the last entry in the bucket}, in
// the record, before it returns; it then stays until ClearLostTail.

// settleTier runs in openWriter once the previous writer is fenced and its
// segment sealed at last: it turns another tier's Tier mark into a lost-tail
// marker, and sets this writer's own Tier mark when tierID is not 0.
func (w *Writer) settleTier(ctx context.Context, last, tierID uint64) error {
	w.casMu.Lock()
	r := w.rec
	w.casMu.Unlock()
	foreign := r.Tier != nil && (tierID == 0 || r.Tier.TierID != tierID)
	if !foreign && tierID == 0 {
		return nil
	}
	after := last
	if r.Empty || last < r.First {
		after = r.First - 1
	}
	epoch := w.epoch
	return w.mutate(ctx, func(r *logRecord) error {
		if r.Tier != nil && (tierID == 0 || r.Tier.TierID != tierID) {
			if r.LostTail == nil || after < r.LostTail.After {
				r.LostTail = &lostTailRec{After: after, Epoch: epoch}
			}
			r.Tier = nil
			w.c.cfg.Logger.Warn("wal: took over a tiered writer that did not close cleanly: acknowledged entries may be lost",
				"log", w.name, "after", after, "epoch", epoch)
		}
		if tierID != 0 {
			r.Tier = &tierRec{Epoch: epoch, TierID: tierID}
		}
		return nil
	})
}

// LostTail returns the log's lost-tail marker: ok says the record holds
// one, and entries above after may have been acknowledged and lost.
func (w *Writer) LostTail() (after uint64, ok bool) {
	if w.tier != nil {
		return w.tier.inner.LostTail()
	}
	r := w.snapshotRecord()
	if r.LostTail == nil {
		return 0, false
	}
	return r.LostTail.After, true
}

// ClearLostTail removes the log's lost-tail marker, which must say after
// (the point the caller acknowledged); it is a no-op when there is none.
func (w *Writer) ClearLostTail(ctx context.Context, after uint64) error {
	if w.tier != nil {
		return w.tier.inner.ClearLostTail(ctx, after)
	}
	err := w.mutate(ctx, func(r *logRecord) error {
		if r.LostTail != nil && r.LostTail.After != after {
			return fmt.Errorf("wal: log %q: the lost-tail marker says %d, not %d", w.name, r.LostTail.After, after)
		}
		r.LostTail = nil
		return nil
	})
	if err == nil {
		w.mu.Lock()
		w.publishLocked()
		w.mu.Unlock()
	}
	return err
}

// clearTier removes this writer's Tier mark: everything is in the bucket.
func (w *Writer) clearTier(ctx context.Context, tierID uint64) error {
	return w.mutate(ctx, func(r *logRecord) error {
		if r.Tier != nil && r.Tier.TierID == tierID {
			r.Tier = nil
		}
		return nil
	})
}

// LostTail returns the log's lost-tail marker as the record says (see
// Writer.LostTail).
func (l *Log) LostTail(ctx context.Context) (after uint64, ok bool, err error) {
	rec, err := l.record(ctx, l.st.view.Load(), true)
	if err != nil || rec.LostTail == nil {
		return 0, false, err
	}
	return rec.LostTail.After, true, nil
}
