// Package fault wraps an objstore.Bucket to inject the failures object
// storage really has, for crash and error-path tests of everything above it:
//
//   - failures before a request lands (FailNth, FailRate),
//   - ambiguous successes: the write lands but the caller sees an error, as
//     when a PUT's reply is lost (AmbiguousNth, AmbiguousRate),
//   - latency (SetLatency), to emulate remote stores in benchmarks (there
//     on a WrapUntracked bucket, which keeps no crash view),
//   - a crash view (CrashView): a new bucket holding what a crash of the
//     caller's process leaves in the bucket — every write that landed
//     (acknowledged ones and ambiguous successes), and a seeded random choice
//     of the writes still in flight or failed with an unknown outcome. No
//     unacknowledged write is guaranteed to survive.
//
// Every random choice comes from the seed given to Wrap, so a failing test
// replays exactly when rerun with the seed it logged (given the same call
// order). The wrapper is safe for concurrent use.
package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// Op identifies a bucket operation; Ops may be combined with |.
type Op uint8

// The operations.
const (
	OpGet Op = 1 << iota
	OpHead
	OpPutIfAbsent
	OpPut
	OpPutIfMatch
	OpDelete
	OpList

	// OpWrite matches every mutating operation.
	OpWrite = OpPutIfAbsent | OpPut | OpPutIfMatch | OpDelete
	// OpRead matches every reading operation.
	OpRead = OpGet | OpHead | OpList
	// OpAny matches every operation.
	OpAny = OpWrite | OpRead
)

func (o Op) String() string {
	names := []string{"Get", "Head", "PutIfAbsent", "Put", "PutIfMatch", "Delete", "List"}
	for i, n := range names {
		if o == 1<<i {
			return n
		}
	}
	return fmt.Sprintf("Op(%#x)", uint8(o))
}

// ErrInjected is the error injected failures wrap.
var ErrInjected = errors.New("fault: injected failure")

// Action is what the wrapper does with one call.
type Action int

const (
	// Pass forwards the call unchanged.
	Pass Action = iota
	// Fail returns an error without forwarding the call: nothing lands.
	Fail
	// Ambiguous forwards a write, then returns an error whatever happened:
	// the write may have landed. For reads it behaves like Fail.
	Ambiguous
)

type rule struct {
	ops    Op
	nth    int     // fire on the nth matching call from now (1-based); 0: use rate
	rate   float64 // probability per matching call
	action Action
	seen   int
}

// Bucket is a fault-injecting objstore.Bucket (and CASBucket when the wrapped
// bucket is one).
type Bucket struct {
	inner     objstore.Bucket
	copyErr   error // copying the initial contents failed; CrashView reports it
	untracked bool  // WrapUntracked: no crash view, writes pass through uncopied

	mu struct {
		sync.Mutex
		rng     *rand.Rand              // guarded by mu
		rules   []*rule                 // guarded by mu
		latency time.Duration           // guarded by mu
		jitter  time.Duration           // guarded by mu
		calls   map[Op]int              // guarded by mu
		landed  *mem.Bucket             // every write known to have landed; guarded by mu
		maybe   map[uint64]pendingWrite // writes in flight or answered ambiguously; guarded by mu
		nextID  uint64                  // guarded by mu
		hook    func(Op, string) Action // guarded by mu
	}
}

type pendingWrite struct {
	seq  uint64
	op   Op
	key  string
	data []byte
	etag string
}

var _ objstore.CASBucket = (*Bucket)(nil)

// Wrap returns a fault-injecting wrapper around b whose random choices come
// from seed. The crash view starts from b's current contents, which Wrap
// copies into memory (cheaply when b is an *mem.Bucket).
func Wrap(b objstore.Bucket, seed uint64) *Bucket {
	f := newBucket(b, seed)
	if m, ok := b.(*mem.Bucket); ok {
		f.mu.landed = m.Clone()
	} else {
		f.mu.landed, f.copyErr = copyToMem(b)
	}
	return f
}

// WrapUntracked is Wrap without the crash view: it copies nothing, neither
// b's contents nor the writes made through it, so it adds no memory and no
// copying to a request, and CrashView fails. Benchmarks use it to emulate a
// remote store's latency (SetLatency) on a local one without distorting
// throughput or peak RSS; the fault rules and Calls work as with Wrap.
func WrapUntracked(b objstore.Bucket, seed uint64) *Bucket {
	f := newBucket(b, seed)
	f.untracked = true
	return f
}

func newBucket(b objstore.Bucket, seed uint64) *Bucket {
	f := &Bucket{inner: b}
	f.mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f.mu.calls = make(map[Op]int)
	f.mu.maybe = make(map[uint64]pendingWrite)
	return f
}

