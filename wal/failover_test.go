package wal_test

// Failures and takeovers that overlap other operations: reopening after an
// outage, hung metadata, Sync behind queued control operations, what the
// process of a fenced or deleted writer reads, and readers across front
// truncation and re-created logs.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// A Reopen attempt that fails during the outage (its epoch CAS landed, the
// fence PUT did not) leaves the log at an epoch nobody holds; the next
// Reopen by the same owner resumes, since no other writer took the log.
func TestReopenResumesAfterItsOwnFailedAttempt(t *testing.T) {
	ctx := context.Background()
	hb, _, _, w := newHeldLog(t, "ro")
	mustAppend(t, w, 1, entries(1, 3))
	hb.fail.Store(true) // bucket outage
	wantErr(t, w.Append(ctx, 4, entries(4, 1)), wal.ErrBroken, "Append during the outage")
	// The outage goes on: the first attempt to resume fails.
	_, err := w.Reopen(ctx)
	t.Logf("Reopen during the outage: %v", err)
	if err == nil || errors.Is(err, wal.ErrFenced) {
		t.Fatalf("Reopen during the outage = %v; want a non-fencing failure", err)
	}
	hb.fail.Store(false) // the store is back; nobody else ever opened a writer
	mustReopen(t, w, "after the outage, with no other writer ever")
}

// The same with a lost reply: Reopen's epoch compare-and-swap lands but its
// reply is lost; the retry resumes instead of being fenced by the owner's
// own epoch.
func TestReopenResumesAfterItsOwnLostReply(t *testing.T) {
	ctx := context.Background()
	am := newAmbMeta()
	_, w := newLog(t, newClient(t, objmem.New(), am, nil), "rl")
	mustAppend(t, w, 1, entries(1, 3))
	am.loseNextReply() // the next record update (Reopen's epoch CAS) lands, its reply is lost
	_, err := w.Reopen(ctx)
	t.Logf("Reopen with its epoch CAS's reply lost: %v", err)
	if err == nil {
		t.Fatal("Reopen succeeded despite the lost reply")
	}
	mustReopen(t, w, "retried, with no other writer ever")
}

// RequestTimeout bounds every metadata call the writer makes, the re-read
// of the record after a failed update included: a hung Get turns into
// retries and ErrBroken, and Close returns.
func TestCloseReturnsWhenRecordReReadHangs(t *testing.T) {
	ctx := context.Background()
	hm := newHeldMeta()
	_, w := newLog(t, newClient(t, objmem.New(), hm, func(c *wal.Config) {
		c.RequestTimeout = 100 * time.Millisecond
		c.RetryBudget = 300 * time.Millisecond
	}), "h")
	mustAppend(t, w, 1, entries(1, 3))
	hm.failUpdate.Store(true) // a transient failure of the record update...
	hm.hangGet.Store(true)    // ...and the re-read that follows it hangs
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := w.TruncateBack(tctx, 1); err == nil {
		t.Fatal("TruncateBack succeeded with every record update failing")
	}
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	select {
	case err := <-closed:
		t.Logf("Close = %v", err)
	case <-time.After(5 * time.Second):
		hangs := hm.getHangs.Load()
		close(hm.release) // let the test end
		hm.hangGet.Store(false)
		hm.failUpdate.Store(false)
		<-closed
		t.Fatalf("Writer.Close hung for 5s (RequestTimeout 100ms, RetryBudget 300ms); %d hung record Gets", hangs)
	}
}

// Sync waits for everything queued before it, a TruncateBack whose
// caller's ctx expired included, not only for appends.
func TestSyncWaitsForQueuedTruncateBack(t *testing.T) {
	ctx := context.Background()
	b, hm := objmem.New(), newHeldMeta()
	_, w := newLog(t, newClient(t, b, hm, nil), "sy")
	mustAppend(t, w, 1, entries(1, 5))
	gate := make(chan struct{})
	hm.gate.Store(&gate) // the truncation's record update is slow
	wantErr(t, w.TruncateBack(cancelledCtx(), 3), context.Canceled, "TruncateBack with a cancelled ctx")
	<-hm.entered // the truncation is running, not durable
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	serr := w.Sync(sctx)
	lo := openLog(t, newClient(t, b, hm.Store, nil), "sy")
	last, lerr := lo.LastIndex(ctx)
	hm.gate.Store(nil)
	close(gate)
	t.Logf("Sync = %v; the log's durable last index then: %d (%v)", serr, last, lerr)
	if serr == nil && last == 5 {
		t.Fatal("Sync returned nil while the TruncateBack(3) queued before it was not durable")
	}
}

