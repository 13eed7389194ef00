package hashiraft

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/raftlog"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// Compile-time checks: Store is a drop-in for raft's stores.
var (
	_ raft.LogStore               = (*Store)(nil)
	_ raft.StableStore            = (*Store)(nil)
	_ raft.MonotonicLogStore      = (*Store)(nil)
	_ raft.CommitTrackingLogStore = (*Store)(nil)
)

// ErrClosed is returned by every method of a closed Store.
var ErrClosed = errors.New("hashiraft: store closed")

// DefaultLogName is the WAL log a Store uses when Options.LogName is empty.
const DefaultLogName = "raft"

// Options configures a Store. Zero values mean the documented defaults.
type Options struct {
	// LogName is the WAL log holding the Raft log and the StableStore
	// values; snapshots live beside it in the bucket. One Raft node, one
	// log name. Default "raft"; 1 to 64 bytes of [0-9a-z_].
	LogName string
	// CallTimeout bounds each call from raft (its interfaces take no
	// context), including everything it waits for: the engine's retries
	// of transient failures, which ride out up to the client's
	// wal.Config.RetryBudget of outage, and the reopening of a writer that
	// failed. It must be at least that budget, or a call would give up
	// while the engine still retries: New and Open refuse a shorter one.
	// For snapshots it bounds each chunk and each metadata request, not
	// the whole stream. Default: the client's RetryBudget plus one
	// RequestTimeout (40s with the engine's defaults); 30s for a
	// SnapshotStore made by NewSnapshotStore, which has no client.
	CallTimeout time.Duration
	// Logger receives lifecycle records (Info) and retries (Warn). nil
	// discards. NewHclogHandler adapts raft's hclog.Logger.
	Logger *slog.Logger
	// WAL configures the client Open creates (New ignores it): batching,
	// caches, retries. WAL.Bucket and WAL.Meta must be nil (the URLs name
	// the stores); a nil WAL.Logger takes Logger.
	WAL wal.Config

	// TailCacheBytes bounds a cache of the most recently stored entries,
	// which GetLog serves without going through the WAL (replication and
	// apply read them). Default 16 MiB; negative disables it. Older entries
	// come from the WAL's fragment cache (WAL.CacheBytes).
	TailCacheBytes int

	// SnapshotRetain is how many snapshots the SnapshotStore keeps; older
	// ones are deleted after a newer one is published. Default 2.
	SnapshotRetain int
	// SnapshotChunkSize is the size of the objects a snapshot is written
	// in, and so the most a sink or reader holds in memory. Default 8 MiB;
	// at most 15 MiB (each chunk is a single-part PUT).
	SnapshotChunkSize int
}

func (o Options) withDefaults() Options {
	if o.LogName == "" {
		o.LogName = DefaultLogName
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WAL.Logger == nil {
		o.WAL.Logger = o.Logger
	}
	if o.TailCacheBytes == 0 {
		o.TailCacheBytes = 16 << 20
	}
	if o.SnapshotRetain == 0 {
		o.SnapshotRetain = 2
	}
	if o.SnapshotChunkSize == 0 {
		o.SnapshotChunkSize = 8 << 20
	}
	return o
}

func (o Options) validate() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("hashiraft: Options.%s = %v: %s", field, v, why)
	}
	if err := logstore.ValidateLogName(o.LogName); err != nil {
		return bad("LogName", fmt.Sprintf("%q", o.LogName), "want 1 to 64 bytes of [0-9a-z_]")
	}
	switch {
	case o.CallTimeout < 0:
		return bad("CallTimeout", o.CallTimeout, "must not be negative")
	case o.SnapshotRetain < 1:
		return bad("SnapshotRetain", o.SnapshotRetain, "must be at least 1")
	case o.SnapshotChunkSize < 1 || o.SnapshotChunkSize > 15<<20:
		return bad("SnapshotChunkSize", o.SnapshotChunkSize, "want 1 byte to 15 MiB")
	}
	return nil
}

