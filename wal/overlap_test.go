package wal_test

// Operations that overlap: each test pins one interleaving that once broke
// a guarantee (an ack, fencing, a read) and checks the guarantee holds.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// heldBucket can hold fragment PUTs at a gate and fail PUTs without
// landing them.
type heldBucket struct {
	objstore.Bucket
	hold     atomic.Bool   // new PutIfAbsent calls wait at the gate
	fail     atomic.Bool   // PutIfAbsent calls that pass the gate fail; nothing lands
	failHeld atomic.Bool   // held calls fail too when released
	entered  chan struct{} // receives one value per call that reached the gate
	gate     chan struct{} // closed to let held calls go
	lists    atomic.Int64
}

func newHeldBucket(b objstore.Bucket) *heldBucket {
	return &heldBucket{Bucket: b, entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (h *heldBucket) PutIfAbsent(ctx context.Context, k string, d []byte) (objstore.ObjectInfo, error) {
	held := h.hold.Load()
	if held {
		h.entered <- struct{}{}
		select {
		case <-h.gate:
		case <-ctx.Done():
			return objstore.ObjectInfo{}, ctx.Err()
		}
		if h.failHeld.Load() {
			return objstore.ObjectInfo{}, errors.New("injected: connection reset")
		}
		// A held call was sent before the failure began: it lands.
		return h.Bucket.PutIfAbsent(ctx, k, d)
	}
	if h.fail.Load() {
		return objstore.ObjectInfo{}, errors.New("injected: connection refused")
	}
	return h.Bucket.PutIfAbsent(ctx, k, d)
}

func (h *heldBucket) List(ctx context.Context, o objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	h.lists.Add(1)
	return h.Bucket.List(ctx, o)
}

// An append's future resolves from its own fragment's outcome. Here a
// TruncateBack, queued behind an in-flight fragment by a caller whose ctx
// had expired, makes the next append reuse indexes that fragment covers;
// that append's own PUT fails. When the earlier fragment lands, the later
// append must not be reported durable.
func TestAppendAckComesFromItsOwnFragment(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	hb := newHeldBucket(b)
	c := newClient(t, hb, m, func(c *wal.Config) { c.MaxFlushRetries = 1 })
	c.CreateLog(ctx, "a")
	l, _ := c.OpenLog(ctx, "a")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, 1, entries(1, 5)); err != nil {
		t.Fatal(err)
	}
	hb.hold.Store(true)
	fut1 := w.AppendAsync(6, entries(6, 5))
	w.Flush()
	<-hb.entered // the fragment with 6..10 is in flight
	hb.hold.Store(false)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.TruncateBack(cancelled, 7); !errors.Is(err, context.Canceled) {
		t.Fatalf("TruncateBack with a cancelled ctx = %v; want context.Canceled (the operation stays queued)", err)
	}
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
	c2 := newClient(t, b, m, nil)
	l2, _ := c2.OpenLog(ctx, "a")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if last := w2.LastIndex(); last < 7 {
		t.Fatalf("recovered last index %d lost acknowledged entries up to 7", last)
	}
}

// A writer of a log that was deleted is fenced from the log created again
// under the same name, although the new log's first writer has the same
// epoch number: a record update compares the incarnation (log ID) too.
func TestZombieOfDeletedLogIsFencedFromItsNamesake(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	c1 := newClient(t, b, m, nil)
	c1.CreateLog(ctx, "z")
	l1, _ := c1.OpenLog(ctx, "z")
	zombie, err := l1.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	if err := zombie.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}

	c2 := newClient(t, b, m, nil) // another process deletes and re-creates the log
	if err := c2.DeleteLog(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	if err := c2.CreateLog(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	l2, _ := c2.OpenLog(ctx, "z")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if w2.Epoch() != zombie.Epoch() {
		t.Fatalf("epochs %d and %d: the scenario needs equal epoch numbers", w2.Epoch(), zombie.Epoch())
	}
	if err := w2.SetMeta(ctx, map[string][]byte{"term": []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if err := w2.Append(ctx, 1, [][]byte{[]byte("n1"), []byte("n2")}); err != nil {
		t.Fatal(err)
	}

	if err := zombie.SetMeta(ctx, map[string][]byte{"term": []byte("zombie")}); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie SetMeta = %v, want ErrFenced", err)
	}
	if err := zombie.Append(ctx, 4, entries(4, 1)); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie Append = %v, want ErrFenced", err)
	}
	if err := zombie.TruncateBack(ctx, 1); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie TruncateBack = %v, want ErrFenced", err)
	}

	c3 := newClient(t, b, m, nil)
	l3, _ := c3.OpenLog(ctx, "z")
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

// holdMeta holds the reply of the next Get of a key: the record is read
// at once, returned when released.
type holdMeta struct {
	meta.Store
	key     atomic.Pointer[string]
	read    chan struct{}
	release chan struct{}
}

func (h *holdMeta) Get(ctx context.Context, k string) (meta.Record, error) {
	r, err := h.Store.Get(ctx, k)
	if p := h.key.Load(); p != nil && *p == k && h.key.CompareAndSwap(p, nil) {
		close(h.read)
		<-h.release
	}
	return r, err
}

// A record read before a writer's update and published after it (OpenLog
// racing a TruncateBack) never makes the writer's process serve entries
// the truncation removed.
func TestStaleRecordReadDoesNotResurrectTruncatedEntries(t *testing.T) {
	ctx := context.Background()
	hm := &holdMeta{Store: metamem.New(), read: make(chan struct{}), release: make(chan struct{})}
	c := newClient(t, objmem.New(), hm, nil)
	c.CreateLog(ctx, "s")
	l, _ := c.OpenLog(ctx, "s")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	old := make([][]byte, 8)
	for i := range old {
		old[i] = []byte(fmt.Sprintf("old-%d", i+1))
	}
	if err := w.Append(ctx, 1, old); err != nil {
		t.Fatal(err)
	}
	key := "wal/logs/s"
	hm.key.Store(&key)
	opened := make(chan *wal.Log)
	go func() {
		l2, err := c.OpenLog(ctx, "s")
		if err != nil {
			t.Error(err)
		}
		opened <- l2
	}()
	<-hm.read // OpenLog holds the record as it was before the truncation
	if err := w.TruncateBack(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 6, [][]byte{[]byte("new-6"), []byte("new-7"), []byte("new-8")}); err != nil {
		t.Fatal(err)
	}
	close(hm.release)
	l2 := <-opened
	for _, h := range []*wal.Log{l, l2} {
		for i := uint64(6); i <= 8; i++ {
			if got, want := mustGet(t, h, i), fmt.Sprintf("new-%d", i); got != want {
				t.Fatalf("Get(%d) = %q after TruncateBack(5)+Append(6..8); want %q", i, got, want)
			}
		}
	}
	if _, err := c.GC(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, l, 7); got != "new-7" {
		t.Fatalf("Get(7) = %q after GC", got)
	}
}

// After a writer failed, the entries it had acknowledged stay readable in
// its process (the adapters keep a failed writer open until they reopen),
// although fragments it had in flight never landed.
func TestDurableEntriesReadableAfterWriterFailed(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	hb := newHeldBucket(b)
	c := newClient(t, hb, m, func(c *wal.Config) { c.MaxFlushRetries = 1 })
	c.CreateLog(ctx, "f")
	l, _ := c.OpenLog(ctx, "f")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}
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
	if err := w.Sync(ctx); !errors.Is(err, wal.ErrBroken) {
		t.Fatalf("Sync with every PUT failing = %v, want ErrBroken", err)
	}
	for i := uint64(3); i >= 1; i-- {
		if got, want := mustGet(t, l, i), fmt.Sprintf("entry-%d", i); got != want {
			t.Fatalf("Get(%d) = %q, want %q", i, got, want)
		}
	}
	if _, err := l.Get(ctx, 4); !errors.Is(err, wal.ErrOutOfRange) {
		t.Fatalf("Get(4) of a failed append = %v, want ErrOutOfRange", err)
	}
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
	b, m := objmem.New(), metamem.New()
	hb := newHeldBucket(b)
	c := newClient(t, hb, m, func(c *wal.Config) { c.MaxFlushRetries = 1 })
	c.CreateLog(ctx, "r")
	l, _ := c.OpenLog(ctx, "r")
	breakWriter := func(w *wal.Writer, next uint64) {
		t.Helper()
		hb.fail.Store(true)
		if err := w.Append(ctx, next, entries(next, 1)); !errors.Is(err, wal.ErrBroken) {
			t.Fatalf("Append with PUTs failing = %v, want ErrBroken", err)
		}
		hb.fail.Store(false)
	}

	// Nobody took over: Reopen resumes, with everything acknowledged.
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 1, entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	breakWriter(w, 4)
	w2, err := w.Reopen(ctx)
	if err != nil {
		t.Fatalf("Reopen with nobody else on the log: %v", err)
	}
	if got := w2.LastIndex(); got < 3 {
		t.Fatalf("reopened writer's last index %d < 3", got)
	}
	next := w2.LastIndex() + 1
	if err := w2.Append(ctx, next, entries(next, 1)); err != nil {
		t.Fatal(err)
	}

	// Another process took the log over during the outage: Reopen is
	// fenced and the new owner is undisturbed.
	breakWriter(w2, next+1)
	other := newClient(t, b, m, nil)
	lo, _ := other.OpenLog(ctx, "r")
	owner, err := lo.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if _, err := w2.Reopen(ctx); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("Reopen after a takeover = %v, want ErrFenced", err)
	}
	on := owner.LastIndex() + 1
	if err := owner.Append(ctx, on, entries(on, 1)); err != nil {
		t.Fatalf("the new owner was fenced by a reopen: %v", err)
	}

	// The log was deleted and created again: fenced too.
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	lo2, _ := other.OpenLog(ctx, "r")
	w3, err := lo2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w3.Close()
	if err := other.DeleteLog(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateLog(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReopenWriter(ctx, w3.ID()); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("ReopenWriter of a deleted incarnation = %v, want ErrFenced", err)
	}
}

// A reader in another process tailing an open segment costs a few LISTs
// per poll, not one LIST of the whole segment per fragment.
func TestRemoteReaderListsOncePerPoll(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	cw := newClient(t, b, m, nil)
	cw.CreateLog(ctx, "t")
	lw, _ := cw.OpenLog(ctx, "t")
	w, err := lw.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 300
	for i := uint64(1); i <= n; i++ { // one fragment per entry, all in the open segment
		if err := w.Append(ctx, i, entries(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	hb := newHeldBucket(b)
	cr := newClient(t, hb, m, nil)
	lr, _ := cr.OpenLog(ctx, "t")
	r, err := lr.NewReader(ctx, wal.Earliest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := uint64(1); i <= n; i++ {
		idx, e, err := r.Next(ctx)
		if err != nil || idx != i || string(e) != fmt.Sprintf("entry-%d", i) {
			t.Fatalf("Next = %d %q %v, want %d", idx, e, err, i)
		}
	}
	lists := hb.lists.Load()
	t.Logf("%d LISTs to read %d fragments of an open segment", lists, n)
	if lists > 10 {
		t.Fatalf("%d LISTs for %d fragments: a reader must not LIST the open segment per fragment", lists, n)
	}
	// Tailing: each new fragment costs O(1) LISTs.
	before := hb.lists.Load()
	for i := uint64(n + 1); i <= n+20; i++ {
		if err := w.Append(ctx, i, entries(i, 1)); err != nil {
			t.Fatal(err)
		}
		idx, _, err := r.Next(ctx)
		if err != nil || idx != i {
			t.Fatalf("tail Next = %d %v, want %d", idx, err, i)
		}
	}
	if d := hb.lists.Load() - before; d > 20*4 {
		t.Fatalf("%d LISTs for 20 tailed fragments", d)
	}
}
