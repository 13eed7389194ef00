package wal

// Tiered mode (Config.LocalDir; docs/design.md, "Tiered mode"): the public
// Writer acknowledges on a local group commit (tierWriter, this file), and
// an object-synchronous Writer of the same log, the inner writer, is the
// uploader's way into the bucket (tier_upload.go). Recovery of a local
// tier is in tier_recover.go.
//
// Three goroutines and one lock (t.mu; lock order: t.mu, then the inner
// writer's locks):
//
//   - The API methods check each operation against the logical state
//     (everything accepted), give it the next LSN and queue it (pending).
//   - The local loop writes what is pending with one write and one
//     fdatasync (localtier.Tier.Write), applies it to the locally durable
//     state and the in-memory tail, and acknowledges in order.
//   - The uploader hands what is locally durable to the inner writer every
//     UploadInterval (or sooner: MaxFlushSize pending, a TruncateBack that
//     cuts handed entries, SyncUploaded, Close) as its net effect — one
//     truncation of each kind at most, then one append — and waits for it.
//
// Acknowledgements stay in call order: each operation's future resolves
// once it and every earlier one is ready. Entries and TruncateFront are
// ready when locally durable; a TruncateBack that cuts entries already
// handed to the inner writer is ready once the inner writer's record says
// so (so a lost disk can never bring back entries a returned TruncateBack
// removed); SetMeta once its compare-and-swap is done.

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/woodpecker-wal/woodpecker/wal/internal/localtier"
)

type tierOp struct {
	op      localtier.Op      // Kind 0: a SetMeta
	kv      map[string][]byte // SetMeta
	bytes   int               // payload of an entries op
	fut     *Future
	ready   bool
	err     error // a SetMeta rejected for its value: the caller's error only
	cutting bool  // a TruncateBack waiting for the inner writer's record
}

// memTail holds the locally durable entries not known to be in the bucket
// (and the ones handed and not yet acknowledged by it): entries[k] is index
// base+k, appended by the op with LSN lsns[k]. Readers get immutable
// snapshots: a cut clips the slices, so a later append never writes into
// an array a snapshot may share.
type memTail struct {
	base    uint64
	entries [][]byte
	lsns    []uint64
}

// apply updates m for op, which took the log from before to after.
func (m *memTail) apply(before, after localtier.State, op localtier.Op) {
	switch op.Kind {
	case localtier.KindEntries:
		if before.Empty || m.base+uint64(len(m.entries)) != op.Index {
			m.base, m.entries, m.lsns = op.Index, nil, nil
		}
		for _, e := range op.Entries {
			m.entries = append(m.entries, e)
			m.lsns = append(m.lsns, op.LSN)
		}
	case localtier.KindTruncateBack, localtier.KindTruncateFront:
		if after.Empty {
			m.base, m.entries, m.lsns = after.Next, nil, nil
			return
		}
		if end := m.base + uint64(len(m.entries)); after.Next < end {
			if after.Next <= m.base {
				m.base, m.entries, m.lsns = after.Next, nil, nil
			} else {
				k := after.Next - m.base
				m.entries, m.lsns = slices.Clip(m.entries[:k]), slices.Clip(m.lsns[:k])
			}
		}
		m.trimBelow(after.First)
	}
}

// trimBelow drops the entries below index i.
func (m *memTail) trimBelow(i uint64) {
	if i <= m.base {
		return
	}
	k := min(i-m.base, uint64(len(m.entries)))
	m.entries, m.lsns, m.base = m.entries[k:], m.lsns[k:], m.base+k
}

func (m *memTail) get(i uint64) ([]byte, uint64, bool) {
	if i < m.base || i-m.base >= uint64(len(m.entries)) {
		return nil, 0, false
	}
	return m.entries[i-m.base], m.lsns[i-m.base], true
}

// tailView is what a tiered writer adds to the log's view: the locally
// durable bounds and the in-memory tail. Immutable once published.
type tailView struct {
	first, last uint64 // locally durable; last < first when empty
	mem         memTail
	cuts        uint64 // TruncateBacks that removed entries, locally
}

