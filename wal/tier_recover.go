package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/woodpecker-wal/woodpecker/wal/internal/localtier"
)

// openTiered opens a tiered writer: it recovers the local tier this
// directory holds (if any), or starts a new one.
//
// Recovery: the local tier names the writer that wrote it (log incarnation,
// epoch, owner). If that writer can take the log back (ReopenWriter: nobody
// else opened a writer since), the bucket is made equal to what the local
// tier holds (reconcile) before the writer is returned. Otherwise the log
// was taken over: the local tier is discarded, reported, never uploaded.
func (l *Log) openTiered(ctx context.Context, expect *WriterID, o openOpts) (*Writer, error) {
	c := l.c
	dir := l.localDir()
	lt, rec, err := localtier.Open(dir, localtier.Options{FS: c.cfg.LocalFS, SegmentSize: c.cfg.LocalSegmentSize})
	if err != nil {
		return nil, fmt.Errorf("wal: log %q: %w", l.name, err)
	}
	o.unbudgeted = true
	fail := func(w *Writer, err error) (*Writer, error) {
		if w != nil {
			w.bgCancel()
			_ = w.Close()
		}
		_ = lt.Close()
		return nil, err
	}
	if rec.TornBytes > 0 {
		c.cfg.Logger.Info("wal: local tier: cut an unacknowledged torn write", "log", l.name, "bytes", rec.TornBytes)
	}
	id := rec.Identity
	if id.LogID != 0 {
		oo := o
		oo.tierID = id.TierID
		inner, err := l.openWriter(ctx, &WriterID{LogID: id.LogID, Epoch: id.Epoch, Owner: id.Owner}, oo)
		switch {
		case err == nil:
			st, err := l.reconcile(ctx, inner, rec)
			if err == nil {
				err = lt.Resume(localtier.Identity{LogID: inner.logID, Epoch: inner.epoch, Owner: inner.owner, TierID: id.TierID}, st)
			}
			if err != nil {
				return fail(inner, fmt.Errorf("wal: log %q: recover local tier %s: %w", l.name, dir, err))
			}
			c.cfg.Logger.Info("wal: local tier recovered and uploaded", "log", l.name, "ops", len(rec.Ops), "first", st.First, "next", st.Next)
			return newTierWriter(c, l.name, inner, lt, st).shell, nil
		case errors.Is(err, ErrFenced):
			lo, hi := uint64(0), uint64(0)
			for _, op := range rec.Ops {
				if op.Kind == localtier.KindEntries {
					if lo == 0 {
						lo = op.Index
					}
					hi = op.Index + uint64(len(op.Entries)) - 1
				}
			}
			c.cfg.Logger.Warn("wal: local tier discarded: the log was taken over by another writer; its entries are not uploaded",
				"log", l.name, "dir", dir, "ops", len(rec.Ops), "entries_from", lo, "entries_to", hi, "err", err)
			c.stats.tierDiscarded.Add(1)
		default:
			return fail(nil, err)
		}
	}
	tierID := id.TierID
	if tierID == 0 || id.LogID != 0 {
		tierID = random64() | 1
	}
	if err := lt.Prepare(tierID); err != nil {
		return fail(nil, fmt.Errorf("wal: log %q: local tier %s: %w", l.name, dir, err))
	}
	o.tierID = tierID
	inner, err := l.openWriter(ctx, expect, o)
	if err != nil {
		return fail(nil, err)
	}
	inner.mu.Lock()
	st := localtier.State{First: inner.mu.first, Next: inner.mu.next, Empty: inner.mu.empty}
	inner.mu.Unlock()
	if err := lt.Reset(localtier.Identity{LogID: inner.logID, Epoch: inner.epoch, Owner: inner.owner, TierID: tierID}, st); err != nil {
		return fail(inner, fmt.Errorf("wal: log %q: local tier %s: %w", l.name, dir, err))
	}
	return newTierWriter(c, l.name, inner, lt, st).shell, nil
}

