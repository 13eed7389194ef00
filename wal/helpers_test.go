package wal_test

// The setup the wal tests share: stores and clients (a client stands for a
// process), a created log and its writer, appends and reads that fail the
// test when they fail, assertions, and the store wrappers tests steer
// (PUTs held at a gate or failing, metadata calls gated, failing, hanging or
// answered ambiguously). Helpers run their calls with context.Background();
// a test passes its own context where the call may wait.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woodpecker-wal/woodpecker/internal/teststores"
	"github.com/woodpecker-wal/woodpecker/meta"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	filestore "github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// memStores returns an empty in-memory bucket and metadata store: what the
// clients (processes) of one test share.
func memStores() (*objmem.Bucket, *metamem.Store) { return objmem.New(), metamem.New() }

// fileStores returns a bucket on a fresh directory, closed when the test
// ends (after the clients opened on it), and a metadata store kept in it.
func fileStores(t testing.TB) (*filestore.Bucket, meta.Store) { return teststores.FileBucket(t) }

// newClient opens a client over b and m, retrying after 1 ms rather than
// the default, and closes it when the test ends; mod, if set, changes the
// config first.
func newClient(t testing.TB, b objstore.Bucket, m meta.Store, mod func(*wal.Config)) *wal.Client {
	t.Helper()
	cfg := wal.Config{Bucket: b, Meta: m, RetryInterval: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := wal.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newMemClient is newClient over in-memory stores of its own: a test of one
// process.
func newMemClient(t testing.TB, mod func(*wal.Config)) *wal.Client {
	b, m := memStores()
	return newClient(t, b, m, mod)
}

// createLog creates log name through c and returns c's handle on it.
func createLog(t testing.TB, c *wal.Client, name string) *wal.Log {
	t.Helper()
	if err := c.CreateLog(context.Background(), name); err != nil {
		t.Fatalf("CreateLog(%q): %v", name, err)
	}
	return openLog(t, c, name)
}

// openLog returns c's handle on the existing log name.
func openLog(t testing.TB, c *wal.Client, name string) *wal.Log {
	t.Helper()
	l, err := c.OpenLog(context.Background(), name)
	if err != nil {
		t.Fatalf("OpenLog(%q): %v", name, err)
	}
	return l
}

// openWriter opens a writer of l, fencing any earlier one, and closes it
// when the test ends (a test may close it sooner: a second Close does
// nothing).
func openWriter(t testing.TB, l *wal.Log) *wal.Writer {
	t.Helper()
	w, err := l.OpenWriter(context.Background())
	if err != nil {
		t.Fatalf("OpenWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// newLog creates log name through c and opens its writer.
func newLog(t testing.TB, c *wal.Client, name string) (*wal.Log, *wal.Writer) {
	t.Helper()
	l := createLog(t, c, name)
	return l, openWriter(t, l)
}

// newHeldLog creates log name over a heldBucket on in-memory stores,
// through a client that retries a failed PUT once (a failing bucket breaks
// its writer at once), and opens its writer. The test steers hb; other
// processes open clients on hb.Bucket and m.
func newHeldLog(t testing.TB, name string) (hb *heldBucket, m meta.Store, l *wal.Log, w *wal.Writer) {
	t.Helper()
	b, m := memStores()
	hb = newHeldBucket(b)
	l, w = newLog(t, newClient(t, hb, m, func(c *wal.Config) { c.MaxFlushRetries = 1 }), name)
	return hb, m, l, w
}

// mustReopen reopens w, which failed or was fenced, in its process, or
// fails the test (when says in what situation); the new writer is closed
// when the test ends.
func mustReopen(t testing.TB, w *wal.Writer, when string) *wal.Writer {
	t.Helper()
	w2, err := w.Reopen(context.Background())
	if err != nil {
		t.Fatalf("Reopen %s: %v", when, err)
	}
	t.Cleanup(func() { w2.Close() })
	return w2
}

// mustGC runs a GC pass over log name through c, or fails the test.
func mustGC(t testing.TB, c *wal.Client, name string) wal.GCStats {
	t.Helper()
	st, err := c.GC(context.Background(), name)
	if err != nil {
		t.Fatalf("GC(%q): %v", name, err)
	}
	return st
}

// entryAt is the entry entries writes at index i.
func entryAt(i uint64) string { return fmt.Sprintf("entry-%d", i) }

// entries returns n entries for indexes first.., each naming its index:
// "entry-<index>".
func entries(first uint64, n int) [][]byte { return entriesOf("entry", first, n) }

// entriesOf returns n entries "<prefix>-<index>" for indexes first...
func entriesOf(prefix string, first uint64, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("%s-%d", prefix, first+uint64(i)))
	}
	return out
}

// cancelledCtx returns a context already cancelled: a writer operation
// given it returns at once and stays queued.
func cancelledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// mustAppend appends data at first, durably, or fails the test.
func mustAppend(t testing.TB, w *wal.Writer, first uint64, data [][]byte) {
	t.Helper()
	if err := w.Append(context.Background(), first, data); err != nil {
		t.Fatalf("Append(%d, %d entries): %v", first, len(data), err)
	}
}

// appendRange appends entries first..last by synchronous Appends of per
// entries each (the last may hold fewer).
func appendRange(t testing.TB, w *wal.Writer, first, last uint64, per int) {
	t.Helper()
	for i := first; i <= last; i += uint64(per) {
		mustAppend(t, w, i, entries(i, int(min(uint64(per), last-i+1))))
	}
}

// mustGet returns entry i of l, or fails the test.
func mustGet(t testing.TB, l *wal.Log, i uint64) string {
	t.Helper()
	b, err := l.Get(context.Background(), i)
	if err != nil {
		t.Fatalf("Get(%d): %v", i, err)
	}
	return string(b)
}

// wantEntries fails the test unless l reads entries first..last as entries
// wrote them.
func wantEntries(t testing.TB, l *wal.Log, first, last uint64) {
	t.Helper()
	wantEntriesOf(t, l, "entry", first, last)
}

// wantEntriesOf fails the test unless l reads entries first..last as
// entriesOf(prefix, ...) wrote them.
func wantEntriesOf(t testing.TB, l *wal.Log, prefix string, first, last uint64) {
	t.Helper()
	for i := first; i <= last; i++ {
		if got, want := mustGet(t, l, i), fmt.Sprintf("%s-%d", prefix, i); got != want {
			t.Fatalf("Get(%d) = %q, want %q", i, got, want)
		}
	}
}

// wantErr fails the test unless err is target; what (a format) names the
// call that returned it.
func wantErr(t testing.TB, err, target error, what string, args ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s = %v, want %v", fmt.Sprintf(what, args...), err, target)
	}
}

// wantGetErr fails the test unless Get(i) of l fails with target.
func wantGetErr(t testing.TB, l *wal.Log, i uint64, target error) {
	t.Helper()
	_, err := l.Get(context.Background(), i)
	wantErr(t, err, target, "Get(%d)", i)
}

// wantNexts fails the test unless r returns entries first..last, as entries
// wrote them, in order; ctx bounds the wait for each.
func wantNexts(t testing.TB, ctx context.Context, r *wal.Reader, first, last uint64) {
	t.Helper()
	for want := first; want <= last; want++ {
		i, e, err := r.Next(ctx)
		if err != nil || i != want || string(e) != entryAt(want) {
			t.Fatalf("Next = %d %q %v, want %d", i, e, err, want)
		}
	}
}

// skipNexts reads n entries with r, whatever they are, or fails the test.
func skipNexts(t testing.TB, r *wal.Reader, n int) {
	t.Helper()
	for range n {
		if _, _, err := r.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// nextWithin is r.Next given d to return.
func nextWithin(r *wal.Reader, d time.Duration) (uint64, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return r.Next(ctx)
}

// newReader opens a reader of l at from, closed when the test ends.
func newReader(t testing.TB, l *wal.Log, from uint64) *wal.Reader {
	t.Helper()
	r, err := l.NewReader(context.Background(), from)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// countObjects counts b's objects under prefix.
func countObjects(t testing.TB, b objstore.Bucket, prefix string) int {
	t.Helper()
	n := 0
	if err := objstore.ListAll(context.Background(), b, prefix, 0, func(objstore.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// gatherValues returns each gathered metric's value keyed by name and label
// pairs ("name" alone when unlabelled): a counter's or gauge's value, a
// histogram's sample count.
func gatherValues(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += "{" + lp.GetName() + "=" + lp.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return got
}

// waitAtGate is how a store wrapper holds a call: it notes the arrival on
// entered (dropped when entered is full) and waits until gate is closed, or
// returns ctx's error first.
func waitAtGate(ctx context.Context, entered chan<- struct{}, gate <-chan struct{}) error {
	select {
	case entered <- struct{}{}:
	default:
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// heldBucket holds PutIfAbsent calls at a gate and fails them without
// landing them, as told, and counts LISTs. With hold set and the gate left
// closed it is an endpoint that never answers (a held call returns when
// its ctx is done).
type heldBucket struct {
	objstore.Bucket
	hold     atomic.Bool   // new PutIfAbsent calls wait at the gate
	fail     atomic.Bool   // PutIfAbsent calls that pass the gate fail; nothing lands
	failHeld atomic.Bool   // held calls fail too when released
	entered  chan struct{} // receives one value per call that reached the gate (up to 100 unread)
	gate     chan struct{} // closed to let held calls go
	lists    atomic.Int64
}

func newHeldBucket(b objstore.Bucket) *heldBucket {
	return &heldBucket{Bucket: b, entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (h *heldBucket) PutIfAbsent(ctx context.Context, k string, d []byte) (objstore.ObjectInfo, error) {
	if h.hold.Load() {
		if err := waitAtGate(ctx, h.entered, h.gate); err != nil {
			return objstore.ObjectInfo{}, err
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

// heldMeta injects metadata-store trouble: Updates held at a gate, Updates
// that fail without landing, and Gets that hang until their ctx is done
// (or release is closed).
type heldMeta struct {
	meta.Store
	failUpdate atomic.Bool
	hangGet    atomic.Bool
	gate       atomic.Pointer[chan struct{}] // Updates wait here while set
	entered    chan struct{}                 // one value per Update that reached the gate (up to 100 unread)
	release    chan struct{}                 // closed to end every hang
	getHangs   atomic.Int64
}

// newHeldMeta wraps a new in-memory store.
func newHeldMeta() *heldMeta {
	return &heldMeta{Store: metamem.New(), entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (m *heldMeta) Get(ctx context.Context, k string) (meta.Record, error) {
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

func (m *heldMeta) Update(ctx context.Context, k string, v []byte, ver meta.Version) (meta.Version, error) {
	if g := m.gate.Load(); g != nil {
		if err := waitAtGate(ctx, m.entered, *g); err != nil {
			return "", err
		}
	}
	if m.failUpdate.Load() {
		return "", errors.New("injected: connection refused")
	}
	return m.Store.Update(ctx, k, v, ver)
}

// ambMeta makes the nth Update land and then report an error (a lost
// reply).
type ambMeta struct {
	meta.Store
	n, count atomic.Int64
}

// newAmbMeta wraps a new in-memory store; no reply is lost until n is set.
func newAmbMeta() *ambMeta { return &ambMeta{Store: metamem.New()} }

func (a *ambMeta) Update(ctx context.Context, k string, v []byte, ver meta.Version) (meta.Version, error) {
	nv, err := a.Store.Update(ctx, k, v, ver)
	if err == nil && a.count.Add(1) == a.n.Load() {
		return "", errors.New("injected: reply lost")
	}
	return nv, err
}

// loseNextReply makes the next Update land and report an error.
func (a *ambMeta) loseNextReply() { a.n.Store(a.count.Load() + 1) }
