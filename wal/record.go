package wal

import (
	"encoding/json"
	"fmt"
)

// logRecord is the one metadata record per log that holds all writer state
// (docs/design.md, decision 1). Every writer mutation is one compare-and-swap
// on it that also checks ID and Epoch == the writer's log ID and epoch.
//
// Invariants:
//   - Segments are in ascending ID order; IDs are never reused (NextSegment).
//   - At most one segment is open, and it is the last one.
//   - Within a segment, fragments hold contiguous, increasing index ranges:
//     fragment seq k+1 starts right after fragment k ends. Anything that
//     would break this (TruncateBack, appending at a new index into an
//     emptied log) seals the segment and opens a new one.
//   - Live (non-deleted) segments hold disjoint index ranges in ID order.
//   - The log's entries are [First, Last], Last = the open segment's last
//     durable entry, or the last live sealed segment's Last when none is
//     open; First > Last means the log is empty and the next append goes
//     to First... unless Empty says any index may come next.
type logRecord struct {
	Format int    `json:"format"`
	ID     uint64 `json:"id"`    // random at creation; in every fragment header
	Name   string `json:"name"`  // the log's name
	Epoch  uint64 `json:"epoch"` // writer epoch; bumped by every new writer
	// Rev counts the record's updates: every compare-and-swap stores the
	// record it read with Rev+1, so of two copies of one incarnation (same
	// ID) the one with the higher Rev is the newer. A process never
	// replaces a cached record with an older one (logState.setRecord).
	Rev uint64 `json:"rev,omitempty"`
	// Owner is the owner token of the writer that took Epoch
	// (WriterID.Owner): a reopen by the same owner may take the log back
	// from an epoch its own failed attempt took.
	Owner uint64 `json:"owner,omitempty"`
	// Cuts counts the changes that replaced entries at existing indexes:
	// every TruncateBack, and every reset of an emptied log at an index
	// other than First. A reader whose entries were located while Cuts had
	// its current value knows none of them was replaced; truncating the
	// front and appending after it are not cuts.
	Cuts uint64 `json:"cuts,omitempty"`
	// First is the truncation point: entries below it are removed.
	First uint64 `json:"first"`
	// Empty means the log holds no entries and the next append may start at
	// any index (a log never appended to, or emptied by TruncateBack below
	// First). Cleared by the CAS that opens a segment at the chosen index.
	Empty       bool     `json:"empty,omitempty"`
	Segments    []segRec `json:"segments"`
	NextSegment uint64   `json:"next_segment"`
	Deleted     bool     `json:"deleted,omitempty"` // DeleteLog in progress
	// Meta is the log's small key/value state (Writer.SetMeta): what a Raft
	// adapter must change under the writer's epoch, such as its term and
	// vote or the HardState.
	Meta map[string][]byte `json:"meta,omitempty"`
	// Tier is set while a tiered writer (Config.LocalDir) holds the log:
	// its local tier may hold acknowledged entries that are not in the
	// bucket yet. A clean close clears it. A writer that takes the log
	// over from another local tier turns it into LostTail.
	Tier *tierRec `json:"tier,omitempty"`
	// LostTail says that entries above LostTail.After may have been
	// acknowledged and lost (a tiered writer's local tier was lost or taken
	// over before it uploaded them). It stays until the writer clears it
	// (Writer.ClearLostTail).
	LostTail *lostTailRec `json:"lost_tail,omitempty"`
}

type tierRec struct {
	Epoch  uint64 `json:"epoch"`   // the epoch of the tiered writer
	TierID uint64 `json:"tier_id"` // its local tier's random id
}

type lostTailRec struct {
	After uint64 `json:"after"` // entries above it may be lost
	Epoch uint64 `json:"epoch"` // the epoch that found the tier gone
}

type segState string

const (
	segOpen    segState = "open"
	segSealed  segState = "sealed"
	segDeleted segState = "deleted" // phase 1 of GC: fragments may be deleted after the grace period
)

