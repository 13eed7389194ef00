package wal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/woodpecker-wal/woodpecker/cache"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// Client opens logs over one bucket and metadata store. It is safe for
// concurrent use. Close it when done; it does not close the stores.
type Client struct {
	cfg       Config
	clock     clockwork.Clock // cfg.Clock, or the real clock: all the engine's time
	frags     *cache.LRU[string, *codec.Fragment]
	life      context.Context    // done once Close is called: the parent of background work, which then stops
	endLife   context.CancelFunc // ends life
	closeDone chan struct{}      // closed when Close has finished

	mu struct {
		sync.Mutex
		logs map[string]*logState // in-process shared state per log name; guarded by mu
		done bool
	}
	gc          gcState
	metrics     *metrics
	stats       statCounters
	tiers       sync.Map                     // *tierWriter -> struct{}: the open tiered writers, for the metrics
	owned       []interface{ Close() error } // stores opened by OpenURL, closed by Close
	janitorDone chan struct{}                // closed when the janitor exits; nil without one
	pf          struct {
		sync.Mutex
		inflight map[string]bool       // prefetches queued or running; guarded by pf
		calls    map[string]*fetchCall // GETs in flight; guarded by pf
		sem      chan struct{}
	}
}

// logState is what every handle of one log in this process shares.
type logState struct {
	// view is the open writer's published state; nil when this process has
	// no writer of the log. Readers use it instead of the cached record.
	view atomic.Pointer[logView]
	mu   struct {
		sync.Mutex
		writer  *Writer              // the open writer in this process, if any
		opening bool                 // an OpenWriter is in progress
		notify  chan struct{}        // closed and replaced when durable advances or the log changes
		rec     *logRecord           // newest record seen (setRecord); immutable once stored
		readers map[*Reader]struct{} // open readers, whose positions GC respects
		// lastSeg is the segment of the fragment locate found last, and
		// lastPrefix its log's key prefix: a sequential reader inside a
		// sealed segment steps to the next fragment without a lookup.
		lastSeg    segRec
		lastPrefix string
		lastFrag   *codec.Fragment // the fragment locate found last: Get's search hint
		// openCount is the number of valid fragments known in an open
		// segment, for readers without the writer (Log.openFrags).
		openCount fragCount
	}
}

// fragCount says that fragments 0..n-1 of segment seg of incarnation logID
// are valid data, and fragment n-1 ends at index last (0 until known).
type fragCount struct{ logID, seg, n, last uint64 }

func (s *logState) wake() {
	s.mu.Lock()
	close(s.mu.notify)
	s.mu.notify = make(chan struct{})
	s.mu.Unlock()
}

func (s *logState) waitCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.notify
}

// Open returns a client for cfg.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:       cfg,
		clock:     clockOf(&cfg),
		frags:     cache.New[string, *codec.Fragment](cfg.CacheBytes),
		closeDone: make(chan struct{}),
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	c.mu.logs = make(map[string]*logState)
	c.gc.init(c.clock)
	c.metrics = newMetrics(cfg.Registerer, c)
	c.pf.inflight = make(map[string]bool)
	c.pf.calls = make(map[string]*fetchCall)
	c.pf.sem = make(chan struct{}, max(cfg.Prefetch, 1))
	if err := ctx.Err(); err != nil {
		c.Close() // nothing started yet, nothing to wait for; the metrics go
		return nil, err
	}
	if cfg.GCInterval > 0 {
		c.janitorDone = make(chan struct{})
		go c.janitor(cfg.GCInterval, c.clock.NewTicker(cfg.GCInterval))
	}
	return c, nil
}

// Close closes the client, and the stores if OpenURL opened them. Writers
// opened from it must be closed first; Close does not wait for them, but
// waits for the janitor. Close is idempotent.
//
// Close does not hold the client's lock while it waits: the janitor's GC
// pass takes that lock, and a Close during a pass must not wait for it
// forever.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.mu.done {
		c.mu.Unlock()
		<-c.closeDone
		return nil
	}
	c.mu.done = true
	c.mu.Unlock()
	defer close(c.closeDone)
	c.endLife()
	if c.janitorDone != nil {
		<-c.janitorDone
	}
	c.metrics.release()
	var first error
	for _, s := range c.owned {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (c *Client) state(name string) *logState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.mu.logs[name]
	if !ok {
		s = &logState{}
		s.mu.notify = make(chan struct{})
		s.mu.readers = make(map[*Reader]struct{})
		c.mu.logs[name] = s
	}
	return s
}