func copyToMem(b objstore.Bucket) (*mem.Bucket, error) {
	ctx := context.Background()
	m := mem.New()
	err := objstore.ListAll(ctx, b, "", 0, func(o objstore.ObjectInfo) error {
		data, _, err := objstore.ReadAll(ctx, b, o.Key)
		if err != nil {
			return err
		}
		_, err = m.Put(ctx, o.Key, bytes.NewReader(data), int64(len(data)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fault: copying the wrapped bucket's contents: %w", err)
	}
	return m, nil
}

// Inner returns the wrapped bucket.
func (f *Bucket) Inner() objstore.Bucket { return f.inner }

// FailNth makes the nth call (1-based, counted from now) matching ops fail
// without reaching the wrapped bucket.
func (f *Bucket) FailNth(ops Op, n int) { f.addRule(&rule{ops: ops, nth: n, action: Fail}) }

// FailRate makes each call matching ops fail with probability p.
func (f *Bucket) FailRate(ops Op, p float64) { f.addRule(&rule{ops: ops, rate: p, action: Fail}) }

// AmbiguousNth makes the nth write matching ops land and then report an error.
func (f *Bucket) AmbiguousNth(ops Op, n int) { f.addRule(&rule{ops: ops, nth: n, action: Ambiguous}) }

// AmbiguousRate makes each write matching ops land and report an error with
// probability p.
func (f *Bucket) AmbiguousRate(ops Op, p float64) {
	f.addRule(&rule{ops: ops, rate: p, action: Ambiguous})
}

// SetHook installs a function deciding every call's action before the rules
// are consulted (Pass from the hook lets the rules decide). nil removes it.
func (f *Bucket) SetHook(h func(op Op, key string) Action) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.hook = h
}

// SetLatency delays every call by d plus a uniform random [0, jitter).
func (f *Bucket) SetLatency(d, jitter time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.latency, f.mu.jitter = d, jitter
}

// Heal removes every rule, the hook and the latency.
func (f *Bucket) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.rules, f.mu.hook = nil, nil
	f.mu.latency, f.mu.jitter = 0, 0
}

// Calls returns how many calls matching ops were made.
func (f *Bucket) Calls(ops Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for op, c := range f.mu.calls {
		if op&ops != 0 {
			n += c
		}
	}
	return n
}

func (f *Bucket) addRule(r *rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.rules = append(f.mu.rules, r)
}

// decide picks the action for one call and the delay before it.
func (f *Bucket) decide(op Op, key string) (Action, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.calls[op]++
	delay := f.mu.latency
	if f.mu.jitter > 0 {
		delay += time.Duration(f.mu.rng.Int64N(int64(f.mu.jitter)))
	}
	if f.mu.hook != nil {
		if a := f.mu.hook(op, key); a != Pass {
			return a, delay
		}
	}
	act := Pass
	for i := 0; i < len(f.mu.rules); i++ {
		r := f.mu.rules[i]
		if r.ops&op == 0 {
			continue
		}
		r.seen++
		fire := false
		if r.nth > 0 {
			fire = r.seen == r.nth
			if fire { // one-shot
				f.mu.rules = append(f.mu.rules[:i], f.mu.rules[i+1:]...)
				i--
			}
		} else {
			fire = f.mu.rng.Float64() < r.rate
		}
		if fire && act == Pass {
			act = r.action
		}
	}
	return act, delay
}

// sleep waits out an injected delay; no delay returns at once, whatever
// ctx's state (the wrapped bucket decides what a done ctx means).
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return retry.Sleep(ctx, d)
}

func injected(op Op, key string, ambiguous bool) error {
	if ambiguous {
		return fmt.Errorf("%w: %s %q landed but its reply was lost", ErrInjected, op, key)
	}
	return fmt.Errorf("%w: %s %q", ErrInjected, op, key)
}

// read runs a reading call through the fault rules.
func (f *Bucket) read(ctx context.Context, op Op, key string) error {
	act, delay := f.decide(op, key)
	if err := sleep(ctx, delay); err != nil {
		return err
	}
	if act != Pass {
		return injected(op, key, false)
	}
	return nil
}

// write runs a mutating call through the fault rules and tracks its outcome
// for the crash view.
func (f *Bucket) write(ctx context.Context, w pendingWrite, do func() (objstore.ObjectInfo, error)) (objstore.ObjectInfo, error) {
	act, delay := f.decide(w.op, w.key)
	if err := sleep(ctx, delay); err != nil {
		return objstore.ObjectInfo{}, err
	}
	if act == Fail {
		return objstore.ObjectInfo{}, injected(w.op, w.key, false)
	}
	if f.untracked {
		info, err := do()
		if err == nil && act == Ambiguous {
			return objstore.ObjectInfo{}, injected(w.op, w.key, true)
		}
		return info, err
	}
	f.mu.Lock()
	f.mu.nextID++
	w.seq = f.mu.nextID
	f.mu.maybe[w.seq] = w
	f.mu.Unlock()
	info, err := do()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.mu.maybe, w.seq)
		f.applyLocked(f.mu.landed, w, true)
		if act == Pass {
			return info, nil
		}
		return objstore.ObjectInfo{}, injected(w.op, w.key, true)
	}
	if err != nil && (errors.Is(err, objstore.ErrExists) || errors.Is(err, objstore.ErrPrecondition) ||
		errors.Is(err, objstore.ErrInvalidKey) || errors.Is(err, objstore.ErrClosed)) {
		delete(f.mu.maybe, w.seq) // definitely did not land
		if act == Pass {
			return info, err
		}
	}
	return info, err // another error: outcome unknown, stays in maybe
}

