package wal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// Log is a handle on one log: random reads, index bounds, readers, and the
// log's writer. It is safe for concurrent use.
type Log struct {
	c    *Client
	name string
	st   *logState
}

// OpenLog returns a handle on an existing log.
func (c *Client) OpenLog(ctx context.Context, name string) (*Log, error) {
	if err := ValidateLogName(name); err != nil {
		return nil, err
	}
	rec, _, err := c.readRecord(ctx, name)
	if err != nil {
		return nil, err
	}
	st := c.state(name)
	st.setRecord(rec)
	return &Log{c: c, name: name, st: st}, nil
}

// Name returns the log's name.
func (l *Log) Name() string { return l.name }

// record returns the log record: the one in v, the view this process's
// writer published, when there is one; else the cached copy, re-read from
// the store when refresh is set. Callers that look at the log more than
// once in one operation load the view once and pass it to each step, so
// that they never mix two states of the log.
func (l *Log) record(ctx context.Context, v *logView, refresh bool) (*logRecord, error) {
	if v != nil {
		return v.rec, nil // never waits for the writer's metadata I/O
	}
	l.st.mu.Lock()
	rec := l.st.mu.rec
	l.st.mu.Unlock()
	if rec != nil && !refresh {
		return rec, nil
	}
	rec, _, err := l.c.readRecord(ctx, l.name)
	if err != nil {
		return nil, err
	}
	l.st.setRecord(rec)
	return rec, nil
}

// bounds returns the log's first and last index (last < first when empty).
//
// need says what the caller looks for: without the writer in this process,
// the open segment's tail is listed only if need is beyond what is already
// known to be there (math.MaxUint64 always lists: the true last index).
func (l *Log) bounds(ctx context.Context, v *logView, refresh bool, need uint64) (first, last uint64, err error) {
	if v != nil {
		return v.first, v.last, nil
	}
	rec, err := l.record(ctx, nil, refresh)
	if err != nil {
		return 0, 0, err
	}
	if rec.Empty {
		return 1, 0, nil
	}
	last = rec.First - 1
	if l, ok := rec.lastSealed(); ok {
		last = l
	}
	if s := rec.openSeg(); s != nil {
		n, err := l.openFrags(ctx, nil, rec, *s, need)
		if err != nil {
			return 0, 0, err
		}
		last = s.First - 1
		if n > 0 {
			f, err := l.c.fragment(ctx, codec.FragmentKey(l.c.logPrefix(rec), s.ID, n-1))
			if err != nil {
				return 0, 0, err
			}
			last = f.Header.LastIndex()
			l.st.mu.Lock()
			if c := &l.st.mu.openCount; c.logID == rec.ID && c.seg == s.ID && c.n == n {
				c.last = last
			}
			l.st.mu.Unlock()
		}
	}
	return rec.First, last, nil
}

// openFrags returns the number of valid fragments of the open segment s of
// rec, as a reader without the writer sees them, at least far enough to
// hold entry need. Landed fragments below a fence never change, so the
// count only grows: it is cached per segment with the last index it
// reaches, the LIST is skipped when need is within it, and otherwise only
// the keys after the known count are listed — one short LIST per poll at
// the tail, however long the segment is.
func (l *Log) openFrags(ctx context.Context, v *logView, rec *logRecord, s segRec, need uint64) (uint64, error) {
	if v != nil && v.rec.ID == rec.ID && v.seg == s.ID {
		return v.frags, nil
	}
	l.st.mu.Lock()
	known := l.st.mu.openCount
	l.st.mu.Unlock()
	from := uint64(0)
	if known.logID == rec.ID && known.seg == s.ID {
		if known.n > 0 && known.last >= need {
			return known.n, nil
		}
		from = known.n
	}
	n, err := denseFragments(ctx, l.c.cfg.Bucket, l.c.logPrefix(rec), s.ID, from)
	if err != nil {
		return 0, err
	}
	l.st.mu.Lock()
	if c := &l.st.mu.openCount; c.logID != rec.ID || c.seg != s.ID || c.n < n {
		*c = fragCount{logID: rec.ID, seg: s.ID, n: n}
	}
	l.st.mu.Unlock()
	return n, nil
}