// Once a writer knows it is fenced, its process reads the log as the new
// owner made it — not the entries the new owner truncated, nor the old
// meta.
func TestFencedWritersProcessReadsTheNewOwnersLog(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	l1, w1 := newLog(t, newClient(t, b, m, nil), "fv")
	mustAppend(t, w1, 1, entries(1, 10))
	if err := w1.SetMeta(ctx, map[string][]byte{"term": []byte("1")}); err != nil {
		t.Fatal(err)
	}

	l2 := openLog(t, newClient(t, b, m, nil), "fv") // another process takes over
	w2 := openWriter(t, l2)
	if err := w2.TruncateBack(ctx, 5); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w2, 6, [][]byte{[]byte("new-6")})
	if err := w2.SetMeta(ctx, map[string][]byte{"term": []byte("2")}); err != nil {
		t.Fatal(err)
	}

	wantErr(t, w1.Append(ctx, 11, entries(11, 1)), wal.ErrFenced, "old writer's Append")
	// w1 knows it is fenced. What does its process read?
	got6, err6 := l1.Get(ctx, 6)
	got8, err8 := l1.Get(ctx, 8)
	last, _ := l1.LastIndex(ctx)
	mv, _ := l1.Meta(ctx)
	t.Logf("process of the fenced writer: Get(6)=%q,%v Get(8)=%q,%v LastIndex=%d Meta[term]=%q", got6, err6, got8, err8, last, mv["term"])
	t.Logf("the log as acknowledged: Get(6)=%q, Get(8)=ErrOutOfRange, LastIndex=6, term=2", mustGet(t, l2, 6))
	if string(got6) != "new-6" || err8 == nil || last != 6 || string(mv["term"]) != "2" {
		t.Fatal("the fenced writer's process serves a log that no longer exists")
	}
}

