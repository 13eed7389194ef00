package wal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// AppendAsync queues entries at indexes first, first+1, ... and returns a
// Future resolved, in index order, when they are durable. first must be the
// log's last index + 1, or any index >= 1 when the log is empty. The writer
// keeps the entries' slices until the future resolves: do not modify them.
// It blocks while Config.MaxQueueBytes are appended and not yet durable.
func (w *Writer) AppendAsync(first uint64, entries [][]byte) *Future {
	n := 0
	for _, e := range entries {
		n += len(e)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.mu.unacked > 0 && w.mu.unacked+n > w.c.cfg.MaxQueueBytes && w.mu.err == nil && !w.mu.closed {
		w.mu.flushNow = true
		w.poke()
		w.space.Wait()
	}
	if err := w.checkLocked(); err != nil {
		return failedFuture(err)
	}
	if len(entries) == 0 {
		return failedFuture(fmt.Errorf("%w: append of no entries", ErrBadIndex))
	}
	for i, e := range entries {
		if len(e) > w.c.cfg.MaxFlushSize {
			return failedFuture(fmt.Errorf("wal: entry %d is %d bytes, larger than MaxFlushSize %d", first+uint64(i), len(e), w.c.cfg.MaxFlushSize))
		}
	}
	if first == 0 || first > ^uint64(0)-uint64(len(entries)) {
		return failedFuture(fmt.Errorf("%w: append at %d", ErrBadIndex, first))
	}
	if w.mu.empty {
		w.enqueueLocked(&item{op: opReset, arg: first, fut: newFuture()})
		w.mu.empty, w.mu.first, w.mu.next = false, first, first
	} else if first != w.mu.next {
		what := "leaves a gap"
		if first < w.mu.next {
			what = "goes backwards (TruncateBack first)"
		}
		return failedFuture(fmt.Errorf("%w: log %q: append at %d %s; next index is %d", ErrBadIndex, w.name, first, what, w.mu.next))
	}
	w.mu.next = first + uint64(len(entries))
	w.mu.unacked += n
	fut := newFuture()
	w.enqueueLocked(&item{op: opEntries, first: first, entries: entries, fut: fut})
	w.mu.waiting = append(w.mu.waiting, fut)
	for _, e := range entries {
		w.mu.queueBytes += len(e)
	}
	return fut
}

// Append appends entries starting at index first and returns when they are
// durable. It does not wait for MaxInterval: the entries go into the next
// fragment at once, with whatever else is pending.
func (w *Writer) Append(ctx context.Context, first uint64, entries [][]byte) error {
	fut := w.AppendAsync(first, entries)
	w.Flush()
	err := fut.Wait(ctx)
	if err == nil {
		w.c.metrics.syncLatency.Observe(time.Since(fut.start).Seconds())
	}
	return err
}

// Flush asks for every queued entry to be written now, without waiting for
// MaxInterval. It does not wait for them to be durable.
func (w *Writer) Flush() {
	w.mu.Lock()
	w.mu.flushNow = true
	w.mu.Unlock()
	w.poke()
}

// Sync flushes and waits until everything queued before the call —
// appends, truncations and SetMeta — is durable. It returns the writer's
// failure, if that came first.
func (w *Writer) Sync(ctx context.Context) error {
	w.mu.Lock()
	if err := w.checkLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	fut := w.mu.last
	w.mu.flushNow = true
	w.mu.Unlock()
	w.poke()
	if fut == nil {
		return nil
	}
	select {
	case <-fut.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	// Items resolve in order, so everything before the last one is done
	// too. A SetMeta rejected for its value is its caller's error, not
	// Sync's: report only the writer's own failure.
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.err != nil && !errors.Is(w.mu.err, ErrClosed) {
		return w.mu.err
	}
	return nil
}

// TruncateBack removes every entry above index i and returns when that is
// durable. The next append must be at i+1. Truncating below the first index
// empties the log, after which the next append may use any index. Truncating
// at or above the last index does nothing.
func (w *Writer) TruncateBack(ctx context.Context, i uint64) error {
	w.mu.Lock()
	if err := w.checkLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	if w.mu.empty || i+1 >= w.mu.next {
		w.mu.Unlock()
		return nil
	}
	fut := newFuture()
	w.enqueueLocked(&item{op: opTruncateBack, arg: i, fut: fut})
	if i < w.mu.first {
		w.mu.empty, w.mu.next = true, w.mu.first
	} else {
		w.mu.next = i + 1
	}
	w.mu.Unlock()
	w.poke()
	return fut.Wait(ctx)
}

// TruncateFront removes every entry below index i and returns when the new
// first index is durable. Truncating past the last index empties the log,
// after which the next append may use any index. Objects are deleted later
// by garbage collection.
func (w *Writer) TruncateFront(ctx context.Context, i uint64) error {
	w.mu.Lock()
	if err := w.checkLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	if i <= w.mu.first {
		w.mu.Unlock()
		return nil
	}
	fut := newFuture()
	w.enqueueLocked(&item{op: opTruncateFront, arg: i, fut: fut})
	w.mu.first = i
	if i >= w.mu.next {
		w.mu.empty, w.mu.next = true, i
	}
	w.mu.Unlock()
	w.poke()
	return fut.Wait(ctx)
}

// MaxMetaSize bounds the total size of a log's meta values, which live in
// its metadata record.
const MaxMetaSize = 256 << 10

// SetMeta durably sets keys of the log's small key/value state (a nil value
// deletes the key), after every operation queued before it is durable, in
// one compare-and-swap under the writer's epoch: a fenced writer cannot
// change it, and an entry appended before SetMeta is durable before the
// values are. The state is meant for a few small values (a Raft term and
// vote, a HardState); the total is limited to MaxMetaSize.
func (w *Writer) SetMeta(ctx context.Context, kv map[string][]byte) error {
	if len(kv) == 0 {
		return nil
	}
	cp := make(map[string][]byte, len(kv))
	for k, v := range kv {
		if v != nil {
			v = append([]byte{}, v...)
		}
		cp[k] = v
	}
	w.mu.Lock()
	if err := w.checkLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	fut := newFuture()
	w.enqueueLocked(&item{op: opSetMeta, kv: cp, fut: fut})
	w.mu.Unlock()
	w.poke()
	return fut.Wait(ctx)
}

// Meta returns the log's key/value state as of the last durable SetMeta.
// The returned map is the caller's; its values must not be modified.
func (w *Writer) Meta() map[string][]byte {
	r := w.snapshotRecord()
	out := make(map[string][]byte, len(r.Meta))
	for k, v := range r.Meta {
		out[k] = v
	}
	return out
}

// FirstIndex returns the first index, counting queued operations; it is 0
// for an empty log.
func (w *Writer) FirstIndex() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.empty {
		return 0
	}
	return w.mu.first
}

// LastIndex returns the last index, counting queued appends (durable or
// not); 0 for an empty log.
func (w *Writer) LastIndex() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.empty {
		return 0
	}
	return w.mu.next - 1
}

