package wal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// Future is the pending result of an asynchronous append or truncation.
type Future struct {
	done  chan struct{}
	err   error     // set before done is closed
	start time.Time // when the append was queued
}

func newFuture() *Future {
	return &Future{done: make(chan struct{}), start: time.Now()}
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

// Writer appends to one log. It is the log's only writer: opening it fenced
// every earlier one. Methods are safe for concurrent use; appends are
// ordered by the order of the calls.
type Writer struct {
	c      *Client
	name   string
	st     *logState
	prefix string // bucket key prefix of the log's fragments
	logID  uint64
	epoch  uint64
	nonce  uint64
	owner  uint64 // the owner token (WriterID.Owner)

	// casMu serializes record updates. Lock order: casMu, then mu.
	casMu sync.Mutex
	rec   *logRecord   // guarded by casMu
	ver   meta.Version // guarded by casMu

	space    *sync.Cond // on mu: signalled when unacked bytes shrink or the writer stops
	kick     chan struct{}
	done     chan struct{} // closed when the flusher exits
	bgCtx    context.Context
	bgCancel context.CancelFunc

	mu struct {
		sync.Mutex
		// Logical state: what the log is once every queued item is applied.
		first uint64 // first index
		next  uint64 // next index to append
		empty bool   // no entries; the next append may use any index

		// Physical state, owned by the flusher.
		seg        uint64 // open segment id; 0 when none
		nextSeq    uint64
		segBytes   int64
		segOpened  time.Time
		ackedFrags uint64     // fragments 0..ackedFrags-1 of seg are acknowledged
		durable    uint64     // last acknowledged index
		dfirst     uint64     // first index as durable in the record (readers see this)
		dempty     bool       // the log is empty as durable in the record
		rec        *logRecord // the record as last stored by mutate; immutable

		queue      []*item
		queueBytes int // payload bytes of uncut entries
		unacked    int // payload bytes appended and not yet acknowledged (MaxQueueBytes)
		queueSince time.Time
		flushNow   bool
		waiting    []*Future // append futures not yet resolved, in index order
		inflight   []*flight // in seq order
		err        error     // sticky failure
		closing    bool
		closed     bool
		released   bool    // failed or closed: nothing is published any more
		last       *Future // of the item enqueued last (Sync waits for it)
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
func (l *Log) OpenWriter(ctx context.Context) (*Writer, error) {
	return l.openWriter(ctx, nil)
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
func (l *Log) ReopenWriter(ctx context.Context, id WriterID) (*Writer, error) {
	return l.openWriter(ctx, &id)
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
	return l.ReopenWriter(ctx, w.ID())
}

func (l *Log) openWriter(ctx context.Context, expect *WriterID) (*Writer, error) {
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
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
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
		c: c, name: l.name, st: l.st, prefix: c.logPrefix(rec), logID: rec.ID,
		epoch: rec.Epoch, nonce: random64(), owner: owner, rec: rec, ver: ver,
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	w.bgCtx, w.bgCancel = context.WithCancel(context.Background())
	w.space = sync.NewCond(&w.mu.Mutex)
	w.mu.rec = rec
	start := time.Now()

	// Fence and seal the previous writer's open segment.
	last := rec.First - 1
	if l, ok := rec.lastSealed(); ok {
		last = l
	}
	if s := rec.openSeg(); s != nil {
		g, segLast, err := w.fenceSegment(ctx, *s)
		if err != nil {
			w.bgCancel()
			return nil, err
		}
		last = segLast
		id := s.ID
		if err := w.mutate(ctx, func(r *logRecord) error {
			for i := range r.Segments {
				if r.Segments[i].ID == id && r.Segments[i].State == segOpen {
					r.Segments[i].State, r.Segments[i].Last, r.Segments[i].Frags = segSealed, segLast, g
				}
			}
			return nil
		}); err != nil {
			w.bgCancel()
			return nil, err
		}
	}
	w.casMu.Lock()
	rec = w.rec.clone()
	w.casMu.Unlock()
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
		"first", w.mu.first, "last", last, "empty", w.mu.empty, "took", time.Since(start))
	return w, nil
}

func (w *Writer) snapshotRecord() *logRecord {
	w.casMu.Lock()
	defer w.casMu.Unlock()
	return w.rec.clone()
}

// fenceSegment ends segment s of an earlier writer: it writes a fence at the
// lowest sequence number g not holding a data fragment and returns g and the
// index of the last entry below it. Every fragment below g is valid data;
// anything above is void.
//
// The previous writer may still be writing (a zombie). Its fragments can
// land at g before the fence does; then the chase goes on above them. To
// overtake a busy zombie the fence is tried at a window of sequence numbers
// at once, doubling the window each round: the lowest of them where a fence
// lands (or an earlier fence already sits), with data in every slot below,
// ends the segment. Fences above it are void like any other fragment there.
func (w *Writer) fenceSegment(ctx context.Context, s segRec) (g, last uint64, err error) {
	c := w.c
	g, err = w.lowestFree(ctx, s.ID, 0)
	if err != nil {
		return 0, 0, err
	}
	fence := func(seq uint64) ([]byte, error) {
		return codec.AppendFragment(nil, codec.Header{
			Kind: codec.KindFence, LogID: w.logID, Segment: s.ID, Seq: seq, Epoch: w.epoch, Nonce: w.nonce,
		}, nil)
	}
	window := uint64(1)
	for rt := c.retrier(); ; {
		outcomes := make([]error, window)
		var wg sync.WaitGroup
		for k := uint64(0); k < window; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := fence(g + k)
				if err != nil {
					outcomes[k] = err
					return
				}
				actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
				defer cancel()
				_, outcomes[k] = c.cfg.Bucket.PutIfAbsent(actx, codec.FragmentKey(w.prefix, s.ID, g+k), f)
			}()
		}
		wg.Wait()
		end, found, retry := uint64(0), false, error(nil)
		for k := uint64(0); k < window && !found && retry == nil; k++ {
			switch perr := outcomes[k]; {
			case perr == nil:
				end, found = g+k, true
			case errors.Is(perr, objstore.ErrExists):
				actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
				info, herr := c.cfg.Bucket.Head(actx, codec.FragmentKey(w.prefix, s.ID, g+k))
				cancel()
				switch {
				case herr != nil:
					retry = herr
					g += k
				case info.Size == codec.FixedHeaderSize: // a fence or seal (ours, retried, or an earlier one)
					end, found = g+k, true
				}
				// else: data of the old writer that landed first; it counts.
			default:
				retry = perr // unknown outcome at g+k: resolve it before going higher
				g += k
			}
		}
		if found {
			g = end
			break
		}
		if retry == nil {
			// A busy old writer filled the whole window: skip what it landed.
			if g, err = w.lowestFree(ctx, s.ID, g+window); err != nil {
				return 0, 0, err
			}
			window = min(window*2, 64)
			continue
		}
		c.cfg.Logger.Warn("wal: fence write failed; retrying", "log", w.name, "segment", s.ID, "seq", g, "err", retry)
		if !rt.again(ctx) {
			return 0, 0, fmt.Errorf("wal: fence log %q segment %d at %d: %w", w.name, s.ID, g, retry)
		}
		c.metrics.putRetries.Inc()
		window = 1
	}
	last = s.First - 1
	if g > 0 {
		key := codec.FragmentKey(w.prefix, s.ID, g-1)
		f, err := c.fragment(ctx, key)
		if err != nil {
			return 0, 0, fmt.Errorf("wal: recover log %q: read tail fragment: %w", w.name, err)
		}
		last = f.Header.LastIndex()
	}
	c.metrics.recoveries.Inc()
	c.stats.segFenced.Add(1)
	c.cfg.Logger.Info("wal: fenced segment", "log", w.name, "segment", s.ID, "fence_seq", g, "last", last)
	return g, last, nil
}

// lowestFree returns the first sequence number at or above from in
// segment seg that holds no data fragment: a gap, or an existing fence or
// seal. REQUIRES: fragments below from hold data.
func (w *Writer) lowestFree(ctx context.Context, seg, from uint64) (uint64, error) {
	g, err := w.c.countFragmentsFrom(ctx, w.prefix, seg, from)
	if err != nil {
		return 0, fmt.Errorf("wal: fence log %q: %w", w.name, err)
	}
	return g, nil
}

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
	for rt := c.retrier(); ; {
		r := w.rec.clone()
		if err := fn(r); err != nil {
			return err
		}
		r.Rev = w.rec.Rev + 1
		b, err := r.marshal()
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
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
			if !rt.again(ctx) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%w: log %q: update record: %v", ErrBroken, w.name, err)
			}
		}
		rctx, rcancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		fresh, fv, rerr := c.readRecord(rctx, w.name)
		rcancel()
		if errors.Is(rerr, ErrLogNotFound) {
			return fmt.Errorf("%w: log %q was deleted", ErrFenced, w.name)
		}
		if rerr != nil {
			if !rt.again(ctx) {
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
		for i := range r.Segments {
			if s := &r.Segments[i]; s.ID == cur && s.State == segOpen {
				s.State, s.Frags, s.Last = segSealed, frags, durable
			}
		}
		if id == 0 {
			id = r.NextSegment
		}
		if !r.hasSegment(id) {
			r.NextSegment = max(r.NextSegment, id+1)
			r.Segments = append(r.Segments, segRec{ID: id, State: segOpen, Epoch: w.epoch, First: first, Last: first - 1})
		}
		if extra != nil {
			extra(r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.mu.seg, w.mu.nextSeq, w.mu.ackedFrags, w.mu.segBytes, w.mu.segOpened = id, 0, 0, 0, time.Now()
	w.publishLocked()
	w.mu.Unlock()
	return nil
}
