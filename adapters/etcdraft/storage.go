package etcdraft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/raftlog"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("etcdraft: storage closed")

// ErrWriteFailed is wrapped by the error of a mutator that failed for a
// reason that may go away: the stores were unreachable for longer than the
// engine's retry budget or the call's CallTimeout. What it wrote has an
// unknown outcome — the durable state is one of the steps the mutator makes
// (see Crash safety in the package documentation), as after a crash there
// — but the Storage stays usable: the next mutator reopens the log, takes
// up the state the reopened writer recovered, and goes on. Retry when it
// suits (a Raft loop saves the same Ready again). The reopen is a
// conditional takeover: if another writer opened the log meanwhile, it and
// every later mutator fail with an error wrapping logstore.ErrFenced instead.
var ErrWriteFailed = errors.New("etcdraft: write failed; the next write reopens the log")

// Options configures a Storage. Zero values mean the documented defaults.
type Options struct {
	// LogName names the WAL log holding this node's Raft log: 1 to 64 bytes
	// of [0-9a-z_]. Default "raft". Snapshot data objects live under
	// "snap/" among the log's blobs (logstore.Client.Blobs; for the embedded
	// engine "<prefix>/<LogName>/snap/" in the bucket).
	LogName string
	// CallTimeout bounds each call's I/O (raft.Storage has no context),
	// including the engine's retries of transient failures, which ride out
	// up to the client's wal.Config.RetryBudget of outage. It must be at
	// least that budget, or a call would give up while the engine still
	// retries: New and Open refuse a shorter one. Default: the client's
	// RetryBudget plus one RequestTimeout (40s with the engine's defaults).
	CallTimeout time.Duration
	// TailCacheBytes bounds the adapter's cache of decoded entries at the
	// tail of the log (the last entry is always kept). Older entries are read
	// through the WAL, whose fragment cache spares repeated GETs.
	// Default 16 MiB; a negative value keeps only the last entry.
	TailCacheBytes int64
	// Logger receives lifecycle (Info) and trouble (Warn/Error) records; nil
	// discards. Open also hands it to the WAL unless WAL.Logger is set.
	Logger *slog.Logger
	// WAL configures the client that Open creates (its Bucket and Meta must
	// be nil: the URLs name the stores). Its janitor collects the garbage of
	// compacted segments every WAL.GCInterval (default a minute). Ignored by
	// New, which uses the caller's client.
	WAL wal.Config
}