func (c *Client) metaKey(name string) string { return c.cfg.Prefix + "/logs/" + name }

func (c *Client) logPrefix(rec *logRecord) string {
	return c.cfg.Prefix + "/" + rec.Name + "/" + strconv.FormatUint(rec.ID, 10)
}

func random64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// CreateLog creates an empty log. The first append may start at any index.
func (c *Client) CreateLog(ctx context.Context, name string) error {
	if err := ValidateLogName(name); err != nil {
		return err
	}
	rec := &logRecord{Format: recordFormat, ID: random64() >> 1, Name: name, First: 1, Empty: true, NextSegment: 1}
	b, err := rec.marshal()
	if err != nil {
		return err
	}
	if _, err := c.cfg.Meta.Create(ctx, c.metaKey(name), b); err != nil {
		if errors.Is(err, meta.ErrExists) {
			return fmt.Errorf("%w: %q", ErrLogExists, name)
		}
		return fmt.Errorf("wal: create log %q: %w", name, err)
	}
	c.cfg.Logger.Info("wal: log created", "log", name, "id", rec.ID)
	return nil
}

// ListLogs returns the names of all logs, sorted.
func (c *Client) ListLogs(ctx context.Context) ([]string, error) {
	recs, err := c.cfg.Meta.List(ctx, c.cfg.Prefix+"/logs/")
	if err != nil {
		return nil, fmt.Errorf("wal: list logs: %w", err)
	}
	var names []string
	for _, r := range recs {
		name := strings.TrimPrefix(r.Key, c.cfg.Prefix+"/logs/")
		if rec, err := unmarshalRecord(name, r.Value); err == nil && !rec.Deleted {
			names = append(names, name)
		}
	}
	return names, nil
}

