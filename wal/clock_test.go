package wal_test

// Tests of Config.Clock: every duration the engine measures runs on the
// client's clock, so a test with clockwork's fake clock controls segment
// age, grace periods, leases, the janitor, batching, polls, request
// timeouts and retries without sleeping. They wait for real only as a
// guard against a hang (hangGuard), never for time to pass.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// hangGuard bounds, in real time, a wait for something the test made
// happen on the fake clock.
const hangGuard = 10 * time.Second

// onClock is a newClient config change: the client runs on clock (nil:
// the real clock) without a janitor, then mod (if not nil) applies.
func onClock(clock clockwork.Clock, mod func(*wal.Config)) func(*wal.Config) {
	return func(c *wal.Config) {
		c.Clock, c.GCInterval = clock, -1
		if mod != nil {
			mod(c)
		}
	}
}

// dataFragments counts the data fragments (fences left out) of each
// segment in the bucket under prefix.
func dataFragments(t *testing.T, b objstore.Bucket, prefix string) map[uint64]int {
	t.Helper()
	segs := map[uint64]int{}
	err := objstore.ListAll(context.Background(), b, prefix, 0, func(o objstore.ObjectInfo) error {
		if seg, _, ok := codec.ParseFragmentKey(o.Key); ok && o.Size != codec.FixedHeaderSize {
			segs[seg]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// hasWaiter reports, without waiting, whether anything waits on clock.
func hasWaiter(clock *clockwork.FakeClock) bool {
	return clock.BlockUntilContext(cancelledCtx(), 1) == nil
}

// waitForWaiter returns once something waits on clock.
func waitForWaiter(t *testing.T, clock *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal("nothing came to wait on the fake clock")
	}
}

// wantGC runs a GC pass through c and fails the test unless it removed
// and kept waiting the given numbers of segments.
func wantGC(t *testing.T, c *wal.Client, name string, removed, waiting int) {
	t.Helper()
	if st := mustGC(t, c, name); st.SegmentsRemoved != removed || st.Waiting != waiting {
		t.Fatalf("GC = %+v; want %d segments removed and %d waiting", st, removed, waiting)
	}
}

// A segment rolls once SegmentMaxAge has passed on the clock since it
// opened, not before.
func TestSegmentRollsWhenMaxAgePassesOnTheClock(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b, m := memStores()
	const age = 10 * time.Minute
	_, w := newLog(t, newClient(t, b, m, onClock(clock, func(c *wal.Config) { c.SegmentMaxAge = age })), "age")
	appendRange(t, w, 1, 1, 1)
	clock.Advance(age - time.Nanosecond)
	appendRange(t, w, 2, 2, 1)
	if segs := dataFragments(t, b, "wal/age/"); len(segs) != 1 {
		t.Fatalf("fragments per segment %v: a segment younger than SegmentMaxAge rolled", segs)
	}
	clock.Advance(time.Nanosecond)
	appendRange(t, w, 3, 3, 1)
	segs := dataFragments(t, b, "wal/age/")
	if len(segs) != 2 {
		t.Fatalf("fragments per segment %v: the segment did not roll at SegmentMaxAge", segs)
	}
	for seg, n := range segs {
		if n != 2 && n != 1 {
			t.Fatalf("segment %d has %d fragments; want 2 in the first and 1 in the second (%v)", seg, n, segs)
		}
	}
}

// GC deletes a segment compacted away (below the first index) only once
// GCGrace has passed on the clock since it first saw it marked.
func TestGCDeletesOnlyAfterGraceOnTheClock(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b, m := memStores()
	const grace = 10 * time.Minute
	c := newClient(t, b, m, onClock(clock, func(c *wal.Config) { c.SegmentMaxFragments = 1; c.GCGrace = grace }))
	l, w := newLog(t, c, "grace")
	appendRange(t, w, 1, 5, 1) // one segment per entry
	if err := w.TruncateFront(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	before := dataFragments(t, b, "wal/grace/")
	wantGC(t, c, "grace", 0, 3) // the grace period starts
	clock.Advance(grace - time.Nanosecond)
	wantGC(t, c, "grace", 0, 3)
	if got := dataFragments(t, b, "wal/grace/"); len(got) != len(before) {
		t.Fatalf("segments in the bucket %v before the grace period passed, %v at first", got, before)
	}
	clock.Advance(time.Nanosecond)
	wantGC(t, c, "grace", 3, 0)
	if got := dataFragments(t, b, "wal/grace/"); len(got) != len(before)-3 {
		t.Fatalf("segments in the bucket %v after GC, %v before", got, before)
	}
	wantEntries(t, l, 4, 5)
}

// leaseRecords returns the lease records of log name: key -> version.
func leaseRecords(t *testing.T, m meta.Store, name string) map[string]meta.Version {
	t.Helper()
	recs, err := m.List(context.Background(), "wal/leases/"+name+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]meta.Version{}
	for _, r := range recs {
		out[r.Key] = r.Version
	}
	return out
}

// A reader lease that is not renewed expires once the collecting process
// has seen it unchanged for longer than ReaderLease on its clock: until
// then it holds the segments at and after the reader's position.
func TestReaderLeaseExpiresOnTheClock(t *testing.T) {
	b, m := memStores()
	const ttl, grace = time.Minute, time.Second
	_, w := newLog(t, newClient(t, b, m, onClock(nil, func(c *wal.Config) { c.SegmentMaxFragments = 1 })), "lease")
	appendRange(t, w, 1, 10, 1) // one segment per entry

	readerProc := newClient(t, b, m, onClock(clockwork.NewFakeClock(), func(c *wal.Config) { c.ReaderLease = ttl }))
	r, err := openLog(t, readerProc, "lease").NewReader(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.TruncateFront(context.Background(), 8); err != nil {
		t.Fatal(err)
	}

	clock := clockwork.NewFakeClock()
	gcProc := newClient(t, b, m, onClock(clock, func(c *wal.Config) { c.GCGrace = grace }))
	wantGC(t, gcProc, "lease", 0, 7) // sees the lease and the 7 deleted segments
	clock.Advance(grace)
	wantGC(t, gcProc, "lease", 2, 5) // [1] and [2] go; the lease at 3 holds the rest
	clock.Advance(ttl - grace)
	wantGC(t, gcProc, "lease", 0, 5) // seen unchanged for exactly its period: still live
	clock.Advance(time.Nanosecond)
	wantGC(t, gcProc, "lease", 5, 0) // expired
	if leases := leaseRecords(t, m, "lease"); len(leases) != 0 {
		t.Fatalf("expired lease not deleted: %v", leases)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close of a reader whose lease expired: %v", err)
	}
}

// A reader renews its lease, with its position, once a third of
// ReaderLease has passed on its clock, and not before.
func TestReaderLeaseRenewedOnTheClock(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	const ttl = 3 * time.Minute
	_, w := newLog(t, newClient(t, b, m, onClock(nil, nil)), "renew")
	appendRange(t, w, 1, 5, 1)

	clock := clockwork.NewFakeClock()
	r := newReader(t, openLog(t, newClient(t, b, m, onClock(clock, func(c *wal.Config) { c.ReaderLease = ttl })), "renew"), 1)
	first := leaseRecords(t, m, "renew")
	wantNexts(t, ctx, r, 1, 1)
	clock.Advance(ttl/3 - time.Nanosecond)
	wantNexts(t, ctx, r, 2, 2)
	if got := leaseRecords(t, m, "renew"); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Fatalf("lease renewed before a third of its period: %v, was %v", got, first)
	}
	clock.Advance(time.Nanosecond)
	wantNexts(t, ctx, r, 3, 3)
	got := leaseRecords(t, m, "renew")
	if len(got) != 1 || fmt.Sprint(got) == fmt.Sprint(first) {
		t.Fatalf("lease not renewed after a third of its period: %v, was %v", got, first)
	}
	for key := range got {
		rec, err := m.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Pos uint64 `json:"pos"`
		}
		if err := json.Unmarshal(rec.Value, &v); err != nil || v.Pos != 3 {
			t.Fatalf("renewed lease %s = %v (%q); want position 3", key, err, rec.Value)
		}
	}
}

// janitorPasses is a slog handler that reports each end of a janitor pass.
type janitorPasses chan struct{}

func (janitorPasses) Enabled(context.Context, slog.Level) bool { return true }
func (p janitorPasses) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "wal: janitor pass" {
		p <- struct{}{}
	}
	return nil
}
func (p janitorPasses) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p janitorPasses) WithGroup(string) slog.Handler      { return p }

// The janitor runs by default, every GCInterval (1 minute) on the clock,
// and collects what a writer truncated with no call to GC; a negative
// GCInterval runs none.
func TestJanitorRunsEveryGCIntervalOnTheClock(t *testing.T) {
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, onClock(nil, func(c *wal.Config) { c.SegmentMaxFragments = 1 })), "jan")
	appendRange(t, w, 1, 5, 1)
	if err := w.TruncateFront(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	before := len(dataFragments(t, b, "wal/jan/"))

	clock := clockwork.NewFakeClock()
	passes := make(janitorPasses, 10)
	j := newClient(t, b, m, func(c *wal.Config) { c.Clock, c.GCGrace, c.Logger = clock, time.Minute, slog.New(passes) })
	if got := j.Config().GCInterval; got != time.Minute {
		t.Fatalf("default GCInterval = %v, want 1m", got)
	}
	if !hasWaiter(clock) {
		t.Fatal("a client with the default GCInterval does not wait on its clock: no janitor")
	}
	pass := func() {
		t.Helper()
		clock.Advance(time.Minute)
		select {
		case <-passes:
		case <-time.After(hangGuard):
			t.Fatal("no janitor pass after GCInterval passed on the clock")
		}
	}
	pass() // sees the deleted segments: their grace period starts
	if got := len(dataFragments(t, b, "wal/jan/")); got != before {
		t.Fatalf("%d segments left of %d before GCGrace passed", got, before)
	}
	pass()
	if got := len(dataFragments(t, b, "wal/jan/")); got != before-3 {
		t.Fatalf("%d segments left of %d after the janitor's second pass; want 3 collected", got, before)
	}

	off := clockwork.NewFakeClock()
	newClient(t, b, m, onClock(off, nil)) // GCInterval -1
	if hasWaiter(off) {
		t.Fatal("a client with a negative GCInterval waits on its clock: it runs a janitor")
	}
}

