package wal_test

// Operations that overlap: each test pins one interleaving that once broke
// a guarantee (an ack, fencing, a read) and checks the guarantee holds.

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// An append's future resolves from its own fragment's outcome. Here a
// TruncateBack, queued behind an in-flight fragment by a caller whose ctx
// had expired, makes the next append reuse indexes that fragment covers;
// that append's own PUT fails. When the earlier fragment lands, the later
// append must not be reported durable.
func TestAppendAckComesFromItsOwnFragment(t *testing.T) {
	ctx := context.Background()
	hb, m, _, w := newHeldLog(t, "a")
	mustAppend(t, w, 1, entries(1, 5))
	hb.hold.Store(true)
	fut1 := w.AppendAsync(6, entries(6, 5))
	w.Flush()
	<-hb.entered // the fragment with 6..10 is in flight
	hb.hold.Store(false)
	wantErr(t, w.TruncateBack(cancelledCtx(), 7), context.Canceled, "TruncateBack with a cancelled ctx (the operation stays queued)")
	fut2 := w.AppendAsync(8, [][]byte{[]byte("new-8"), []byte("new-9")})
	w.Flush()
	hb.fail.Store(true)
	close(hb.gate)
	if err := fut1.Wait(ctx); err != nil {
		t.Fatalf("the held fragment landed, yet its append failed: %v", err)
	}
	err2 := fut2.Wait(ctx)
	t.Logf("append of 8..9 after TruncateBack(7), its own PUT failing: %v", err2)
	if err2 == nil {
		t.Fatal("append of 8..9 was acknowledged although its fragment was never written")
	}
	w.Close()

	// Whatever recovery finds, an acknowledged entry is in it.
	w2 := openWriter(t, openLog(t, newClient(t, hb.Bucket, m, nil), "a"))
	if last := w2.LastIndex(); last < 7 {
		t.Fatalf("recovered last index %d lost acknowledged entries up to 7", last)
	}
}