func (o Options) withDefaults() Options {
	if o.LogName == "" {
		o.LogName = "raft"
	}
	if o.TailCacheBytes == 0 {
		o.TailCacheBytes = 16 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	if err := logstore.ValidateLogName(o.LogName); err != nil {
		return fmt.Errorf("etcdraft: Options.LogName: %w", err)
	}
	if o.CallTimeout < 0 {
		return fmt.Errorf("etcdraft: Options.CallTimeout = %v: must not be negative", o.CallTimeout)
	}
	return nil
}

// Storage is a durable raft.Storage over one WAL log, with MemoryStorage's
// mutators and a crash-safe Save for a whole Ready. See the package doc.
//
// All methods are safe for concurrent use. Mutators (Append, ApplySnapshot,
// CreateSnapshot, Compact, SetHardState, Save) are serialized among
// themselves. Reads see each mutator's durable steps as they complete; they
// never wait for a mutator's I/O, except that a read going to the WAL (an
// entry older than the tail cache) waits while a mutator replaces entries
// (an overwriting append or a snapshot install), so it never mixes old and
// new entries.
type Storage struct {
	client     logstore.Client
	owned      bool // Open created client; Close closes it
	log        logstore.Log
	name       string
	blobs      logstore.Blobs // the log's blobs: snapshot objects
	snapPrefix string         // "snap/", where they are in blobs
	opts       Options
	logger     *slog.Logger

	// wmu serializes mutators and is held across their I/O. Lock order: wmu,
	// then mu. The fields in mu are written only with both held, so a holder
	// of wmu may read them without mu.
	wmu     sync.Mutex
	w       logstore.Writer   // the log's writer; nil after a failed write until the next mutator reopens it; guarded by wmu
	held    logstore.WriterID // the writer last opened, which a reopen names; guarded by wmu
	closing chan struct{}     // closed when the abandoned writer's Close returned; guarded by wmu
	failed  error             // why the writer was abandoned; guarded by wmu
	dead    error             // permanent failure (fenced, or inconsistent): every mutator fails with it; guarded by wmu
	closed  bool              // guarded by wmu

	loadMu sync.Mutex // serializes loads of snapshot data

	mu struct {
		sync.RWMutex
		closed bool
		hs     *pb.HardState // nil until one is set
		snap   snapState
		ls     logState
		last   uint64 // last index; == ls.off when the log holds no entry

		// tail caches the newest entries of the log. Invariant:
		// tail.First()+tail.Len() == last+1 and tail.First() > ls.off.
		tail raftlog.Tail[*pb.Entry]

		// rw is a sequence lock for readers going to the WAL: odd while a
		// mutator replaces entries (TruncateBack for an overwrite, or a
		// snapshot reset), bumped again when done. A reader that saw rw
		// change retries. rwDone is closed when rw becomes even.
		rw     uint64
		rwDone chan struct{}
	}
}

// entrySize is the size the tail cache counts an entry at.
func entrySize(e *pb.Entry) int64 { return int64(proto.Size(e)) }

type snapState struct {
	rec    snapRecord
	data   []byte // valid when loaded
	loaded bool
}

var _ raft.Storage = (*Storage)(nil)

// Open opens (creating if needed) the Raft storage named opts.LogName over
// stores named by URLs (see wal.OpenURL; an empty metaURL keeps metadata in
// the bucket). The Storage owns the client and closes it on Close.
func Open(ctx context.Context, bucketURL, metaURL string, opts Options) (*Storage, error) {
	d := opts.withDefaults()
	if err := d.validate(); err != nil {
		return nil, err
	}
	wcfg := d.WAL
	if wcfg.Logger == nil {
		wcfg.Logger = d.Logger
	}
	s, err := raftlog.OpenEmbedded(ctx, bucketURL, metaURL, wcfg, func(c logstore.Client) (*Storage, error) {
		return New(ctx, c, d.LogName, opts) // New defaults CallTimeout from the client's budget
	})
	if err != nil {
		return nil, err
	}
	s.owned = true
	return s, nil
}

// New opens (creating if needed) the Raft storage in log logName of client
// (opts.LogName is ignored). It takes the log's writer, fencing any earlier
// one, and recovers the state an earlier process left: it finishes an
// interrupted compaction or snapshot reset and deletes snapshot objects no
// longer referenced. The client stays the caller's. ctx bounds the opening
// only.
func New(ctx context.Context, client logstore.Client, logName string, opts Options) (*Storage, error) {
	opts.LogName = logName
	var err error
	if opts.CallTimeout, err = raftlog.CallTimeout("etcdraft", opts.CallTimeout, client.Limits()); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	l, err := raftlog.OpenOrCreate(ctx, client, logName)
	if err != nil {
		return nil, fmt.Errorf("etcdraft: %w", err)
	}
	w, err := l.OpenWriter(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcdraft: %w", err)
	}
	s := &Storage{
		client: client, log: l, w: w, held: w.ID(), name: logName,
		blobs: client.Blobs(logName), snapPrefix: "snap/",
		opts: opts, logger: opts.Logger,
	}
	s.mu.tail = raftlog.Tail[*pb.Entry]{Max: opts.TailCacheBytes, KeepLast: true}
	s.mu.rwDone = make(chan struct{})
	close(s.mu.rwDone)
	start := time.Now()
	if err := s.takeUpLocked(ctx); err != nil {
		w.Close()
		return nil, err
	}
	s.logger.Info("etcdraft: storage opened", "log", s.name, "first", s.mu.ls.off+1, "last", s.mu.last,
		"snapshot", s.mu.snap.rec.md.GetIndex(), "gen", s.mu.ls.gen, "took", time.Since(start))
	return s, nil
}

// recovered is the state recovery finds in the log: what the Storage
// shows once it takes it up.
type recovered struct {
	hs   *pb.HardState // nil when none was set
	snap snapState
	ls   logState
	last uint64
	warm []*pb.Entry // the newest entries of the log, ending at last
	// clean brings the WAL in line with ls and last (finishing an
	// interrupted compaction or snapshot reset); nil when it already is.
	clean func(ctx context.Context) error
}

// recoverState reads the state from the log's metadata record, as s.w
// recovered it, and finds how the WAL must change to hold exactly the
// entries (off, last]. It only reads. REQUIRES: wmu (or no other user).
func (s *Storage) recoverState(ctx context.Context) (recovered, error) {
	var r recovered
	m := s.w.Meta()
	if b, ok := m[metaHardState]; ok {
		hs, err := decodeHardState(b)
		if err != nil {
			return r, err
		}
		r.hs = hs
	}
	r.snap.rec.md = pb.EnsureSnapshotMetadata(nil)
	if b, ok := m[metaSnap]; ok {
		rec, err := decodeSnapRecord(b)
		if err != nil {
			return r, err
		}
		r.snap.rec = rec
	}
	r.snap.loaded = r.snap.rec.key == ""
	if r.snap.loaded && r.snap.rec.hasData {
		r.snap.data = []byte{}
	}
	if b, ok := m[metaLog]; ok {
		ls, err := decodeLogState(b)
		if err != nil {
			return r, err
		}
		r.ls = ls
	}
	off, gen := r.ls.off, r.ls.gen
	r.last = off
	first, last := s.w.FirstIndex(), s.w.LastIndex()
	switch {
	case last == 0: // empty WAL
	case last <= off: // every entry was compacted or replaced by a snapshot
		r.clean = s.emptyWAL
	default:
		probe := max(first, off+1)
		b, err := s.read(ctx, probe)
		if err != nil {
			return r, fmt.Errorf("etcdraft: recover: read entry %d: %w", probe, err)
		}
		_, egen, err := decodeEntry(b, probe)
		if err != nil {
			return r, err
		}
		switch {
		case egen != gen:
			// A snapshot reset was recorded but the WAL not yet emptied:
			// its entries belong to the history the snapshot replaced.
			s.logger.Info("etcdraft: discarding entries of a replaced log", "log", s.name,
				"first", first, "last", last, "gen", egen, "current_gen", gen)
			r.clean = s.emptyWAL
		case first > off+1:
			return r, corrupt("log %q: WAL starts at %d but the compaction point is %d", s.name, first, off)
		default:
			if first <= off { // finish an interrupted compaction
				r.clean = func(ctx context.Context) error {
					if err := s.w.TruncateFront(ctx, off+1); err != nil {
						return fmt.Errorf("etcdraft: recover: %w", err)
					}
					return nil
				}
			}
			r.last = last
		}
	}
	if err := s.warm(ctx, &r); err != nil {
		return r, err
	}
	return r, nil
}

// warmEntries is how many tail entries recovery loads into the cache.
const warmEntries = 256

// warm loads up to warmEntries of the newest entries of r's log into
// r.warm, for the tail cache.
func (s *Storage) warm(ctx context.Context, r *recovered) error {
	last := r.last
	if last == r.ls.off {
		return nil
	}
	from := max(r.ls.off+1, last-min(last, warmEntries-1))
	r.warm = make([]*pb.Entry, 0, last-from+1)
	for i := from; i <= last; i++ {
		e, err := s.fetch(ctx, i)
		if err != nil {
			return fmt.Errorf("etcdraft: recover: %w", err)
		}
		r.warm = append(r.warm, e)
	}
	return nil
}

// takeUpLocked recovers the state s.w found in the log and makes it the
// Storage's: readers see it at once and whole (a reader that raced with it
// starts over), then the WAL is brought in line with it, and snapshot
// objects it no longer references are deleted. REQUIRES: wmu (or no other
// user).
func (s *Storage) takeUpLocked(ctx context.Context) error {
	r, err := s.recoverState(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.beginRewriteLocked()
	if cur := s.mu.snap; cur.loaded && cur.rec.key != "" && cur.rec.key == r.snap.rec.key {
		r.snap.data, r.snap.loaded = cur.data, true // the same snapshot: keep its data
	}
	s.mu.hs, s.mu.snap, s.mu.ls, s.mu.last = r.hs, r.snap, r.ls, r.last
	first := r.last + 1 - uint64(len(r.warm))
	s.mu.tail.Reset(first)
	s.mu.tail.Append(first, r.warm, entrySize)
	s.endRewriteLocked()
	s.mu.Unlock()
	if r.clean != nil {
		// The entries it removes are outside the state just published:
		// no reader asks for them.
		if err := r.clean(ctx); err != nil {
			return err
		}
	}
	s.sweepSnapshots(ctx)
	if hs := r.hs; hs != nil && hs.GetCommit() > r.last {
		s.logger.Warn("etcdraft: recovered HardState.Commit is beyond the last index", "log", s.name,
			"commit", hs.GetCommit(), "last", r.last)
	}
	return nil
}

// resumeLocked reopens the log after a failed write and takes up the state
// the reopened writer recovered. The reopen names the writer the Storage
// held (wal.Log.ReopenWriter): if another writer opened the log meanwhile,
// the Storage is fenced for good. REQUIRES: wmu, s.w == nil.
func (s *Storage) resumeLocked(ctx context.Context) error {
	if s.closing != nil {
		select {
		case <-s.closing:
			s.closing = nil
		case <-ctx.Done():
			return fmt.Errorf("%w: log %q: waiting for the failed writer to close: %w", ErrWriteFailed, s.name, ctx.Err())
		}
	}
	start := time.Now()
	w, err := s.log.ReopenWriter(ctx, s.held)
	if errors.Is(err, logstore.ErrFenced) {
		s.dead = fmt.Errorf("etcdraft: log %q was taken over by another writer while this storage's writer was down "+
			"(after: %v); this storage can no longer write it: %w", s.name, s.failed, err)
		s.logger.Info("etcdraft: log taken over by another writer; every later mutator fails", "log", s.name, "err", err)
		return s.dead
	}
	if err != nil {
		return fmt.Errorf("%w: reopen log %q: %w", ErrWriteFailed, s.name, err)
	}
	s.w, s.held = w, w.ID()
	if err := s.takeUpLocked(ctx); err != nil {
		return s.fail(fmt.Errorf("etcdraft: reopen log %q: %w", s.name, err))
	}
	s.logger.Info("etcdraft: storage resumed after a failed write", "log", s.name, "first", s.mu.ls.off+1,
		"last", s.mu.last, "snapshot", s.mu.snap.rec.md.GetIndex(), "gen", s.mu.ls.gen,
		"failure", s.failed, "took", time.Since(start))
	s.failed = nil
	return nil
}

// emptyWAL removes every entry from the WAL, so the next append may start at
// any index.
func (s *Storage) emptyWAL(ctx context.Context) error {
	if s.w.LastIndex() == 0 {
		return nil
	}
	if err := s.w.TruncateBack(ctx, 0); err != nil {
		return fmt.Errorf("etcdraft: empty WAL: %w", err)
	}
	return nil
}

// read returns the encoded entry i from the WAL. The engine does not retry
// reads: read retries those that may succeed later (a failed or timed-out
// GET) with backoff until ctx is done.
func (s *Storage) read(ctx context.Context, i uint64) ([]byte, error) {
	var b []byte
	_, err := raftlog.Retry{Policy: raftlog.CallRetry, Permanent: func(err error) bool { return !retryableRead(err) },
		OnRetry: func(attempt int, err error) {
			s.logger.Warn("etcdraft: read failed; retrying", "log", s.name, "index", i, "attempt", attempt, "err", err)
		}}.Do(ctx, func(ctx context.Context) error {
		var err error
		b, err = s.log.Get(ctx, i)
		return err
	})
	return b, err
}

// retryableRead reports whether a failed read may succeed if repeated.
func retryableRead(err error) bool {
	for _, target := range []error{
		logstore.ErrTruncated, logstore.ErrOutOfRange, logstore.ErrCorrupt, logstore.ErrUnsupportedVersion, logstore.ErrLogNotFound,
		logstore.ErrClosed, objstore.ErrNotFound, objstore.ErrInvalidKey, context.Canceled, context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return false
		}
	}
	return true
}

// fetch reads and decodes entry i from the WAL.
func (s *Storage) fetch(ctx context.Context, i uint64) (*pb.Entry, error) {
	b, err := s.read(ctx, i)
	if err != nil {
		return nil, err
	}
	e, _, err := decodeEntry(b, i)
	return e, err
}

func (s *Storage) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.opts.CallTimeout)
}