// DurableIndex returns the last acknowledged index.
func (w *Writer) DurableIndex() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.durable
}

// Epoch returns the writer's epoch.
func (w *Writer) Epoch() uint64 { return w.epoch }

// Close flushes and waits for every queued operation, then releases the
// log. It returns the writer's failure, if any. Close is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.mu.closed {
		err := w.mu.err
		w.mu.Unlock()
		if errors.Is(err, ErrClosed) {
			return nil
		}
		return err
	}
	w.mu.closed, w.mu.closing, w.mu.flushNow = true, true, true
	w.space.Broadcast()
	w.mu.Unlock()
	w.poke()
	<-w.done
	w.bgCancel()
	w.mu.Lock()
	err := w.mu.err
	if err == nil {
		w.mu.err = ErrClosed
	}
	w.unpublishLocked()
	w.mu.Unlock()
	w.st.mu.Lock()
	if w.st.mu.writer == w {
		w.st.mu.writer = nil
	}
	w.st.mu.Unlock()
	w.st.wake()
	w.c.cfg.Logger.Info("wal: writer closed", "log", w.name, "epoch", w.epoch, "err", err)
	return err
}

func (w *Writer) checkLocked() error {
	if w.mu.err != nil {
		return w.mu.err
	}
	if w.mu.closed {
		return ErrClosed
	}
	return nil
}

