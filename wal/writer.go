package wal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
)

// Future is the pending result of an asynchronous append or truncation.
type Future struct {
	done  chan struct{}
	err   error     // set before done is closed
	start time.Time // of an append: when it was queued, on the client's clock
}

func newFuture() *Future {
	return &Future{done: make(chan struct{})}
}

func (f *Future) resolve(err error) {
	f.err = err
	close(f.done)
}

func failedFuture(err error) *Future {
	f := newFuture()
	f.resolve(err)
	return f
}

// Done is closed when the result is known.
func (f *Future) Done() <-chan struct{} { return f.done }

// Err returns the result; call it after Done is closed.
func (f *Future) Err() error {
	<-f.done
	return f.err
}

// Wait waits for the result or for ctx. A ctx error does not cancel the
// operation.
func (f *Future) Wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Writer appends to one log. It is the log's only writer: opening it fenced
// every earlier one. Methods are safe for concurrent use; appends are
// ordered by the order of the calls.
//
// Where the code is: this file has the public API and the writer's life
// (open, failure, close). The API queues items that one goroutine, the
// flush loop (flush.go), turns into fragments through the stages cut
// (flush_1_cut.go), encode (flush_2_encode.go), put (flush_3_put.go) and
// complete (flush_4_complete.go), and into record updates (mutate.go);
// fencing an earlier writer is in fence.go, what readers in this process
// see in view.go.
type Writer struct {
	c      *Client
	st     *logState
	author        // name, prefix, logID, epoch, nonce: stamped on every fragment
	owner  uint64 // the owner token (WriterID.Owner)

	// tier is set on the public writer of a tiered log (Config.LocalDir):
	// every method goes to it. tierOf is set on that tier's inner writer,
	// the uploader's, whose published views it extends. unbudgeted makes the
	// inner writer retry without a time budget.
	tier       *tierWriter
	tierOf     atomic.Pointer[tierWriter]
	unbudgeted bool

	// casMu serializes record updates. Lock order: casMu, then mu.
	casMu sync.Mutex
	rec   *logRecord   // guarded by casMu: the record as last stored or re-read by mutate
	ver   meta.Version // guarded by casMu: rec's version in the metadata store

	space    *sync.Cond    // on mu: signalled when unacked bytes shrink or the writer stops
	kick     chan struct{} // wakes the flush loop; one pending kick is enough (capacity 1)
	done     chan struct{} // closed when the flush loop exits
	bgCtx    context.Context
	bgCancel context.CancelFunc // cancels bgCtx, under which the flush loop works, on failure or Close

	// mu guards the writer's state. While err is nil:
	//
	//   - inflight holds the fragments cut and not yet acknowledged, in
	//     sequence order, all of segment seg, with contiguous index
	//     ranges: inflight[0].first == durable+1, inflight[k+1].first ==
	//     inflight[k].last+1, inflight[0].seq == ackedFrags, and nextSeq
	//     == ackedFrags + len(inflight).
	//   - At most MaxFlushThreads of them are not done (their PUT has not
	//     returned), and at most 4×MaxFlushThreads are in flight at all.
	//   - unacked == queueBytes + the sizes of inflight; queueBytes is the
	//     payload of the uncut entries of queue (entries[off:] of each
	//     entry item).
	//   - waiting is every unresolved append future in index order, and the
	//     futs of inflight, concatenated in order, are a prefix of it.
	//   - A control item at the head of queue runs only with inflight
	//     empty, and a segment rolls only with inflight empty.
	//
	// Once err is set, the queue and waiting are failed and dropped, and
	// inflight is dropped with the next completion.
	mu struct {
		sync.Mutex
		// Logical state: what the log is once every queued item is applied.
		// The API methods change it as they queue items.
		first uint64 // first index
		next  uint64 // next index to append
		empty bool   // no entries; the next append may use any index

		// Physical state, owned by the flush loop.
		seg        uint64     // open segment id; 0 when none
		nextSeq    uint64     // sequence number of seg's next fragment
		segBytes   int64      // payload bytes cut into seg
		segOpened  time.Time  // when seg opened, on the client's clock (SegmentMaxAge)
		ackedFrags uint64     // fragments 0..ackedFrags-1 of seg are acknowledged
		durable    uint64     // last acknowledged index
		dfirst     uint64     // first index as durable in the record (readers see this)
		dempty     bool       // the log is empty as durable in the record
		rec        *logRecord // the record as last stored by mutate; immutable

		queue      []*item   // items not yet run (control) or cut (entries), in call order; fully cut ones wait at the front until the flush loop drops them
		queueBytes int       // payload bytes of uncut entries
		unacked    int       // payload bytes appended and not yet acknowledged (MaxQueueBytes)
		queueSince time.Time // start of the MaxInterval wait: the last cut, or the enqueue that found nothing uncut
		flushNow   bool      // cut what is queued without waiting for MaxInterval
		waiting    []*Future // append futures not yet resolved, in index order
		inflight   []*flight // fragments cut and not yet acknowledged, in seq order
		err        error     // sticky failure
		closing    bool      // Close was called: cut everything, then the loop exits
		closed     bool      // Close was called: no new items
		released   bool      // failed or closed: nothing is published any more
		last       *Future   // of the item enqueued last (Sync waits for it)
	}
}

