// Package adaptertest holds the test setup both Raft adapters' tests share:
// a process's client over a fault-injecting view of a shared bucket, tuned
// to fail fast, the two placements of the metadata, and a logger into the
// test log.
package adaptertest

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// Seed returns a fresh seed and logs it.
func Seed(t testing.TB) uint64 {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return seed
}

// Logger returns a logger writing to t's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// FastFailing is a client configuration that gives up on a failing write
// quickly: two retries from 1ms within a 100ms budget, one-second requests,
// a 1ms batching window.
func FastFailing() wal.Config {
	return wal.Config{MaxInterval: time.Millisecond, RetryInterval: time.Millisecond, MaxFlushRetries: 2,
		RetryBudget: 100 * time.Millisecond, RequestTimeout: time.Second}
}

// Process opens one process's client over mem: a fault-injecting view of
// it (seeded by seed) as its bucket and, with shared nil, its metadata kept
// in that view (so an outage of the bucket is one of the metadata too);
// otherwise shared. cfg's Bucket and Meta are set here. The client is closed
// at cleanup if the caller has not closed it.
func Process(t testing.TB, mem objstore.Bucket, shared meta.Store, seed uint64, cfg wal.Config) (*fault.Bucket, *wal.Client) {
	t.Helper()
	fb := fault.Wrap(mem, seed)
	m := shared
	if m == nil {
		var err error
		if m, err = metabucket.New(fb, metabucket.DefaultPrefix); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Bucket, cfg.Meta = fb, m
	c, err := wal.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fb, c
}

// FailWrites makes every write to the bucket fail without landing.
func FailWrites(fb *fault.Bucket) {
	fb.SetHook(func(op fault.Op, _ string) fault.Action {
		if op&fault.OpWrite != 0 {
			return fault.Fail
		}
		return fault.Pass
	})
}

// MetaPlacements runs f twice: with the metadata in a store apart from the
// bucket (shared returns the same store for every process), and in the
// bucket itself (shared returns nil).
func MetaPlacements(t *testing.T, f func(t *testing.T, mem objstore.Bucket, shared func() meta.Store)) {
	t.Run("MetaApart", func(t *testing.T) {
		m := metamem.New()
		f(t, objmem.New(), func() meta.Store { return m })
	})
	t.Run("MetaInBucket", func(t *testing.T) {
		f(t, objmem.New(), func() meta.Store { return nil })
	})
}

// Opener opens an adapter's store with a call timeout, over a client (New)
// or over URLs with the engine's default configuration (Open).
type Opener struct {
	New  func(ctx context.Context, c logstore.Client, callTimeout time.Duration) (io.Closer, error)
	Open func(ctx context.Context, bucketURL string, callTimeout time.Duration) (io.Closer, error)
}

// CallTimeoutIsCheckedAgainstTheRetryBudget checks that a call timeout
// shorter than the client's retry window is refused by New and Open with an
// error naming both, and that one as long as the window, or as long as what
// a cap on the retries can wait, is accepted.
func CallTimeoutIsCheckedAgainstTheRetryBudget(t *testing.T, o Opener) {
	ctx := context.Background()
	newClient := func(cfg wal.Config) logstore.Client {
		cfg.Bucket, cfg.Meta = objmem.New(), metamem.New()
		c, err := wal.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.LogStore()
	}
	c := newClient(wal.Config{RetryBudget: 5 * time.Second})
	_, err := o.New(ctx, c, time.Second)
	if err == nil {
		t.Fatal("New accepted CallTimeout 1s with a RetryBudget of 5s")
	}
	for _, want := range []string{"CallTimeout", "1s", "RetryBudget", "5s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New's error %q does not name %q", err, want)
		}
	}
	_, err = o.Open(ctx, "mem://", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "CallTimeout") || !strings.Contains(err.Error(), "RetryBudget = 30s") {
		t.Fatalf("Open with CallTimeout 10s and the default 30s budget = %v, want an error naming both", err)
	}
	s, err := o.New(ctx, c, 5*time.Second)
	if err != nil {
		t.Fatalf("New with CallTimeout equal to the budget: %v", err)
	}
	s.Close()
	// A cap on the number of retries shortens the budget to what they can
	// wait.
	s, err = o.New(ctx, newClient(wal.Config{RetryInterval: time.Millisecond, MaxFlushRetries: 3}), 150*time.Millisecond)
	if err != nil {
		t.Fatalf("New with CallTimeout 150ms and at most 3 retries 1ms apart: %v", err)
	}
	s.Close()
}

// FailWritesAfter lets the next n writes to the bucket through and fails
// every later one without landing.
func FailWritesAfter(fb *fault.Bucket, n int) {
	var mu sync.Mutex
	fb.SetHook(func(op fault.Op, _ string) fault.Action {
		if op&fault.OpWrite == 0 {
			return fault.Pass
		}
		mu.Lock()
		defer mu.Unlock()
		if n > 0 {
			n--
			return fault.Pass
		}
		return fault.Fail
	})
}

// Client opens a client configured by cfg over a bucket b (a new memory
// bucket when nil) and a new memory metadata store, closed at cleanup.
func Client(t testing.TB, b objstore.Bucket, cfg wal.Config) *wal.Client {
	t.Helper()
	if b == nil {
		b = objmem.New()
	}
	cfg.Bucket, cfg.Meta = b, metamem.New()
	c, err := wal.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Proc is one process of a fault test: its fault view of the shared
// bucket, its client, and the adapter's store over that client.
type Proc[S io.Closer] struct {
	FB *fault.Bucket
	C  *wal.Client
	S  S
}

// OpenProc opens a process over mem (see Process) with cfg, and the
// adapter's store over its client with newStore; both are closed at
// cleanup.
func OpenProc[S io.Closer](t testing.TB, mem objstore.Bucket, shared meta.Store, seed uint64, cfg wal.Config,
	newStore func(logstore.Client) (S, error)) *Proc[S] {
	t.Helper()
	fb, c := Process(t, mem, shared, seed, cfg)
	s, err := newStore(c.LogStore())
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc[S]{FB: fb, C: c, S: s}
	t.Cleanup(p.Close)
	return p
}

// Close closes the process's store and client.
func (p *Proc[S]) Close() {
	p.S.Close()
	p.C.Close()
}

// DefaultCallTimeoutOutlivesTheRetryBudget checks that without a
// CallTimeout each of a store's call timeouts (as timeouts reports them) is
// at least the client's RetryBudget plus one RequestTimeout: 52s over a
// client with a 45s budget and 7s requests, and 40s over URLs with the
// engine's defaults.
func DefaultCallTimeoutOutlivesTheRetryBudget(t *testing.T, o Opener, timeouts func(io.Closer) []time.Duration) {
	ctx := context.Background()
	check := func(what string, s io.Closer, err error, least time.Duration) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, d := range timeouts(s) {
			if d < least {
				t.Errorf("%s: default call timeout %v, want at least %v", what, d, least)
			}
		}
	}
	s, err := o.New(ctx, Client(t, nil, wal.Config{RetryBudget: 45 * time.Second, RequestTimeout: 7 * time.Second}).LogStore(), 0)
	check("RetryBudget 45s + RequestTimeout 7s", s, err, 52*time.Second)
	s, err = o.Open(ctx, "mem://", 0)
	check("the engine's defaults, 30s + 10s", s, err, 40*time.Second)
}