func (w *Writer) enqueueLocked(it *item) {
	if len(w.mu.queue) == 0 || w.mu.queueBytes == 0 {
		w.mu.queueSince = time.Now()
	}
	w.mu.queue = append(w.mu.queue, it)
	w.mu.last = it.fut
	if it.op != opEntries {
		w.mu.flushNow = true
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Writer) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// fail makes err the writer's sticky failure and fails everything queued.
func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failLocked(err)
}

func (w *Writer) failLocked(err error) {
	if w.mu.err != nil {
		return
	}
	w.mu.err = err
	// What this process reads of the log comes from the bucket from now on:
	// a failed writer no longer knows what the log holds (another writer
	// may have taken it over and truncated it).
	w.unpublishLocked()
	w.bgCancel() // uploads still in flight are moot: stop their retries
	for _, f := range w.mu.waiting {
		f.resolve(err)
	}
	w.mu.waiting = nil
	for _, it := range w.mu.queue {
		if it.op != opEntries {
			it.fut.resolve(err)
		}
	}
	w.mu.queue, w.mu.queueBytes, w.mu.unacked = nil, 0, 0
	w.space.Broadcast()
	if errors.Is(err, ErrFenced) {
		w.c.metrics.fenced.Inc()
		w.c.stats.fenced.Add(1)
		w.c.cfg.Logger.Info("wal: writer fenced", "log", w.name, "epoch", w.epoch, "err", err)
	} else {
		w.c.cfg.Logger.Warn("wal: writer failed", "log", w.name, "epoch", w.epoch, "err", err)
	}
}

