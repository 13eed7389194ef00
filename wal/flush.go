package wal

import "time"

// The flush pipeline. The writer's API methods (writer.go) queue items;
// one goroutine, flushLoop below, turns them into fragments and record
// updates. A batch of entries goes through four stages, one file each:
//
//  1. cut (flush_1_cut.go): flushLoop takes the next fragment's worth of
//     entries off the queue, under the writer's lock, and gives it the
//     segment's next sequence number;
//  2. encode (flush_2_encode.go): a goroutine per fragment encodes it;
//  3. put (flush_3_put.go): writes it with If-None-Match, retrying
//     transient failures within the retry budget;
//  4. complete (flush_4_complete.go): records the outcome and acknowledges,
//     strictly in sequence order, every fragment at the front that is done.
//
// Up to MaxFlushThreads fragments are between cut and complete at once.
// Control items (truncations, a reset of an emptied log, SetMeta) and
// segment rolls are record updates (mutate.go); flushLoop runs them itself,
// once nothing is in flight.

type opKind uint8

const (
	opEntries opKind = iota
	opTruncateBack
	opTruncateFront
	opReset
	opSetMeta
)

// item is one queued writer operation: a batch of entries or a control op.
// Control ops run only when every earlier item is durable.
type item struct {
	op      opKind
	first   uint64            // opEntries: index of entries[0]
	entries [][]byte          // opEntries
	off     int               // entries[:off] are already in fragments
	arg     uint64            // ops: the index argument
	kv      map[string][]byte // opSetMeta
	fut     *Future
}

// flight is one fragment being written.
type flight struct {
	seq, first, last uint64
	size             int // payload bytes
	key              string
	done             bool
	err              error
	// futs are the append futures whose last entry is in this fragment, in
	// index order: they resolve when this fragment is acknowledged (or fail
	// with the writer), never because some other fragment covering the same
	// indexes landed.
	futs []*Future
}

// enqueueLocked queues it for the flush loop and wakes the loop. A control
// item also asks for what is queued before it to be cut at once.
func (w *Writer) enqueueLocked(it *item) {
	if len(w.mu.queue) == 0 || w.mu.queueBytes == 0 {
		w.mu.queueSince = w.c.clock.Now()
	}
	w.mu.queue = append(w.mu.queue, it)
	w.mu.last = it.fut
	if it.op != opEntries {
		w.mu.flushNow = true
	}
	w.poke()
}

// poke wakes the flush loop, or leaves it a kick if it is busy.
func (w *Writer) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// flushLoop cuts queued entries into fragments, uploads up to
// MaxFlushThreads of them at once, rolls segments, and runs control
// operations once everything before them is durable.
//
// It is a state machine over the writer's state. Each turn it takes mu,
// looks at the head of the queue and does the first of these that applies:
//
//   - stop: the writer failed, or it is closing with nothing queued or in
//     flight: the loop exits (closing w.done, which Close waits for).
//   - idle: nothing is queued: wait for a kick.
//   - control: the head is a control item. Once nothing is in flight it
//     is taken off the queue and run (runOp, mutate.go); until then, wait
//     for complete's kick. A failure fails the writer.
//   - throttle: MaxFlushThreads PUTs have not returned, or 4×MaxFlushThreads
//     fragments are unacknowledged: wait for complete's kick.
//   - roll: no segment is open, or the open one is full (SegmentMaxFragments,
//     SegmentMaxBytes, or SegmentMaxAge on the client's clock once it holds
//     a fragment). Once nothing is in flight, seal it and open the next
//     (openSegment); until then, wait for complete's kick.
//   - cut: a trigger holds — Flush or a synchronous append (flushNow),
//     Close, MaxBytes or MaxEntries pending, MaxInterval passed since
//     queueSince, or a control item queued behind the entries: cut one
//     fragment and start its upload (encode, put, complete), then look
//     again at once.
//   - batch: otherwise wait for a kick, or until MaxInterval has passed on
//     the client's clock.
//
// Kicks come from enqueueLocked, Flush, Sync, Close, a full queue
// (AppendAsync) and complete; a spurious one only costs a turn.
func (w *Writer) flushLoop() {
	defer close(w.done)
	cfg := &w.c.cfg
	timer := w.c.clock.NewTimer(time.Hour)
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
			age := w.c.clock.Since(w.mu.queueSince)
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
		case <-timer.Chan():
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

// hasOpAfterLocked reports whether a control item is queued.
func (w *Writer) hasOpAfterLocked() bool {
	for _, it := range w.mu.queue {
		if it.op != opEntries {
			return true
		}
	}
	return false
}

// queuedEntriesLocked counts the uncut entries before the first control
// item: what the next cuts may take.
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

// needRollLocked reports whether the next fragment needs a new segment:
// none is open, or the open one reached SegmentMaxFragments or
// SegmentMaxBytes, or it holds a fragment and is SegmentMaxAge old on the
// client's clock.
func (w *Writer) needRollLocked() bool {
	cfg := &w.c.cfg
	return w.mu.seg == 0 || w.mu.nextSeq >= uint64(cfg.SegmentMaxFragments) ||
		w.mu.segBytes >= cfg.SegmentMaxBytes ||
		(w.mu.nextSeq > 0 && w.c.clock.Since(w.mu.segOpened) >= cfg.SegmentMaxAge)
}