// FirstIndex returns the first index of the log, or 0 if it is empty.
func (l *Log) FirstIndex(ctx context.Context) (uint64, error) {
	first, last, err := l.bounds(ctx, l.st.view.Load(), true, math.MaxUint64)
	if err != nil || last < first {
		return 0, err
	}
	return first, nil
}

// LastIndex returns the last durable index of the log, or 0 if it is empty.
// Without a writer in this process it reads the tail of the open segment
// from the bucket.
func (l *Log) LastIndex(ctx context.Context) (uint64, error) {
	first, last, err := l.bounds(ctx, l.st.view.Load(), true, math.MaxUint64)
	if err != nil || last < first {
		return 0, err
	}
	return last, nil
}

// Get returns entry i. The slice must not be modified. It returns
// ErrTruncated below the first index (or for an entry removed by
// TruncateBack) and ErrOutOfRange beyond the last durable index.
func (l *Log) Get(ctx context.Context, i uint64) ([]byte, error) {
	for {
		if e, ok := tailEntry(l.st.view.Load(), i); ok {
			return e, nil // locally durable, not yet known to be in the bucket
		}
		l.st.mu.Lock()
		hint := l.st.mu.lastFrag
		l.st.mu.Unlock()
		f, _, err := l.locate(ctx, i, hint)
		if errors.Is(err, errInTail) {
			continue // a newer view holds it in memory
		}
		if err != nil {
			return nil, err
		}
		return f.Entry(int(i - f.Header.FirstIndex)), nil
	}
}

// errInTail is locate's answer when the view it loaded holds the entry in
// a tiered writer's memory: the caller reads it from there.
var errInTail = errors.New("wal: entry is in the writer's in-memory tail")

// tailEntry returns entry i from v's in-memory tail, if it is there.
func tailEntry(v *logView, i uint64) ([]byte, bool) {
	if v == nil || v.tail == nil || i < v.first || i > v.last {
		return nil, false
	}
	e, _, ok := v.tail.mem.get(i)
	return e, ok
}

// locate returns the fragment holding entry i, and the last index of the
// fragment that is still live (a TruncateBack may have cut the segment
// inside the fragment).
//
// hint, when not nil, is the fragment a sequential reader read last: the
// next one (same segment, next sequence number) is tried before searching.
func (l *Log) locate(ctx context.Context, i uint64, hint *codec.Fragment) (*codec.Fragment, uint64, error) {
	// Without the writer in this process a cached record may be stale (a
	// TruncateBack there changes no object a reader would notice): read it
	// afresh. With the writer here, its published view is always current.
	local := l.st.view.Load() != nil
	recheck := true // one more fresh look after an object was not found
	for refresh := !local; ; refresh = true {
		v := l.st.view.Load() // one state of the log for this attempt
		if _, ok := tailEntry(v, i); ok {
			return nil, 0, errInTail
		}
		first, last, err := l.bounds(ctx, v, refresh, i)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case i < first:
			return nil, 0, fmt.Errorf("%w: log %q: index %d is below the first index %d", ErrTruncated, l.name, i, first)
		case i > last:
			if refresh {
				return nil, 0, fmt.Errorf("%w: log %q: index %d, last is %d", ErrOutOfRange, l.name, i, last)
			}
			continue
		}
		rec, err := l.record(ctx, v, refresh)
		if err != nil {
			return nil, 0, err
		}
		s := rec.segFor(i)
		if s == nil {
			if refresh {
				return nil, 0, fmt.Errorf("%w: log %q: index %d is in no live segment", ErrTruncated, l.name, i)
			}
			continue
		}
		f, err := l.findInSegment(ctx, v, rec, *s, i, hint)
		if err == nil {
			limit := min(f.Header.LastIndex(), last)
			if s.State == segSealed {
				limit = min(limit, s.Last)
				l.c.prefetch(l.c.logPrefix(rec), s.ID, f.Header.Seq+1, s.Frags)
			}
			l.st.mu.Lock()
			l.st.mu.lastSeg, l.st.mu.lastPrefix, l.st.mu.lastFrag = *s, l.c.logPrefix(rec), f
			l.st.mu.Unlock()
			return f, limit, nil
		}
		if !errors.Is(err, objstore.ErrNotFound) {
			return nil, 0, err
		}
		if refresh {
			// The record read before the GET may predate a truncation whose
			// garbage collection (in any process) then deleted the object:
			// a fresh record says so (ErrTruncated above), else the object
			// is missing for real.
			if !recheck {
				return nil, 0, err
			}
			recheck = false
		}
	}
}

