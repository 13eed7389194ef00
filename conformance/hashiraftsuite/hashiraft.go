package hashiraftsuite

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/internal/harness"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
)

// HashiStore is what TestHashiLogStore drives: a hashicorp/raft LogStore
// and StableStore that can be closed. If it also implements
// raft.MonotonicLogStore or raft.CommitTrackingLogStore, those are checked
// too.
type HashiStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// HashiFactory makes the hashicorp/raft stores under test.
type HashiFactory struct {
	// Stores returns a fresh, empty bucket and metadata store for one test
	// case. The suite closes neither; register cleanup with t.Cleanup.
	Stores conformance.WALStores
	// Client opens a log client over the suite's (fault-wrapped) stores,
	// e.g. embedded.Client(embedded.Small()). Its retry window must be
	// shorter than 150ms, the suite's short call timeout.
	Client conformance.ClientFactory
	// Open opens the store under test over c (a client the suite made over
	// the stores, possibly wrapped to inject faults), creating its log if it
	// is missing. Opening it again over a client of the same stores finds
	// the same log and stable values, and fences the earlier store.
	// callTimeout is the per-call timeout the store must use: the suite keeps
	// it short to test failures that outlast it.
	Open func(ctx context.Context, c logstore.Client, callTimeout time.Duration) (HashiStore, error)
}

// The per-call timeouts the suite asks for: a generous one, and a short
// one for the process that lives through an outage.
const (
	hashiCallTimeout  = 10 * time.Second
	hashiShortTimeout = 400 * time.Millisecond
)

// TestHashiLogStore checks a hashicorp/raft log and stable store against
// docs/raft-contracts.md: fixed cases for every contract bullet (the exact
// raft.ErrLogNotFound, all six raft.Log fields including a zero AppendedAt,
// no aliasing, the not-found answers raft accepts from a StableStore, the
// DeleteRange shapes, truncate-back-first StoreLogs, commit tracking,
// fencing of an earlier store, GetLog concurrent with StoreLogs and
// DeleteRange), and a rapid state machine comparing the store with
// raft.InmemStore under appends, suffix rewrites, overlapping and gapped
// StoreLogs, every DeleteRange shape, stable values, reopen, crash between
// calls and during StoreLogs (through fault.Bucket's crash view), faulty
// writes (resolved inside the call), an outage outlasting the call timeout
// (after which the log is again what raft saw acknowledged), faulty reads on
// a cold cache, and a second store taking over (fencing the first). Where
// the store's answer may differ from InmemStore's by design (an overlapping
// or gapped StoreLogs replaces the suffix or the whole log; a range strictly
// inside the log cannot be deleted), the oracle is driven to the documented
// outcome.
//
// The suite makes its own wal.Client (small fragments and segments, fast
// retries) over a fault.Bucket wrapping the factory's bucket; the metadata
// store is shared by every process of a case.
func TestHashiLogStore(t *testing.T, f HashiFactory, opts conformance.Options) {
	t.Run("Empty", func(t *testing.T) { testHashiEmpty(t, f) })
	t.Run("Fields", func(t *testing.T) { testHashiFields(t, f) })
	t.Run("NoAliasing", func(t *testing.T) { testHashiNoAliasing(t, f) })
	t.Run("Stable", func(t *testing.T) { testHashiStable(t, f) })
	t.Run("DeleteRange", func(t *testing.T) { testHashiDeleteRange(t, f) })
	t.Run("StoreLogsOverlap", func(t *testing.T) { testHashiOverlap(t, f) })
	t.Run("Monotonic", func(t *testing.T) { testHashiMonotonic(t, f) })
	t.Run("CommitTracking", func(t *testing.T) { testHashiCommitTracking(t, f) })
	t.Run("Fenced", func(t *testing.T) { testHashiFenced(t, f) })
	t.Run("ConcurrentReads", func(t *testing.T) { testHashiConcurrent(t, f) })
	t.Run("StateMachine", func(t *testing.T) {
		harness.Machine(t, opts.Checks, func(rt *rapid.T) (map[string]func(*rapid.T), func()) {
			b, m := f.Stores(t)
			sm := &hashiMachine{t: t, f: f, base: b, meta: m, seed: rapid.Uint64().Draw(rt, "seed")}
			sm.init(rt)
			return sm.actions(), sm.cleanup
		})
	})
}

// hashiProc is one process: a client over (possibly fault-wrapped) stores
// and the store under test.
type hashiProc struct {
	fb *fault.Bucket
	gm *harness.GatedMeta
	c  logstore.Client
	s  HashiStore
}

func hashiCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// hashiStart opens a process over b and m. fb, when not nil, is used as the
// bucket (shared with another process); otherwise b is wrapped afresh.
func hashiStart(t testing.TB, f HashiFactory, b objstore.Bucket, m meta.Store, fb *fault.Bucket, seed uint64) (*hashiProc, error) {
	return hashiStartTimeout(t, f, b, m, fb, seed, hashiCallTimeout)
}

func hashiStartTimeout(t testing.TB, f HashiFactory, b objstore.Bucket, m meta.Store, fb *fault.Bucket, seed uint64, timeout time.Duration) (*hashiProc, error) {
	if fb == nil {
		fb = fault.Wrap(b, seed)
	}
	gm := &harness.GatedMeta{Store: m}
	c, err := f.Client(hashiCtx(t), fb, gm)
	if err != nil {
		return nil, fmt.Errorf("open client: %w", err)
	}
	s, err := f.Open(hashiCtx(t), c, timeout)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &hashiProc{fb: fb, gm: gm, c: c, s: s}, nil
}

func (p *hashiProc) close() {
	_ = p.s.Close()
	_ = p.c.Close()
}

