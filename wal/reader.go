package wal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// Positions for NewReader.
const (
	// Earliest starts a reader at the log's first index.
	Earliest = logstore.Earliest
	// Latest starts a reader after the log's last durable index: it sees
	// only entries appended from now on.
	Latest = logstore.Latest
)

// Reader reads a log sequentially from a position, blocking at the tail
// until new entries are durable. Readers in the writer's process are woken
// by it; others poll the bucket with backoff, from 1ms up to
// Config.PollInterval (on Config.Clock). A Reader is not safe for concurrent use; open one per
// goroutine. Close it so garbage collection stops holding its position.
//
// Garbage collection in this process keeps the segments at and after an
// open reader's position. With Config.ReaderLease set, the reader also keeps
// a lease record with its position in the metadata store, renewed as it
// reads (and while it waits at the tail), which GC in any process respects
// until it stops being renewed for a lease period.
type Reader struct {
	l    *Log
	next uint64
	frag *codec.Fragment // fragment of the last entry returned
	lim  uint64          // last index of frag that is still live
	seg  segRec          // the segment of frag as the record said when frag was located
	pfx  string          // the log's key prefix
	pos  uint64          // lowest index this reader may still read; GC keeps it; guarded by l.st.mu
	// logID and cuts are the log incarnation and its record's Cuts when
	// the reader last verified that the entries it returned are intact.
	logID, cuts uint64
	// tailLSN is set when the last entry returned came from a tiered
	// writer's in-memory tail: the LSN of the append that wrote it, and
	// tailEntry the entry, to tell it from one written at the same index
	// after a TruncateBack.
	tailLSN   uint64
	tailEntry []byte

	leaseKey     string       // "" without a lease
	leaseVer     meta.Version // version of our lease record
	leaseRenewed time.Time    // on the client's clock
}

type leaseValue struct {
	Pos uint64 `json:"pos"`
	TTL int64  `json:"ttl_ms"`
}

// NewReader returns a reader whose first Next returns entry from, or the
// first entry when from is Earliest, or the next entry appended when from is
// Latest.
func (l *Log) NewReader(ctx context.Context, from uint64) (*Reader, error) {
	first, last, err := l.bounds(ctx, l.st.view.Load(), true, math.MaxUint64)
	if err != nil {
		return nil, err
	}
	switch from {
	case Earliest:
		from = first
	case Latest:
		from = last + 1
	}
	r := &Reader{l: l, next: from, pos: from}
	v := l.st.view.Load()
	if rec, err := l.record(ctx, v, false); err == nil {
		r.logID, r.cuts = rec.ID, v.cuts(rec)
	}
	if l.c.cfg.ReaderLease > 0 {
		r.leaseKey = fmt.Sprintf("%s/leases/%s/%016x", l.c.cfg.Prefix, l.name, random64())
		b, _ := json.Marshal(leaseValue{Pos: from, TTL: l.c.cfg.ReaderLease.Milliseconds()})
		v, err := l.c.cfg.Meta.Create(ctx, r.leaseKey, b)
		if err != nil {
			return nil, fmt.Errorf("wal: reader lease for log %q: %w", l.name, err)
		}
		r.leaseVer, r.leaseRenewed = v, l.c.clock.Now()
	}
	l.st.mu.Lock()
	l.st.mu.readers[r] = struct{}{}
	l.st.mu.Unlock()
	return r, nil
}

// Close releases the reader and deletes its lease.
func (r *Reader) Close() error {
	r.l.st.mu.Lock()
	delete(r.l.st.mu.readers, r)
	r.l.st.mu.Unlock()
	if r.leaseKey != "" {
		ctx, cancel := r.l.c.withTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.l.c.cfg.Meta.Delete(ctx, r.leaseKey, r.leaseVer); err != nil && !errors.Is(err, meta.ErrPrecondition) {
			return fmt.Errorf("wal: release reader lease: %w", err)
		}
		r.leaseKey = ""
	}
	return nil
}

// renewLease rewrites the lease with the current position once a third of
// the lease period has passed on the client's clock. Failures are retried
// on the next call; the lease may lapse, after which GC may remove what the
// reader has not read (it then gets ErrTruncated).
func (r *Reader) renewLease(ctx context.Context) {
	ttl := r.l.c.cfg.ReaderLease
	if r.leaseKey == "" || r.l.c.clock.Since(r.leaseRenewed) < ttl/3 {
		return
	}
	r.l.st.mu.Lock()
	pos := r.pos
	r.l.st.mu.Unlock()
	b, _ := json.Marshal(leaseValue{Pos: pos, TTL: ttl.Milliseconds()})
	v, err := r.l.c.cfg.Meta.Update(ctx, r.leaseKey, b, r.leaseVer)
	if err != nil {
		r.l.c.cfg.Logger.Warn("wal: reader lease renewal failed", "log", r.l.name, "err", err)
		return
	}
	r.leaseVer, r.leaseRenewed = v, r.l.c.clock.Now()
}

