package fault_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/bucketsuite"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
	"github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// With no faults configured the wrapper is a conforming bucket, tracked or
// not.
func TestTransparentConformance(t *testing.T) {
	bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket { return fault.Wrap(mem.New(), 1) }, conformance.Options{Checks: 50})
}

func TestUntrackedConformance(t *testing.T) {
	bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket { return fault.WrapUntracked(mem.New(), 1) }, conformance.Options{Checks: 50})
}

// An untracked wrapper delays, injects and counts like a tracked one, but
// has no crash view.
func TestUntracked(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	f := fault.WrapUntracked(inner, 1)
	if _, err := f.CrashView(); err == nil {
		t.Fatal("CrashView of an untracked wrapper succeeded")
	}
	f.AmbiguousNth(fault.OpPutIfAbsent, 1)
	if _, err := f.PutIfAbsent(ctx, "k", []byte("x")); !errors.Is(err, fault.ErrInjected) || !exists(t, inner, "k") {
		t.Fatalf("ambiguous write: %v (landed: %v)", err, exists(t, inner, "k"))
	}
	f.FailNth(fault.OpPut, 1)
	if _, err := f.Put(ctx, "p", strings.NewReader("y"), 1); !errors.Is(err, fault.ErrInjected) || exists(t, inner, "p") {
		t.Fatalf("failed Put: %v", err)
	}
	f.SetLatency(10*time.Millisecond, 5*time.Millisecond)
	start := time.Now()
	if _, err := f.Put(ctx, "p", strings.NewReader("y"), 1); err != nil || time.Since(start) < 10*time.Millisecond {
		t.Fatalf("Put with latency: %v after %v", err, time.Since(start))
	}
	if got := f.Calls(fault.OpPutIfAbsent | fault.OpPut); got != 3 {
		t.Fatalf("Calls = %d, want 3", got)
	}
}

