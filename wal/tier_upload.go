package wal

import (
	"context"
	"errors"
	"fmt"
)

// uploadLoop ships what is locally durable to the bucket through the inner
// writer, every UploadInterval or when kicked, one batch at a time: the net
// effect of the operations since the last hand (a TruncateBack into handed
// entries, a TruncateFront, then the entries that are new), which the inner
// writer cuts into fragments and retries without a time budget (the lag
// bound stops the appenders instead). It exits once closing with nothing
// left to hand, or on failure.
func (t *tierWriter) uploadLoop() {
	defer close(t.upDone)
	timer := t.c.clock.NewTimer(t.c.cfg.UploadInterval)
	defer timer.Stop()
	for {
		t.mu.Lock()
		for t.err == nil && !t.uploadNow && !(t.close && t.localDrainedLocked()) {
			t.mu.Unlock()
			select {
			case <-t.upKick:
			case <-timer.Chan():
				t.mu.Lock()
				t.uploadNow = true
				t.mu.Unlock()
				timer.Reset(t.c.cfg.UploadInterval)
			}
			t.mu.Lock()
			if t.unhandedBytesLocked() >= t.c.cfg.MaxFlushSize || t.cuttingLocked() {
				t.uploadNow = true
			}
		}
		if t.err != nil {
			t.mu.Unlock()
			return
		}
		t.uploadNow = false
		if t.handLSN == t.durableLSN {
			done := t.close && t.localDrainedLocked()
			t.mu.Unlock()
			if done {
				return
			}
			continue
		}
		b, plan := t.planLocked()
		t.mu.Unlock()
		start := t.c.clock.Now()
		err := t.hand(b, plan)
		t.mu.Lock()
		t.flight = nil
		if err != nil {
			if t.err == nil && errors.Is(err, ErrClosed) {
				err = fmt.Errorf("%w: log %q: the uploader's writer closed", ErrBroken, t.name)
			}
			t.failLocked(err)
			t.mu.Unlock()
			return
		}
		t.c.metrics.tierUploads.Inc()
		t.uploads++
		t.c.metrics.tierUploadLatency.Observe(t.c.clock.Since(start).Seconds())
		t.uploadedLSN = b.lsn
		t.mem.trimBelow(min(b.lastIdx, b.cut) + 1)
		for len(t.lagQ) > 0 && t.lagQ[0].lsn <= b.lsn {
			t.lagBytes -= t.lagQ[0].bytes
			t.lagQ = t.lagQ[1:]
		}
		t.publishLocked()
		t.cond.Broadcast()
		t.mu.Unlock()
		if err := t.lt.Retire(b.lsn); err != nil {
			t.c.cfg.Logger.Warn("wal: local tier: retiring uploaded segments failed", "log", t.name, "err", err)
		}
	}
}

// localDrainedLocked: everything accepted is locally durable — nothing is
// pending, and no group commit is being written (the local loop takes a
// batch off pending before it writes it).
func (t *tierWriter) localDrainedLocked() bool {
	return len(t.pending) == 0 && t.durableLSN == t.nextLSN-1
}

func (t *tierWriter) cuttingLocked() bool {
	for _, o := range t.waiting {
		if o.cutting && !o.ready && o.op.LSN <= t.durableLSN {
			return true
		}
	}
	return false
}

// handPlan is the net effect of the operations since the last hand.
type handPlan struct {
	truncBack  bool
	backTo     uint64
	truncFront bool
	frontTo    uint64
	appendAt   uint64
	entries    [][]byte
}

// planLocked computes the next batch: what turns the inner writer's log
// (handed) into the locally durable one (local).
func (t *tierWriter) planLocked() (*tierBatch, handPlan) {
	var p handPlan
	h, l := t.handed, t.local
	switch {
	case t.emptied:
		if !h.Empty {
			p.truncBack, p.backTo = true, 0
		}
		if l.Empty {
			if l.First > h.First || !h.Empty {
				p.truncFront, p.frontTo = true, l.First
			}
		} else {
			p.appendAt = l.First
		}
	default:
		if t.cutSince && !h.Empty && t.keep+1 < h.Next {
			p.truncBack, p.backTo = true, t.keep
			h.Next = t.keep + 1
		}
		if l.First > h.First {
			p.truncFront, p.frontTo = true, l.First
		}
		if !l.Empty {
			p.appendAt = max(h.Next, l.First)
			if h.Empty {
				p.appendAt = l.First
			}
		}
	}
	if !l.Empty && p.appendAt < l.Next {
		for i := p.appendAt; i < l.Next; i++ {
			e, _, ok := t.mem.get(i)
			if !ok {
				// An invariant broke: the entry is neither handed nor here.
				panic(fmt.Sprintf("wal: tiered writer %q: entry %d to upload is not in memory (tail %d+%d)", t.name, i, t.mem.base, len(t.mem.entries)))
			}
			p.entries = append(p.entries, e)
		}
	}
	b := &tierBatch{lsn: t.durableLSN, cut: ^uint64(0)}
	if !l.Empty {
		b.lastIdx = l.Next - 1
	}
	for _, o := range t.waiting {
		if o.cutting && !o.ready && o.op.LSN <= b.lsn {
			b.cuts = append(b.cuts, o)
		}
	}
	t.handed, t.handLSN, t.unhanded = l, b.lsn, 0
	t.keep, t.cutSince, t.emptied = 0, false, false
	t.flight = b
	return b, p
}

// hand applies the plan to the inner writer and waits until it is durable
// in the bucket.
func (t *tierWriter) hand(b *tierBatch, p handPlan) error {
	ctx := t.inner.bgCtx
	w := t.inner
	if p.truncBack {
		if err := w.TruncateBack(ctx, p.backTo); err != nil {
			return err
		}
	}
	if p.truncFront {
		if err := w.TruncateFront(ctx, p.frontTo); err != nil {
			return err
		}
	}
	if len(b.cuts) > 0 {
		t.mu.Lock()
		for _, o := range b.cuts {
			o.ready = true
		}
		t.resolveLocked()
		t.mu.Unlock()
	}
	if len(p.entries) == 0 {
		return w.Sync(ctx)
	}
	// Hand the entries in pieces the inner writer's queue admits.
	for off := 0; off < len(p.entries); {
		n, size := 0, 0
		for off+n < len(p.entries) && (n == 0 || size+len(p.entries[off+n]) <= w.c.cfg.MaxQueueBytes) {
			size += len(p.entries[off+n])
			n++
		}
		fut := w.AppendAsync(p.appendAt+uint64(off), p.entries[off:off+n])
		w.Flush()
		if err := fut.Wait(context.Background()); err != nil {
			return err
		}
		off += n
	}
	return nil
}
