package wal_test

// Failures and takeovers that overlap other operations: reopening after an
// outage, hung metadata, Sync behind queued control operations, what the
// process of a fenced or deleted writer reads, and readers across front
// truncation and re-created logs. Helpers are prefixed rv.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// rvMeta injects metadata-store trouble: Updates that fail without landing,
// Gets that hang until their ctx is done (or release is closed), and
// Updates held at a gate.
type rvMeta struct {
	meta.Store
	failUpdate atomic.Bool
	hangGet    atomic.Bool
	gate       atomic.Pointer[chan struct{}] // Updates wait here while set
	entered    chan struct{}                 // one value per Update that reached the gate
	release    chan struct{}                 // closed to end every hang
	getHangs   atomic.Int64
}

func newRVMeta() *rvMeta {
	return &rvMeta{Store: metamem.New(), entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (m *rvMeta) Get(ctx context.Context, k string) (meta.Record, error) {
	if m.hangGet.Load() {
		m.getHangs.Add(1)
		select {
		case <-ctx.Done():
			return meta.Record{}, ctx.Err()
		case <-m.release:
		}
	}
	return m.Store.Get(ctx, k)
}

func (m *rvMeta) Update(ctx context.Context, k string, v []byte, ver meta.Version) (meta.Version, error) {
	if g := m.gate.Load(); g != nil {
		m.entered <- struct{}{}
		select {
		case <-*g:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if m.failUpdate.Load() {
		return "", errors.New("injected: connection refused")
	}
	return m.Store.Update(ctx, k, v, ver)
}

// A Reopen attempt that fails during the outage (its epoch CAS landed, the
// fence PUT did not) leaves the log at an epoch nobody holds; the next
// Reopen by the same owner resumes, since no other writer took the log.
func TestReopenResumesAfterItsOwnFailedAttempt(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	hb := newHeldBucket(b)
	c := newClient(t, hb, m, func(c *wal.Config) { c.MaxFlushRetries = 1 })
	c.CreateLog(ctx, "ro")
	l, _ := c.OpenLog(ctx, "ro")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	hb.fail.Store(true) // bucket outage
	if err := w.Append(ctx, 4, entries(4, 1)); !errors.Is(err, wal.ErrBroken) {
		t.Fatalf("Append during the outage = %v, want ErrBroken", err)
	}
	// The outage goes on: the first attempt to resume fails.
	_, err = w.Reopen(ctx)
	t.Logf("Reopen during the outage: %v", err)
	if err == nil || errors.Is(err, wal.ErrFenced) {
		t.Fatalf("Reopen during the outage = %v; want a non-fencing failure", err)
	}
	hb.fail.Store(false) // the store is back; nobody else ever opened a writer
	w2, err := w.Reopen(ctx)
	if err != nil {
		t.Fatalf("Reopen after the outage, with no other writer ever: %v", err)
	}
	defer w2.Close()
}

// The same with a lost reply: Reopen's epoch compare-and-swap lands but its
// reply is lost; the retry resumes instead of being fenced by the owner's
// own epoch.
func TestReopenResumesAfterItsOwnLostReply(t *testing.T) {
	ctx := context.Background()
	am := &ambMeta{Store: metamem.New()}
	c := newClient(t, objmem.New(), am, nil)
	c.CreateLog(ctx, "rl")
	l, _ := c.OpenLog(ctx, "rl")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	am.n.Store(am.count.Load() + 1) // the next record update (Reopen's epoch CAS) lands, its reply is lost
	_, err = w.Reopen(ctx)
	t.Logf("Reopen with its epoch CAS's reply lost: %v", err)
	if err == nil {
		t.Fatal("Reopen succeeded despite the lost reply")
	}
	w2, err := w.Reopen(ctx)
	if err != nil {
		t.Fatalf("Reopen retried, with no other writer ever: %v", err)
	}
	defer w2.Close()
}

// RequestTimeout bounds every metadata call the writer makes, the re-read
// of the record after a failed update included: a hung Get turns into
// retries and ErrBroken, and Close returns.
func TestCloseReturnsWhenRecordReReadHangs(t *testing.T) {
	ctx := context.Background()
	rm := newRVMeta()
	c := newClient(t, objmem.New(), rm, func(c *wal.Config) {
		c.RequestTimeout = 100 * time.Millisecond
		c.RetryBudget = 300 * time.Millisecond
	})
	c.CreateLog(ctx, "h")
	l, _ := c.OpenLog(ctx, "h")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	rm.failUpdate.Store(true) // a transient failure of the record update...
	rm.hangGet.Store(true)    // ...and the re-read that follows it hangs
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
		hangs := rm.getHangs.Load()
		close(rm.release) // let the test end
		rm.hangGet.Store(false)
		rm.failUpdate.Store(false)
		<-closed
		t.Fatalf("Writer.Close hung for 5s (RequestTimeout 100ms, RetryBudget 300ms); %d hung record Gets", hangs)
	}
}

// Sync waits for everything queued before it, a TruncateBack whose
// caller's ctx expired included, not only for appends.
func TestSyncWaitsForQueuedTruncateBack(t *testing.T) {
	ctx := context.Background()
	b, rm := objmem.New(), newRVMeta()
	c := newClient(t, b, rm, nil)
	c.CreateLog(ctx, "sy")
	l, _ := c.OpenLog(ctx, "sy")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, 1, entries(1, 5)); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	rm.gate.Store(&gate) // the truncation's record update is slow
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.TruncateBack(cancelled, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("TruncateBack with a cancelled ctx = %v", err)
	}
	<-rm.entered // the truncation is running, not durable
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	serr := w.Sync(sctx)
	other := newClient(t, b, rm.Store, nil)
	lo, _ := other.OpenLog(ctx, "sy")
	last, lerr := lo.LastIndex(ctx)
	rm.gate.Store(nil)
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
	b, m := objmem.New(), metamem.New()
	c1 := newClient(t, b, m, nil)
	c1.CreateLog(ctx, "fv")
	l1, _ := c1.OpenLog(ctx, "fv")
	w1, err := l1.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Close()
	if err := w1.Append(ctx, 1, entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := w1.SetMeta(ctx, map[string][]byte{"term": []byte("1")}); err != nil {
		t.Fatal(err)
	}

	c2 := newClient(t, b, m, nil) // another process takes over
	l2, _ := c2.OpenLog(ctx, "fv")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := w2.TruncateBack(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := w2.Append(ctx, 6, [][]byte{[]byte("new-6")}); err != nil {
		t.Fatal(err)
	}
	if err := w2.SetMeta(ctx, map[string][]byte{"term": []byte("2")}); err != nil {
		t.Fatal(err)
	}

	if err := w1.Append(ctx, 11, entries(11, 1)); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("old writer's Append = %v, want ErrFenced", err)
	}
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
	c := newClient(t, objmem.New(), metamem.New(), nil)
	c.CreateLog(ctx, "d")
	l, _ := c.OpenLog(ctx, "d")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteLog(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateLog(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		l2, err := c.OpenLog(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		last, err := l2.LastIndex(ctx)
		got, gerr := l2.Get(ctx, 2)
		t.Logf("new, empty incarnation %s: LastIndex=%d,%v Get(2)=%q,%v", when, last, err, got, gerr)
		if last != 0 || !errors.Is(gerr, wal.ErrOutOfRange) {
			t.Fatalf("%s: a log created again is served from the deleted incarnation's writer", when)
		}
	}
	check("before the old writer writes again")
	if err := w.Append(ctx, 4, entries(4, 1)); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie Append = %v, want ErrFenced", err)
	}
	check("after the old writer was refused")
}

// A reader that has read every entry (1..10) is at 11. TruncateFront(11)
// empties the log and the next append is at 11, exactly where the reader
// is: its Next returns entry 11. ErrTruncated is for entries already
// returned being replaced, which a front truncation never does.
func TestReaderAtTailContinuesAfterTruncateFrontEmpties(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, nil)
	c.CreateLog(ctx, "tf")
	l, _ := c.OpenLog(ctx, "tf")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, 1, entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	cr := newClient(t, b, m, nil)
	lr, _ := cr.OpenLog(ctx, "tf")
	for _, tc := range []struct {
		name string
		l    *wal.Log
	}{{"in-process", l}, {"remote", lr}} {
		r, err := tc.l.NewReader(ctx, wal.Earliest)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for i := 1; i <= 10; i++ {
			if _, _, err := r.Next(ctx); err != nil {
				t.Fatal(err)
			}
		}
		defer func(r *wal.Reader, name string) {
			nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			i, e, err := r.Next(nctx)
			t.Logf("%s reader at 11 after TruncateFront(11)+Append(11): %d %q %v", name, i, e, err)
			if err != nil || i != 11 {
				t.Errorf("%s reader: Next = %d, %v; want entry 11", name, i, err)
			}
		}(r, tc.name)
	}
	if err := w.TruncateFront(ctx, 11); err != nil { // empties the log
		t.Fatal(err)
	}
	if err := w.Append(ctx, 11, entries(11, 1)); err != nil {
		t.Fatal(err)
	}
}

// A reader positioned in a log that is deleted and created again under the
// same name never returns the new log's entries after the old one's (the
// new incarnation numbers its segments from 1 again): it is ErrTruncated.
func TestReaderRefusesToCrossIncarnations(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	cw := newClient(t, b, m, nil)
	cw.CreateLog(ctx, "x")
	lw, _ := cw.OpenLog(ctx, "x")
	w, err := lw.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		if err := w.Append(ctx, i, entries(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	cr := newClient(t, b, m, nil) // a reader in another process
	lr, _ := cr.OpenLog(ctx, "x")
	r, err := lr.NewReader(ctx, wal.Earliest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 1; i <= 5; i++ {
		if _, _, err := r.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if err := cw.DeleteLog(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := cw.CreateLog(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	lw2, _ := cw.OpenLog(ctx, "x")
	w2, err := lw2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	for i := uint64(1); i <= 10; i++ {
		if err := w2.Append(ctx, i, [][]byte{[]byte(fmt.Sprintf("new-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	i, e, err := r.Next(nctx)
	t.Logf("reader that returned old 1..5, after DeleteLog+CreateLog+Append(new 1..10): Next = %d %q %v", i, e, err)
	if err == nil {
		t.Fatalf("the reader returned %q from the new incarnation after old entries 1..5 of the deleted one", e)
	}
}

// A zombie writer stays fenced after GC collected the segment it was
// fenced in, however short the grace period: the fence object is kept.
func TestZombieStaysFencedAfterItsSegmentIsCollected(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	grace := func(c *wal.Config) { c.GCGrace = time.Nanosecond }
	c1 := newClient(t, b, m, grace)
	c1.CreateLog(ctx, "g")
	l1, _ := c1.OpenLog(ctx, "g")
	zombie, err := l1.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	if err := zombie.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}

	c2 := newClient(t, b, m, grace) // another process takes over
	l2, _ := c2.OpenLog(ctx, "g")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := w2.Append(ctx, 4, entries(4, 2)); err != nil {
		t.Fatal(err)
	}
	if err := w2.TruncateFront(ctx, 5); err != nil { // the zombie's segment is wholly below
		t.Fatal(err)
	}
	for range 2 { // mark, then (grace passed) collect
		if _, err := c2.GC(ctx, "g"); err != nil {
			t.Fatal(err)
		}
	}
	if err := zombie.Append(ctx, 4, [][]byte{[]byte("zombie-4")}); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie Append after its segment was collected = %v, want ErrFenced", err)
	}
	if got := mustGet(t, l2, 5); got != "entry-5" {
		t.Fatalf("Get(5) = %q", got)
	}
}

// A DeleteLog resumed after a partial failure fences the open segment again
// (lower down, where objects were already deleted) and must keep the first
// fence too: the zombie's next slot may be that one.
func TestZombieStaysFencedAcrossAResumedDeleteLog(t *testing.T) {
	ctx := context.Background()
	fb := fault.Wrap(objmem.New(), 1)
	m := metamem.New()
	one := func(c *wal.Config) { c.MaxEntries = 1 }
	c1 := newClient(t, fb, m, one)
	c1.CreateLog(ctx, "d")
	l1, _ := c1.OpenLog(ctx, "d")
	zombie, err := l1.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	if err := zombie.Append(ctx, 1, entries(1, 3)); err != nil { // fragments 0, 1, 2
		t.Fatal(err)
	}
	c2 := newClient(t, fb, m, one)
	fb.FailNth(fault.OpDelete, 3) // the deletion stops after removing fragments 2 and 1
	if err := c2.DeleteLog(ctx, "d"); err == nil {
		t.Fatal("DeleteLog with a failing delete succeeded")
	}
	if err := c2.DeleteLog(ctx, "d"); err != nil {
		t.Fatalf("resumed DeleteLog: %v", err)
	}
	if err := zombie.Append(ctx, 4, [][]byte{[]byte("zombie")}); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie Append after DeleteLog returned = %v, want ErrFenced", err)
	}
}

// A log emptied by TruncateFront and restarted at a lower index replaces
// entries a reader already returned: the reader is ErrTruncated rather
// than carrying on into the new entries.
func TestReaderRefusesAResetBelowWhatItRead(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, objmem.New(), metamem.New(), nil)
	c.CreateLog(ctx, "rs")
	l, _ := c.OpenLog(ctx, "rs")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, 1, entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	r, err := l.NewReader(ctx, wal.Earliest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 1; i <= 10; i++ {
		if _, _, err := r.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.TruncateFront(ctx, 11); err != nil { // empties the log
		t.Fatal(err)
	}
	fresh := make([][]byte, 8) // an emptied log accepts any first index: 5..12
	for i := range fresh {
		fresh[i] = []byte(fmt.Sprintf("new-%d", i+5))
	}
	if err := w.Append(ctx, 5, fresh); err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	i, e, err := r.Next(nctx)
	if !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("reader that returned old 1..10, after the log restarted at 5: Next = %d %q %v, want ErrTruncated", i, e, err)
	}
}
