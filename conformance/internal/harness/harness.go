// Package harness holds what the conformance suites share: rapid's check
// count, a test context, a metadata store that dies with a simulated crash.
package harness

import (
	"context"
	"errors"
	"flag"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
)

var checksMu sync.Mutex

// With runs fn with rapid's check count set to n, unless the user set
// it on the command line or in the environment.
func With(n int, fn func()) {
	if n <= 0 || checksExplicit() {
		fn()
		return
	}
	checksMu.Lock()
	defer checksMu.Unlock()
	f := flag.Lookup("rapid.checks")
	if f == nil {
		fn()
		return
	}
	old := f.Value.String()
	_ = f.Value.Set(strconv.Itoa(n))
	defer func() { _ = f.Value.Set(old) }()
	fn()
}

func checksExplicit() bool {
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return true
	}
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			set = true
		}
	})
	return set
}

// Ctx returns a context bounded by two minutes, cancelled at cleanup.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// GatedMeta fails every call after Kill, standing in for a crashed process.
type GatedMeta struct {
	meta.Store
	mu     sync.Mutex
	killed bool
}

// ErrKilled is what a killed GatedMeta returns.
var ErrKilled = errors.New("conformance: process crashed")

func (g *GatedMeta) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.killed {
		return ErrKilled
	}
	return nil
}

// Kill makes every later call fail.
func (g *GatedMeta) Kill() {
	g.mu.Lock()
	g.killed = true
	g.mu.Unlock()
}

// Get implements meta.Store.
func (g *GatedMeta) Get(ctx context.Context, k string) (meta.Record, error) {
	if err := g.check(); err != nil {
		return meta.Record{}, err
	}
	return g.Store.Get(ctx, k)
}

// Create implements meta.Store.
func (g *GatedMeta) Create(ctx context.Context, k string, v []byte) (meta.Version, error) {
	if err := g.check(); err != nil {
		return "", err
	}
	return g.Store.Create(ctx, k, v)
}

// Update implements meta.Store.
func (g *GatedMeta) Update(ctx context.Context, k string, v []byte, ver meta.Version) (meta.Version, error) {
	if err := g.check(); err != nil {
		return "", err
	}
	return g.Store.Update(ctx, k, v, ver)
}

// Delete implements meta.Store.
func (g *GatedMeta) Delete(ctx context.Context, k string, ver meta.Version) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.Store.Delete(ctx, k, ver)
}

// List implements meta.Store.
func (g *GatedMeta) List(ctx context.Context, p string) ([]meta.Record, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	return g.Store.List(ctx, p)
}

// Close implements meta.Store.
func (g *GatedMeta) Close() error { return nil }

// RaceN is the number of goroutines in race tests.
const RaceN = 16

// Case is one fixed test of a suite, run on a fresh subject.
type Case[T any] struct {
	Name string
	Run  func(t *testing.T, s T)
	// OwnsClose says the case closes the subject itself (a test of Close).
	OwnsClose bool
}

// Suite runs each case as a subtest on a fresh subject from open, closing it
// at cleanup unless the case owns its Close, and then, as subtest "Model",
// the property model with rapid at checks cases (see With).
func Suite[T interface{ Close() error }](t *testing.T, open func(testing.TB) T, cases []Case[T], checks int, model func(rt *rapid.T)) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			s := open(t)
			if !c.OwnsClose {
				t.Cleanup(func() { _ = s.Close() })
			}
			c.Run(t, s)
		})
	}
	t.Run("Model", func(t *testing.T) {
		With(checks, func() { rapid.Check(t, model) })
	})
}

// Crash stands in for a crash of the process using gm and fb: its metadata
// calls and bucket requests fail from now on, and what survives is fb's
// crash view, which the next process opens.
func Crash(rt *rapid.T, gm *GatedMeta, fb *fault.Bucket) objstore.Bucket {
	gm.Kill()
	fb.SetHook(func(fault.Op, string) fault.Action { return fault.Fail })
	view, err := fb.CrashView()
	if err != nil {
		rt.Fatal(err)
	}
	return view
}

// Machine runs a rapid state machine at checks cases (see With): for each,
// start builds the machine and returns its actions and its cleanup.
func Machine(t *testing.T, checks int, start func(rt *rapid.T) (actions map[string]func(*rapid.T), cleanup func())) {
	With(checks, func() {
		rapid.Check(t, func(rt *rapid.T) {
			actions, cleanup := start(rt)
			defer cleanup()
			rt.Repeat(actions)
		})
	})
}