// DeleteLog fences any writer of the log, deletes all its fragments (but
// the fence) and then its record. It is idempotent and resumes an
// interrupted deletion. A log created again under the same name gets a new
// id, so nothing of the old one is visible.
func (c *Client) DeleteLog(ctx context.Context, name string) error {
	if err := ValidateLogName(name); err != nil {
		return err
	}
	rec, ver, err := c.readRecordAny(ctx, name)
	if errors.Is(err, ErrLogNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !rec.Deleted {
		rec.Deleted = true
		rec.Epoch++
		rec.Rev++
		b, _ := rec.marshal()
		if ver, err = c.cfg.Meta.Update(ctx, c.metaKey(name), b, ver); err != nil {
			return fmt.Errorf("wal: delete log %q: %w", name, err)
		}
	}
	// A writer of the log in this process is fenced now; fail it at once,
	// so that this process stops serving reads from its view.
	st := c.state(name)
	st.mu.Lock()
	w := st.mu.writer
	st.mu.Unlock()
	if w != nil && w.logID == rec.ID {
		w.fail(fmt.Errorf("%w: log %q was deleted", ErrFenced, name))
	}
	// Fence the open segment like a new writer would, so a zombie writer's
	// next PUT fails instead of landing in a deleted log. Fence objects
	// (80 bytes) are left in place for that reason — every one of them: a
	// deletion resumed after a partial failure fences again, lower down,
	// and the zombie's next slot may be the first fence's.
	if s := rec.openSeg(); s != nil {
		a := author{name: name, prefix: c.logPrefix(rec), logID: rec.ID, epoch: rec.Epoch, nonce: random64()}
		if _, _, err := c.fenceSegment(ctx, a, *s); err != nil {
			return err
		}
	}
	if _, err := c.deletePrefix(ctx, c.logPrefix(rec)+"/", isFence); err != nil {
		return err
	}
	if err := c.cfg.Meta.Delete(ctx, c.metaKey(name), ver); err != nil && !errors.Is(err, meta.ErrPrecondition) {
		return fmt.Errorf("wal: delete log %q: %w", name, err)
	}
	c.frags.RemoveIf(func(k string) bool { return strings.HasPrefix(k, c.logPrefix(rec)+"/") })
	c.state(name).wake()
	c.cfg.Logger.Info("wal: log deleted", "log", name)
	return nil
}

// deletePrefix deletes every object under prefix but those keep (if not
// nil) spares, highest key first, so what remains of a segment at any
// moment is a dense prefix of it: a reader walking up from below never
// finds a hole followed by data. It returns how many objects it deleted.
func (c *Client) deletePrefix(ctx context.Context, prefix string, keep func(objstore.ObjectInfo) bool) (int, error) {
	var keys []string
	if err := objstore.ListAll(ctx, c.cfg.Bucket, prefix, 0, func(o objstore.ObjectInfo) error {
		if keep == nil || !keep(o) {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("wal: list %q: %w", prefix, err)
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if err := c.cfg.Bucket.Delete(ctx, keys[i]); err != nil {
			return len(keys) - 1 - i, fmt.Errorf("wal: delete %q: %w", keys[i], err)
		}
		c.frags.Remove(keys[i])
	}
	c.metrics.gcObjects.Add(float64(len(keys)))
	c.stats.gcObjects.Add(uint64(len(keys)))
	return len(keys), nil
}

func (c *Client) readRecord(ctx context.Context, name string) (*logRecord, meta.Version, error) {
	rec, ver, err := c.readRecordAny(ctx, name)
	if err == nil && rec.Deleted {
		return nil, "", fmt.Errorf("%w: %q (being deleted)", ErrLogNotFound, name)
	}
	return rec, ver, err
}

// readRecordAny reads the log record, also one marked deleted.
func (c *Client) readRecordAny(ctx context.Context, name string) (*logRecord, meta.Version, error) {
	r, err := c.cfg.Meta.Get(ctx, c.metaKey(name))
	if errors.Is(err, meta.ErrNotFound) {
		return nil, "", fmt.Errorf("%w: %q", ErrLogNotFound, name)
	}
	if err != nil {
		return nil, "", fmt.Errorf("wal: read log record %q: %w", name, err)
	}
	rec, err := unmarshalRecord(name, r.Value)
	if err != nil {
		return nil, "", err
	}
	return rec, r.Version, nil
}

// fragment returns the verified fragment under key, from the cache or the
// bucket; concurrent calls for one key share one GET. A missing object is
// objstore.ErrNotFound; damage is ErrCorrupt naming the key.
func (c *Client) fragment(ctx context.Context, key string) (*codec.Fragment, error) {
	if f, ok := c.frags.Get(key); ok {
		return f, nil
	}
	c.pf.Lock()
	call, ok := c.pf.calls[key]
	if !ok {
		call = &fetchCall{done: make(chan struct{})}
		c.pf.calls[key] = call
	}
	c.pf.Unlock()
	if ok {
		select {
		case <-call.done:
			if call.err != nil && ctx.Err() == nil &&
				(errors.Is(call.err, context.Canceled) || errors.Is(call.err, context.DeadlineExceeded)) {
				return c.fragment(ctx, key) // the other caller gave up; we have not
			}
			return call.f, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call.f, call.err = c.fetch(ctx, key)
	c.pf.Lock()
	delete(c.pf.calls, key)
	c.pf.Unlock()
	close(call.done)
	return call.f, call.err
}

type fetchCall struct {
	done chan struct{}
	f    *codec.Fragment
	err  error
}

func (c *Client) fetch(ctx context.Context, key string) (*codec.Fragment, error) {
	data, _, err := objstore.ReadAll(ctx, c.cfg.Bucket, key)
	if err != nil {
		return nil, err
	}
	f, err := codec.Decode(data)
	if err != nil {
		return nil, codec.WithObject(err, key)
	}
	c.frags.Add(key, f, int64(len(data))+256)
	return f, nil
}

// prefetch loads fragments seq.. of a sealed segment (below frags) into the
// cache in the background, Config.Prefetch of them ahead of a sequential
// reader, at most Config.Prefetch GETs at a time per client. Failures are
// ignored: the reader fetches for itself.
func (c *Client) prefetch(logPrefix string, seg, seq, frags uint64) {
	for k := uint64(0); k < uint64(c.cfg.Prefetch) && seq+k < frags; k++ {
		key := codec.FragmentKey(logPrefix, seg, seq+k)
		if _, ok := c.frags.Peek(key); ok {
			continue
		}
		c.pf.Lock()
		if c.pf.inflight[key] {
			c.pf.Unlock()
			continue
		}
		c.pf.inflight[key] = true
		c.pf.Unlock()
		go func() {
			defer func() {
				c.pf.Lock()
				delete(c.pf.inflight, key)
				c.pf.Unlock()
			}()
			select {
			case c.pf.sem <- struct{}{}:
			case <-c.life.Done():
				return
			}
			defer func() { <-c.pf.sem }()
			ctx, cancel := c.withTimeout(c.life, time.Minute)
			defer cancel()
			_, _ = c.fragment(ctx, key)
		}()
	}
}