// hashiOpenT opens a process for a fixed test and closes it at cleanup.
func hashiOpenT(t *testing.T, f HashiFactory) (*hashiProc, objstore.Bucket, meta.Store) {
	t.Helper()
	b, m := f.Stores(t)
	p, err := hashiStart(t, f, b, m, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p, b, m
}

// hashiReopen closes p and opens a new process on the same bucket.
func hashiReopen(t *testing.T, f HashiFactory, p *hashiProc, m meta.Store) *hashiProc {
	t.Helper()
	p.close()
	q, err := hashiStart(t, f, nil, m, p.fb, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.close)
	return q
}

// hashiLog returns a deterministic entry whose contents derive from index
// and term, so a reader can tell whether an entry is the right one.
func hashiLog(index, term uint64) *raft.Log {
	return &raft.Log{
		Index: index, Term: term, Type: raft.LogCommand,
		Data:       fmt.Appendf(nil, "i%d/t%d", index, term),
		AppendedAt: time.Unix(1_700_000_000+int64(index), int64(term)),
	}
}

func hashiLogs(first, n, term uint64) []*raft.Log {
	out := make([]*raft.Log, n)
	for k := range out {
		out[k] = hashiLog(first+uint64(k), term)
	}
	return out
}

// hashiEqual reports how got differs from want, or "".
func hashiEqual(got, want *raft.Log) string {
	switch {
	case got.Index != want.Index:
		return fmt.Sprintf("Index %d, want %d", got.Index, want.Index)
	case got.Term != want.Term:
		return fmt.Sprintf("Term %d, want %d", got.Term, want.Term)
	case got.Type != want.Type:
		return fmt.Sprintf("Type %v, want %v", got.Type, want.Type)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Sprintf("Data %q, want %q", got.Data, want.Data)
	case !bytes.Equal(got.Extensions, want.Extensions):
		return fmt.Sprintf("Extensions %q, want %q", got.Extensions, want.Extensions)
	case !got.AppendedAt.Equal(want.AppendedAt):
		return fmt.Sprintf("AppendedAt %v, want %v", got.AppendedAt, want.AppendedAt)
	case got.AppendedAt.IsZero() != want.AppendedAt.IsZero():
		return fmt.Sprintf("AppendedAt.IsZero() %v, want %v", got.AppendedAt.IsZero(), want.AppendedAt.IsZero())
	}
	return ""
}

func hashiBounds(t testing.TB, s raft.LogStore) (uint64, uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	return first, last
}

func hashiWantBounds(t testing.TB, s raft.LogStore, first, last uint64) {
	t.Helper()
	if f, l := hashiBounds(t, s); f != first || l != last {
		t.Fatalf("bounds [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

// hashiWantNotFound checks GetLog(i) returns exactly raft.ErrLogNotFound.
func hashiWantNotFound(t testing.TB, s raft.LogStore, i uint64) {
	t.Helper()
	var l raft.Log
	if err := s.GetLog(i, &l); err != raft.ErrLogNotFound { //nolint:errorlint // raft compares with ==
		t.Fatalf("GetLog(%d) = %v, want exactly raft.ErrLogNotFound (raft compares with ==)", i, err)
	}
}

func hashiWantLog(t testing.TB, s raft.LogStore, want *raft.Log) {
	t.Helper()
	var got raft.Log
	if err := s.GetLog(want.Index, &got); err != nil {
		t.Fatalf("GetLog(%d): %v", want.Index, err)
	}
	if d := hashiEqual(&got, want); d != "" {
		t.Fatalf("GetLog(%d): %s", want.Index, d)
	}
}

func testHashiEmpty(t *testing.T, f HashiFactory) {
	p, _, _ := hashiOpenT(t, f)
	hashiWantBounds(t, p.s, 0, 0)
	for _, i := range []uint64{0, 1, 2, 1 << 40} {
		hashiWantNotFound(t, p.s, i)
	}
	if err := p.s.DeleteRange(1, 10); err != nil {
		t.Fatalf("DeleteRange on an empty store: %v", err)
	}
	if err := p.s.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil): %v", err)
	}
	// The first append may start at any index.
	if err := p.s.StoreLogs(hashiLogs(1000, 3, 1)); err != nil {
		t.Fatalf("StoreLogs at 1000 into an empty store: %v", err)
	}
	hashiWantBounds(t, p.s, 1000, 1002)
	hashiWantNotFound(t, p.s, 999)
	hashiWantNotFound(t, p.s, 1003)
	hashiWantLog(t, p.s, hashiLog(1001, 1))
}

func testHashiFields(t *testing.T, f HashiFactory) {
	p, _, m := hashiOpenT(t, f)
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	logs := []*raft.Log{
		// What BootstrapCluster stores: a zero AppendedAt.
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf")},
		{Index: 2, Term: 1, Type: raft.LogNoop},
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte("cmd"), Extensions: []byte("ext"),
			AppendedAt: time.Date(2024, 2, 29, 23, 59, 59, 999_999_999, time.UTC)},
		{Index: 4, Term: 2, Type: raft.LogBarrier, AppendedAt: time.Unix(0, 1)},
		{Index: 5, Term: 3, Type: raft.LogAddPeerDeprecated, Data: []byte{}, Extensions: []byte{0, 0xff},
			AppendedAt: time.Unix(-1, 5).In(time.FixedZone("x", 3600))},
		{Index: 6, Term: 1 << 62, Type: raft.LogType(255), Data: big, AppendedAt: time.Date(9999, 12, 31, 0, 0, 0, 1, time.UTC)},
		{Index: 7, Term: 3, Type: raft.LogCommand, Data: []byte("x"), AppendedAt: time.Now()}, // with a monotonic reading
	}
	if err := p.s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	check := func(s HashiStore) {
		t.Helper()
		for _, want := range logs {
			hashiWantLog(t, s, want)
		}
	}
	check(p.s)
	p = hashiReopen(t, f, p, m) // decoded from the bucket, not the cache
	check(p.s)
	if err := p.s.StoreLog(&raft.Log{Index: 8, Term: 3, Data: []byte("one")}); err != nil {
		t.Fatalf("StoreLog: %v", err)
	}
	hashiWantLog(t, p.s, &raft.Log{Index: 8, Term: 3, Data: []byte("one")})
}

func testHashiNoAliasing(t *testing.T, f HashiFactory) {
	p, _, _ := hashiOpenT(t, f)
	in := &raft.Log{Index: 1, Term: 1, Data: []byte("data"), Extensions: []byte("ext")}
	if err := p.s.StoreLogs([]*raft.Log{in}); err != nil {
		t.Fatal(err)
	}
	in.Data[0], in.Extensions[0] = 'X', 'X' // the caller reuses its buffers
	var a, b raft.Log
	if err := p.s.GetLog(1, &a); err != nil {
		t.Fatal(err)
	}
	if string(a.Data) != "data" || string(a.Extensions) != "ext" {
		t.Fatalf("stored entry changed with the caller's buffers: %q %q", a.Data, a.Extensions)
	}
	a.Data[0], a.Extensions[0] = 'Y', 'Y' // the reader modifies what it got
	if err := p.s.GetLog(1, &b); err != nil {
		t.Fatal(err)
	}
	if string(b.Data) != "data" || string(b.Extensions) != "ext" {
		t.Fatalf("GetLog returned the store's buffers: a later read sees %q %q", b.Data, b.Extensions)
	}
}

// hashiNotFound reports whether a StableStore answer means "not set": raft
// accepts (nil or empty, nil) or an error whose text is exactly "not found".
func hashiNotFound(v []byte, err error) bool {
	if err != nil {
		return err.Error() == "not found"
	}
	return len(v) == 0
}

func testHashiStable(t *testing.T, f HashiFactory) {
	p, _, m := hashiOpenT(t, f)
	for _, k := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand", "missing"} {
		if v, err := p.s.Get([]byte(k)); !hashiNotFound(v, err) {
			t.Fatalf("Get(%q) on a fresh store = %q, %v; raft wants (nil, nil) or exactly \"not found\"", k, v, err)
		}
		if v, err := p.s.GetUint64([]byte(k)); (err != nil && err.Error() != "not found") || (err == nil && v != 0) {
			t.Fatalf("GetUint64(%q) on a fresh store = %d, %v; raft wants (0, nil) or exactly \"not found\"", k, v, err)
		}
	}
	if err := p.s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	val := []byte("node-1")
	if err := p.s.Set([]byte("LastVoteCand"), val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X'
	odd := []byte{0, 0xff, '/', ' ', 'k'}
	if err := p.s.Set(odd, []byte("odd")); err != nil {
		t.Fatal(err)
	}
	check := func(s HashiStore) {
		t.Helper()
		if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
			t.Fatalf("GetUint64(CurrentTerm) = %d, %v; want 7", v, err)
		}
		v, err := s.Get([]byte("LastVoteCand"))
		if err != nil || string(v) != "node-1" {
			t.Fatalf("Get(LastVoteCand) = %q, %v; want node-1", v, err)
		}
		v[0] = 'Y'
		if v, _ := s.Get([]byte("LastVoteCand")); string(v) != "node-1" {
			t.Fatalf("Get returned the store's buffer: a later Get sees %q", v)
		}
		if v, err := s.Get(odd); err != nil || string(v) != "odd" {
			t.Fatalf("Get(%q) = %q, %v; want odd", odd, v, err)
		}
		if v, err := s.Get([]byte("CurrentTerm\x00")); !hashiNotFound(v, err) {
			t.Fatalf("Get of a key that was never set = %q, %v", v, err)
		}
	}
	check(p.s)
	p = hashiReopen(t, f, p, m)
	check(p.s)
	if err := p.s.SetUint64([]byte("CurrentTerm"), 8); err != nil {
		t.Fatal(err)
	}
	if v, err := p.s.GetUint64([]byte("CurrentTerm")); err != nil || v != 8 {
		t.Fatalf("GetUint64(CurrentTerm) = %d, %v; want 8", v, err)
	}
}