// Store is a hashicorp/raft LogStore, StableStore, MonotonicLogStore and
// CommitTrackingLogStore over one WAL log, and (through Snapshots) a
// SnapshotStore over the same bucket. It holds the log's exclusive writer:
// opening a Store fences any earlier Store of the same log, in any process,
// and from then on the earlier one cannot change the log or the stable
// values.
//
// All methods are safe for concurrent use: raft calls GetLog from one
// goroutine per follower while its main goroutine appends and truncates.
// Mutations (StoreLogs, DeleteRange, Set, SetUint64) are serialized. Each
// call runs under Options.CallTimeout; transient failures are retried inside
// it (see the package documentation for which layer retries what),
// reopening the writer (which resolves what an ambiguous write left) when
// the WAL gives up on it. A reopen is a conditional takeover: it names the
// log incarnation and epoch of the writer the Store held, and finds the log
// taken over if another process opened it meanwhile.
//
// Errors are wrapped with the operation and index, except raft's sentinel
// raft.ErrLogNotFound, which GetLog returns unwrapped because raft compares
// it with ==. A fenced Store (logstore.ErrFenced: another Store opened the log,
// before or during a failure of this one) fails every later mutation.
type Store struct {
	c     logstore.Client
	owned bool // Open created c; Close closes it
	name  string
	opts  Options
	lg    *slog.Logger
	log   logstore.Log
	snaps *SnapshotStore

	staged atomic.Uint64 // commit index for the next StoreLogs
	tail   *tailCache    // recent entries, encoded

	// Index bounds as of the last completed mutation (0, 0 when empty),
	// readable without waiting for one in progress.
	first, last atomic.Uint64

	closed atomic.Bool

	// mu serializes mutations and the writer's replacement.
	mu struct {
		sync.Mutex
		w       logstore.Writer   // the log's writer; nil after a failure until reopened
		closing chan struct{}     // closed when the dropped writer's Close returned
		dead    error             // permanent failure (fenced): every mutation fails with it
		held    logstore.WriterID // the writer last opened, which a reopen names
		// rollback, when pending, is where the log must end (0: empty)
		// before the next mutation: a StoreLogs that failed may have left a
		// prefix of its entries, which raft never saw acknowledged.
		rollback struct {
			pending bool
			last    uint64
		}
		stable map[string][]byte // StableStore values as of the last durable SetMeta
	}
}

// Open opens a Store over stores named by URLs (see wal.OpenURL; an empty
// metaURL keeps the metadata in the bucket). The Store owns the client and
// closes it on Close.
//
//	s, err := hashiraft.Open(ctx, "file:///var/lib/app/raft", "", hashiraft.Options{})
//	r, err := raft.NewRaft(conf, fsm, s, s, s.Snapshots(), trans)
func Open(ctx context.Context, bucketURL, metaURL string, opts Options) (*Store, error) {
	d := opts.withDefaults()
	if err := d.validate(); err != nil {
		return nil, err
	}
	s, err := raftlog.OpenEmbedded(ctx, bucketURL, metaURL, d.WAL, func(c logstore.Client) (*Store, error) {
		return New(ctx, c, d.LogName, opts) // New defaults CallTimeout from the client's budget
	})
	if err != nil {
		return nil, err
	}
	s.owned = true
	return s, nil
}

// New opens a Store on log logName of an existing client (which it does not
// close), creating the log if it is missing. logName overrides
// Options.LogName when not empty; Options.WAL is ignored. ctx bounds the
// opening only.
func New(ctx context.Context, c logstore.Client, logName string, opts Options) (*Store, error) {
	if logName != "" {
		opts.LogName = logName
	}
	var err error
	if opts.CallTimeout, err = raftlog.CallTimeout("hashiraft", opts.CallTimeout, c.Limits()); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	name := opts.LogName
	l, err := raftlog.OpenOrCreate(ctx, c, name)
	if err != nil {
		return nil, fmt.Errorf("hashiraft: %w", err)
	}
	snaps, err := NewSnapshotStore(c.Blobs(name), "snapshots", opts)
	if err != nil {
		return nil, err
	}
	s := &Store{c: c, name: name, opts: opts, lg: opts.Logger, log: l, snaps: snaps}
	s.tail = newTailCache(opts.TailCacheBytes)
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := l.OpenWriter(ctx) // the only unconditional takeover: see writerLocked
	if err != nil {
		return nil, fmt.Errorf("hashiraft: open writer of log %q: %w", name, err)
	}
	s.useWriterLocked(w)
	s.lg.Info("hashiraft: store opened", "log", name, "first", s.first.Load(), "last", s.last.Load())
	return s, nil
}

