package wal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// gcState remembers, per log segment, when this process first saw it marked
// deleted: the grace period runs on the client's clock, never comparing
// clocks across machines.
type gcState struct {
	mu     sync.Mutex
	seen   map[string]time.Time // "<log>/<id>/<segment>" -> first seen deleted
	leases map[string]leaseSeen // lease key -> the version last seen and when it changed
	clock  clockwork.Clock
}

type leaseSeen struct {
	ver   meta.Version
	since time.Time
}

func (g *gcState) init(clock clockwork.Clock) {
	g.seen = make(map[string]time.Time)
	g.leases = make(map[string]leaseSeen)
	g.clock = clock
}

// leasePos returns the lowest position held by a live lease on the log, or
// 0. A lease is live unless this process has seen the same version of it
// for longer than its TTL; a lease first seen now counts as live. Expired
// leases are deleted.
func (c *Client) leasePos(ctx context.Context, name string) (uint64, error) {
	recs, err := c.cfg.Meta.List(ctx, c.cfg.Prefix+"/leases/"+name+"/")
	if err != nil {
		return 0, fmt.Errorf("wal: gc log %q: list leases: %w", name, err)
	}
	now := c.gc.clock.Now()
	var lowest uint64
	for _, r := range recs {
		var v leaseValue
		if json.Unmarshal(r.Value, &v) != nil {
			continue
		}
		c.gc.mu.Lock()
		s, ok := c.gc.leases[r.Key]
		if !ok || s.ver != r.Version {
			s = leaseSeen{ver: r.Version, since: now}
			c.gc.leases[r.Key] = s
		}
		c.gc.mu.Unlock()
		if now.Sub(s.since) > time.Duration(v.TTL)*time.Millisecond {
			_ = c.cfg.Meta.Delete(ctx, r.Key, r.Version) // expired; a racing renewal wins
			continue
		}
		if lowest == 0 || v.Pos < lowest {
			lowest = v.Pos
		}
	}
	return lowest, nil
}

// GCStats reports what one GC pass did.
type GCStats struct {
	Marked          int // segments newly marked deleted (phase 1)
	SegmentsRemoved int // segments whose objects were deleted (phase 2)
	ObjectsDeleted  int
	Waiting         int // deleted segments still in their grace period or held by a reader
}

// GC collects the log's garbage in two phases. Phase 1 marks sealed
// segments wholly below the first index as deleted (one compare-and-swap on
// the log record). Phase 2 deletes the objects of segments marked deleted at
// least Config.GCGrace ago (as seen by this client), highest key first, then
// removes them from the record — unless a reader in this process, or a live
// reader lease (Config.ReaderLease) from any process, is still positioned at
// or before the segment's last entry. A segment's fence object (80 bytes,
// where a newer writer ended it) is kept, so that its old writer stays
// fenced however long it pauses. GC needs no writer, is idempotent, and may
// run from any client.
func (c *Client) GC(ctx context.Context, name string) (GCStats, error) {
	var st GCStats
	if err := ValidateLogName(name); err != nil {
		return st, err
	}
	key := c.metaKey(name)
	minReader := c.minReaderPos(name)
	lp, err := c.leasePos(ctx, name)
	if err != nil {
		return st, err
	}
	if lp != 0 && (minReader == 0 || lp < minReader) {
		minReader = lp
	}
	for {
		rec, ver, err := c.readRecord(ctx, name)
		if err != nil {
			return st, err
		}
		now := c.gc.clock.Now()
		marked, removable := 0, map[uint64]bool{}
		next := rec.clone()
		for i := range next.Segments {
			s := &next.Segments[i]
			if s.State == segSealed && (s.Last < rec.First || s.Last < s.First) {
				s.State = segDeleted
				marked++
			}
			if s.State != segDeleted {
				continue
			}
			seenKey := fmt.Sprintf("%s/%d/%d", name, rec.ID, s.ID)
			c.gc.mu.Lock()
			t, ok := c.gc.seen[seenKey]
			if !ok {
				t = now
				c.gc.seen[seenKey] = now
			}
			c.gc.mu.Unlock()
			if now.Sub(t) >= c.cfg.GCGrace && (minReader == 0 || s.Last < minReader || s.Last < s.First) {
				removable[s.ID] = true
			} else {
				st.Waiting++
			}
		}
		prefix := c.logPrefix(rec)
		for id := range removable {
			// The fence (80 bytes) stays: it is what stops the segment's
			// old writer, should it still be running, from writing there
			// again — a zombie whose next PUT lands on a collected segment
			// would otherwise be acknowledged for entries no reader sees.
			n, err := c.deletePrefix(ctx, codec.SegmentPrefix(prefix, id), isFence)
			st.ObjectsDeleted += n
			if err != nil {
				return st, err
			}
			st.SegmentsRemoved++
			c.metrics.gcSegments.Inc()
		}
		if marked == 0 && len(removable) == 0 {
			return st, nil
		}
		kept := next.Segments[:0]
		for _, s := range next.Segments {
			if !removable[s.ID] {
				kept = append(kept, s)
			}
		}
		next.Segments = kept
		next.Rev = rec.Rev + 1
		b, err := next.marshal()
		if err != nil {
			return st, err
		}
		if _, err := c.cfg.Meta.Update(ctx, key, b, ver); err != nil {
			if errors.Is(err, meta.ErrPrecondition) {
				continue // a writer changed the record: redo on the new one
			}
			return st, fmt.Errorf("wal: gc log %q: %w", name, err)
		}
		st.Marked += marked
		c.state(name).setRecord(next)
		if len(removable) > 0 {
			c.cfg.Logger.Info("wal: gc removed segments", "log", name, "segments", len(removable))
		}
		return st, nil
	}
}

// minReaderPos returns the lowest position of an open reader of the log in
// this process, or 0 when there is none.
func (c *Client) minReaderPos(name string) uint64 {
	st := c.state(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	var m uint64
	for r := range st.mu.readers {
		if m == 0 || r.pos < m {
			m = r.pos
		}
	}
	return m
}

// janitor runs GC on every log at each tick of t, every interval on the
// client's clock, until the client closes. It logs the end of each pass at
// Debug level ("wal: janitor pass"). Open makes t, so that the janitor's
// clock is set when Open returns.
func (c *Client) janitor(interval time.Duration, t clockwork.Ticker) {
	defer close(c.janitorDone)
	defer t.Stop()
	for {
		select {
		case <-c.life.Done():
			return
		case <-t.Chan():
		}
		ctx, cancel := c.withTimeout(c.life, interval*4+time.Minute)
		names, err := c.ListLogs(ctx)
		if err != nil {
			c.cfg.Logger.Warn("wal: janitor: list logs", "err", err)
		}
		for _, name := range names {
			if st, err := c.GC(ctx, name); err != nil {
				c.cfg.Logger.Warn("wal: janitor: gc", "log", name, "err", err)
			} else if st.SegmentsRemoved > 0 {
				c.cfg.Logger.Debug("wal: janitor: gc", "log", name, "stats", st)
			}
		}
		cancel()
		c.cfg.Logger.Debug("wal: janitor pass", "logs", len(names))
	}
}