// flushLoop cuts queued entries into fragments, uploads up to
// MaxFlushThreads of them at once, rolls segments, and runs control
// operations once everything before them is durable.
func (w *Writer) flushLoop() {
	defer close(w.done)
	cfg := &w.c.cfg
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		w.mu.Lock()
		if w.mu.err != nil || (w.mu.closing && len(w.mu.queue) == 0 && len(w.mu.inflight) == 0) {
			w.mu.Unlock()
			return
		}
		var wait time.Duration = -1
		var run func() error
		switch head := w.headLocked(); {
		case head == nil:
			w.mu.flushNow = false
		case head.op != opEntries:
			if len(w.mu.inflight) == 0 {
				w.mu.queue = w.mu.queue[1:]
				run = func() error { return w.runOp(head) }
			}
		case w.uploadingLocked() >= cfg.MaxFlushThreads || len(w.mu.inflight) >= 4*cfg.MaxFlushThreads:
		case w.needRollLocked():
			if len(w.mu.inflight) == 0 {
				first := head.first + uint64(head.off)
				run = func() error { return w.openSegment(w.bgCtx, first, nil) }
			}
		default:
			age := time.Since(w.mu.queueSince)
			if w.mu.flushNow || w.mu.closing || w.mu.queueBytes >= cfg.MaxBytes ||
				w.queuedEntriesLocked() >= cfg.MaxEntries || age >= cfg.MaxInterval || w.hasOpAfterLocked() {
				fl, hdr, entries := w.cutLocked()
				go w.upload(fl, hdr, entries)
				w.mu.Unlock()
				continue
			}
			wait = cfg.MaxInterval - age
		}
		w.mu.Unlock()
		if run != nil {
			if err := run(); err != nil {
				w.fail(err)
			}
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-w.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// headLocked drops fully cut entry items from the queue front and returns
// the first item with work left, or nil.
func (w *Writer) headLocked() *item {
	for len(w.mu.queue) > 0 {
		it := w.mu.queue[0]
		if it.op == opEntries && it.off == len(it.entries) {
			w.mu.queue = w.mu.queue[1:]
			continue
		}
		return it
	}
	return nil
}

// uploadingLocked counts fragments whose PUT has not finished; finished
// ones waiting for an earlier fragment's ack do not hold an upload slot.
func (w *Writer) uploadingLocked() int {
	n := 0
	for _, fl := range w.mu.inflight {
		if !fl.done {
			n++
		}
	}
	return n
}

func (w *Writer) hasOpAfterLocked() bool {
	for _, it := range w.mu.queue {
		if it.op != opEntries {
			return true
		}
	}
	return false
}

func (w *Writer) queuedEntriesLocked() int {
	n := 0
	for _, it := range w.mu.queue {
		if it.op != opEntries {
			break
		}
		n += len(it.entries) - it.off
	}
	return n
}

func (w *Writer) needRollLocked() bool {
	cfg := &w.c.cfg
	return w.mu.seg == 0 || w.mu.nextSeq >= uint64(cfg.SegmentMaxFragments) ||
		w.mu.segBytes >= cfg.SegmentMaxBytes ||
		(w.mu.nextSeq > 0 && time.Since(w.mu.segOpened) >= cfg.SegmentMaxAge)
}

// cutLocked takes the next fragment's worth of entries off the queue.
func (w *Writer) cutLocked() (*flight, codec.Header, [][]byte) {
	cfg := &w.c.cfg
	var entries [][]byte
	var futs []*Future
	size := 0
	var first uint64
	for _, it := range w.mu.queue {
		if it.op != opEntries {
			break
		}
		if len(entries) == 0 {
			first = it.first + uint64(it.off)
		}
		for it.off < len(it.entries) && len(entries) < cfg.MaxEntries {
			e := it.entries[it.off]
			if len(entries) > 0 && size+len(e) > cfg.MaxFlushSize {
				break
			}
			entries = append(entries, e)
			size += len(e)
			it.off++
		}
		if it.off < len(it.entries) {
			break
		}
		futs = append(futs, it.fut)
	}
	w.mu.queueBytes -= size
	w.mu.queueSince = time.Now()
	fl := &flight{seq: w.mu.nextSeq, first: first, last: first + uint64(len(entries)) - 1, size: size,
		key: codec.FragmentKey(w.prefix, w.mu.seg, w.mu.nextSeq), futs: futs}
	hdr := codec.Header{
		Kind: codec.KindData, Compression: cfg.Compression, LogID: w.logID, Segment: w.mu.seg,
		Seq: w.mu.nextSeq, Epoch: w.epoch, Nonce: w.nonce, FirstIndex: first, Count: uint32(len(entries)),
	}
	w.mu.nextSeq++
	w.mu.segBytes += int64(size)
	w.mu.inflight = append(w.mu.inflight, fl)
	return fl, hdr, entries
}

// upload encodes and writes one fragment, then records the outcome.
func (w *Writer) upload(fl *flight, hdr codec.Header, entries [][]byte) {
	data, err := codec.AppendFragment(nil, hdr, entries)
	if err == nil {
		err = w.put(fl.key, data)
	}
	if err == nil {
		m := w.c.metrics
		m.fragments.Inc()
		m.fragmentBytes.Observe(float64(len(data)))
		m.flushedEnts.Add(float64(len(entries)))
		w.c.stats.puts.Add(1)
		if f, derr := codec.DecodeTrusted(data); derr == nil { // our own bytes, just encoded
			w.c.frags.Add(fl.key, f, int64(len(data))+256)
		}
		var n int
		for _, e := range entries {
			n += len(e)
		}
		m.flushedBytes.Add(float64(n))
	}
	w.complete(fl, err)
}

// put writes a fragment with If-None-Match, retrying transient errors. A
// write answered "exists" is resolved by reading the key: our epoch and
// nonce mean an earlier attempt landed; anything else means we are fenced.
func (w *Writer) put(key string, data []byte) error {
	c := w.c
	ctx := w.bgCtx
	for rt := c.retrier(); ; {
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		_, err := c.cfg.Bucket.PutIfAbsent(actx, key, data)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, objstore.ErrExists) {
			c.frags.Remove(key)
			actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			f, ferr := c.fragment(actx, key)
			cancel()
			switch {
			case ferr == nil && f.Header.Kind == codec.KindData && f.Header.Epoch == w.epoch && f.Header.Nonce == w.nonce:
				return nil // our own earlier attempt landed
			case ferr == nil:
				return fmt.Errorf("%w: log %q: %s at %s written by epoch %d", ErrFenced, w.name, f.Header.Kind, key, f.Header.Epoch)
			case errors.Is(ferr, codec.ErrCorrupt), errors.Is(ferr, codec.ErrUnsupportedVersion):
				// Cannot tell whether our write landed: let recovery decide.
				return fmt.Errorf("%w: log %q: %w", ErrBroken, w.name, ferr)
			}
			err = ferr
		} else if errors.Is(err, objstore.ErrInvalidKey) || errors.Is(err, objstore.ErrClosed) {
			return fmt.Errorf("wal: log %q: write %s: %w", w.name, key, err)
		}
		c.cfg.Logger.Warn("wal: fragment write failed; retrying", "log", w.name, "key", key, "attempt", rt.attempt+1, "err", err)
		if !rt.again(ctx) {
			return fmt.Errorf("%w: log %q: write %s: %v", ErrBroken, w.name, key, err)
		}
		c.metrics.putRetries.Inc()
	}
}

// complete records a fragment's outcome and acknowledges, in order, every
// fragment at the front of the flight list that is done, resolving the
// futures whose last entry each holds.
//
// Invariant: w.mu.waiting is the unresolved append futures in index order,
// and the futures of the flight list, concatenated in order, are a prefix
// of it (the rest are of entries not yet fully cut).
func (w *Writer) complete(fl *flight, err error) {
	w.mu.Lock()
	fl.done, fl.err = true, err
	durableBefore := w.mu.durable
	var acked []*Future
	for len(w.mu.inflight) > 0 && w.mu.inflight[0].done && w.mu.err == nil {
		head := w.mu.inflight[0]
		if head.err != nil {
			w.failLocked(head.err)
			break
		}
		w.mu.inflight = w.mu.inflight[1:]
		w.mu.durable = head.last
		w.mu.ackedFrags = head.seq + 1
		w.mu.unacked -= head.size
		for _, f := range head.futs {
			if len(w.mu.waiting) == 0 || w.mu.waiting[0] != f {
				panic("wal: append futures out of order")
			}
			w.mu.waiting = w.mu.waiting[1:]
			acked = append(acked, f)
		}
	}
	if w.mu.err != nil {
		w.mu.inflight = nil
	}
	advanced := w.mu.durable != durableBefore
	if advanced {
		w.publishLocked() // before the acks: an acknowledged entry is readable
		w.space.Broadcast()
	}
	for _, f := range acked {
		w.c.metrics.appendLatency.Observe(time.Since(f.start).Seconds())
		f.resolve(nil)
	}
	w.mu.Unlock()
	if advanced {
		w.st.wake()
	}
	w.poke()
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
		err = w.mutate(ctx, func(r *logRecord) error {
			size := 0
			next := make(map[string][]byte, len(r.Meta)+len(it.kv))
			for k, v := range r.Meta {
				next[k] = v
			}
			for k, v := range it.kv {
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
		})
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
		for k := range r.Segments {
			s := &r.Segments[k]
			if s.State == segDeleted || (newSeg != 0 && s.ID == newSeg) {
				continue
			}
			if s.ID == cur && s.State == segOpen {
				s.State, s.Frags = segSealed, frags
				s.Last = w.DurableIndex()
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
		if newSeg == 0 {
			newSeg = r.NextSegment
		}
		if !r.hasSegment(newSeg) {
			r.NextSegment = max(r.NextSegment, newSeg+1)
			r.Segments = append(r.Segments, segRec{ID: newSeg, State: segOpen, Epoch: w.epoch, First: i + 1, Last: i})
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.mu.seg, w.mu.nextSeq, w.mu.ackedFrags, w.mu.segBytes, w.mu.segOpened = newSeg, 0, 0, 0, time.Now()
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
		}
		for k := range r.Segments {
			s := &r.Segments[k]
			if emptied && s.ID == cur && s.State == segOpen {
				s.State, s.Frags, s.Last = segSealed, frags, durable
			}
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
		w.mu.seg, w.mu.nextSeq, w.mu.ackedFrags, w.mu.dempty = 0, 0, 0, true
		w.mu.durable = 0
	}
	w.publishLocked()
	w.mu.Unlock()
	w.st.wake()
	return nil
}