type tierWriter struct {
	c     *Client
	name  string
	inner *Writer
	lt    *localtier.Tier
	shell *Writer // the public writer

	mu    sync.Mutex
	cond  *sync.Cond // progress of any kind: acks, uploads, failure
	err   error
	close bool // Close was called
	// Logical state: everything accepted.
	log     localtier.State
	nextLSN uint64
	pending []*tierOp // accepted, not yet written locally (or, SetMeta, run)
	waiting []*tierOp // not yet resolved, in call order
	lastFut *Future
	// Locally durable state.
	local      localtier.State
	durableLSN uint64
	mem        memTail
	cuts       uint64
	// What is handed to the inner writer, and what changed since.
	handed   localtier.State
	handLSN  uint64
	keep     uint64 // lowest TruncateBack point into handed entries since the last hand
	cutSince bool   // keep is set
	emptied  bool   // the log was emptied since the last hand
	flight   *tierBatch
	// Uploaded: the inner writer acknowledged everything up to uploadedLSN.
	uploadedLSN uint64
	lagBytes    int
	lagQ        []lagMark
	uploadNow   bool
	upKick      chan struct{}
	localDone   chan struct{}
	upDone      chan struct{}
	localKick   chan struct{}
	tail        atomic.Pointer[tailView]
	commits     uint64
	uploads     uint64
	unhanded    int  // payload locally durable and not yet handed
	committing  bool // a group commit is being written (by the local loop or a synchronous appender)
}

type lagMark struct {
	lsn   uint64
	at    time.Time
	bytes int
}

type tierBatch struct {
	lsn     uint64
	lastIdx uint64 // the inner writer's last index once the batch applies (0: empty)
	cut     uint64 // lowest index a local TruncateBack cut since the hand
	cuts    []*tierOp
}

func (l *Log) localDir() string {
	return filepath.Join(l.c.cfg.LocalDir, filepath.FromSlash(l.c.cfg.Prefix), l.name)
}

// newTierWriter starts the loops of a tiered writer whose inner writer and
// local tier agree (after recovery): the log is st, and LSN nextLSN comes
// next.
func newTierWriter(c *Client, name string, inner *Writer, lt *localtier.Tier, st localtier.State) *tierWriter {
	t := &tierWriter{
		c: c, name: name, inner: inner, lt: lt,
		log: st, local: st, handed: st, nextLSN: lt.NextLSN(),
		upKick: make(chan struct{}, 1), localKick: make(chan struct{}, 1),
		localDone: make(chan struct{}), upDone: make(chan struct{}),
	}
	t.durableLSN, t.handLSN, t.uploadedLSN = t.nextLSN-1, t.nextLSN-1, t.nextLSN-1
	t.mem.base = st.Next
	t.cond = sync.NewCond(&t.mu)
	t.shell = &Writer{c: c, st: inner.st, author: inner.author, owner: inner.owner, tier: t}
	t.mu.Lock()
	t.publishLocked()
	t.mu.Unlock()
	c.tiers.Store(t, struct{}{})
	go t.localLoop()
	go t.uploadLoop()
	return t
}

// TierStats is a tiered writer's progress (Writer.TierStats).
type TierStats struct {
	// DurableIndex is the last locally durable index; UploadedIndex the last
	// one the bucket holds.
	DurableIndex, UploadedIndex uint64
	// LagEntries, LagBytes and LagAge are what is acknowledged and not yet
	// uploaded: entries, payload bytes, and the age of the oldest.
	LagEntries uint64
	LagBytes   int
	LagAge     time.Duration
	// Commits is the number of local group commits (one fdatasync each);
	// Uploads the batches made durable in the bucket.
	Commits, Uploads uint64
}

func (t *tierWriter) stats() TierStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TierStats{UploadedIndex: t.inner.DurableIndex(), LagBytes: t.lagBytes, Commits: t.commits, Uploads: t.uploads}
	if !t.local.Empty {
		s.DurableIndex = t.local.Next - 1
	}
	if s.DurableIndex > s.UploadedIndex {
		s.LagEntries = s.DurableIndex - s.UploadedIndex
	}
	s.LagAge, _ = t.lagLocked()
	return s
}