func testHashiDeleteRange(t *testing.T, f HashiFactory) {
	p, _, _ := hashiOpenT(t, f)
	if err := p.s.StoreLogs(hashiLogs(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	// Outside the log: nothing happens.
	for _, r := range [][2]uint64{{21, 30}, {0, 0}} {
		if err := p.s.DeleteRange(r[0], r[1]); err != nil {
			t.Fatalf("DeleteRange(%d, %d) outside the log: %v", r[0], r[1], err)
		}
		hashiWantBounds(t, p.s, 1, 20)
	}
	// A prefix: FirstIndex becomes max+1.
	if err := p.s.DeleteRange(1, 5); err != nil {
		t.Fatal(err)
	}
	hashiWantBounds(t, p.s, 6, 20)
	hashiWantNotFound(t, p.s, 5)
	hashiWantLog(t, p.s, hashiLog(6, 1))
	// A prefix starting below FirstIndex (raft compacts from FirstIndex, but
	// a range covering it is still a prefix).
	if err := p.s.DeleteRange(2, 7); err != nil {
		t.Fatal(err)
	}
	hashiWantBounds(t, p.s, 8, 20)
	// A suffix, with max beyond LastIndex.
	if err := p.s.DeleteRange(18, 100); err != nil {
		t.Fatal(err)
	}
	hashiWantBounds(t, p.s, 8, 17)
	hashiWantNotFound(t, p.s, 18)
	// The middle of a dense log cannot be deleted.
	if err := p.s.DeleteRange(10, 12); err == nil {
		t.Fatal("DeleteRange(10, 12) strictly inside [8, 17] succeeded; a monotonic store must refuse it")
	}
	hashiWantBounds(t, p.s, 8, 17)
	for i := uint64(8); i <= 17; i++ {
		hashiWantLog(t, p.s, hashiLog(i, 1))
	}
	// Rewrite a suffix with a higher term, as raft does: DeleteRange, then StoreLogs.
	if err := p.s.DeleteRange(15, 17); err != nil {
		t.Fatal(err)
	}
	if err := p.s.StoreLogs(hashiLogs(15, 4, 2)); err != nil {
		t.Fatalf("StoreLogs after a suffix DeleteRange: %v", err)
	}
	hashiWantBounds(t, p.s, 8, 18)
	hashiWantLog(t, p.s, hashiLog(14, 1))
	hashiWantLog(t, p.s, hashiLog(15, 2))
	// Everything: both indexes 0, and the next append may start anywhere.
	if err := p.s.DeleteRange(8, 18); err != nil {
		t.Fatal(err)
	}
	hashiWantBounds(t, p.s, 0, 0)
	hashiWantNotFound(t, p.s, 8)
	if err := p.s.StoreLogs(hashiLogs(500, 2, 3)); err != nil {
		t.Fatalf("StoreLogs at 500 after emptying: %v", err)
	}
	hashiWantBounds(t, p.s, 500, 501)
	// Everything, by a prefix range reaching past the end (raft's wipe after
	// installing a snapshot is DeleteRange(FirstIndex, LastIndex)).
	if err := p.s.DeleteRange(500, 10_000); err != nil {
		t.Fatal(err)
	}
	hashiWantBounds(t, p.s, 0, 0)
	if err := p.s.StoreLogs(hashiLogs(20_000, 1, 4)); err != nil {
		t.Fatal(err)
	}
	hashiWantBounds(t, p.s, 20_000, 20_000)
}

func testHashiOverlap(t *testing.T, f HashiFactory) {
	p, _, m := hashiOpenT(t, f)
	if err := p.s.StoreLogs(hashiLogs(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	// StoreLogs at or below LastIndex replaces the suffix from there.
	if err := p.s.StoreLogs(hashiLogs(6, 2, 2)); err != nil {
		t.Fatalf("StoreLogs overlapping the suffix: %v", err)
	}
	hashiWantBounds(t, p.s, 1, 7)
	hashiWantLog(t, p.s, hashiLog(5, 1))
	hashiWantLog(t, p.s, hashiLog(7, 2))
	hashiWantNotFound(t, p.s, 8)
	// From the very first index: the whole log is replaced.
	if err := p.s.StoreLogs(hashiLogs(1, 3, 3)); err != nil {
		t.Fatal(err)
	}
	hashiWantBounds(t, p.s, 1, 3)
	hashiWantLog(t, p.s, hashiLog(1, 3))
	p = hashiReopen(t, f, p, m)
	hashiWantBounds(t, p.s, 1, 3)
	hashiWantLog(t, p.s, hashiLog(3, 3))
	hashiWantNotFound(t, p.s, 4)
}

func testHashiMonotonic(t *testing.T, f HashiFactory) {
	p, _, _ := hashiOpenT(t, f)
	ms, ok := p.s.(raft.MonotonicLogStore)
	if !ok {
		t.Skipf("%T does not implement raft.MonotonicLogStore", p.s)
	}
	if !ms.IsMonotonic() {
		t.Fatal("IsMonotonic() = false")
	}
}

func testHashiCommitTracking(t *testing.T, f HashiFactory) {
	p, _, m := hashiOpenT(t, f)
	ct, ok := p.s.(raft.CommitTrackingLogStore)
	if !ok {
		t.Skipf("%T does not implement raft.CommitTrackingLogStore", p.s)
	}
	if c, err := ct.GetCommitIndex(); err != nil || c != 0 {
		t.Fatalf("GetCommitIndex on an empty store = %d, %v; want 0, nil", c, err)
	}
	if err := ct.StageCommitIndex(3); err != nil {
		t.Fatal(err)
	}
	if c, err := ct.GetCommitIndex(); err != nil || c != 0 {
		t.Fatalf("GetCommitIndex after staging without StoreLogs = %d, %v; want 0 (staged is not persisted)", c, err)
	}
	if err := p.s.StoreLogs(hashiLogs(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	if err := ct.StageCommitIndex(9); err != nil { // beyond what the next call stores
		t.Fatal(err)
	}
	if err := p.s.StoreLogs(hashiLogs(6, 2, 1)); err != nil {
		t.Fatal(err)
	}
	p = hashiReopen(t, f, p, m)
	ct = p.s.(raft.CommitTrackingLogStore)
	if c, err := ct.GetCommitIndex(); err != nil || c != 7 {
		t.Fatalf("GetCommitIndex = %d, %v; want 7 (staged 9, capped at LastIndex 7)", c, err)
	}
	if err := p.s.DeleteRange(6, 7); err != nil {
		t.Fatal(err)
	}
	if c, err := ct.GetCommitIndex(); err != nil || c != 3 {
		t.Fatalf("GetCommitIndex after a suffix delete = %d, %v; want 3 (stored with entry 5)", c, err)
	}
}

func testHashiFenced(t *testing.T, f HashiFactory) {
	p, b, m := hashiOpenT(t, f)
	if err := p.s.StoreLogs(hashiLogs(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.s.SetUint64([]byte("CurrentTerm"), 5); err != nil {
		t.Fatal(err)
	}
	// A second process opens the same log (the first is a zombie now).
	q, err := hashiStart(t, f, b, m, p.fb, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.close)
	if err := q.s.SetUint64([]byte("CurrentTerm"), 6); err != nil {
		t.Fatal(err)
	}
	if err := p.s.SetUint64([]byte("CurrentTerm"), 2); err == nil {
		t.Fatal("a fenced store set CurrentTerm backwards")
	}
	if err := p.s.StoreLogs(hashiLogs(6, 1, 1)); err == nil {
		t.Fatal("a fenced store appended")
	}
	if err := p.s.DeleteRange(1, 2); err == nil {
		t.Fatal("a fenced store truncated")
	}
	if v, err := q.s.GetUint64([]byte("CurrentTerm")); err != nil || v != 6 {
		t.Fatalf("CurrentTerm = %d, %v; want 6", v, err)
	}
	hashiWantBounds(t, q.s, 1, 5)
	r := hashiReopen(t, f, q, m)
	hashiWantBounds(t, r.s, 1, 5)
	if v, err := r.s.GetUint64([]byte("CurrentTerm")); err != nil || v != 6 {
		t.Fatalf("CurrentTerm after reopening = %d, %v; want 6", v, err)
	}
}

// testHashiConcurrent reads entries from several goroutines, as raft's
// replication does, while the main goroutine appends and compacts the
// prefix: every read is either the right entry or raft.ErrLogNotFound.
func testHashiConcurrent(t *testing.T, f HashiFactory) {
	p, _, _ := hashiOpenT(t, f)
	if err := p.s.StoreLogs(hashiLogs(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, misses atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for !stop.Load() {
				first, _ := p.s.FirstIndex()
				last, _ := p.s.LastIndex()
				if last < first || first == 0 {
					continue
				}
				time.Sleep(50 * time.Microsecond) // raft reads per replicated entry; do not starve the writer
				i := first + rng.Uint64N(last-first+1)
				var got raft.Log
				err := p.s.GetLog(i, &got)
				if err == raft.ErrLogNotFound { //nolint:errorlint // raft compares with ==
					misses.Add(1)
					continue
				}
				if err != nil {
					errc <- fmt.Errorf("GetLog(%d): %w", i, err)
					return
				}
				if d := hashiEqual(&got, hashiLog(i, 1)); d != "" {
					errc <- fmt.Errorf("GetLog(%d) during appends and compaction: %s", i, d)
					return
				}
				reads.Add(1)
			}
		}()
	}
	next := uint64(11)
	for round := range 60 {
		n := uint64(1 + round%5)
		if err := p.s.StoreLogs(hashiLogs(next, n, 1)); err != nil {
			t.Fatal(err)
		}
		next += n
		if round%7 == 6 {
			first, _ := p.s.FirstIndex()
			if err := p.s.DeleteRange(first, next-8); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	t.Logf("%d concurrent reads, %d not found (compacted meanwhile)", reads.Load(), misses.Load())
}

// hashiMachine compares the store with raft.InmemStore as the oracle.
type hashiMachine struct {
	t    *testing.T
	f    HashiFactory
	base objstore.Bucket
	meta meta.Store
	seed uint64
	n    uint64 // processes started

	p        *hashiProc
	oracle   *raft.InmemStore
	stable   map[string][]byte // model of the stable values
	commitOf map[uint64]uint64 // the commit index stored with each entry
	staged   uint64
	term     uint64
	tracking bool
}

func (m *hashiMachine) start(rt *rapid.T, shared *fault.Bucket) {
	m.startTimeout(rt, shared, hashiCallTimeout)
}

func (m *hashiMachine) startTimeout(rt *rapid.T, shared *fault.Bucket, timeout time.Duration) {
	m.n++
	p, err := hashiStartTimeout(m.t, m.f, m.base, m.meta, shared, m.seed+m.n, timeout)
	if err != nil {
		rt.Fatal(err)
	}
	m.p = p
	m.staged = 0
	_, m.tracking = p.s.(raft.CommitTrackingLogStore)
}

func (m *hashiMachine) init(rt *rapid.T) {
	m.oracle = raft.NewInmemStore()
	m.stable = map[string][]byte{}
	m.commitOf = map[uint64]uint64{}
	m.term = 1
	m.start(rt, nil)
	m.checkAll(rt)
}

func (m *hashiMachine) cleanup() {
	if m.p != nil {
		m.p.close()
	}
}

func (m *hashiMachine) bounds() (uint64, uint64) {
	first, _ := m.oracle.FirstIndex()
	last, _ := m.oracle.LastIndex()
	return first, last
}

// batch draws n entries from index first with the current term.
func (m *hashiMachine) batch(rt *rapid.T, first uint64) []*raft.Log {
	n := rapid.IntRange(1, 7).Draw(rt, "n")
	rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "contents"), first))
	out := make([]*raft.Log, n)
	for k := range out {
		l := &raft.Log{Index: first + uint64(k), Term: m.term, Type: raft.LogType(rng.IntN(7))}
		if n := rng.IntN(24); n > 0 {
			l.Data = make([]byte, n)
			for i := range l.Data {
				l.Data[i] = byte(rng.Uint32())
			}
		}
		if rng.IntN(4) == 0 {
			l.Extensions = fmt.Appendf(nil, "ext%d", rng.IntN(100))
		}
		if rng.IntN(3) > 0 {
			l.AppendedAt = time.Unix(rng.Int64N(4_000_000_000)-1_000_000_000, rng.Int64N(1e9))
		}
		out[k] = l
	}
	return out
}

// store runs StoreLogs on the store and, on success, the equivalent on the
// oracle: InmemStore does not drop a suffix when overwritten, so the
// oracle first deletes from the batch's first index (or everything, for a
// gap).
func (m *hashiMachine) store(rt *rapid.T, logs []*raft.Log) {
	if m.tracking && rapid.Bool().Draw(rt, "stage") {
		m.staged = rapid.Uint64Range(0, logs[len(logs)-1].Index+3).Draw(rt, "commit")
		if err := m.p.s.(raft.CommitTrackingLogStore).StageCommitIndex(m.staged); err != nil {
			rt.Fatalf("StageCommitIndex: %v", err)
		}
	}
	if err := m.p.s.StoreLogs(logs); err != nil {
		rt.Fatalf("StoreLogs([%d, %d]): %v", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	m.oracleStore(rt, logs)
}

func (m *hashiMachine) oracleStore(rt *rapid.T, logs []*raft.Log) {
	first, last := m.bounds()
	i := logs[0].Index
	switch {
	case last == 0:
	case i <= last:
		m.oracleDelete(rt, i, last)
	case i > last+1:
		m.oracleDelete(rt, first, last)
	}
	if err := m.oracle.StoreLogs(logs); err != nil {
		rt.Fatal(err)
	}
	for _, l := range logs {
		m.commitOf[l.Index] = m.staged
	}
}

func (m *hashiMachine) oracleDelete(rt *rapid.T, lo, hi uint64) {
	if err := m.oracle.DeleteRange(lo, hi); err != nil {
		rt.Fatal(err)
	}
	for i := lo; i <= hi; i++ {
		delete(m.commitOf, i)
	}
}

func (m *hashiMachine) deleteRange(rt *rapid.T, lo, hi uint64) {
	if err := m.p.s.DeleteRange(lo, hi); err != nil {
		rt.Fatalf("DeleteRange(%d, %d): %v", lo, hi, err)
	}
	m.oracleDelete(rt, lo, hi)
}

func (m *hashiMachine) actions() map[string]func(*rapid.T) {
	stableKeys := []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand", "\x00bin/ key"}
	return map[string]func(*rapid.T){
		"": m.checkBounds,
		"Append": func(rt *rapid.T) {
			_, last := m.bounds()
			first := last + 1
			if last == 0 {
				first = rapid.Uint64Range(1, 50).Draw(rt, "firstIndex")
			}
			m.store(rt, m.batch(rt, first))
		},
		"RewriteSuffix": func(rt *rapid.T) {
			// raft's follower path: DeleteRange the conflicting suffix, then
			// StoreLogs with the leader's (higher) term.
			first, last := m.bounds()
			if last == 0 {
				rt.Skip("empty")
			}
			i := rapid.Uint64Range(first, last).Draw(rt, "from")
			m.deleteRange(rt, i, last)
			m.term++
			m.store(rt, m.batch(rt, i))
		},
		"StoreOverlapping": func(rt *rapid.T) {
			first, last := m.bounds()
			if last == 0 {
				rt.Skip("empty")
			}
			m.term++
			m.store(rt, m.batch(rt, rapid.Uint64Range(first, last).Draw(rt, "at")))
		},
		"StoreWithGap": func(rt *rapid.T) {
			_, last := m.bounds()
			if last == 0 {
				rt.Skip("empty")
			}
			m.store(rt, m.batch(rt, last+rapid.Uint64Range(2, 20).Draw(rt, "gap")))
		},
		"DeletePrefix": func(rt *rapid.T) {
			first, last := m.bounds()
			if last == 0 {
				rt.Skip("empty")
			}
			lo := rapid.Uint64Range(max(first, 3)-2, first).Draw(rt, "min")
			hi := rapid.Uint64Range(first, last+3).Draw(rt, "max")
			m.deleteRange(rt, lo, hi)
		},
		"DeleteSuffix": func(rt *rapid.T) {
			first, last := m.bounds()
			if last <= first {
				rt.Skip("fewer than two entries")
			}
			lo := rapid.Uint64Range(first+1, last).Draw(rt, "min")
			hi := rapid.Uint64Range(last, last+3).Draw(rt, "max")
			m.deleteRange(rt, lo, hi)
		},
		"DeleteAll": func(rt *rapid.T) {
			first, last := m.bounds()
			if last == 0 {
				rt.Skip("empty")
			}
			m.deleteRange(rt, first, last)
		},
		"DeleteMiddle": func(rt *rapid.T) {
			first, last := m.bounds()
			if last < first+2 {
				rt.Skip("too short")
			}
			lo := rapid.Uint64Range(first+1, last-1).Draw(rt, "min")
			hi := rapid.Uint64Range(lo, last-1).Draw(rt, "max")
			if err := m.p.s.DeleteRange(lo, hi); err == nil {
				rt.Fatalf("DeleteRange(%d, %d) strictly inside [%d, %d] succeeded", lo, hi, first, last)
			}
		},
		"GetLog": func(rt *rapid.T) {
			first, last := m.bounds()
			i := rapid.Uint64Range(max(first, 2)-2, last+2).Draw(rt, "index")
			m.checkGet(rt, i)
		},
		"Stable": func(rt *rapid.T) {
			k := rapid.SampledFrom(stableKeys).Draw(rt, "key")
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0:
				v := rapid.Uint64().Draw(rt, "value")
				if err := m.p.s.SetUint64([]byte(k), v); err != nil {
					rt.Fatalf("SetUint64(%q): %v", k, err)
				}
				m.stable[k] = binaryBE(v)
			case 1:
				v := []byte(rapid.StringN(1, 12, -1).Draw(rt, "value"))
				if err := m.p.s.Set([]byte(k), v); err != nil {
					rt.Fatalf("Set(%q): %v", k, err)
				}
				m.stable[k] = slices.Clone(v)
			default:
				m.checkStable(rt, k)
			}
		},
		"Reopen": func(rt *rapid.T) {
			m.p.close()
			m.start(rt, nil)
			m.checkAll(rt)
		},
		"Crash": func(rt *rapid.T) {
			view := harness.Crash(rt, m.p.gm, m.p.fb)
			m.p.close() // the dead process's store: it fails, harmlessly
			m.base = view
			m.start(rt, nil)
			m.checkAll(rt) // every call returned, so everything is acknowledged
		},
		"CrashDuringStoreLogs": func(rt *rapid.T) {
			// The process dies while StoreLogs is in flight (slow bucket,
			// several fragments per batch). If the call returned nil, every
			// entry survives; otherwise any prefix of the batch may.
			m.p.close()
			m.startTimeout(rt, nil, hashiShortTimeout) // so the dying call gives up quickly
			_, last := m.bounds()
			first := last + 1
			if last == 0 {
				first = rapid.Uint64Range(1, 50).Draw(rt, "firstIndex")
			}
			batch := m.batch(rt, first)
			m.p.fb.SetLatency(time.Millisecond, 2*time.Millisecond)
			done := make(chan error, 1)
			go func() { done <- m.p.s.StoreLogs(batch) }()
			time.Sleep(time.Duration(rapid.IntRange(0, 12).Draw(rt, "crashAfterMs")) * time.Millisecond)
			// Only a call that returned before the crash counts as
			// acknowledged: one returning later raced the crash.
			acked := false
			select {
			case err := <-done:
				acked = err == nil
				done <- err
			default:
			}
			view := harness.Crash(rt, m.p.gm, m.p.fb)
			<-done
			m.p.close()
			m.base = view
			m.start(rt, nil)
			_, got := hashiBounds(m.t, m.p.s)
			end := batch[len(batch)-1].Index
			switch {
			case acked && got != end:
				rt.Fatalf("StoreLogs([%d, %d]) returned nil before the crash, but the log ends at %d after it", first, end, got)
			case got != last && (got < first || got > end):
				rt.Fatalf("after a crash during StoreLogs([%d, %d]) on a log ending at %d, the log ends at %d", first, end, last, got)
			}
			if got >= first {
				m.oracleStore(rt, batch[:got-first+1]) // staged is 0 in the dead process too
			}
			m.checkAll(rt)
		},
		"FaultyWrites": func(rt *rapid.T) {
			// Ambiguous successes and failed PUTs: resolved inside each
			// call, which succeeds.
			m.p.fb.AmbiguousRate(fault.OpPutIfAbsent, 0.2)
			m.p.fb.FailRate(fault.OpPutIfAbsent, 0.4) // 4 in a row break the writer: reopened
			defer m.p.fb.Heal()
			for k := rapid.IntRange(1, 3).Draw(rt, "calls"); k > 0; k-- {
				_, last := m.bounds()
				first := last + 1
				if last == 0 {
					first = 1
				}
				m.store(rt, m.batch(rt, first))
			}
			m.checkAll(rt)
		},
		"FaultyReads": func(rt *rapid.T) {
			// A cold cache (new process) and failing GETs and LISTs: GetLog
			// retries inside its timeout.
			m.p.close()
			m.start(rt, nil)
			m.p.fb.FailRate(fault.OpGet|fault.OpList, 0.2)
			defer m.p.fb.Heal()
			m.checkAll(rt)
		},
		"Outage": func(rt *rapid.T) {
			// Every bucket write fails for longer than the call timeout:
			// StoreLogs fails, and the next StoreLogs at the same index
			// (raft retries from its own last index) works once the bucket
			// is back, whatever prefix of the failed batch landed.
			if rapid.IntRange(0, 5).Draw(rt, "rare") != 0 {
				rt.Skip("outages are slow; run one in six")
			}
			m.p.close()
			m.startTimeout(rt, nil, hashiShortTimeout)
			_, last := m.bounds()
			first := last + 1
			if last == 0 {
				first = 1
			}
			var pass atomic.Int32 // the first few fragments land: a prefix of the batch
			pass.Store(int32(rapid.IntRange(0, 2).Draw(rt, "landed")))
			m.p.fb.SetHook(func(op fault.Op, _ string) fault.Action {
				if op == fault.OpPutIfAbsent && pass.Add(-1) >= 0 {
					return fault.Pass
				}
				if op&fault.OpWrite != 0 {
					return fault.Fail
				}
				return fault.Pass
			})
			batch := m.batch(rt, first)
			for len(batch) < 7 { // several fragments (MaxEntries is 3)
				batch = append(batch, hashiLog(first+uint64(len(batch)), m.term))
			}
			if err := m.p.s.StoreLogs(batch); err == nil {
				rt.Fatal("StoreLogs succeeded with every bucket write failing")
			}
			m.p.fb.Heal()
			if rapid.Bool().Draw(rt, "otherCallFirst") {
				// Any mutation first removes what the failed call may have
				// left: the log is again what raft saw acknowledged.
				if err := m.p.s.SetUint64([]byte("CurrentTerm"), m.term); err != nil {
					rt.Fatalf("SetUint64 after the outage: %v", err)
				}
				m.stable["CurrentTerm"] = binaryBE(m.term)
				m.checkAll(rt)
			}
			m.term++
			m.store(rt, m.batch(rt, first))
			m.checkAll(rt)
			m.p.close()
			m.start(rt, nil)
		},
		"Takeover": func(rt *rapid.T) {
			old := m.p
			m.start(rt, old.fb) // a second process on the same bucket
			next := uint64(1)
			if _, last := m.bounds(); last > 0 {
				next = last + 1
			}
			if err := old.s.StoreLogs(hashiLogs(next, 1, m.term)); err == nil {
				rt.Fatal("a fenced store appended")
			}
			if err := old.s.SetUint64([]byte("CurrentTerm"), 0); err == nil {
				rt.Fatal("a fenced store set CurrentTerm")
			}
			old.close()
			m.checkAll(rt)
		},
	}
}

func binaryBE(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func (m *hashiMachine) checkBounds(rt *rapid.T) {
	first, last := m.bounds()
	gf, _ := m.p.s.FirstIndex()
	gl, _ := m.p.s.LastIndex()
	if gf != first || gl != last {
		rt.Fatalf("bounds [%d, %d], oracle [%d, %d]", gf, gl, first, last)
	}
}

func (m *hashiMachine) checkGet(rt *rapid.T, i uint64) {
	var want, got raft.Log
	werr := m.oracle.GetLog(i, &want)
	gerr := m.p.s.GetLog(i, &got)
	if werr != nil {
		if gerr != raft.ErrLogNotFound { //nolint:errorlint // raft compares with ==
			rt.Fatalf("GetLog(%d) = %v, want exactly raft.ErrLogNotFound", i, gerr)
		}
		return
	}
	if gerr != nil {
		rt.Fatalf("GetLog(%d): %v", i, gerr)
	}
	if d := hashiEqual(&got, &want); d != "" {
		rt.Fatalf("GetLog(%d): %s", i, d)
	}
}

func (m *hashiMachine) checkStable(rt *rapid.T, k string) {
	want := m.stable[k]
	v, err := m.p.s.Get([]byte(k))
	if want == nil {
		if !hashiNotFound(v, err) {
			rt.Fatalf("Get(%q) = %q, %v; want not found", k, v, err)
		}
		return
	}
	if err != nil || !bytes.Equal(v, want) {
		rt.Fatalf("Get(%q) = %q, %v; want %q", k, v, err, want)
	}
	if len(want) == 8 {
		u, err := m.p.s.GetUint64([]byte(k))
		if err != nil || !bytes.Equal(binaryBE(u), want) {
			rt.Fatalf("GetUint64(%q) = %d, %v; want %x", k, u, err, want)
		}
	}
}

func (m *hashiMachine) checkAll(rt *rapid.T) {
	m.checkBounds(rt)
	first, last := m.bounds()
	if last == 0 {
		m.checkGet(rt, 1)
	} else {
		for i := max(first, 1) - 1; i <= last+1; i++ {
			m.checkGet(rt, i)
		}
	}
	for k := range m.stable {
		m.checkStable(rt, k)
	}
	if m.tracking {
		want := uint64(0)
		if last > 0 {
			want = min(m.commitOf[last], last)
		}
		got, err := m.p.s.(raft.CommitTrackingLogStore).GetCommitIndex()
		if err != nil || got != want {
			rt.Fatalf("GetCommitIndex = %d, %v; want %d", got, err, want)
		}
	}
}

// HashiSnapshotFactory returns a fresh, empty SnapshotStore that keeps
// retain snapshots; the factory registers cleanup with t.Cleanup.
type HashiSnapshotFactory func(t testing.TB, retain int) raft.SnapshotStore

// TestHashiSnapshotStore checks a hashicorp/raft SnapshotStore: an empty
// List; Close publishes with the exact Size and metadata; Open streams the
// bytes back; Cancel and an unclosed sink leave nothing visible; List is
// newest first (index, then term) and holds at most the retained number; a
// reader opened before newer snapshots reap its snapshot still reads it
// whole.
func TestHashiSnapshotStore(t *testing.T, newStore HashiSnapshotFactory) {
	conf := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "a", Address: "addr-a"},
		{Suffrage: raft.Nonvoter, ID: "b", Address: "addr-b"},
	}}
	payload := func(n int, seed uint64) []byte {
		b := make([]byte, n)
		rng := rand.New(rand.NewPCG(seed, 7))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	create := func(t *testing.T, s raft.SnapshotStore, index, term uint64, data []byte) raft.SnapshotSink {
		t.Helper()
		sink, err := s.Create(1, index, term, conf, index-1, nil)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		// Odd-sized writes.
		for off := 0; off < len(data); {
			n := min(len(data)-off, 1+off%70_001)
			if _, err := sink.Write(data[off : off+n]); err != nil {
				t.Fatalf("Write: %v", err)
			}
			off += n
		}
		return sink
	}
	readAll := func(t *testing.T, s raft.SnapshotStore, id string) (*raft.SnapshotMeta, []byte) {
		t.Helper()
		meta, rc, err := s.Open(id)
		if err != nil {
			t.Fatalf("Open(%s): %v", id, err)
		}
		defer rc.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(rc); err != nil {
			t.Fatalf("reading snapshot %s: %v", id, err)
		}
		return meta, buf.Bytes()
	}
	list := func(t *testing.T, s raft.SnapshotStore) []*raft.SnapshotMeta {
		t.Helper()
		l, err := s.List()
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		return l
	}

	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t, 2)
		if l := list(t, s); len(l) != 0 {
			t.Fatalf("List on an empty store = %d snapshots", len(l))
		}
		data := payload(3<<20+12345, 1)
		sink := create(t, s, 100, 3, data)
		if l := list(t, s); len(l) != 0 {
			t.Fatal("an unclosed snapshot is listed")
		}
		id := sink.ID()
		if err := sink.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		l := list(t, s)
		if len(l) != 1 || l[0].ID != id {
			t.Fatalf("List = %v, want the one snapshot %s", l, id)
		}
		m := l[0]
		if m.Index != 100 || m.Term != 3 || m.Version != 1 || m.ConfigurationIndex != 99 ||
			m.Size != int64(len(data)) || !slices.Equal(m.Configuration.Servers, conf.Servers) {
			t.Fatalf("listed metadata %+v, want index 100 term 3 version 1 configuration index 99 size %d and the configuration", m, len(data))
		}
		om, got := readAll(t, s, id)
		if om.Size != int64(len(data)) || om.Index != 100 || !bytes.Equal(got, data) {
			t.Fatalf("Open: size %d index %d, %d bytes read (equal: %v); want size %d", om.Size, om.Index, len(got), bytes.Equal(got, data), len(data))
		}
		// An empty snapshot is a snapshot too.
		sink = create(t, s, 101, 3, nil)
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		if _, got := readAll(t, s, sink.ID()); len(got) != 0 {
			t.Fatalf("empty snapshot read back %d bytes", len(got))
		}
		if l := list(t, s); l[0].Size != 0 || l[0].Index != 101 {
			t.Fatalf("newest snapshot %+v, want the empty one at 101", l[0])
		}
		if _, _, err := s.Open("no-such-snapshot"); err == nil {
			t.Fatal("Open of a missing snapshot succeeded")
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		s := newStore(t, 2)
		sink := create(t, s, 10, 1, payload(1<<20, 2))
		if err := sink.Cancel(); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if l := list(t, s); len(l) != 0 {
			t.Fatalf("a cancelled snapshot is listed: %v", l)
		}
		if _, _, err := s.Open(sink.ID()); err == nil {
			t.Fatal("a cancelled snapshot opens")
		}
	})

	t.Run("OrderAndRetention", func(t *testing.T) {
		s := newStore(t, 3)
		type it struct{ index, term uint64 }
		for _, x := range []it{{50, 2}, {10, 1}, {50, 3}, {70, 3}, {20, 1}, {60, 3}} {
			if err := create(t, s, x.index, x.term, payload(100, x.index)).Close(); err != nil {
				t.Fatal(err)
			}
		}
		l := list(t, s)
		var got []it
		for _, m := range l {
			got = append(got, it{m.Index, m.Term})
		}
		want := []it{{70, 3}, {60, 3}, {50, 3}}
		if !slices.Equal(got, want) {
			t.Fatalf("List = %v, want the 3 newest, newest first: %v", got, want)
		}
		for _, m := range l {
			if _, data := readAll(t, s, m.ID); !bytes.Equal(data, payload(100, m.Index)) {
				t.Fatalf("snapshot %s reads back wrong bytes", m.ID)
			}
		}
	})

	t.Run("ReaderOutlivesRetention", func(t *testing.T) {
		s := newStore(t, 1)
		data := payload(2<<20+7, 3)
		sink := create(t, s, 5, 1, data)
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		_, rc, err := s.Open(sink.ID())
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 10)
		if _, err := rc.Read(head); err != nil {
			t.Fatal(err)
		}
		for i := range uint64(2) {
			if err := create(t, s, 6+i, 1, payload(10, i)).Close(); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		buf.Write(head)
		if _, err := buf.ReadFrom(rc); err != nil {
			t.Fatalf("reading a snapshot while newer ones were published: %v", err)
		}
		rc.Close()
		if !bytes.Equal(buf.Bytes(), data) {
			t.Fatal("a snapshot read while newer ones were published came back different")
		}
		if l := list(t, s); len(l) != 1 || l[0].Index != 7 {
			t.Fatalf("List = %v, want only the newest (index 7)", l)
		}
	})
}
