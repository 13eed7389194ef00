package wal

import (
	"context"
	"errors"
	"fmt"

	"github.com/woodpecker-wal/woodpecker/wal/internal/localtier"
)

// localLoop is the group commit: it writes everything pending with one
// write and one fdatasync, then acknowledges it in order. A SetMeta in the
// queue runs once everything before it is locally durable, as a
// compare-and-swap of the record under the writer's epoch.
func (t *tierWriter) localLoop() {
	defer close(t.localDone)
	for {
		t.mu.Lock()
		for (len(t.pending) == 0 || t.committing) && t.err == nil && !(t.close && !t.committing) {
			t.mu.Unlock()
			<-t.localKick
			t.mu.Lock()
		}
		if t.err != nil || len(t.pending) == 0 {
			t.mu.Unlock()
			return
		}
		if t.committing { // closing: wait for the synchronous appender's commit
			t.mu.Unlock()
			<-t.localKick
			continue
		}
		if o := t.pending[0]; o.op.Kind == 0 {
			// A SetMeta waits for everything before it, a TruncateBack of
			// handed entries included, to be done: its record update must
			// not land before theirs.
			if len(t.waiting) == 0 || t.waiting[0] != o {
				kick(t.upKick)
				t.cond.Wait()
				t.mu.Unlock()
				continue
			}
			t.pending = t.pending[1:]
			t.mu.Unlock()
			err := t.inner.setMetaNow(t.inner.bgCtx, o.kv)
			t.mu.Lock()
			if err != nil && (errors.Is(err, ErrFenced) || errors.Is(err, ErrBroken) || t.inner.bgCtx.Err() != nil) {
				t.failLocked(err)
			} else {
				o.err, o.ready = err, true
				t.resolveLocked()
			}
			t.mu.Unlock()
			continue
		}
		t.committing = true
		ok := t.commitLocked()
		t.committing = false
		t.mu.Unlock()
		if !ok {
			return
		}
	}
}

// leadLocked is a synchronous append's shortcut: when no group commit is
// being written and the queue starts with entries or truncations, the
// appender writes the commit itself — its own entries and whatever else is
// pending — instead of waking the local loop and waiting to be woken
// (two goroutine hand-offs per call). REQUIRES: t.mu held.
func (t *tierWriter) leadLocked() {
	if t.committing || t.err != nil || len(t.pending) == 0 || t.pending[0].op.Kind == 0 {
		kick(t.localKick)
		return
	}
	t.committing = true
	t.commitLocked()
	t.committing = false
	kick(t.localKick) // whatever came meanwhile, and a closing loop
}

// commitLocked writes one group commit: the operations at the head of
// pending up to the first SetMeta, with one write and one fdatasync, then
// applies and acknowledges them. It returns false when the writer failed.
// REQUIRES: t.mu held and t.committing set by the caller; t.mu is released
// during the write.
func (t *tierWriter) commitLocked() bool {
	{
		k := 0
		for k < len(t.pending) && t.pending[k].op.Kind != 0 {
			k++
		}
		batch := t.pending[:k]
		t.pending = t.pending[k:]
		ops := make([]localtier.Op, len(batch))
		for i, o := range batch {
			ops[i] = o.op
		}
		t.mu.Unlock()
		start := t.c.clock.Now()
		err := t.lt.Write(ops)
		t.c.metrics.tierFsync.Observe(t.c.clock.Since(start).Seconds())
		t.mu.Lock()
		if err != nil {
			t.failLocked(fmt.Errorf("%w: log %q: %v", ErrBroken, t.name, err))
			return false
		}
		if t.err != nil {
			return false
		}
		t.c.metrics.tierCommits.Inc()
		t.commits++
		urgent := false
		for _, o := range batch {
			before := t.local
			t.local = t.local.Apply(o.op)
			t.mem.apply(before, t.local, o.op)
			t.unhanded += o.bytes
			o.ready = true
			if o.op.Kind == localtier.KindTruncateBack && t.local.Next < before.Next {
				t.cuts++
				if t.flight != nil {
					t.flight.cut = min(t.flight.cut, o.op.Index)
				}
				if !t.handed.Empty && o.op.Index+1 < t.handed.Next {
					// It cuts entries the bucket may hold: it is done when the
					// inner writer's record says so.
					o.ready, o.cutting, urgent = false, true, true
					if !t.cutSince || o.op.Index < t.keep {
						t.keep, t.cutSince = o.op.Index, true
					}
				}
			}
			if t.local.Empty && !before.Empty {
				t.emptied = true
				if t.flight != nil {
					t.flight.cut = 0
				}
			}
		}
		t.durableLSN = batch[len(batch)-1].op.LSN
		t.publishLocked()
		t.resolveLocked()
		if urgent || t.unhandedBytesLocked() >= t.c.cfg.MaxFlushSize {
			kick(t.upKick)
		}
		return true
	}
}

// unhandedBytesLocked is the payload locally durable and not yet handed.
func (t *tierWriter) unhandedBytesLocked() int { return t.unhanded }

// setMetaNow merges kv into the record's meta in one compare-and-swap,
// without waiting for the flush queue (a tiered writer's entries before it
// are durable locally, which is what its SetMeta orders after).
func (w *Writer) setMetaNow(ctx context.Context, kv map[string][]byte) error {
	err := w.mutate(ctx, func(r *logRecord) error { return w.mergeMeta(r, kv) })
	if err == nil {
		w.mu.Lock()
		w.publishLocked()
		w.mu.Unlock()
	}
	return err
}

// mergeMeta merges kv into r.Meta (a nil value deletes a key), within
// MaxMetaSize.
func (w *Writer) mergeMeta(r *logRecord, kv map[string][]byte) error {
	size := 0
	next := make(map[string][]byte, len(r.Meta)+len(kv))
	for k, v := range r.Meta {
		next[k] = v
	}
	for k, v := range kv {
		if v == nil {
			delete(next, k)
		} else {
			next[k] = v
		}
	}
	for k, v := range next {
		size += len(k) + len(v)
	}
	if size > MaxMetaSize {
		return fmt.Errorf("wal: log %q: meta would hold %d bytes, limit %d", w.name, size, MaxMetaSize)
	}
	r.Meta = next
	return nil
}