// TierStats returns a tiered writer's progress; zero without tiering.
func (w *Writer) TierStats() TierStats {
	if w.tier == nil {
		return TierStats{}
	}
	return w.tier.stats()
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (t *tierWriter) checkLocked() error {
	if t.err != nil {
		return t.err
	}
	if t.close {
		return ErrClosed
	}
	return nil
}

// failLocked makes err the writer's sticky failure: every unresolved
// operation fails with it.
func (t *tierWriter) failLocked(err error) {
	if t.err != nil {
		return
	}
	t.err = err
	for _, o := range t.waiting {
		o.fut.resolve(err)
	}
	t.waiting, t.pending = nil, nil
	t.inner.tierOf.Store(nil)
	t.inner.fail(err)
	t.cond.Broadcast()
	kick(t.localKick)
	kick(t.upKick)
	t.c.cfg.Logger.Warn("wal: tiered writer failed", "log", t.name, "err", err)
}

// enqueueLocked accepts op, and wakes the local loop when wake is set.
func (t *tierWriter) enqueueLocked(o *tierOp, wake bool) {
	o.fut = newFuture()
	o.fut.start = t.c.clock.Now()
	if o.op.Kind != 0 {
		o.op.LSN = t.nextLSN
		t.nextLSN++
		t.log = t.log.Apply(o.op)
	}
	t.pending = append(t.pending, o)
	t.waiting = append(t.waiting, o)
	t.lastFut = o.fut
	if wake {
		kick(t.localKick)
	}
}

func (t *tierWriter) lagLocked() (time.Duration, bool) {
	if len(t.lagQ) == 0 {
		return 0, false
	}
	return t.c.clock.Since(t.lagQ[0].at), true
}

func (t *tierWriter) appendAsync(first uint64, entries [][]byte) *Future {
	return t.appendCtx(context.Background(), first, entries, false)
}

// appendSync appends and, when it can, writes the group commit itself
// (leadLocked) before it returns the future.
func (t *tierWriter) appendSync(ctx context.Context, first uint64, entries [][]byte) *Future {
	return t.appendCtx(ctx, first, entries, true)
}

// appendCtx queues entries; while MaxUploadLag is reached it waits for the
// uploader, or for ctx (then the append is not queued). With lead, the
// caller writes the group commit itself when nobody else is (leadLocked).
func (t *tierWriter) appendCtx(ctx context.Context, first uint64, entries [][]byte, lead bool) *Future {
	n := 0
	for _, e := range entries {
		n += len(e)
	}
	cfg := &t.c.cfg
	t.mu.Lock()
	defer t.mu.Unlock()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			t.mu.Lock()
			t.cond.Broadcast()
			t.mu.Unlock()
		})
		defer stop()
	}
	for t.err == nil && !t.close {
		if ctx.Err() != nil {
			return failedFuture(ctx.Err())
		}
		age, lagging := t.lagLocked()
		if !lagging || (t.lagBytes+n <= cfg.MaxUploadLag && age <= cfg.MaxUploadLagTime) {
			break
		}
		t.uploadNow = true
		kick(t.upKick)
		t.c.metrics.tierBackpressure.Inc()
		t.cond.Wait()
	}
	if err := t.checkLocked(); err != nil {
		return failedFuture(err)
	}
	if err := checkAppend(t.name, cfg.MaxFlushSize, first, entries, t.log.Empty, t.log.Next); err != nil {
		return failedFuture(err)
	}
	o := &tierOp{op: localtier.Op{Kind: localtier.KindEntries, Index: first, Entries: entries}, bytes: n}
	t.enqueueLocked(o, !lead)
	t.lagBytes += n
	t.lagQ = append(t.lagQ, lagMark{lsn: o.op.LSN, at: o.fut.start, bytes: n})
	if lead {
		t.leadLocked()
	}
	return o.fut
}