// findInSegment binary-searches the segment's fragments, whose index ranges
// are contiguous and increasing, for the one holding i.
func (l *Log) findInSegment(ctx context.Context, v *logView, rec *logRecord, s segRec, i uint64, hint *codec.Fragment) (*codec.Fragment, error) {
	prefix := l.c.logPrefix(rec)
	if i == s.First && (s.State == segOpen || s.Frags > 0) { // a segment's first entry is in fragment 0
		f, err := l.c.fragment(ctx, codec.FragmentKey(prefix, s.ID, 0))
		if err == nil && f.Header.Kind == codec.KindData && f.Header.FirstIndex == i {
			return f, nil
		}
	}
	if hint != nil && hint.Header.LogID != rec.ID {
		hint = nil // from an earlier incarnation of the log (deleted and created again)
	}
	if hint != nil && hint.Header.Segment == s.ID && hint.Header.Kind == codec.KindData &&
		hint.Header.FirstIndex <= i && i <= hint.Header.LastIndex() {
		return hint, nil // sequential Gets within one fragment: no search
	}
	if hint != nil && hint.Header.Segment == s.ID && hint.Header.LastIndex()+1 == i {
		f, err := l.c.fragment(ctx, codec.FragmentKey(prefix, s.ID, hint.Header.Seq+1))
		if err == nil && f.Header.Kind == codec.KindData && f.Header.FirstIndex == i {
			return f, nil
		}
	}
	n := s.Frags
	if s.State == segOpen {
		var err error
		if n, err = l.openFrags(ctx, v, rec, s, i); err != nil {
			return nil, err
		}
	}
	var ferr error
	var found *codec.Fragment
	k := sort.Search(int(n), func(k int) bool {
		if ferr != nil {
			return true
		}
		f, err := l.c.fragment(ctx, codec.FragmentKey(prefix, s.ID, uint64(k)))
		if err != nil {
			ferr = err
			return true
		}
		if f.Header.Kind != codec.KindData {
			return true
		}
		if f.Header.FirstIndex <= i && i <= f.Header.LastIndex() {
			found = f
		}
		return f.Header.LastIndex() >= i
	})
	if ferr != nil {
		return nil, fmt.Errorf("wal: log %q: read segment %d: %w", l.name, s.ID, ferr)
	}
	if found == nil || k >= int(n) {
		return nil, fmt.Errorf("%w: log %q: index %d not found in segment %d (%d fragments)", objstore.ErrNotFound, l.name, i, s.ID, n)
	}
	return found, nil
}

// Meta returns the log's key/value state (see Writer.SetMeta), read from
// the metadata store unless this process has the log's writer.
func (l *Log) Meta(ctx context.Context) (map[string][]byte, error) {
	rec, err := l.record(ctx, l.st.view.Load(), true)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(rec.Meta))
	for k, v := range rec.Meta {
		out[k] = v
	}
	return out, nil
}