// OpenWriter opens the log's exclusive writer: it takes a new epoch, fences
// the previous writer's open segment with a fence fragment at its lowest
// missing sequence number, seals it at its last durable entry and opens a
// new segment. Whatever the previous writer had acknowledged is kept; its
// later writes are void. Only one Writer per log may be open in a process.
//
// OpenWriter takes the log unconditionally. A writer that failed and wants
// its log back uses ReopenWriter (or Writer.Reopen), which never takes a
// log that someone else took meanwhile.
//
// In tiered mode (Config.LocalDir) the writer first recovers the log's
// local tier, if this directory holds one (see Config.LocalDir).
//
// If an earlier tiered writer may have lost acknowledged entries (its local
// tier is gone, or this writer took the log over from another local tier),
// the open fails with a *LostTailError naming the point After above which
// entries may be lost, and records that in the log's record; it keeps
// failing so, across crashes, until a writer opened with
// AcceptLostTail(After) clears it (Writer.ClearLostTail).
func (l *Log) OpenWriter(ctx context.Context, opts ...OpenOption) (*Writer, error) {
	return l.open(ctx, nil, opts)
}

// ReopenWriter opens the log's writer like OpenWriter, but only if nobody
// else opened a writer since the one id names: a conditional takeover for
// a writer that failed (ErrBroken) and resumes. It succeeds if the log is
// still the incarnation id.LogID and either still at epoch id.Epoch or at a
// later epoch that id.Owner's own earlier attempts took (a reopen whose
// fence write failed, or whose reply was lost, leaves such an epoch). If
// anyone else took the log, or it was deleted (and perhaps created again),
// it returns ErrFenced and changes nothing: the store that took the log
// over keeps it.
func (l *Log) ReopenWriter(ctx context.Context, id WriterID, opts ...OpenOption) (*Writer, error) {
	return l.open(ctx, &id, opts)
}

// OpenOption changes how OpenWriter and ReopenWriter open a writer.
type OpenOption func(*openOpts)

type openOpts struct {
	acceptLost  bool
	acceptAfter uint64
	// tierID is the local tier of a tiered writer (0: none); the record's
	// Tier naming it is this writer's own, not a takeover.
	tierID uint64
	// unbudgeted: the writer is a tiered writer's uploader.
	unbudgeted bool
}

// AcceptLostTail lets the writer open a log whose record says entries above
// after may be lost (a *LostTailError with that After). The marker stays
// until Writer.ClearLostTail: the caller decides when it is safe (a Raft
// node, once its cluster has caught it up).
func AcceptLostTail(after uint64) OpenOption {
	return func(o *openOpts) { o.acceptLost, o.acceptAfter = true, after }
}

func (l *Log) open(ctx context.Context, expect *WriterID, opts []OpenOption) (*Writer, error) {
	var o openOpts
	for _, f := range opts {
		f(&o)
	}
	if l.c.cfg.LocalDir != "" {
		return l.openTiered(ctx, expect, o)
	}
	return l.openWriter(ctx, expect, o)
}

