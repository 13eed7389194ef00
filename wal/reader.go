package wal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// Positions for NewReader.
const (
	// Earliest starts a reader at the log's first index.
	Earliest uint64 = 0
	// Latest starts a reader after the log's last durable index: it sees
	// only entries appended from now on.
	Latest uint64 = math.MaxUint64
)

// Reader reads a log sequentially from a position, blocking at the tail
// until new entries are durable. Readers in the writer's process are woken
// by it; others poll the bucket every Config.PollInterval at most. A Reader
// is not safe for concurrent use; open one per goroutine. Close it so
// garbage collection stops holding its position.
type Reader struct {
	l    *Log
	next uint64
	frag *codec.Fragment // fragment of the last entry returned
	lim  uint64          // last index of frag that is still live
	pos  uint64          // lowest index this reader may still read; GC keeps it
}

// NewReader returns a reader whose first Next returns entry from, or the
// first entry when from is Earliest, or the next entry appended when from is
// Latest.
func (l *Log) NewReader(ctx context.Context, from uint64) (*Reader, error) {
	first, last, err := l.bounds(ctx, true)
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
	l.st.mu.Lock()
	l.st.mu.readers[r] = struct{}{}
	l.st.mu.Unlock()
	return r, nil
}

// Close releases the reader.
func (r *Reader) Close() error {
	r.l.st.mu.Lock()
	delete(r.l.st.mu.readers, r)
	r.l.st.mu.Unlock()
	return nil
}

// Next returns the next entry and its index, waiting for it if the reader is
// at the tail. It returns ErrTruncated if the next entry was truncated away
// or if entries it already returned were removed by TruncateBack (seek to a
// valid position with a new reader); the slice must not be modified.
func (r *Reader) Next(ctx context.Context) (uint64, []byte, error) {
	for {
		if f := r.frag; f != nil && r.next >= f.Header.FirstIndex && r.next <= r.lim {
			i := r.next
			r.next++
			r.setPos(i)
			return i, f.Entry(int(i - f.Header.FirstIndex)), nil
		}
		wake := r.l.st.waitCh()
		f, lim, err := r.l.locate(ctx, r.next, r.frag)
		if err == nil {
			if err := r.checkContinuity(ctx, f); err != nil {
				return 0, nil, err
			}
			r.frag, r.lim = f, lim
			continue
		}
		if !errors.Is(err, ErrOutOfRange) {
			return 0, nil, err
		}
		t := time.NewTimer(r.l.c.cfg.PollInterval)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, nil, ctx.Err()
		}
		t.Stop()
	}
}

// checkContinuity verifies that the entry before the next one is still the
// one this reader returned: a TruncateBack below it voids what was read.
func (r *Reader) checkContinuity(ctx context.Context, next *codec.Fragment) error {
	prev := r.frag
	if prev == nil || next == prev {
		return nil
	}
	rec, err := r.l.record(ctx, false)
	if err != nil {
		return err
	}
	s := rec.segFor(r.next - 1)
	if s == nil || s.ID != prev.Header.Segment {
		rec, err = r.l.record(ctx, true)
		if err != nil {
			return err
		}
		if s = rec.segFor(r.next - 1); s == nil || s.ID != prev.Header.Segment {
			return fmt.Errorf("%w: log %q: entries up to %d that this reader returned were truncated", ErrTruncated, r.l.name, r.next-1)
		}
	}
	return nil
}

func (r *Reader) setPos(i uint64) {
	r.l.st.mu.Lock()
	r.pos = i
	r.l.st.mu.Unlock()
}