// Next returns the next entry and its index, waiting for it if the reader is
// at the tail. It returns ErrTruncated if the next entry was truncated away
// or if entries it already returned were removed by TruncateBack (seek to a
// valid position with a new reader); the slice must not be modified.
func (r *Reader) Next(ctx context.Context) (uint64, []byte, error) {
	polls := retry.Policy{Initial: time.Millisecond, Max: r.l.c.cfg.PollInterval}.Retrier()
	for {
		if v := r.l.st.view.Load(); v != nil && v.tail != nil && r.next >= v.first && r.next <= v.last {
			if e, lsn, ok := v.tail.mem.get(r.next); ok {
				if err := r.verifyTail(ctx, v); err != nil {
					return 0, nil, err
				}
				i := r.next
				r.next++
				r.frag, r.tailLSN, r.tailEntry = nil, lsn, e
				r.logID, r.cuts = v.rec.ID, v.cuts(v.rec)
				r.setPos(i)
				r.renewLease(ctx)
				return i, e, nil
			}
		}
		if r.tailLSN != 0 {
			// The last entry came from the writer's memory and the next one
			// is in the bucket: check the last one is still the log's.
			if err := r.verifyTail(ctx, r.l.st.view.Load()); err != nil {
				return 0, nil, err
			}
		}
		if v := r.l.st.view.Load(); v != nil && r.frag != nil && r.next >= r.frag.Header.FirstIndex && r.next <= r.lim {
			// With the writer in this process, a cached fragment is served only
			// within the log as it is now: a TruncateBack since it was found
			// may have cut it.
			if v.rec.ID != r.logID || v.cuts(v.rec) != r.cuts {
				if err := r.verifyReturned(ctx); err != nil {
					return 0, nil, err
				}
			}
			r.lim = min(r.lim, v.last)
		}
		if f := r.frag; f != nil && r.next >= f.Header.FirstIndex && r.next <= r.lim {
			if r.tailLSN != 0 { // from memory to the bucket: verified just above
				r.tailLSN, r.tailEntry = 0, nil
				v := r.l.st.view.Load()
				if rec, err := r.l.record(ctx, v, false); err == nil {
					r.logID, r.cuts = rec.ID, v.cuts(rec)
				}
			}
			i := r.next
			r.next++
			r.setPos(i)
			r.renewLease(ctx)
			return i, f.Entry(int(i - f.Header.FirstIndex)), nil
		}
		if f := r.nextInSealed(ctx); f != nil {
			r.frag, r.lim = f, min(f.Header.LastIndex(), r.seg.Last)
			continue
		}
		wake := r.l.st.waitCh()
		f, lim, err := r.l.locate(ctx, r.next, r.frag)
		if errors.Is(err, errInTail) {
			continue // a newer view holds it in memory
		}
		if err == nil {
			if err := r.checkContinuity(ctx, f); err != nil {
				return 0, nil, err
			}
			r.frag, r.lim = f, lim
			r.l.st.mu.Lock()
			r.seg, r.pfx = r.l.st.mu.lastSeg, r.l.st.mu.lastPrefix
			r.l.st.mu.Unlock()
			continue
		}
		if !errors.Is(err, ErrOutOfRange) {
			return 0, nil, err
		}
		if err := r.checkStillThere(ctx); err != nil {
			return 0, nil, err
		}
		r.renewLease(ctx)
		poll, _ := polls.Next() // 1ms doubling to PollInterval: an unbounded policy never says no
		t := r.l.c.clock.NewTimer(poll)
		select {
		case <-wake:
		case <-t.Chan():
		case <-ctx.Done():
			t.Stop()
			return 0, nil, ctx.Err()
		}
		t.Stop()
	}
}

// checkContinuity verifies that the entry before the next one is still the
// one this reader returned: a TruncateBack below it, or the log deleted
// and created again, voids what was read.
func (r *Reader) checkContinuity(ctx context.Context, next *codec.Fragment) error {
	prev := r.frag
	if prev == nil || next == prev {
		return nil
	}
	if next.Header.LogID != prev.Header.LogID {
		return r.errIncarnation()
	}
	return r.verifyReturned(ctx)
}

