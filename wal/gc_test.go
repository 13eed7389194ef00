package wal_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

func countObjects(t *testing.T, b objstore.Bucket, prefix string) int {
	t.Helper()
	n := 0
	if err := objstore.ListAll(context.Background(), b, prefix, 0, func(objstore.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGC: segments wholly below the first index are deleted after the grace
// period by a client without a writer, a reader's position holds them back,
// and reads below the truncation point are ErrTruncated, never end-of-log.
func TestGC(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	cfg := func(c *wal.Config) { c.SegmentMaxFragments = 2; c.MaxEntries = 5; c.GCGrace = 50 * time.Millisecond }
	c := newClient(t, b, m, cfg)
	c.CreateLog(ctx, "gc")
	l, _ := c.OpenLog(ctx, "gc")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 100; i += 5 {
		if err := w.Append(ctx, i, entries(i, 5)); err != nil {
			t.Fatal(err)
		}
	}
	before := countObjects(t, b, "wal/gc/")
	if err := w.TruncateFront(ctx, 61); err != nil {
		t.Fatal(err)
	}
	w.Close()

	// A janitor in another process, with a reader of its own at 30.
	j := newClient(t, b, m, cfg)
	jl, _ := j.OpenLog(ctx, "gc")
	if _, err := jl.Get(ctx, 60); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("Get below the first index = %v, want ErrTruncated", err)
	}
	st, err := j.GC(ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsRemoved != 0 || st.Waiting == 0 {
		t.Fatalf("first GC pass = %+v: must only start the grace period", st)
	}
	time.Sleep(60 * time.Millisecond)
	st, err = j.GC(ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsRemoved == 0 || st.ObjectsDeleted == 0 {
		t.Fatalf("GC after the grace period = %+v: removed nothing", st)
	}
	after := countObjects(t, b, "wal/gc/")
	if after >= before {
		t.Fatalf("objects: %d before, %d after GC", before, after)
	}
	// Idempotent, and the live entries are intact.
	if st, err := j.GC(ctx, "gc"); err != nil || st.ObjectsDeleted != 0 {
		t.Fatalf("second GC = %+v, %v", st, err)
	}
	for i := uint64(61); i <= 100; i++ {
		if _, err := jl.Get(ctx, i); err != nil {
			t.Fatalf("Get(%d) after GC: %v", i, err)
		}
	}
	if _, err := jl.Get(ctx, 10); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("Get of a collected entry = %v, want ErrTruncated", err)
	}
}

// TestGCRespectsReaders: a reader in this process holds back the deletion of
// segments at or after its position; entries below the first index read as
// ErrTruncated all the same.
func TestGCRespectsReaders(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 1; c.GCGrace = time.Nanosecond })
	c.CreateLog(ctx, "gcr")
	l, _ := c.OpenLog(ctx, "gcr")
	w, _ := l.OpenWriter(ctx)
	defer w.Close()
	for i := uint64(1); i <= 20; i += 2 { // one segment per two entries: [1,2], [3,4], ...
		if err := w.Append(ctx, i, entries(i, 2)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := l.NewReader(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.TruncateFront(ctx, 15); err != nil {
		t.Fatal(err)
	}
	c.GC(ctx, "gcr") // starts the grace period
	time.Sleep(time.Millisecond)
	st, err := c.GC(ctx, "gcr")
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsRemoved != 1 || st.Waiting != 6 {
		t.Fatalf("GC with a reader at 3 = %+v; want only [1,2] removed and 6 segments held", st)
	}
	if _, _, err := r.Next(ctx); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("reader below the first index: Next = %v, want ErrTruncated", err)
	}
	r.Close()
	st, err = c.GC(ctx, "gcr")
	if err != nil || st.SegmentsRemoved != 6 {
		t.Fatalf("GC after the reader closed = %+v, %v; want the 6 held segments removed", st, err)
	}
}

func TestMetricsAndStats(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c := newClient(t, objmem.New(), metamem.New(), func(c *wal.Config) { c.Registerer = reg })
	c.CreateLog(ctx, "m")
	l, _ := c.OpenLog(ctx, "m")
	w, _ := l.OpenWriter(ctx)
	defer w.Close()
	for i := uint64(1); i <= 10; i++ {
		if err := w.Append(ctx, i, entries(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 10 {
		t.Fatalf("registered %d metrics (%v)", n, err)
	}
	mfs, _ := reg.Gather()
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			if mt.GetCounter() != nil {
				got[mf.GetName()] = mt.GetCounter().GetValue()
			}
			if mt.GetHistogram() != nil {
				got[mf.GetName()] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
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
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, func(c *wal.Config) { c.MaxEntries = 10; c.SegmentMaxFragments = 50 })
	c.CreateLog(ctx, "pf")
	l, _ := c.OpenLog(ctx, "pf")
	w, _ := l.OpenWriter(ctx)
	for i := uint64(1); i <= 1000; i += 10 {
		if err := w.Append(ctx, i, entries(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	counting := &getCountingBucket{Bucket: b}
	c2 := newClient(t, counting, m, nil)
	l2, _ := c2.OpenLog(ctx, "pf")
	r, err := l2.NewReader(ctx, wal.Earliest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for want := uint64(1); want <= 1000; want++ {
		i, e, err := r.Next(ctx)
		if err != nil || i != want || string(e) != string(entries(i, 1)[0]) {
			t.Fatalf("Next = %d %q %v", i, e, err)
		}
	}
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
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 1 })
	c.CreateLog(ctx, "jan")
	l, _ := c.OpenLog(ctx, "jan")
	w, _ := l.OpenWriter(ctx)
	for i := uint64(1); i <= 10; i++ {
		if err := w.Append(ctx, i, entries(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
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
	b, m := objmem.New(), metamem.New()
	const ttl = 300 * time.Millisecond
	writer := newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 1 })
	writer.CreateLog(ctx, "lease")
	l, _ := writer.OpenLog(ctx, "lease")
	w, _ := l.OpenWriter(ctx)
	defer w.Close()
	for i := uint64(1); i <= 20; i += 2 {
		if err := w.Append(ctx, i, entries(i, 2)); err != nil {
			t.Fatal(err)
		}
	}
	readerProc := newClient(t, b, m, func(c *wal.Config) { c.ReaderLease = ttl })
	rl, _ := readerProc.OpenLog(ctx, "lease")
	r, err := rl.NewReader(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.TruncateFront(ctx, 15); err != nil {
		t.Fatal(err)
	}
	janitor := newClient(t, b, m, func(c *wal.Config) { c.GCGrace = time.Nanosecond })
	janitor.GC(ctx, "lease")
	time.Sleep(time.Millisecond)
	st, err := janitor.GC(ctx, "lease")
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsRemoved != 1 || st.Waiting != 6 {
		t.Fatalf("GC with a leased reader at 3 = %+v; want [1,2] removed and 6 held", st)
	}
	time.Sleep(ttl + 50*time.Millisecond) // the reader renews nothing: its lease lapses
	st, err = janitor.GC(ctx, "lease")
	if err != nil || st.SegmentsRemoved != 6 {
		t.Fatalf("GC after the lease lapsed = %+v, %v; want the 6 held segments removed", st, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close of a reader whose lease was collected: %v", err)
	}
}