// WriterID names a writer for ReopenWriter: the log incarnation (the random
// ID CreateLog chose), the epoch the writer held, and its owner token — a
// random number OpenWriter chooses and every reopen inherits, stored in the
// log record with each epoch it takes.
type WriterID struct {
	LogID, Epoch, Owner uint64
}

// ID returns what names this writer for ReopenWriter.
func (w *Writer) ID() WriterID { return WriterID{LogID: w.logID, Epoch: w.epoch, Owner: w.owner} }

// Reopen closes w and takes its log back with ReopenWriter(w.ID()): the
// way to resume after ErrBroken. It returns ErrFenced if another writer
// took the log meanwhile.
func (w *Writer) Reopen(ctx context.Context) (*Writer, error) {
	_ = w.Close() // its failure is why we reopen
	l := &Log{c: w.c, name: w.name, st: w.st}
	var opts []OpenOption
	if after, ok := w.LostTail(); ok {
		opts = append(opts, AcceptLostTail(after))
	}
	return l.ReopenWriter(ctx, w.ID(), opts...)
}

func (l *Log) openWriter(ctx context.Context, expect *WriterID, o openOpts) (*Writer, error) {
	c := l.c
	l.st.mu.Lock()
	if l.st.mu.writer != nil || l.st.mu.opening {
		l.st.mu.Unlock()
		return nil, fmt.Errorf("wal: log %q already has an open writer in this process", l.name)
	}
	l.st.mu.opening = true // reserved: a second OpenWriter would fence this one
	l.st.mu.Unlock()
	defer func() {
		l.st.mu.Lock()
		l.st.mu.opening = false
		l.st.mu.Unlock()
	}()

	// Take a new epoch: from now on every CAS of an older writer fails.
	owner := random64() | 1 // never 0, which older records hold
	if expect != nil {
		owner = expect.Owner
	}
	var rec *logRecord
	var ver meta.Version
	for {
		r, v, err := c.readRecord(ctx, l.name)
		if expect != nil && errors.Is(err, ErrLogNotFound) {
			return nil, fmt.Errorf("%w: log %q was deleted", ErrFenced, l.name)
		}
		if err != nil {
			return nil, err
		}
		if expect != nil && (r.ID != expect.LogID || (r.Epoch != expect.Epoch && r.Owner != expect.Owner) || r.Epoch < expect.Epoch) {
			return nil, fmt.Errorf("%w: log %q is incarnation %d at epoch %d; the writer held incarnation %d at epoch %d",
				ErrFenced, l.name, r.ID, r.Epoch, expect.LogID, expect.Epoch)
		}
		r.Epoch++
		r.Rev++
		r.Owner = owner
		b, _ := r.marshal()
		actx, cancel := c.requestCtx(ctx)
		v, err = c.cfg.Meta.Update(actx, c.metaKey(l.name), b, v)
		cancel()
		if errors.Is(err, meta.ErrPrecondition) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("wal: open writer %q: take epoch: %w", l.name, err)
		}
		rec, ver = r, v
		break
	}
	w := &Writer{
		c: c, st: l.st, owner: owner, rec: rec, ver: ver,
		author: author{name: l.name, prefix: c.logPrefix(rec), logID: rec.ID, epoch: rec.Epoch, nonce: random64()},
		kick:   make(chan struct{}, 1), done: make(chan struct{}), unbudgeted: o.unbudgeted,
	}
	w.bgCtx, w.bgCancel = context.WithCancel(context.Background())
	w.space = sync.NewCond(&w.mu.Mutex)
	w.mu.rec = rec
	start := c.clock.Now()

	// Fence and seal the previous writer's open segment.
	last := rec.First - 1
	if l, ok := rec.lastSealed(); ok {
		last = l
	}
	if s := rec.openSeg(); s != nil {
		g, segLast, err := c.fenceSegment(ctx, w.author, *s)
		if err != nil {
			w.bgCancel()
			return nil, err
		}
		last = segLast
		id := s.ID
		if err := w.mutate(ctx, func(r *logRecord) error {
			r.sealSegment(id, g, segLast)
			return nil
		}); err != nil {
			w.bgCancel()
			return nil, err
		}
	}
	if err := w.settleTier(ctx, last, o.tierID); err != nil {
		w.bgCancel()
		return nil, err
	}
	w.casMu.Lock()
	rec = w.rec.clone()
	w.casMu.Unlock()
	if lt := rec.LostTail; lt != nil && !(o.acceptLost && o.acceptAfter == lt.After) {
		w.bgCancel()
		return nil, &LostTailError{Log: l.name, After: lt.After, Epoch: lt.Epoch}
	}
	w.mu.first, w.mu.empty = rec.First, rec.Empty
	if rec.Empty || last < rec.First { // no entries: the next append may use any index
		w.mu.empty = true
		last = rec.First - 1
	}
	w.mu.next, w.mu.durable = last+1, last
	w.mu.dfirst, w.mu.dempty = w.mu.first, w.mu.empty
	if !w.mu.empty {
		if err := w.openSegment(ctx, last+1, nil); err != nil {
			w.bgCancel()
			return nil, err
		}
	}
	l.st.mu.Lock()
	l.st.mu.writer = w
	l.st.mu.Unlock()
	w.mu.Lock()
	w.publishLocked()
	w.mu.Unlock()
	l.st.wake()
	go w.flushLoop()
	c.cfg.Logger.Info("wal: writer opened", "log", l.name, "epoch", w.epoch,
		"first", w.mu.first, "last", last, "empty", w.mu.empty, "took", c.clock.Since(start))
	return w, nil
}