func (r *Reader) errIncarnation() error {
	return fmt.Errorf("%w: log %q was deleted and created again: the entries up to %d that this reader returned are gone",
		ErrTruncated, r.l.name, r.next-1)
}

// verifyReturned checks that the entries this reader returned are still
// the log's: the same incarnation, and no cut (TruncateBack, reset at a
// new index) since they were verified — or, after a cut, the entry before
// the next one still in the segment it was read from.
func (r *Reader) verifyReturned(ctx context.Context) error {
	prev := r.frag
	for refresh := false; ; refresh = true {
		v := r.l.st.view.Load()
		rec, err := r.l.record(ctx, v, refresh)
		if err != nil {
			return err
		}
		cuts := v.cuts(rec)
		if rec.ID != prev.Header.LogID {
			if refresh {
				return r.errIncarnation()
			}
			continue
		}
		if rec.ID == r.logID && cuts == r.cuts {
			return nil // nothing was replaced since
		}
		if s := rec.segFor(r.next - 1); s != nil && s.ID == prev.Header.Segment && (v == nil || v.tail == nil || r.next-1 < v.tail.mem.base) {
			r.logID, r.cuts = rec.ID, cuts
			return nil
		}
		if rec.First > r.next-1 && cuts == r.cuts {
			return nil // only the front was truncated past what was read
		}
		if refresh {
			return fmt.Errorf("%w: log %q: entries up to %d that this reader returned were truncated", ErrTruncated, r.l.name, r.next-1)
		}
	}
}

// nextInSealed steps to the next fragment of a sealed segment without a
// lookup (no record read, no LIST): within a sealed segment the fragments
// and their ranges are fixed. A TruncateBack into the segment meanwhile is
// noticed at the segment's end, like any change a tailing reader may see
// late. It returns nil when a lookup is needed.
func (r *Reader) nextInSealed(ctx context.Context) *codec.Fragment {
	prev := r.frag
	if prev == nil || r.seg.State != segSealed || r.seg.ID != prev.Header.Segment ||
		r.next != prev.Header.LastIndex()+1 || r.next > r.seg.Last || prev.Header.Seq+1 >= r.seg.Frags {
		return nil
	}
	f, err := r.l.c.fragment(ctx, codec.FragmentKey(r.pfx, r.seg.ID, prev.Header.Seq+1))
	if err != nil || f.Header.Kind != codec.KindData || f.Header.FirstIndex != r.next {
		return nil
	}
	r.l.c.prefetch(r.pfx, r.seg.ID, f.Header.Seq+1, r.seg.Frags)
	return f
}

// checkStillThere, at the tail, verifies that the last entry returned was
// not removed by a TruncateBack: otherwise the reader would wait for an index
// the log may not reach again for a long time.
func (r *Reader) checkStillThere(ctx context.Context) error {
	if r.tailLSN != 0 {
		return r.verifyTail(ctx, r.l.st.view.Load())
	}
	if r.frag == nil {
		return nil
	}
	return r.verifyReturned(ctx)
}

func (r *Reader) setPos(i uint64) {
	r.l.st.mu.Lock()
	r.pos = i
	r.l.st.mu.Unlock()
}

// verifyTail checks, before the reader goes on, that the entry it returned
// last is still the log's when that entry came from a tiered writer's
// memory (v is the current view, nil when the writer is gone): still in
// the tail with the same LSN, or uploaded with no cut since, or — without
// the writer's view — the same bytes in the bucket. When the last entry
// came from a fragment it is verifyReturned's check.
func (r *Reader) verifyTail(ctx context.Context, v *logView) error {
	if r.tailLSN == 0 {
		if r.frag == nil {
			return nil // nothing returned yet
		}
		return r.verifyReturned(ctx)
	}
	p := r.next - 1
	cut := fmt.Errorf("%w: log %q: entry %d that this reader returned was truncated", ErrTruncated, r.l.name, p)
	if v != nil && v.tail != nil {
		if p < v.first || p > v.last {
			if p < v.first && v.cuts(v.rec) == r.cuts {
				return nil // only the front was truncated past it
			}
			return cut
		}
		if _, lsn, ok := v.tail.mem.get(p); ok {
			if lsn != r.tailLSN {
				return cut
			}
			return nil
		}
		if p < v.tail.mem.base && v.cuts(v.rec) == r.cuts {
			return nil // uploaded since, and nothing was cut
		}
	}
	got, err := r.l.Get(ctx, p)
	switch {
	case errors.Is(err, ErrTruncated) || errors.Is(err, ErrOutOfRange):
		return cut
	case err != nil:
		return err
	case !bytes.Equal(got, r.tailEntry):
		return cut
	}
	return nil
}