// reconcile makes the bucket, through w, hold the log the recovered local
// tier describes, and returns that log's state. The bucket holds some
// prefix of the operations the local tier holds (they were handed in
// order), so: truncate its front to the local first index, find the first
// index where the bucket and the local tier hold different entries (or
// where the bucket ends), truncate the bucket's back there, and append the
// rest. Entries below the local tier's oldest retained one are in the
// bucket already (segments are retired only once uploaded).
func (l *Log) reconcile(ctx context.Context, w *Writer, rec *localtier.Recovered) (localtier.State, error) {
	final := rec.State
	mem := memTail{base: rec.Base.Next}
	s := rec.Base
	for _, op := range rec.Ops {
		n := s.Apply(op)
		mem.apply(s, n, op)
		s = n
	}
	bucket := func() localtier.State {
		w.mu.Lock()
		defer w.mu.Unlock()
		return localtier.State{First: w.mu.first, Next: w.mu.next, Empty: w.mu.empty}
	}
	b := bucket()
	if final.Empty {
		if !b.Empty {
			if err := w.TruncateBack(ctx, 0); err != nil {
				return final, err
			}
		}
		if b = bucket(); final.First > b.First {
			if err := w.TruncateFront(ctx, final.First); err != nil {
				return final, err
			}
		}
		return final, w.Sync(ctx)
	}
	if !b.Empty && b.First < final.First {
		if err := w.TruncateFront(ctx, final.First); err != nil {
			return final, err
		}
		b = bucket()
	}
	if !b.Empty {
		lo, hi := max(final.First, mem.base, b.First), min(b.Next, final.Next)
		for i := lo; i < hi; i++ {
			got, err := l.Get(ctx, i)
			if err != nil {
				return final, fmt.Errorf("read entry %d back from the bucket: %w", i, err)
			}
			if want, _, _ := mem.get(i); !bytes.Equal(got, want) {
				if err := w.TruncateBack(ctx, i-1); err != nil {
					return final, err
				}
				break
			}
		}
		if b = bucket(); !b.Empty && b.Next > final.Next {
			if err := w.TruncateBack(ctx, final.Next-1); err != nil {
				return final, err
			}
		}
		b = bucket()
	}
	from := b.Next
	if b.Empty {
		from = final.First
	}
	if from < mem.base && from < final.Next {
		return final, fmt.Errorf("%w: the bucket ends before index %d and the local tier holds entries from %d only", ErrCorrupt, from, mem.base)
	}
	for from < final.Next {
		n, size := 0, 0
		for from+uint64(n) < final.Next && (n == 0 || size < l.c.cfg.MaxQueueBytes/2) {
			e, _, _ := mem.get(from + uint64(n))
			size += len(e)
			n++
		}
		es := make([][]byte, n)
		for k := range es {
			es[k], _, _ = mem.get(from + uint64(k))
		}
		if err := w.Append(ctx, from, es); err != nil {
			return final, err
		}
		from += uint64(n)
	}
	if err := w.Sync(ctx); err != nil {
		return final, err
	}
	if got := bucket(); got != final && !(got.Empty && final.Empty) {
		return final, fmt.Errorf("%w: after recovery the bucket holds %+v, the local tier %+v", ErrCorrupt, got, final)
	}
	return final, nil
}

// closeWriter is Close for a tiered writer: it waits for everything
// accepted to be locally durable, uploads it all, clears the record's Tier
// mark (a clean close: nothing is pending anywhere) and removes the local
// tier.
func (t *tierWriter) closeWriter() error {
	t.mu.Lock()
	if t.close {
		t.mu.Unlock()
		<-t.localDone
		<-t.upDone
		t.mu.Lock()
		err := t.err
		t.mu.Unlock()
		if errors.Is(err, ErrClosed) {
			return nil
		}
		return err
	}
	t.close = true
	t.cond.Broadcast()
	t.mu.Unlock()
	kick(t.localKick)
	<-t.localDone
	t.mu.Lock()
	t.uploadNow = true
	t.mu.Unlock()
	kick(t.upKick)
	// The uploader retries without a budget; Close does not wait for ever:
	// past OperationBound the writer is broken, and what was not uploaded
	// stays in the local tier for the next writer on this directory.
	bound := t.c.cfg.OperationBound()
	timer := t.c.clock.NewTimer(bound)
	select {
	case <-t.upDone:
	case <-timer.Chan():
		t.mu.Lock()
		t.failLocked(fmt.Errorf("%w: log %q: Close could not upload the local tail within %v; it stays in %s for the next writer",
			ErrBroken, t.name, bound, t.lt.Dir()))
		t.mu.Unlock()
		<-t.upDone
	}
	timer.Stop()
	t.mu.Lock()
	err := t.err
	if err == nil && t.uploadedLSN != t.nextLSN-1 {
		err = fmt.Errorf("%w: log %q: Close found operations up to LSN %d not uploaded (uploaded to %d); they stay in %s",
			ErrBroken, t.name, t.nextLSN-1, t.uploadedLSN, t.lt.Dir())
		t.failLocked(err)
	}
	t.mu.Unlock()
	if err == nil {
		err = t.inner.Sync(t.inner.bgCtx)
	}
	if err == nil {
		err = t.inner.clearTier(t.inner.bgCtx, t.lt.Identity().TierID)
	}
	ierr := t.inner.Close()
	if err == nil {
		err = ierr
	}
	if err == nil {
		err = t.lt.Discard()
	}
	if cerr := t.lt.Close(); err == nil {
		err = cerr
	}
	t.mu.Lock()
	if t.err == nil {
		t.err = ErrClosed
		if err != nil {
			t.err = err
		}
	}
	for _, o := range t.waiting {
		o.fut.resolve(t.err)
	}
	t.waiting = nil
	t.cond.Broadcast()
	t.mu.Unlock()
	t.c.tiers.Delete(t)
	t.c.cfg.Logger.Info("wal: tiered writer closed", "log", t.name, "epoch", t.inner.epoch, "err", err)
	return err
}