// A writer of a log that was deleted is fenced from the log created again
// under the same name, although the new log's first writer has the same
// epoch number: a record update compares the incarnation (log ID) too.
func TestZombieOfDeletedLogIsFencedFromItsNamesake(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, zombie := newLog(t, newClient(t, b, m, nil), "z")
	mustAppend(t, zombie, 1, entries(1, 3))

	c2 := newClient(t, b, m, nil) // another process deletes and re-creates the log
	if err := c2.DeleteLog(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	_, w2 := newLog(t, c2, "z")
	if w2.Epoch() != zombie.Epoch() {
		t.Fatalf("epochs %d and %d: the scenario needs equal epoch numbers", w2.Epoch(), zombie.Epoch())
	}
	if err := w2.SetMeta(ctx, map[string][]byte{"term": []byte("new")}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w2, 1, [][]byte{[]byte("n1"), []byte("n2")})

	wantErr(t, zombie.SetMeta(ctx, map[string][]byte{"term": []byte("zombie")}), wal.ErrFenced, "zombie SetMeta")
	wantErr(t, zombie.Append(ctx, 4, entries(4, 1)), wal.ErrFenced, "zombie Append")
	wantErr(t, zombie.TruncateBack(ctx, 1), wal.ErrFenced, "zombie TruncateBack")

	l3 := openLog(t, newClient(t, b, m, nil), "z")
	mv, err := l3.Meta(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(mv["term"]) != "new" {
		t.Fatalf("the new log's meta term = %q; the zombie overwrote it", mv["term"])
	}
	if err := w2.Append(ctx, 3, [][]byte{[]byte("n3")}); err != nil {
		t.Fatalf("the new log's writer was disturbed by the zombie: %v", err)
	}
	for i, want := range []string{"n1", "n2", "n3"} {
		if got := mustGet(t, l3, uint64(i+1)); got != want {
			t.Fatalf("Get(%d) = %q, want %q", i+1, got, want)
		}
	}
}

// A record read before a writer's update and published after it (OpenLog
// racing a TruncateBack) never makes the writer's process serve entries
// the truncation removed.
func TestStaleRecordReadDoesNotResurrectTruncatedEntries(t *testing.T) {
	ctx := context.Background()
	sm := &slowMeta{Store: metamem.New()} // never slow: it only holds a read back
	c := newClient(t, objmem.New(), sm, nil)
	l, w := newLog(t, c, "s")
	mustAppend(t, w, 1, entriesOf("old", 1, 8))
	hold := sm.holdNext("wal/logs/s") // the record is read at once, returned when released
	opened := make(chan *wal.Log)
	go func() {
		l2, err := c.OpenLog(ctx, "s")
		if err != nil {
			t.Error(err)
		}
		opened <- l2
	}()
	<-hold.read // OpenLog holds the record as it was before the truncation
	if err := w.TruncateBack(ctx, 5); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 6, entriesOf("new", 6, 3))
	close(hold.release)
	l2 := <-opened
	for _, h := range []*wal.Log{l, l2} {
		wantEntriesOf(t, h, "new", 6, 8) // after TruncateBack(5)+Append(6..8)
	}
	mustGC(t, c, "s")
	if got := mustGet(t, l, 7); got != "new-7" {
		t.Fatalf("Get(7) = %q after GC", got)
	}
}

// After a writer failed, the entries it had acknowledged stay readable in
// its process (the adapters keep a failed writer open until they reopen),
// although fragments it had in flight never landed.
func TestDurableEntriesReadableAfterWriterFailed(t *testing.T) {
	ctx := context.Background()
	hb, _, l, w := newHeldLog(t, "f")
	mustAppend(t, w, 1, entries(1, 3))
	hb.hold.Store(true)
	for i := uint64(4); i <= 6; i++ { // three fragments in flight
		w.AppendAsync(i, entries(i, 1))
		w.Flush()
		<-hb.entered
	}
	hb.hold.Store(false)
	hb.failHeld.Store(true)
	hb.fail.Store(true)
	close(hb.gate)
	wantErr(t, w.Sync(ctx), wal.ErrBroken, "Sync with every PUT failing")
	for i := uint64(3); i >= 1; i-- { // the newest first
		if got, want := mustGet(t, l, i), entryAt(i); got != want {
			t.Fatalf("Get(%d) = %q, want %q", i, got, want)
		}
	}
	wantGetErr(t, l, 4, wal.ErrOutOfRange) // a failed append
}

// listGateMeta holds List calls under the log records' prefix until
// released, answering them with what was there when they were made.
type listGateMeta struct {
	meta.Store
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *listGateMeta) List(ctx context.Context, prefix string) ([]meta.Record, error) {
	r, err := g.Store.List(ctx, prefix)
	if strings.HasSuffix(prefix, "/logs/") {
		g.once.Do(func() { close(g.entered) })
		<-g.release
	}
	return r, err
}

// Closing a client while its janitor is in a GC pass returns: Close does
// not hold a lock the pass needs.
func TestCloseDuringJanitorPass(t *testing.T) {
	ctx := context.Background()
	gm := &listGateMeta{Store: metamem.New(), entered: make(chan struct{}), release: make(chan struct{})}
	c, err := wal.Open(ctx, wal.Config{Bucket: objmem.New(), Meta: gm, GCInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateLog(ctx, "j"); err != nil {
		t.Fatal(err)
	}
	<-gm.entered // the janitor is listing the logs
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	// Give Close time to start waiting for the janitor before the pass
	// goes on (the pass then needs the client's per-log state).
	time.Sleep(50 * time.Millisecond)
	close(gm.release)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Client.Close hung while the janitor was in a GC pass")
	}
}

// A writer that failed takes its log back only if nobody else took it:
// Reopen names the epoch it held.
func TestReopenAfterFailureNeverStealsTheLog(t *testing.T) {
	ctx := context.Background()
	hb, m, l, w := newHeldLog(t, "r")
	breakWriter := func(w *wal.Writer, next uint64) {
		t.Helper()
		hb.fail.Store(true)
		wantErr(t, w.Append(ctx, next, entries(next, 1)), wal.ErrBroken, "Append with PUTs failing")
		hb.fail.Store(false)
	}

	// Nobody took over: Reopen resumes, with everything acknowledged.
	mustAppend(t, w, 1, entries(1, 3))
	breakWriter(w, 4)
	w2 := mustReopen(t, w, "with nobody else on the log")
	if got := w2.LastIndex(); got < 3 {
		t.Fatalf("reopened writer's last index %d < 3", got)
	}
	next := w2.LastIndex() + 1
	mustAppend(t, w2, next, entries(next, 1))

	// Another process took the log over during the outage: Reopen is
	// fenced and the new owner is undisturbed.
	breakWriter(w2, next+1)
	other := newClient(t, hb.Bucket, m, nil)
	owner := openWriter(t, openLog(t, other, "r"))
	_, err := w2.Reopen(ctx)
	wantErr(t, err, wal.ErrFenced, "Reopen after a takeover")
	on := owner.LastIndex() + 1
	if err := owner.Append(ctx, on, entries(on, 1)); err != nil {
		t.Fatalf("the new owner was fenced by a reopen: %v", err)
	}

	// The log was deleted and created again: fenced too.
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	w3 := openWriter(t, openLog(t, other, "r"))
	w3.Close()
	if err := other.DeleteLog(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateLog(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	_, err = l.ReopenWriter(ctx, w3.ID())
	wantErr(t, err, wal.ErrFenced, "ReopenWriter of a deleted incarnation")
}

// A reader in another process tailing an open segment costs a few LISTs
// per poll, not one LIST of the whole segment per fragment.
func TestRemoteReaderListsOncePerPoll(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, nil), "t")
	const n = 300
	appendRange(t, w, 1, n, 1) // one fragment per entry, all in the open segment
	hb := newHeldBucket(b)
	r := newReader(t, openLog(t, newClient(t, hb, m, nil), "t"), wal.Earliest)
	wantNexts(t, ctx, r, 1, n)
	lists := hb.lists.Load()
	t.Logf("%d LISTs to read %d fragments of an open segment", lists, n)
	if lists > 10 {
		t.Fatalf("%d LISTs for %d fragments: a reader must not LIST the open segment per fragment", lists, n)
	}
	// Tailing: each new fragment costs O(1) LISTs.
	before := hb.lists.Load()
	for i := uint64(n + 1); i <= n+20; i++ {
		mustAppend(t, w, i, entries(i, 1))
		idx, _, err := r.Next(ctx)
		if err != nil || idx != i {
			t.Fatalf("tail Next = %d %v, want %d", idx, err, i)
		}
	}
	if d := hb.lists.Load() - before; d > 20*4 {
		t.Fatalf("%d LISTs for 20 tailed fragments", d)
	}
}
