package wal_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// TestGC: segments wholly below the first index are deleted after the grace
// period by a client without a writer, a reader's position holds them back,
// and reads below the truncation point are ErrTruncated, never end-of-log.
func TestGC(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	cfg := func(c *wal.Config) { c.SegmentMaxFragments = 2; c.MaxEntries = 5; c.GCGrace = 50 * time.Millisecond }
	_, w := newLog(t, newClient(t, b, m, cfg), "gc")
	appendRange(t, w, 1, 100, 5)
	before := countObjects(t, b, "wal/gc/")
	if err := w.TruncateFront(ctx, 61); err != nil {
		t.Fatal(err)
	}
	w.Close()

	// A janitor in another process, with a reader of its own at 30.
	j := newClient(t, b, m, cfg)
	jl := openLog(t, j, "gc")
	wantGetErr(t, jl, 60, wal.ErrTruncated) // below the first index
	if st := mustGC(t, j, "gc"); st.SegmentsRemoved != 0 || st.Waiting == 0 {
		t.Fatalf("first GC pass = %+v: must only start the grace period", st)
	}
	time.Sleep(60 * time.Millisecond)
	if st := mustGC(t, j, "gc"); st.SegmentsRemoved == 0 || st.ObjectsDeleted == 0 {
		t.Fatalf("GC after the grace period = %+v: removed nothing", st)
	}
	after := countObjects(t, b, "wal/gc/")
	if after >= before {
		t.Fatalf("objects: %d before, %d after GC", before, after)
	}
	// Idempotent, and the live entries are intact.
	if st := mustGC(t, j, "gc"); st.ObjectsDeleted != 0 {
		t.Fatalf("second GC = %+v", st)
	}
	wantEntries(t, jl, 61, 100)
	wantGetErr(t, jl, 10, wal.ErrTruncated) // a collected entry
}

// TestGCRespectsReaders: a reader in this process holds back the deletion of
// segments at or after its position; entries below the first index read as
// ErrTruncated all the same.
func TestGCRespectsReaders(t *testing.T) {
	ctx := context.Background()
	c := newMemClient(t, func(c *wal.Config) { c.SegmentMaxFragments = 1; c.GCGrace = time.Nanosecond })
	l, w := newLog(t, c, "gcr")
	appendRange(t, w, 1, 20, 2) // one segment per two entries: [1,2], [3,4], ...
	r := newReader(t, l, 3)
	if err := w.TruncateFront(ctx, 15); err != nil {
		t.Fatal(err)
	}
	mustGC(t, c, "gcr") // starts the grace period
	time.Sleep(time.Millisecond)
	if st := mustGC(t, c, "gcr"); st.SegmentsRemoved != 1 || st.Waiting != 6 {
		t.Fatalf("GC with a reader at 3 = %+v; want only [1,2] removed and 6 segments held", st)
	}
	_, _, err := r.Next(ctx)
	wantErr(t, err, wal.ErrTruncated, "Next of a reader below the first index")
	r.Close()
	if st := mustGC(t, c, "gcr"); st.SegmentsRemoved != 6 {
		t.Fatalf("GC after the reader closed = %+v; want the 6 held segments removed", st)
	}
}

func TestMetricsAndStats(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newMemClient(t, func(c *wal.Config) { c.Registerer = reg })
	_, w := newLog(t, c, "m")
	appendRange(t, w, 1, 10, 1)
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 10 {
		t.Fatalf("registered %d metrics (%v)", n, err)
	}
	got := gatherValues(t, reg)
	if got["woodpecker_wal_flushed_entries_total"] != 10 || got["woodpecker_wal_fragment_puts_total"] != 10 ||
		got["woodpecker_wal_sync_append_latency_seconds"] != 10 {
		t.Fatalf("metrics = %v", got)
	}
	if st := c.Stats(); st.FragmentPuts != 10 {
		t.Fatalf("Stats = %+v", st)
	}
}

// TestReplayPrefetches: a sequential reader of a sealed log from a cold
// client costs about one GET per fragment, most of them issued ahead of it.
func TestReplayPrefetches(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, func(c *wal.Config) { c.MaxEntries = 10; c.SegmentMaxFragments = 50 }), "pf")
	appendRange(t, w, 1, 1000, 10)
	w.Close()
	counting := &getCountingBucket{Bucket: b}
	c2 := newClient(t, counting, m, nil)
	r := newReader(t, openLog(t, c2, "pf"), wal.Earliest)
	wantNexts(t, ctx, r, 1, 1000)
	gets := counting.gets.Load()
	st := c2.Stats()
	t.Logf("100 fragments replayed with %d GETs (at most %d at once), cache hits %d misses %d",
		gets, counting.maxInflight.Load(), st.CacheHits, st.CacheMisses)
	if gets > 110 {
		t.Fatalf("replay of 100 fragments took %d GETs: not one per fragment", gets)
	}
	if counting.maxInflight.Load() < 2 {
		t.Fatalf("GETs never overlapped: nothing was fetched ahead of the reader")
	}
}

// getCountingBucket counts GETs and the most in flight at once; each GET
// takes a millisecond, like a nearby server.
type getCountingBucket struct {
	objstore.Bucket
	gets, inflight, maxInflight atomic.Int64
}

func (b *getCountingBucket) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	b.gets.Add(1)
	cur := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for {
		m := b.maxInflight.Load()
		if cur <= m || b.maxInflight.CompareAndSwap(m, cur) {
			break
		}
	}
	time.Sleep(time.Millisecond)
	return b.Bucket.Get(ctx, key, off, n)
}

// TestJanitor: a client with GCInterval collects a log's garbage with no
// writer open and stops when closed.
func TestJanitor(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 1 }), "jan")
	appendRange(t, w, 1, 10, 1)
	if err := w.TruncateFront(ctx, 9); err != nil {
		t.Fatal(err)
	}
	w.Close()
	before := countObjects(t, b, "wal/jan/")
	j, err := wal.Open(ctx, wal.Config{Bucket: b, Meta: m, GCInterval: 5 * time.Millisecond, GCGrace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countObjects(t, b, "wal/jan/") > before-8 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if after := countObjects(t, b, "wal/jan/"); after > before-8 {
		t.Fatalf("janitor left %d of %d objects; 8 segments were below the first index", after, before)
	}
}

// TestGCRespectsLeases: a reader in another process holds segments through
// its lease while it is renewed; a lapsed lease stops holding them.
func TestGCRespectsLeases(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	const ttl = 300 * time.Millisecond
	_, w := newLog(t, newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 1 }), "lease")
	appendRange(t, w, 1, 20, 2)
	r := newReader(t, openLog(t, newClient(t, b, m, func(c *wal.Config) { c.ReaderLease = ttl }), "lease"), 3)
	if err := w.TruncateFront(ctx, 15); err != nil {
		t.Fatal(err)
	}
	janitor := newClient(t, b, m, func(c *wal.Config) { c.GCGrace = time.Nanosecond })
	mustGC(t, janitor, "lease") // starts the grace period
	time.Sleep(time.Millisecond)
	if st := mustGC(t, janitor, "lease"); st.SegmentsRemoved != 1 || st.Waiting != 6 {
		t.Fatalf("GC with a leased reader at 3 = %+v; want [1,2] removed and 6 held", st)
	}
	time.Sleep(ttl + 50*time.Millisecond) // the reader renews nothing: its lease lapses
	if st := mustGC(t, janitor, "lease"); st.SegmentsRemoved != 6 {
		t.Fatalf("GC after the lease lapsed = %+v; want the 6 held segments removed", st)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close of a reader whose lease was collected: %v", err)
	}
}