// DeleteLog and CreateLog in the writer's own process: the new, empty log
// is never served from the deleted incarnation's writer.
func TestRecreatedLogNotServedFromTheDeletedLogsWriter(t *testing.T) {
	ctx := context.Background()
	c := newMemClient(t, nil)
	_, w := newLog(t, c, "d")
	mustAppend(t, w, 1, entries(1, 3))
	if err := c.DeleteLog(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateLog(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		l2 := openLog(t, c, "d")
		last, err := l2.LastIndex(ctx)
		got, gerr := l2.Get(ctx, 2)
		t.Logf("new, empty incarnation %s: LastIndex=%d,%v Get(2)=%q,%v", when, last, err, got, gerr)
		if last != 0 || !errors.Is(gerr, wal.ErrOutOfRange) {
			t.Fatalf("%s: a log created again is served from the deleted incarnation's writer", when)
		}
	}
	check("before the old writer writes again")
	wantErr(t, w.Append(ctx, 4, entries(4, 1)), wal.ErrFenced, "zombie Append")
	check("after the old writer was refused")
}

// A reader that has read every entry (1..10) is at 11. TruncateFront(11)
// empties the log and the next append is at 11, exactly where the reader
// is: its Next returns entry 11. ErrTruncated is for entries already
// returned being replaced, which a front truncation never does.
func TestReaderAtTailContinuesAfterTruncateFrontEmpties(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	l, w := newLog(t, newClient(t, b, m, nil), "tf")
	mustAppend(t, w, 1, entries(1, 10))
	lr := openLog(t, newClient(t, b, m, nil), "tf")
	for _, tc := range []struct {
		name string
		l    *wal.Log
	}{{"in-process", l}, {"remote", lr}} {
		r := newReader(t, tc.l, wal.Earliest)
		skipNexts(t, r, 10)
		defer func(r *wal.Reader, name string) {
			i, e, err := nextWithin(r, 2*time.Second)
			t.Logf("%s reader at 11 after TruncateFront(11)+Append(11): %d %q %v", name, i, e, err)
			if err != nil || i != 11 {
				t.Errorf("%s reader: Next = %d, %v; want entry 11", name, i, err)
			}
		}(r, tc.name)
	}
	if err := w.TruncateFront(ctx, 11); err != nil { // empties the log
		t.Fatal(err)
	}
	mustAppend(t, w, 11, entries(11, 1))
}

// A reader positioned in a log that is deleted and created again under the
// same name never returns the new log's entries after the old one's (the
// new incarnation numbers its segments from 1 again): it is ErrTruncated.
func TestReaderRefusesToCrossIncarnations(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	cw := newClient(t, b, m, nil)
	_, w := newLog(t, cw, "x")
	appendRange(t, w, 1, 10, 1)
	r := newReader(t, openLog(t, newClient(t, b, m, nil), "x"), wal.Earliest) // a reader in another process
	skipNexts(t, r, 5)
	w.Close()
	if err := cw.DeleteLog(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	w2 := openWriter(t, createLog(t, cw, "x"))
	for i := uint64(1); i <= 10; i++ {
		mustAppend(t, w2, i, entriesOf("new", i, 1))
	}
	i, e, err := nextWithin(r, 2*time.Second)
	t.Logf("reader that returned old 1..5, after DeleteLog+CreateLog+Append(new 1..10): Next = %d %q %v", i, e, err)
	if err == nil {
		t.Fatalf("the reader returned %q from the new incarnation after old entries 1..5 of the deleted one", e)
	}
}

// A zombie writer stays fenced after GC collected the segment it was
// fenced in, however short the grace period: the fence object is kept.
func TestZombieStaysFencedAfterItsSegmentIsCollected(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	grace := func(c *wal.Config) { c.GCGrace = time.Nanosecond }
	_, zombie := newLog(t, newClient(t, b, m, grace), "g")
	mustAppend(t, zombie, 1, entries(1, 3))

	c2 := newClient(t, b, m, grace) // another process takes over
	l2 := openLog(t, c2, "g")
	w2 := openWriter(t, l2)
	mustAppend(t, w2, 4, entries(4, 2))
	if err := w2.TruncateFront(ctx, 5); err != nil { // the zombie's segment is wholly below
		t.Fatal(err)
	}
	for range 2 { // mark, then (grace passed) collect
		mustGC(t, c2, "g")
	}
	wantErr(t, zombie.Append(ctx, 4, [][]byte{[]byte("zombie-4")}), wal.ErrFenced, "zombie Append after its segment was collected")
	wantEntries(t, l2, 5, 5)
}

// A DeleteLog resumed after a partial failure fences the open segment again
// (lower down, where objects were already deleted) and must keep the first
// fence too: the zombie's next slot may be that one.
func TestZombieStaysFencedAcrossAResumedDeleteLog(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	fb := fault.Wrap(b, 1)
	one := func(c *wal.Config) { c.MaxEntries = 1 }
	_, zombie := newLog(t, newClient(t, fb, m, one), "d")
	mustAppend(t, zombie, 1, entries(1, 3)) // fragments 0, 1, 2
	c2 := newClient(t, fb, m, one)
	fb.FailNth(fault.OpDelete, 3) // the deletion stops after removing fragments 2 and 1
	if err := c2.DeleteLog(ctx, "d"); err == nil {
		t.Fatal("DeleteLog with a failing delete succeeded")
	}
	if err := c2.DeleteLog(ctx, "d"); err != nil {
		t.Fatalf("resumed DeleteLog: %v", err)
	}
	wantErr(t, zombie.Append(ctx, 4, [][]byte{[]byte("zombie")}), wal.ErrFenced, "zombie Append after DeleteLog returned")
}

// A log emptied by TruncateFront and restarted at a lower index replaces
// entries a reader already returned: the reader is ErrTruncated rather
// than carrying on into the new entries.
func TestReaderRefusesAResetBelowWhatItRead(t *testing.T) {
	ctx := context.Background()
	l, w := newLog(t, newMemClient(t, nil), "rs")
	mustAppend(t, w, 1, entries(1, 10))
	r := newReader(t, l, wal.Earliest)
	skipNexts(t, r, 10)
	if err := w.TruncateFront(ctx, 11); err != nil { // empties the log
		t.Fatal(err)
	}
	mustAppend(t, w, 5, entriesOf("new", 5, 8)) // an emptied log accepts any first index: 5..12
	i, e, err := nextWithin(r, 2*time.Second)
	if !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("reader that returned old 1..10, after the log restarted at 5: Next = %d %q %v, want ErrTruncated", i, e, err)
	}
}