// Close flushes and releases the log's writer (and closes the client if Open
// created it). Methods called afterwards return ErrClosed. Close is
// idempotent.
func (s *Storage) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.mu.Lock()
	s.mu.closed = true
	s.mu.Unlock()
	var err error
	if s.w != nil {
		err = s.w.Close()
	}
	if s.closing != nil {
		<-s.closing // the abandoned writer: its failure was reported
	}
	if errors.Is(err, logstore.ErrFenced) {
		err = nil // another process took over: nothing of ours is pending
	}
	if s.owned {
		if cerr := s.client.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// InitialState implements raft.Storage. The HardState is nil until one was
// set; the ConfState is the snapshot's, never nil.
func (s *Storage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, nil, ErrClosed
	}
	var hs *pb.HardState
	if s.mu.hs != nil {
		hs = proto.CloneOf(s.mu.hs)
	}
	cs := pb.EnsureConfState(proto.CloneOf(s.mu.snap.rec.md.GetConfState()))
	return hs, cs, nil
}

// FirstIndex implements raft.Storage: the compaction point + 1.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return 0, ErrClosed
	}
	return s.mu.ls.off + 1, nil
}

// LastIndex implements raft.Storage.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return 0, ErrClosed
	}
	return s.mu.last, nil
}

// Term implements raft.Storage: the term of entry i for i in
// [FirstIndex()-1, LastIndex()]; exactly raft.ErrCompacted below and
// raft.ErrUnavailable above.
func (s *Storage) Term(i uint64) (uint64, error) {
	var ctx context.Context
	for {
		s.mu.RLock()
		switch {
		case s.mu.closed:
			s.mu.RUnlock()
			return 0, ErrClosed
		case i < s.mu.ls.off:
			s.mu.RUnlock()
			return 0, raft.ErrCompacted
		case i > s.mu.last:
			s.mu.RUnlock()
			return 0, raft.ErrUnavailable
		case i == s.mu.ls.off:
			t := s.mu.ls.offTerm
			s.mu.RUnlock()
			return t, nil
		case i >= s.mu.tail.First():
			e, _, _ := s.mu.tail.Get(i)
			t := e.GetTerm()
			s.mu.RUnlock()
			return t, nil
		}
		c0, done := s.mu.rw, s.mu.rwDone
		s.mu.RUnlock()
		if ctx == nil {
			var cancel context.CancelFunc
			ctx, cancel = s.callCtx()
			defer cancel()
		}
		if c0&1 == 1 {
			if err := waitCh(ctx, done); err != nil {
				return 0, err
			}
			continue
		}
		e, err := s.fetch(ctx, i)
		s.mu.RLock()
		changed, off := s.mu.rw != c0, s.mu.ls.off
		s.mu.RUnlock()
		switch {
		case changed:
			continue
		case err == nil:
			return e.GetTerm(), nil
		case i < off:
			return 0, raft.ErrCompacted
		case i == off:
			continue // compacted meanwhile: the term is in memory
		default:
			return 0, fmt.Errorf("etcdraft: term of entry %d: %w", i, err)
		}
	}
}