// An asynchronous append waits for MaxInterval on the clock before its
// fragment is cut, and the append latency metric is measured on it.
func TestAsyncAppendWaitsForMaxIntervalOnTheClock(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w0 := newLog(t, newClient(t, b, m, onClock(nil, nil)), "batch")
	appendRange(t, w0, 1, 1, 1)
	w0.Close() // the next writer opens a segment of its own: nothing is queued but the append

	clock := clockwork.NewFakeClock()
	reg := prometheus.NewRegistry()
	const interval = time.Second
	c := newClient(t, b, m, onClock(clock, func(c *wal.Config) { c.MaxInterval = interval; c.Registerer = reg }))
	w := openWriter(t, openLog(t, c, "batch"))
	f := w.AppendAsync(2, entries(2, 1))
	waitForWaiter(t, clock) // the flush loop waits for MaxInterval
	clock.Advance(interval - time.Nanosecond)
	select {
	case <-f.Done():
		t.Fatalf("async append resolved (%v) before MaxInterval passed on the clock", f.Err())
	default:
	}
	if n := c.Stats().FragmentPuts; n != 0 {
		t.Fatalf("%d fragments written before MaxInterval passed on the clock", n)
	}
	clock.Advance(time.Nanosecond)
	wctx, cancel := context.WithTimeout(ctx, hangGuard)
	defer cancel()
	if err := f.Wait(wctx); err != nil {
		t.Fatalf("async append after MaxInterval: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "woodpecker_wal_append_latency_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() != interval.Seconds() {
				t.Fatalf("append latency: %d samples summing to %vs; want one of %v, as the clock measured",
					h.GetSampleCount(), h.GetSampleSum(), interval)
			}
			return
		}
	}
	t.Fatal("no append latency metric")
}