type segRec struct {
	ID    uint64   `json:"id"`
	State segState `json:"state"`
	Epoch uint64   `json:"epoch"` // the epoch whose CAS created it
	// First is the index of the segment's first entry.
	First uint64 `json:"first"`
	// Last is the index of the last live entry, valid once sealed (and
	// lowered by TruncateBack); First-1 when the segment holds none.
	Last uint64 `json:"last"`
	// Frags is the number of valid fragments (seq 0..Frags-1), valid once
	// sealed. A fence, if any, sits at seq Frags.
	Frags uint64 `json:"frags"`
}

// Record formats: 1 is a record without tiered-mode state; 2 may hold
// Tier and LostTail. A record is written in format 2 only when it holds
// either, so logs never written in tiered mode stay readable by binaries
// that know only format 1, while such a binary refuses (never ignores) a
// record carrying a lost-tail marker.
const (
	recordFormat       = 1
	recordFormatTiered = 2
)

func (r *logRecord) marshal() ([]byte, error) {
	c := *r
	c.Format = recordFormat
	if r.Tier != nil || r.LostTail != nil {
		c.Format = recordFormatTiered
	}
	return json.Marshal(&c)
}

func unmarshalRecord(name string, b []byte) (*logRecord, error) {
	var r logRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: log %q: metadata record: %v", ErrCorrupt, name, err)
	}
	if r.Format != recordFormat && r.Format != recordFormatTiered {
		return nil, fmt.Errorf("%w: log %q: metadata record format %d (this version reads %d and %d)", ErrUnsupportedVersion, name, r.Format, recordFormat, recordFormatTiered)
	}
	return &r, nil
}

func (r *logRecord) clone() *logRecord {
	c := *r
	c.Segments = append([]segRec(nil), r.Segments...)
	if r.Tier != nil {
		t := *r.Tier
		c.Tier = &t
	}
	if r.LostTail != nil {
		l := *r.LostTail
		c.LostTail = &l
	}
	if r.Meta != nil {
		c.Meta = make(map[string][]byte, len(r.Meta))
		for k, v := range r.Meta {
			c.Meta[k] = v // values are never mutated in place
		}
	}
	return &c
}

// openSeg returns the open segment, or nil.
func (r *logRecord) openSeg() *segRec {
	if n := len(r.Segments); n > 0 && r.Segments[n-1].State == segOpen {
		return &r.Segments[n-1]
	}
	return nil
}

// lastSealed returns the last live sealed segment's Last, or ok=false.
func (r *logRecord) lastSealed() (uint64, bool) {
	for i := len(r.Segments) - 1; i >= 0; i-- {
		s := r.Segments[i]
		if s.State == segSealed && s.Last+1 > s.First {
			return s.Last, true
		}
	}
	return 0, false
}

// segFor returns the live segment that holds index i according to the
// record (for the open segment, any i >= First), or nil.
func (r *logRecord) segFor(i uint64) *segRec {
	for k := len(r.Segments) - 1; k >= 0; k-- {
		s := &r.Segments[k]
		if s.State == segDeleted || i < s.First {
			continue
		}
		if s.State == segOpen || i <= s.Last {
			return s
		}
		return nil
	}
	return nil
}

// sealSegment seals segment id, if it is open, at frags fragments with its
// last entry at last.
func (r *logRecord) sealSegment(id, frags, last uint64) {
	for i := range r.Segments {
		if s := &r.Segments[i]; s.ID == id && s.State == segOpen {
			s.State, s.Frags, s.Last = segSealed, frags, last
		}
	}
}

// addOpenSegment appends an open segment of epoch whose first entry is
// first, under the ID *id, which it picks (the record's next one) when
// *id is 0. A record update that is applied again passes the same id, so
// it opens no second segment.
func (r *logRecord) addOpenSegment(id *uint64, epoch, first uint64) {
	if *id == 0 {
		*id = r.NextSegment
	}
	if !r.hasSegment(*id) {
		r.NextSegment = max(r.NextSegment, *id+1)
		r.Segments = append(r.Segments, segRec{ID: *id, State: segOpen, Epoch: epoch, First: first, Last: first - 1})
	}
}

func (r *logRecord) hasSegment(id uint64) bool {
	for _, s := range r.Segments {
		if s.ID == id {
			return true
		}
	}
	return false
}