func waitCh(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("etcdraft: waiting for a concurrent write: %w", ctx.Err())
	}
}

// Entries implements raft.Storage: entries [lo, hi), at most maxSize bytes
// (proto.Size) but at least one. It returns exactly raft.ErrCompacted when lo
// is at or below the compaction point and exactly raft.ErrUnavailable when hi
// is beyond LastIndex()+1 or the log holds no entry (MemoryStorage panics on
// the former). The slice is the caller's; the entries must not be modified.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	var (
		ctx     context.Context
		out     []*pb.Entry
		size    uint64
		full    bool
		i       uint64
		c0      uint64
		started bool
	)
	add := func(e *pb.Entry, sz uint64) bool {
		if len(out) > 0 && size+sz > maxSize {
			full = true
			return false
		}
		size += sz
		out = append(out, e)
		return true
	}
	for {
		s.mu.RLock()
		if !started || s.mu.rw != c0 {
			if err := s.checkEntriesLocked(lo, hi); err != nil || lo == hi {
				s.mu.RUnlock()
				if err != nil {
					return nil, err
				}
				return []*pb.Entry{}, nil
			}
			if s.mu.rw&1 == 1 && lo < s.mu.tail.First() {
				done := s.mu.rwDone
				s.mu.RUnlock()
				if ctx == nil {
					var cancel context.CancelFunc
					ctx, cancel = s.callCtx()
					defer cancel()
				}
				if err := waitCh(ctx, done); err != nil {
					return nil, err
				}
				continue
			}
			c0, started = s.mu.rw, true
			i, size, full = lo, 0, false
			out = make([]*pb.Entry, 0, min(hi-lo, 64))
		}
		if full || i >= hi {
			s.mu.RUnlock()
			return out, nil
		}
		if i >= s.mu.tail.First() {
			for ; i < hi; i++ {
				e, size, _ := s.mu.tail.Get(i)
				if !add(e, uint64(size)) {
					break
				}
			}
			s.mu.RUnlock()
			return out, nil
		}
		end := min(hi, s.mu.tail.First())
		s.mu.RUnlock()

		if ctx == nil {
			var cancel context.CancelFunc
			ctx, cancel = s.callCtx()
			defer cancel()
		}
		var ferr error
		for ; i < end; i++ {
			e, err := s.fetch(ctx, i)
			if err != nil {
				ferr = err
				break
			}
			if !add(e, uint64(proto.Size(e))) {
				break
			}
		}
		if ferr != nil {
			s.mu.RLock()
			changed, off := s.mu.rw != c0, s.mu.ls.off
			s.mu.RUnlock()
			switch {
			case changed:
				started = false
				continue
			case lo <= off:
				return nil, raft.ErrCompacted
			case ctx.Err() != nil:
				return nil, fmt.Errorf("etcdraft: entries [%d, %d): %w", lo, hi, ferr)
			case errors.Is(ferr, logstore.ErrTruncated), errors.Is(ferr, logstore.ErrOutOfRange):
				// A racing compaction or overwrite not yet visible in rw
				// cannot happen (both are published before the WAL changes),
				// so this is a real inconsistency.
				return nil, fmt.Errorf("etcdraft: entries [%d, %d): entry %d missing from the WAL: %w", lo, hi, i, ferr)
			default:
				return nil, fmt.Errorf("etcdraft: entries [%d, %d): %w", lo, hi, ferr)
			}
		}
	}
}