// RequestTimeout and the retry waits run on the clock: against a store
// that never answers, a writer with MaxFlushRetries 1 breaks after two
// attempts of RequestTimeout (10 s by default) and one wait of up to a
// minute, all passed on the fake clock.
func TestRequestTimeoutAndRetriesOnTheClock(t *testing.T) {
	clock := clockwork.NewFakeClock()
	unwind := make(chan struct{})
	t.Cleanup(func() { close(unwind) }) // runs after the client's Close
	defer func() {
		if t.Failed() { // let the writer's waits on the fake clock end, so that its Close returns
			go func() {
				for {
					select {
					case <-unwind:
						return
					case <-time.After(time.Millisecond):
						clock.Advance(time.Hour)
					}
				}
			}()
		}
	}()
	b, m := memStores()
	hb := newHeldBucket(b)
	c := newClient(t, hb, m, onClock(clock, func(c *wal.Config) { c.MaxFlushRetries = 1; c.RetryInterval = time.Minute }))
	_, w := newLog(t, c, "hung")
	appendRange(t, w, 1, 1, 1)
	hb.hold.Store(true) // the gate stays shut: no PUT is answered
	done := make(chan error, 1)
	go func() { done <- w.Append(context.Background(), 2, entries(2, 1)) }()
	cfg := c.Config()
	for _, d := range []time.Duration{cfg.RequestTimeout, cfg.RetryInterval, cfg.RequestTimeout} {
		waitForWaiter(t, clock) // an attempt's timeout, or the wait before the retry
		select {
		case err := <-done:
			t.Fatalf("Append returned %v before the clock moved on", err)
		default:
		}
		clock.Advance(d)
	}
	select {
	case err := <-done:
		wantErr(t, err, wal.ErrBroken, "Append against a store that never answers")
	case <-time.After(hangGuard):
		t.Fatal("Append still hung after its attempts timed out on the clock")
	}
	if n := len(hb.entered); n != 2 {
		t.Fatalf("%d PUT attempts, want 2 (MaxFlushRetries 1)", n)
	}
}

// A reader in a process without the log's writer polls the bucket on its
// clock: an entry made durable elsewhere is returned once its poll timer
// fires there, not before.
func TestTailingReaderPollsOnTheClock(t *testing.T) {
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, onClock(nil, nil)), "poll")
	appendRange(t, w, 1, 1, 1)

	clock := clockwork.NewFakeClock()
	rc := newClient(t, b, m, onClock(clock, nil))
	r := newReader(t, openLog(t, rc, "poll"), wal.Latest)
	type next struct {
		i   uint64
		err error
	}
	got := make(chan next, 1)
	go func() {
		i, _, err := r.Next(context.Background())
		got <- next{i, err}
	}()
	waitForWaiter(t, clock) // the reader waits to poll
	appendRange(t, w, 2, 2, 1)
	select {
	case n := <-got:
		t.Fatalf("Next = %d, %v before its poll timer fired on the clock", n.i, n.err)
	default:
	}
	clock.Advance(rc.Config().PollInterval)
	select {
	case n := <-got:
		if n.err != nil || n.i != 2 {
			t.Fatalf("Next = %d, %v; want 2", n.i, n.err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Next did not return after its poll timer fired on the clock")
	}
}