// AppendAsync queues entries at indexes first, first+1, ... and returns a
// Future resolved, in index order, when they are durable. first must be the
// log's last index + 1, or any index >= 1 when the log is empty. The writer
// keeps the entries' slices until the future resolves: do not modify them.
// It blocks while Config.MaxQueueBytes are appended and not yet durable.
func (w *Writer) AppendAsync(first uint64, entries [][]byte) *Future {
	if w.tier != nil {
		return w.tier.appendAsync(first, entries)
	}
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
	if err := checkAppend(w.name, w.c.cfg.MaxFlushSize, first, entries, w.mu.empty, w.mu.next); err != nil {
		return failedFuture(err)
	}
	if w.mu.empty {
		w.enqueueLocked(&item{op: opReset, arg: first, fut: newFuture()})
		w.mu.empty, w.mu.first, w.mu.next = false, first, first
	}
	w.mu.next = first + uint64(len(entries))
	w.mu.unacked += n
	fut := newFuture()
	fut.start = w.c.clock.Now()
	w.enqueueLocked(&item{op: opEntries, first: first, entries: entries, fut: fut})
	w.mu.waiting = append(w.mu.waiting, fut)
	for _, e := range entries {
		w.mu.queueBytes += len(e)
	}
	return fut
}

// checkAppend checks an append of entries at first to a log that is empty
// or whose next index is next.
func checkAppend(name string, maxEntry int, first uint64, entries [][]byte, empty bool, next uint64) error {
	if len(entries) == 0 {
		return fmt.Errorf("%w: append of no entries", ErrBadIndex)
	}
	for i, e := range entries {
		if len(e) > maxEntry {
			return fmt.Errorf("wal: entry %d is %d bytes, larger than MaxFlushSize %d", first+uint64(i), len(e), maxEntry)
		}
	}
	if first == 0 || first > ^uint64(0)-uint64(len(entries)) {
		return fmt.Errorf("%w: append at %d", ErrBadIndex, first)
	}
	if !empty && first != next {
		what := "leaves a gap"
		if first < next {
			what = "goes backwards (TruncateBack first)"
		}
		return fmt.Errorf("%w: log %q: append at %d %s; next index is %d", ErrBadIndex, name, first, what, next)
	}
	return nil
}