// control queues a truncation or SetMeta made by next (nil: nothing to do)
// and waits for it.
func (t *tierWriter) control(ctx context.Context, next func() *tierOp) error {
	t.mu.Lock()
	if err := t.checkLocked(); err != nil {
		t.mu.Unlock()
		return err
	}
	o := next()
	if o == nil {
		t.mu.Unlock()
		return nil
	}
	t.enqueueLocked(o, true)
	t.mu.Unlock()
	if err := o.fut.Wait(ctx); err != nil {
		return err
	}
	return o.err
}

func (t *tierWriter) truncateBack(ctx context.Context, i uint64) error {
	return t.control(ctx, func() *tierOp {
		if t.log.Empty || i+1 >= t.log.Next {
			return nil
		}
		return &tierOp{op: localtier.Op{Kind: localtier.KindTruncateBack, Index: i}}
	})
}

func (t *tierWriter) truncateFront(ctx context.Context, i uint64) error {
	return t.control(ctx, func() *tierOp {
		if i <= t.log.First {
			return nil
		}
		return &tierOp{op: localtier.Op{Kind: localtier.KindTruncateFront, Index: i}}
	})
}

func (t *tierWriter) setMeta(ctx context.Context, kv map[string][]byte) error {
	return t.control(ctx, func() *tierOp { return &tierOp{kv: kv} })
}

// sync waits for everything accepted before it to be acknowledged.
func (t *tierWriter) sync(ctx context.Context) error {
	t.mu.Lock()
	if err := t.checkLocked(); err != nil {
		t.mu.Unlock()
		return err
	}
	fut := t.lastFut
	t.mu.Unlock()
	if fut == nil {
		return nil
	}
	if err := fut.Wait(ctx); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil && !errors.Is(t.err, ErrClosed) {
		return t.err
	}
	return nil
}

// syncUploaded waits until everything accepted before it is in the bucket.
func (t *tierWriter) syncUploaded(ctx context.Context) error {
	if err := t.sync(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	target := t.nextLSN - 1
	t.uploadNow = true
	kick(t.upKick)
	stop := context.AfterFunc(ctx, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer stop()
	for t.uploadedLSN < target && t.err == nil && ctx.Err() == nil {
		t.cond.Wait()
	}
	err := t.err
	t.mu.Unlock()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// resolveLocked resolves the longest ready prefix of waiting.
func (t *tierWriter) resolveLocked() {
	k := 0
	for ; k < len(t.waiting) && t.waiting[k].ready; k++ {
		t.waiting[k].fut.resolve(nil)
	}
	if k > 0 {
		t.waiting = t.waiting[k:]
		t.cond.Broadcast()
	}
}

// publishLocked publishes the locally durable state to the log's readers
// in this process (through the inner writer's view).
func (t *tierWriter) publishLocked() {
	v := &tailView{first: t.local.First, last: t.local.Next - 1, mem: t.mem, cuts: t.cuts}
	if t.local.Empty {
		v.first, v.last = 1, 0
	}
	t.inner.tierOf.Store(t)
	t.tail.Store(v)
	t.inner.mu.Lock()
	t.inner.publishLocked()
	t.inner.mu.Unlock()
	t.inner.st.wake()
}

// UploadedIndex returns, in tiered mode, the last index the bucket holds
// (what readers in other processes see); DurableIndex is the last locally
// durable one. Without tiering both are the same.
func (w *Writer) UploadedIndex() uint64 {
	if w.tier != nil {
		return w.tier.inner.DurableIndex()
	}
	return w.DurableIndex()
}

// SyncUploaded waits until everything queued before the call is in the
// bucket (Sync waits only until it is locally durable): for snapshot
// boundaries and before handing a log to another machine. Without tiering
// it is Sync.
func (w *Writer) SyncUploaded(ctx context.Context) error {
	if w.tier != nil {
		return w.tier.syncUploaded(ctx)
	}
	return w.Sync(ctx)
}