func exists(t *testing.T, b objstore.Bucket, key string) bool {
	t.Helper()
	_, err := b.Head(context.Background(), key)
	if err != nil && !errors.Is(err, objstore.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestFailNthDoesNotLand(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	f := fault.Wrap(inner, 1)
	f.FailNth(fault.OpPutIfAbsent, 2)
	for i := 1; i <= 3; i++ {
		_, err := f.PutIfAbsent(ctx, fmt.Sprint("k", i), []byte("x"))
		if (i == 2) != errors.Is(err, fault.ErrInjected) {
			t.Fatalf("call %d: err = %v", i, err)
		}
	}
	if exists(t, inner, "k2") || !exists(t, inner, "k1") || !exists(t, inner, "k3") {
		t.Fatalf("the failed call landed or a passing one did not")
	}
	if exists(t, crashView(t, f), "k2") {
		t.Fatalf("a failed write is in the crash view")
	}
	if got := f.Calls(fault.OpPutIfAbsent); got != 3 {
		t.Fatalf("Calls = %d, want 3", got)
	}
}

func TestAmbiguousLands(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	f := fault.Wrap(inner, 1)
	f.AmbiguousNth(fault.OpWrite, 1)
	_, err := f.PutIfAbsent(ctx, "k", []byte("x"))
	if !errors.Is(err, fault.ErrInjected) {
		t.Fatalf("ambiguous write returned %v", err)
	}
	if !exists(t, inner, "k") {
		t.Fatalf("the ambiguous write did not land")
	}
	// A retry sees its own landed write as ErrExists, as on s3.
	if _, err := f.PutIfAbsent(ctx, "k", []byte("x")); !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("retry = %v, want ErrExists", err)
	}
	if !exists(t, crashView(t, f), "k") {
		t.Fatalf("a landed ambiguous write is missing from the crash view")
	}
}

func TestCrashViewKeepsAcknowledgedAndIsIndependent(t *testing.T) {
	ctx := context.Background()
	f := fault.Wrap(mem.New(), 7)
	for i := 0; i < 20; i++ {
		if _, err := f.PutIfAbsent(ctx, fmt.Sprint("k/", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Delete(ctx, "k/3"); err != nil {
		t.Fatal(err)
	}
	view := crashView(t, f)
	objs, err := view.List(ctx, objstore.ListOptions{})
	if err != nil || len(objs) != 19 || exists(t, view, "k/3") {
		t.Fatalf("crash view holds %d objects (%v), want the 19 acknowledged", len(objs), err)
	}
	if _, err := f.PutIfAbsent(ctx, "later", nil); err != nil {
		t.Fatal(err)
	}
	if exists(t, view, "later") {
		t.Fatalf("a write after CrashView changed the view")
	}
}

// blockingBucket holds PutIfAbsent calls until released, to have writes in
// flight at the crash.
type blockingBucket struct {
	objstore.Bucket
	release chan struct{}
}

func (b *blockingBucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	<-b.release
	return b.Bucket.PutIfAbsent(ctx, key, data)
}

// In-flight writes appear in the crash view by a seeded coin: the same seed
// gives the same view, and over many seeds both outcomes occur.
func TestCrashViewInFlightIsSeeded(t *testing.T) {
	view := func(seed uint64) string {
		inner := &blockingBucket{Bucket: mem.New(), release: make(chan struct{})}
		f := fault.Wrap(inner, seed)
		done := make(chan struct{})
		for i := 0; i < 8; i++ {
			go func() {
				_, _ = f.PutIfAbsent(context.Background(), fmt.Sprint("k/", i), nil)
				done <- struct{}{}
			}()
		}
		for f.Calls(fault.OpPutIfAbsent) < 8 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond) // let every call register as in flight
		v, _ := f.CrashView()
		close(inner.release)
		for i := 0; i < 8; i++ {
			<-done
		}
		objs, _ := v.List(context.Background(), objstore.ListOptions{})
		return fmt.Sprint(len(objs))
	}
	counts := map[string]bool{}
	for seed := uint64(1); seed <= 20; seed++ {
		counts[view(seed)] = true
	}
	if len(counts) < 2 {
		t.Fatalf("in-flight writes always resolved the same way: %v", counts)
	}
}

func TestFailRateIsSeeded(t *testing.T) {
	run := func(seed uint64) string {
		f := fault.Wrap(mem.New(), seed)
		f.FailRate(fault.OpAny, 0.3)
		out := ""
		for i := 0; i < 64; i++ {
			_, err := f.PutIfAbsent(context.Background(), fmt.Sprint("k", i), nil)
			out += map[bool]string{true: "x", false: "."}[err != nil]
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	if a != b {
		t.Fatalf("same seed, different failures:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatalf("different seeds, same failures: %s", a)
	}
}

func TestLatency(t *testing.T) {
	f := fault.Wrap(mem.New(), 1)
	f.SetLatency(20*time.Millisecond, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if _, err := f.Head(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Head with latency beyond the deadline = %v", err)
	}
	f.Heal()
	if _, err := f.Head(context.Background(), "k"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Head after Heal = %v", err)
	}
}

func crashView(t *testing.T, f *fault.Bucket) *mem.Bucket {
	t.Helper()
	v, err := f.CrashView()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The crash view includes what the bucket held before it was wrapped.
func TestCrashViewKeepsEarlierContents(t *testing.T) {
	ctx := context.Background()
	for name, inner := range map[string]objstore.Bucket{"mem": mem.New(), "file": newFileBucket(t)} {
		if _, err := inner.PutIfAbsent(ctx, "before", []byte("x")); err != nil {
			t.Fatal(err)
		}
		f := fault.Wrap(inner, 1)
		if !exists(t, crashView(t, f), "before") {
			t.Fatalf("%s: the crash view lost an object written before wrapping", name)
		}
	}
}

func newFileBucket(t *testing.T) objstore.Bucket {
	b, err := file.New(t.TempDir(), file.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