// checkEntriesLocked mirrors MemoryStorage.Entries' checks, in its order.
func (s *Storage) checkEntriesLocked(lo, hi uint64) error {
	switch {
	case s.mu.closed:
		return ErrClosed
	case lo <= s.mu.ls.off:
		return raft.ErrCompacted
	case hi > s.mu.last+1:
		return raft.ErrUnavailable
	case s.mu.last == s.mu.ls.off:
		return raft.ErrUnavailable
	case lo > hi:
		return fmt.Errorf("etcdraft: Entries(lo=%d, hi=%d): lo > hi", lo, hi)
	}
	return nil
}

// Snapshot implements raft.Storage: the most recent snapshot. When its data
// cannot be read from the bucket right now it returns exactly
// raft.ErrSnapshotTemporarilyUnavailable (raft retries later) and logs why.
func (s *Storage) Snapshot() (*pb.Snapshot, error) {
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	st := s.mu.snap
	s.mu.RUnlock()
	if !st.loaded {
		data, err := s.loadSnapshot(st.rec)
		if err != nil {
			s.logger.Error("etcdraft: snapshot data unavailable", "log", s.name, "key", st.rec.key, "err", err)
			return nil, raft.ErrSnapshotTemporarilyUnavailable
		}
		st.data = data
	}
	snap := &pb.Snapshot{Metadata: pb.EnsureSnapshotMetadata(proto.CloneOf(st.rec.md))}
	if st.rec.hasData {
		snap.Data = append([]byte{}, st.data...)
	}
	return snap, nil
}