// Snapshots returns the SnapshotStore kept beside the log, under
// "<prefix>/<log name>/snapshots/" in the client's bucket.
func (s *Store) Snapshots() *SnapshotStore { return s.snaps }

// Close closes the writer (waiting for nothing but its
// own queue: every acknowledged call is already durable) and, for a Store
// made by Open, the client. Later calls fail with ErrClosed. Close is
// idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	w, closing := s.mu.w, s.mu.closing
	s.mu.w, s.mu.closing = nil, nil
	s.mu.Unlock()
	var err error
	if w != nil {
		if cerr := w.Close(); cerr != nil && !errors.Is(cerr, logstore.ErrFenced) {
			err = fmt.Errorf("hashiraft: close log %q: %w", s.name, cerr)
		}
	}
	if closing != nil {
		<-closing
	}
	if s.owned {
		if cerr := s.c.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	s.lg.Info("hashiraft: store closed", "log", s.name)
	return err
}

// callCtx returns the context of one raft call.
func (s *Store) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.opts.CallTimeout)
}

// permanent reports whether err cannot go away by retrying.
func permanent(err error) bool {
	for _, target := range []error{
		logstore.ErrFenced, logstore.ErrBadIndex, logstore.ErrCorrupt, logstore.ErrUnsupportedVersion,
		logstore.ErrLogNotFound, ErrClosed, objstore.ErrInvalidKey, errRejected,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// errRejected marks an argument the store refuses (not an I/O failure).
var errRejected = errors.New("hashiraft: rejected")

// writerLocked returns the open writer, reopening the log if the last one
// failed: the new writer fences the old one's segment and recovers exactly
// what it made durable. Only the first writer, which New opens, takes the
// log unconditionally; a reopen is a conditional takeover naming the writer
// the store held (wal.Log.ReopenWriter), so a store that failed never takes
// the log back from another process that opened it meanwhile: it is fenced
// instead, for good. REQUIRES: s.mu held.
func (s *Store) writerLocked(ctx context.Context) (logstore.Writer, error) {
	if s.mu.dead != nil {
		return nil, s.mu.dead
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if s.mu.w != nil {
		return s.mu.w, nil
	}
	if s.mu.closing != nil {
		select {
		case <-s.mu.closing:
			s.mu.closing = nil
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the failed writer to close: %w", ctx.Err())
		}
	}
	w, err := s.log.ReopenWriter(ctx, s.mu.held)
	if errors.Is(err, logstore.ErrFenced) {
		s.mu.dead = fmt.Errorf("hashiraft: log %q: %w", s.name, err)
		s.lg.Info("hashiraft: log taken over by another writer while this store's writer was down; every later mutation fails",
			"log", s.name, "err", err)
		return nil, s.mu.dead
	}
	if err != nil {
		return nil, err
	}
	s.useWriterLocked(w)
	return w, nil
}

// useWriterLocked makes w, just opened, the store's writer and takes up the
// state it recovered. REQUIRES: s.mu held.
func (s *Store) useWriterLocked(w logstore.Writer) {
	s.mu.held = w.ID()
	s.mu.w = w
	s.mu.stable = w.Meta()
	s.refreshBoundsLocked()
}

// dropWriterLocked abandons the writer after a failure. Its Close (which
// waits for its queue) runs in the background; the next writerLocked waits
// for it, then reopens the log. REQUIRES: s.mu held.
func (s *Store) dropWriterLocked(cause error) {
	w := s.mu.w
	if w == nil {
		return
	}
	s.mu.w = nil
	done := make(chan struct{})
	s.mu.closing = done
	go func() {
		defer close(done)
		_ = w.Close() // its error is cause, or what the reopened writer recovers
	}()
	if errors.Is(cause, logstore.ErrFenced) {
		s.mu.dead = fmt.Errorf("hashiraft: log %q: %w", s.name, cause)
		s.lg.Info("hashiraft: store fenced by a newer writer; every later mutation fails", "log", s.name, "err", cause)
	}
}

// refreshBoundsLocked copies the writer's bounds into the atomics.
// REQUIRES: s.mu held and s.mu.w open.
func (s *Store) refreshBoundsLocked() {
	first, last := s.mu.w.FirstIndex(), s.mu.w.LastIndex()
	if s.mu.rollback.pending && last > s.mu.rollback.last {
		last = s.mu.rollback.last // what a failed StoreLogs left is not the log raft knows
	}
	if first == 0 || last < first { // empty (or a reset that appended nothing)
		first, last = 0, 0
	}
	s.first.Store(first)
	s.last.Store(last)
}

// mutateLocked runs fn with the writer, retrying transient failures until
// the call's deadline. After a failure fn runs again on a reopened writer, so
// it must compute what is left to do from the writer's state. The engine's
// retries inside each attempt, and each reopen, run under that one
// deadline: however often the writer breaks and is reopened, the call
// rides out at most CallTimeout of outage. REQUIRES: s.mu held.
func (s *Store) mutateLocked(op string, fn func(ctx context.Context, w logstore.Writer) error) error {
	ctx, cancel := s.callCtx()
	defer cancel()
	start := time.Now()
	var err error
	rt := raftlog.CallRetry.Retrier()
	for {
		attempt := rt.Attempt()
		var w logstore.Writer
		if w, err = s.writerLocked(ctx); err == nil {
			if err = s.rollbackLocked(ctx, w); err == nil {
				err = fn(ctx, w)
			}
			if err == nil {
				s.refreshBoundsLocked()
				if attempt > 1 {
					s.lg.Info("hashiraft: recovered", "log", s.name, "op", op, "attempts", attempt)
				}
				return nil
			}
			if permanent(err) && !errors.Is(err, logstore.ErrFenced) {
				s.refreshBoundsLocked()
				return fmt.Errorf("hashiraft: %s: %w", op, err)
			}
			// The writer failed, was fenced, or the call timed out with an
			// operation queued: its outcome is unknown until a new writer
			// recovers the log.
			s.dropWriterLocked(err)
		}
		if permanent(err) {
			if s.mu.dead != nil {
				return s.mu.dead
			}
			return fmt.Errorf("hashiraft: %s: %w", op, err)
		}
		if ctx.Err() == nil {
			s.lg.Warn("hashiraft: retrying", "log", s.name, "op", op, "attempt", attempt, "err", err)
		}
		if !rt.Again(ctx) {
			return fmt.Errorf("hashiraft: %s: gave up after %d attempts in %s: %w",
				op, attempt, time.Since(start).Round(time.Millisecond), err)
		}
	}
}

// rollbackLocked removes what a failed StoreLogs may have left beyond the
// end raft knows of. REQUIRES: s.mu held.
func (s *Store) rollbackLocked(ctx context.Context, w logstore.Writer) error {
	if !s.mu.rollback.pending {
		return nil
	}
	to := s.mu.rollback.last
	lo, hi := w.FirstIndex(), w.LastIndex()
	if lo != 0 && hi >= lo && hi > to {
		s.lg.Info("hashiraft: removing what a failed StoreLogs left", "log", s.name, "from", to+1, "last", hi)
		s.tail.dropFrom(to + 1)
		var err error
		if to < lo {
			err = w.TruncateFront(ctx, hi+1) // the log was empty: empty it again
		} else {
			err = w.TruncateBack(ctx, to)
		}
		if err != nil {
			return err
		}
	}
	s.mu.rollback.pending = false
	return nil
}

// FirstIndex returns the first index in the log, 0 when it is empty. It
// reads memory and never fails.
func (s *Store) FirstIndex() (uint64, error) { return s.first.Load(), nil }

// LastIndex returns the last index in the log, 0 when it is empty. It reads
// memory and never fails.
func (s *Store) LastIndex() (uint64, error) { return s.last.Load(), nil }

// GetLog reads entry index into out. It returns exactly raft.ErrLogNotFound
// (unwrapped) when the index is outside the log; transient failures are
// retried until Options.CallTimeout, and only a failure that outlasts it, a
// corrupt entry or a closed store is returned as another error. out's
// slices are the caller's. Recent entries come from the WAL's fragment
// cache.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	if s.closed.Load() {
		return ErrClosed
	}
	// Nothing above the end raft saw acknowledged is served: a StoreLogs
	// that failed may have left part of its batch in the bucket (and in a
	// reopened writer's view) until the next mutation rolls it back, and
	// raft treats a found entry as part of its log.
	if index == 0 || index > s.last.Load() {
		return raft.ErrLogNotFound
	}
	if b, ok := s.tail.get(index); ok {
		return s.decode(index, b, out)
	}
	ctx, cancel := s.callCtx()
	defer cancel()
	start := time.Now()
	rt := raftlog.CallRetry.Retrier()
	for {
		attempt := rt.Attempt()
		b, err := s.log.Get(ctx, index)
		if err == nil {
			return s.decode(index, b, out)
		}
		if errors.Is(err, logstore.ErrTruncated) || errors.Is(err, logstore.ErrOutOfRange) {
			return raft.ErrLogNotFound
		}
		if permanent(err) {
			return fmt.Errorf("hashiraft: log %q: get %d: %w", s.name, index, err)
		}
		if !rt.Again(ctx) {
			return fmt.Errorf("hashiraft: log %q: get %d: gave up after %d attempts in %s: %w",
				s.name, index, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		s.lg.Warn("hashiraft: read failed; retrying", "log", s.name, "index", index, "attempt", attempt, "err", err)
	}
}

func (s *Store) decode(index uint64, b []byte, out *raft.Log) error {
	var l raft.Log
	if _, err := decodeEntry(b, &l); err != nil {
		return fmt.Errorf("hashiraft: log %q: entry %d: %w", s.name, index, err)
	}
	if l.Index != index {
		return fmt.Errorf("hashiraft: log %q: %w: entry %d holds raft index %d", s.name, logstore.ErrCorrupt, index, l.Index)
	}
	*out = l
	return nil
}

// StoreLog stores one entry; see StoreLogs.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries with consecutive indexes, durably and all or
// nothing, before it returns. A first index at or below LastIndex first
// removes the log from there on (raft rewrites a suffix with a higher term);
// into an empty log the entries may start at any index; a first index beyond
// LastIndex+1 (a gap, which a monotonic store never has) drops the whole log
// first, as raft would have done after installing a snapshot.
//
// A write whose outcome is unknown is resolved inside the call: the writer
// is reopened, which recovers exactly what landed, and the rest is appended.
// If the call still fails at its deadline (the store unreachable all along),
// a prefix of the entries may have landed: the next mutation removes it
// before doing anything else, so the log is again what raft last saw
// acknowledged. (Only if the process dies first does it survive, as an
// uncommitted tail of this node's log, which Raft tolerates.)
//
// The commit index staged with StageCommitIndex is stored in each entry.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	first := logs[0].Index
	if first == 0 {
		return fmt.Errorf("hashiraft: store logs: %w: index 0", errRejected)
	}
	commit := s.staged.Load()
	size := 0
	for _, l := range logs {
		size += entrySize(l)
	}
	buf := make([]byte, 0, size) // one allocation for the whole batch
	enc := make([][]byte, len(logs))
	for k, l := range logs {
		if l.Index != first+uint64(k) {
			return fmt.Errorf("hashiraft: store logs: %w: indexes not consecutive (%d at position %d after %d)", errRejected, l.Index, k, first)
		}
		n := len(buf)
		buf = appendEntry(buf, l, commit)
		enc[k] = buf[n:len(buf):len(buf)]
	}
	last := first + uint64(len(logs)) - 1

	s.mu.Lock()
	defer s.mu.Unlock()
	prevLast := s.last.Load() // the end raft knows of
	// prepared: the log ends right before first (or is empty), durably;
	// from then on whatever lies in [first, LastIndex] is ours.
	prepared := false
	err := s.mutateLocked(fmt.Sprintf("store logs [%d, %d]", first, last), func(ctx context.Context, w logstore.Writer) error {
		lo, hi := w.FirstIndex(), w.LastIndex()
		empty := lo == 0 || hi < lo
		if !prepared {
			switch {
			case empty || hi+1 == first:
			case first <= hi:
				s.lg.Debug("hashiraft: store logs truncates the suffix first", "log", s.name, "from", first, "last", hi)
				s.tail.dropFrom(first)
				if err := w.TruncateBack(ctx, first-1); err != nil {
					return err
				}
			default:
				s.lg.Warn("hashiraft: store logs leaves a gap; dropping the log first", "log", s.name, "first", lo, "last", hi, "append", first)
				s.tail.reset()
				if err := w.TruncateFront(ctx, hi+1); err != nil {
					return err
				}
			}
			prepared = true
			lo, hi = w.FirstIndex(), w.LastIndex()
			empty = lo == 0 || hi < lo
		}
		start := first
		if !empty && hi >= first { // an earlier attempt landed up to hi
			start = hi + 1
		}
		if start > last {
			return nil
		}
		before := w.LastIndex()
		err := w.Append(ctx, start, enc[start-first:])
		if err != nil && ctx.Err() == nil && !permanent(err) && !errors.Is(err, logstore.ErrBroken) && w.LastIndex() == before {
			// Refused before anything was queued, and not for a sentinel
			// reason: the input (an entry larger than the WAL's
			// MaxFlushSize). Retrying cannot help.
			return fmt.Errorf("%w: %v", errRejected, err)
		}
		return err
	})
	switch {
	case err == nil:
		s.tail.add(first, enc)
	case s.mu.dead == nil && !errors.Is(err, errRejected):
		// Whatever landed of the batch goes before the next mutation (if
		// the store is reachable by then), so the log is again what raft
		// last saw acknowledged.
		s.mu.rollback.pending, s.mu.rollback.last = true, min(prevLast, first-1)
	}
	return err
}

// DeleteRange removes entries min through max, inclusive. A prefix (min at
// or below FirstIndex) moves FirstIndex to max+1; a suffix (max at or beyond
// LastIndex) moves LastIndex to min-1; both empty the log, after which the
// next StoreLogs may start at any index. A range strictly inside the log is
// an error: the log is dense. Transient failures are retried until
// Options.CallTimeout (raft ignores a failed wipe after installing a
// snapshot, so giving up early would leave stale entries behind).
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mutateLocked(fmt.Sprintf("delete range [%d, %d]", min, max), func(ctx context.Context, w logstore.Writer) error {
		first, last := w.FirstIndex(), w.LastIndex()
		if first == 0 || last < first || max < first || min > last {
			return nil // nothing there (or an earlier attempt removed it)
		}
		switch {
		case min <= first && max >= last:
			s.tail.reset()
			return w.TruncateFront(ctx, max+1) // past the end: empties the log
		case min <= first:
			err := w.TruncateFront(ctx, max+1)
			s.tail.dropBelow(max + 1) // a deleted prefix may still be read meanwhile: it is right
			return err
		case max >= last:
			s.tail.dropFrom(min)
			return w.TruncateBack(ctx, min-1)
		default:
			return fmt.Errorf("%w: [%d, %d] is strictly inside the log [%d, %d]; only a prefix or a suffix can be deleted",
				errRejected, min, max, first, last)
		}
	})
}

// IsMonotonic reports true: the log is dense, so raft removes all entries
// after restoring a snapshot instead of leaving an index gap.
func (s *Store) IsMonotonic() bool { return true }

// StageCommitIndex stages the commit index stored with the entries of the
// next StoreLogs call, in the same objects, so it is exactly as durable as
// they are.
func (s *Store) StageCommitIndex(idx uint64) error {
	s.staged.Store(idx)
	return nil
}

// GetCommitIndex returns the commit index stored with the last entry, capped
// at LastIndex; 0 for an empty log or when none was staged. raft calls it
// once at startup (Config.RestoreCommittedLogs).
func (s *Store) GetCommitIndex() (uint64, error) {
	last := s.last.Load()
	if last == 0 {
		return 0, nil
	}
	if s.closed.Load() {
		return 0, ErrClosed
	}
	ctx, cancel := s.callCtx()
	defer cancel()
	var err error
	for rt := raftlog.CallRetry.Retrier(); ; {
		b, ok := s.tail.get(last)
		if ok {
			err = nil
		} else {
			b, err = s.log.Get(ctx, last)
		}
		if err == nil {
			var l raft.Log
			commit, err := decodeEntry(b, &l)
			if err != nil {
				return 0, fmt.Errorf("hashiraft: log %q: entry %d: %w", s.name, last, err)
			}
			return min(commit, last), nil
		}
		if errors.Is(err, logstore.ErrTruncated) || errors.Is(err, logstore.ErrOutOfRange) {
			// Raced with a truncation: read the new last entry.
			if last = s.last.Load(); last == 0 {
				return 0, nil
			}
		} else if permanent(err) {
			return 0, fmt.Errorf("hashiraft: log %q: commit index: read entry %d: %w", s.name, last, err)
		}
		if !rt.Again(ctx) {
			return 0, fmt.Errorf("hashiraft: log %q: commit index: read entry %d: %w", s.name, last, err)
		}
	}
}

// Stable keys live in the WAL log's key/value state under these prefixes:
// printable keys as they are, others hex-encoded. Part of the stored format.
const (
	stablePrefix    = "stable:"
	stableHexPrefix = "stable.hex:"
)

func stableKey(key []byte) string {
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return stableHexPrefix + hex.EncodeToString(key)
		}
	}
	if len(key) == 0 {
		return stableHexPrefix
	}
	return stablePrefix + string(key)
}