// applyLocked applies w to m. Acknowledged writes are applied as they
// happened (the real bucket already checked any condition); uncertain ones
// keep their condition. REQUIRES: f.mu held.
func (f *Bucket) applyLocked(m *mem.Bucket, w pendingWrite, acked bool) {
	ctx := context.Background()
	switch w.op {
	case OpDelete:
		_ = m.Delete(ctx, w.key)
	case OpPut:
		_, _ = m.Put(ctx, w.key, bytes.NewReader(w.data), int64(len(w.data)))
	case OpPutIfAbsent:
		if acked {
			_, _ = m.Put(ctx, w.key, bytes.NewReader(w.data), int64(len(w.data)))
		} else {
			_, _ = m.PutIfAbsent(ctx, w.key, w.data)
		}
	case OpPutIfMatch:
		if acked {
			_, _ = m.Put(ctx, w.key, bytes.NewReader(w.data), int64(len(w.data)))
		} else {
			_, _ = m.PutIfMatch(ctx, w.key, w.data, w.etag)
		}
	}
}

// CrashView returns a new in-memory bucket holding what a crash of the
// caller at this instant leaves behind: every write that landed, in the order
// the calls returned, plus each write still in flight (or failed with an
// unknown outcome) applied in issue order with probability 1/2 (seeded).
// Later calls on f do not affect the view.
//
// Completion order stands in for the order the store applied writes; tests
// that race unconditional writes to one key should not rely on the view.
func (f *Bucket) CrashView() (*mem.Bucket, error) {
	if f.untracked {
		return nil, errors.New("fault: CrashView of a WrapUntracked bucket, which keeps no copy of the writes")
	}
	if f.copyErr != nil {
		return nil, f.copyErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	view := f.mu.landed.Clone()
	pend := make([]pendingWrite, 0, len(f.mu.maybe))
	for _, w := range f.mu.maybe {
		pend = append(pend, w)
	}
	sortBySeq(pend)
	for _, w := range pend {
		if f.mu.rng.IntN(2) == 0 {
			f.applyLocked(view, w, false)
		}
	}
	return view, nil
}

func sortBySeq(ws []pendingWrite) {
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j].seq < ws[j-1].seq; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
}

// Get implements objstore.Bucket.
func (f *Bucket) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	if err := f.read(ctx, OpGet, key); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	return f.inner.Get(ctx, key, off, length)
}

// Head implements objstore.Bucket.
func (f *Bucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := f.read(ctx, OpHead, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return f.inner.Head(ctx, key)
}

// List implements objstore.Bucket.
func (f *Bucket) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	if err := f.read(ctx, OpList, opts.Prefix); err != nil {
		return nil, err
	}
	return f.inner.List(ctx, opts)
}

// PutIfAbsent implements objstore.Bucket.
func (f *Bucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	w := pendingWrite{op: OpPutIfAbsent, key: key, data: f.keep(data)}
	return f.write(ctx, w, func() (objstore.ObjectInfo, error) { return f.inner.PutIfAbsent(ctx, key, data) })
}

// Put implements objstore.Bucket. The wrapper buffers r in memory (unless
// untracked).
func (f *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	if f.untracked {
		w := pendingWrite{op: OpPut, key: key}
		return f.write(ctx, w, func() (objstore.ObjectInfo, error) { return f.inner.Put(ctx, key, r, size) })
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	w := pendingWrite{op: OpPut, key: key, data: data}
	return f.write(ctx, w, func() (objstore.ObjectInfo, error) {
		return f.inner.Put(ctx, key, bytes.NewReader(data), size)
	})
}

// PutIfMatch implements objstore.CASBucket; it fails with a clear error when
// the wrapped bucket does not support it.
func (f *Bucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	cb, ok := f.inner.(objstore.CASBucket)
	if !ok {
		return objstore.ObjectInfo{}, fmt.Errorf("fault: wrapped %T does not support PutIfMatch", f.inner)
	}
	w := pendingWrite{op: OpPutIfMatch, key: key, data: f.keep(data), etag: etag}
	return f.write(ctx, w, func() (objstore.ObjectInfo, error) { return cb.PutIfMatch(ctx, key, data, etag) })
}

// keep returns the copy of data a write records for the crash view (nil
// when untracked).
func (f *Bucket) keep(data []byte) []byte {
	if f.untracked {
		return nil
	}
	return bytes.Clone(data)
}

// Delete implements objstore.Bucket.
func (f *Bucket) Delete(ctx context.Context, key string) error {
	w := pendingWrite{op: OpDelete, key: key}
	_, err := f.write(ctx, w, func() (objstore.ObjectInfo, error) { return objstore.ObjectInfo{}, f.inner.Delete(ctx, key) })
	return err
}

// Close closes the wrapped bucket.
func (f *Bucket) Close() error { return f.inner.Close() }