// Append appends entries starting at index first and returns when they are
// durable. It does not wait for MaxInterval: the entries go into the next
// fragment at once, with whatever else is pending.
func (w *Writer) Append(ctx context.Context, first uint64, entries [][]byte) error {
	if w.tier != nil {
		fut := w.tier.appendSync(ctx, first, entries)
		err := fut.Wait(ctx)
		if err == nil {
			w.c.metrics.syncLatency.Observe(w.c.clock.Since(fut.start).Seconds())
		}
		return err
	}
	fut := w.AppendAsync(first, entries)
	w.Flush()
	err := fut.Wait(ctx)
	if err == nil {
		w.c.metrics.syncLatency.Observe(w.c.clock.Since(fut.start).Seconds())
	}
	return err
}

// Flush asks for every queued entry to be written now, without waiting for
// MaxInterval. It does not wait for them to be durable.
func (w *Writer) Flush() {
	if w.tier != nil {
		return // the local group commit never waits
	}
	w.mu.Lock()
	w.mu.flushNow = true
	w.mu.Unlock()
	w.poke()
}

// Sync flushes and waits until everything queued before the call —
// appends, truncations and SetMeta — is durable. It returns the writer's
// failure, if that came first.
func (w *Writer) Sync(ctx context.Context) error {
	if w.tier != nil {
		return w.tier.sync(ctx)
	}
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
	if w.tier != nil {
		return w.tier.truncateBack(ctx, i)
	}
	return w.control(ctx, func() *item {
		if w.mu.empty || i+1 >= w.mu.next {
			return nil
		}
		if i < w.mu.first {
			w.mu.empty, w.mu.next = true, w.mu.first
		} else {
			w.mu.next = i + 1
		}
		return &item{op: opTruncateBack, arg: i, fut: newFuture()}
	})
}

// TruncateFront removes every entry below index i and returns when the new
// first index is durable. Truncating past the last index empties the log,
// after which the next append may use any index. Objects are deleted later
// by garbage collection.
func (w *Writer) TruncateFront(ctx context.Context, i uint64) error {
	if w.tier != nil {
		return w.tier.truncateFront(ctx, i)
	}
	return w.control(ctx, func() *item {
		if i <= w.mu.first {
			return nil
		}
		w.mu.first = i
		if i >= w.mu.next {
			w.mu.empty, w.mu.next = true, i
		}
		return &item{op: opTruncateFront, arg: i, fut: newFuture()}
	})
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
	if w.tier != nil {
		return w.tier.setMeta(ctx, cp)
	}
	return w.control(ctx, func() *item { return &item{op: opSetMeta, kv: cp, fut: newFuture()} })
}

// control queues the control item that next makes, unless the writer
// failed or closed, and waits for it to be durable. next runs under w.mu:
// it updates the logical state and returns the item, or nil when there is
// nothing to do.
func (w *Writer) control(ctx context.Context, next func() *item) error {
	w.mu.Lock()
	if err := w.checkLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	it := next()
	if it == nil {
		w.mu.Unlock()
		return nil
	}
	w.enqueueLocked(it)
	w.mu.Unlock()
	return it.fut.Wait(ctx)
}

// Meta returns the log's key/value state as of the last durable SetMeta.
// The returned map is the caller's; its values must not be modified.
func (w *Writer) Meta() map[string][]byte {
	if w.tier != nil {
		return w.tier.inner.Meta()
	}
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
	if t := w.tier; t != nil {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.log.Empty {
			return 0
		}
		return t.log.First
	}
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
	if t := w.tier; t != nil {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.log.Empty {
			return 0
		}
		return t.log.Next - 1
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.empty {
		return 0
	}
	return w.mu.next - 1
}

// DurableIndex returns the last acknowledged index.
func (w *Writer) DurableIndex() uint64 {
	if t := w.tier; t != nil {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.local.Next - 1
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.durable
}

// Epoch returns the writer's epoch.
func (w *Writer) Epoch() uint64 { return w.epoch }

// Close flushes and waits for every queued operation, then releases the
// log. It returns the writer's failure, if any. Close is idempotent.
func (w *Writer) Close() error {
	if w.tier != nil {
		return w.tier.closeWriter()
	}
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

func (w *Writer) snapshotRecord() *logRecord {
	w.casMu.Lock()
	defer w.casMu.Unlock()
	return w.rec.clone()
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