// Set durably stores val under key: one compare-and-swap of the log's
// metadata record under the writer's epoch, so a fenced (zombie) Store can
// never change it. Setting a nil or empty value removes the key.
func (s *Store) Set(key, val []byte) error {
	k := stableKey(key)
	var v []byte
	if len(val) > 0 {
		v = append([]byte{}, val...)
	}
	if len(k)+len(v) > s.c.Limits().MaxMetaSize/2 {
		return fmt.Errorf("hashiraft: set %q: %w: %d bytes is too large for the stable store", key, errRejected, len(v))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mutateLocked(fmt.Sprintf("set %q", key), func(ctx context.Context, w logstore.Writer) error {
		if err := w.SetMeta(ctx, map[string][]byte{k: v}); err != nil {
			return err
		}
		if v == nil {
			delete(s.mu.stable, k)
		} else {
			s.mu.stable[k] = v
		}
		return nil
	})
}

// Get returns a copy of the value stored under key, from memory. A missing
// key is (nil, nil), as raft-wal answers.
func (s *Store) Get(key []byte) ([]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.w == nil && s.mu.dead == nil { // a failed writer: the values come back with the next
		ctx, cancel := s.callCtx()
		defer cancel()
		if _, err := s.writerLocked(ctx); err != nil {
			return nil, fmt.Errorf("hashiraft: get %q: %w", key, err)
		}
	}
	v, ok := s.mu.stable[stableKey(key)]
	if !ok {
		return nil, nil
	}
	return append([]byte{}, v...), nil
}

// SetUint64 stores val under key as 8 big-endian bytes (the layout
// raft-boltdb uses); see Set.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored under key; a missing key is
// (0, nil). A value of another length is an error.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil || v == nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("hashiraft: get uint64 %q: value is %d bytes, not 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
