package metasuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/internal/harness"
	"github.com/woodpecker-wal/woodpecker/meta"
)

// MetaFactory returns a new, empty metadata store for one test. The suite
// closes it; the factory registers any other cleanup with t.Cleanup.
type MetaFactory func(t testing.TB) meta.Store

// TestMetaStore checks that stores made by newStore honour the meta
// contract: create-if-absent, update/delete only at the current version,
// versions that never repeat (also across delete and re-create), prefix
// listing in key order, key and size validation, Close, exactly one winner
// among racing creators, no lost update among racing CAS incrementers, watch
// delivery for stores implementing meta.Watcher, and a rapid state machine
// against a map model.
func TestMetaStore(t *testing.T, newStore MetaFactory, opts conformance.Options) {
	harness.Suite(t, func(t testing.TB) meta.Store { return newStore(t) }, []harness.Case[meta.Store]{
		{Name: "Basic", Run: testMetaBasic},
		{Name: "Versions", Run: testMetaVersions},
		{Name: "List", Run: testMetaList},
		{Name: "Invalid", Run: testMetaInvalid},
		{Name: "RaceCreate", Run: testMetaRaceCreate},
		{Name: "RaceIncrement", Run: testMetaRaceIncrement},
		{Name: "Watch", Run: testMetaWatch},
		{Name: "Close", Run: testMetaClose, OwnsClose: true},
	}, opts.Checks, func(rt *rapid.T) { testMetaModel(rt, t, newStore) })
}

func testMetaBasic(t *testing.T, s meta.Store) {
	ctx := harness.Ctx(t)
	if _, err := s.Get(ctx, "basic/k"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("Get of missing key: got %v, want ErrNotFound", err)
	}
	v1, err := s.Create(ctx, "basic/k", []byte("one"))
	if err != nil || v1 == "" {
		t.Fatalf("Create = %q, %v", v1, err)
	}
	if _, err := s.Create(ctx, "basic/k", []byte("again")); !errors.Is(err, meta.ErrExists) {
		t.Fatalf("second Create: got %v, want ErrExists", err)
	}
	rec, err := s.Get(ctx, "basic/k")
	if err != nil || string(rec.Value) != "one" || rec.Version != v1 || rec.Key != "basic/k" {
		t.Fatalf("Get = %+v, %v; want value one at %q", rec, err, v1)
	}
	v2, err := s.Update(ctx, "basic/k", []byte("two"), v1)
	if err != nil || v2 == v1 {
		t.Fatalf("Update = %q, %v (old version %q)", v2, err, v1)
	}
	if _, err := s.Update(ctx, "basic/k", []byte("stale"), v1); !errors.Is(err, meta.ErrPrecondition) {
		t.Fatalf("Update at stale version: got %v, want ErrPrecondition", err)
	}
	if err := s.Delete(ctx, "basic/k", v1); !errors.Is(err, meta.ErrPrecondition) {
		t.Fatalf("Delete at stale version: got %v, want ErrPrecondition", err)
	}
	if rec, _ := s.Get(ctx, "basic/k"); string(rec.Value) != "two" {
		t.Fatalf("after failed writes value = %q, want two", rec.Value)
	}
	if err := s.Delete(ctx, "basic/k", v2); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, "basic/k"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("Get after Delete: got %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, "basic/k", []byte("x"), v2); !errors.Is(err, meta.ErrPrecondition) {
		t.Fatalf("Update of deleted record: got %v, want ErrPrecondition", err)
	}
	if err := s.Delete(ctx, "basic/k", v2); !errors.Is(err, meta.ErrPrecondition) {
		t.Fatalf("second Delete: got %v, want ErrPrecondition", err)
	}
	// Empty values are values; returned values are the caller's.
	v, err := s.Create(ctx, "basic/empty", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err = s.Get(ctx, "basic/empty")
	if err != nil || len(rec.Value) != 0 || rec.Version != v {
		t.Fatalf("Get empty = %+v, %v", rec, err)
	}
	big := bytes.Repeat([]byte{0xab}, 256<<10)
	if _, err := s.Create(ctx, "basic/big", big); err != nil {
		t.Fatalf("Create 256 KiB: %v", err)
	}
	rec, _ = s.Get(ctx, "basic/big")
	rec.Value[0] = 0
	if rec2, _ := s.Get(ctx, "basic/big"); !bytes.Equal(rec2.Value, big) {
		t.Fatalf("mutating a returned value changed the store")
	}
}

func testMetaVersions(t *testing.T, s meta.Store) {
	ctx := harness.Ctx(t)
	seen := map[meta.Version]bool{}
	note := func(v meta.Version) {
		t.Helper()
		if seen[v] {
			t.Fatalf("version %q repeated", v)
		}
		seen[v] = true
	}
	// Identical values written repeatedly, deleted and re-created: a stale
	// version must never match again.
	for round := 0; round < 3; round++ {
		v, err := s.Create(ctx, "ver/k", []byte("same"))
		if err != nil {
			t.Fatal(err)
		}
		note(v)
		for i := 0; i < 3; i++ {
			if v, err = s.Update(ctx, "ver/k", []byte("same"), v); err != nil {
				t.Fatal(err)
			}
			note(v)
		}
		for old := range seen {
			if old != v {
				if _, err := s.Update(ctx, "ver/k", []byte("same"), old); !errors.Is(err, meta.ErrPrecondition) {
					t.Fatalf("Update at old version %q: got %v, want ErrPrecondition", old, err)
				}
			}
		}
		if err := s.Delete(ctx, "ver/k", v); err != nil {
			t.Fatal(err)
		}
	}
}

func testMetaList(t *testing.T, s meta.Store) {
	ctx := harness.Ctx(t)
	keys := []string{"l/a", "l/a/b", "l/a-c", "l/a_c", "l/b", "l/b/c/d", "lx", "l/a.x"}
	for _, k := range keys {
		if _, err := s.Create(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Create(%q): %v", k, err)
		}
	}
	check := func(prefix string, want []string) {
		t.Helper()
		recs, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		got := make([]string, len(recs))
		for i, r := range recs {
			got[i] = r.Key
			if string(r.Value) != r.Key || r.Version == "" {
				t.Fatalf("List(%q): record %+v", prefix, r)
			}
		}
		if len(got) != len(want) || (len(got) > 0 && !slices.Equal(got, want)) {
			t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	check("l/", []string{"l/a", "l/a-c", "l/a.x", "l/a/b", "l/a_c", "l/b", "l/b/c/d"})
	check("l/a/", []string{"l/a/b"})
	check("l/b", []string{"l/b", "l/b/c/d"})
	check("", []string{"l/a", "l/a-c", "l/a.x", "l/a/b", "l/a_c", "l/b", "l/b/c/d", "lx"})
	check("zz", nil)
	rec, _ := s.Get(ctx, "l/b")
	if err := s.Delete(ctx, "l/b", rec.Version); err != nil {
		t.Fatal(err)
	}
	check("l/b", []string{"l/b/c/d"})
}

// InvalidMetaKeys lists keys every metadata store must reject.
var InvalidMetaKeys = []string{"", "/a", "a/", "a//b", "A", "a b", "a/../b", ".", "..", "a~", "ü", strings.Repeat("k", 513)}

func testMetaInvalid(t *testing.T, s meta.Store) {
	ctx := harness.Ctx(t)
	for _, k := range InvalidMetaKeys {
		errs := map[string]error{}
		_, errs["Get"] = s.Get(ctx, k)
		_, errs["Create"] = s.Create(ctx, k, nil)
		_, errs["Update"] = s.Update(ctx, k, nil, "1")
		errs["Delete"] = s.Delete(ctx, k, "1")
		for op, err := range errs {
			if !errors.Is(err, meta.ErrInvalidKey) {
				t.Errorf("%s(%q): got %v, want ErrInvalidKey", op, k, err)
			}
		}
	}
	if _, err := s.List(ctx, "A"); !errors.Is(err, meta.ErrInvalidKey) {
		t.Errorf("List(%q): got %v, want ErrInvalidKey", "A", err)
	}
	tooBig := make([]byte, meta.MaxValueSize+1)
	if _, err := s.Create(ctx, "inv/big", tooBig); !errors.Is(err, meta.ErrTooLarge) {
		t.Errorf("Create of %d bytes: got %v, want ErrTooLarge", len(tooBig), err)
	}
	if _, err := s.Get(ctx, "inv/big"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("rejected Create left a record: %v", err)
	}
}

func testMetaRaceCreate(t *testing.T, s meta.Store) {
	ctx := harness.Ctx(t)
	for round := 0; round < 5; round++ {
		key := "race/create/" + strconv.Itoa(round)
		var wins atomic.Int32
		winner := make(chan string, harness.RaceN)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < harness.RaceN; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				body := fmt.Sprintf("writer-%d", g)
				_, err := s.Create(ctx, key, []byte(body))
				switch {
				case err == nil:
					wins.Add(1)
					winner <- body
				case errors.Is(err, meta.ErrExists):
				default:
					t.Errorf("racing Create: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d racing creators won, want exactly 1", round, n)
		}
		rec, err := s.Get(ctx, key)
		if err != nil || string(rec.Value) != <-winner {
			t.Fatalf("round %d: stored %q (%v) is not the winner's value", round, rec.Value, err)
		}
	}
}

func testMetaRaceIncrement(t *testing.T, s meta.Store) {
	ctx := harness.Ctx(t)
	const key, writers, perWriter = "race/counter", 8, 10
	if _, err := s.Create(ctx, key, []byte("0")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWriter; {
				rec, err := s.Get(ctx, key)
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				n, _ := strconv.Atoi(string(rec.Value))
				_, err = s.Update(ctx, key, []byte(strconv.Itoa(n+1)), rec.Version)
				switch {
				case err == nil:
					done++
				case errors.Is(err, meta.ErrPrecondition):
				default:
					t.Errorf("Update: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rec, err := s.Get(ctx, key)
	if err != nil || string(rec.Value) != strconv.Itoa(writers*perWriter) {
		t.Fatalf("counter = %q (%v) after %d increments: an update was lost", rec.Value, err, writers*perWriter)
	}
}

func testMetaWatch(t *testing.T, s meta.Store) {
	w, ok := s.(meta.Watcher)
	if !ok {
		t.Skipf("%T does not implement meta.Watcher", s)
	}
	ctx, cancel := context.WithTimeout(harness.Ctx(t), 30*time.Second)
	defer cancel()
	ch, err := w.Watch(ctx, "w/in/")
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Create(ctx, "w/in/a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "w/out/a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	v2, err := s.Update(ctx, "w/in/a", []byte("2"), v)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "w/in/a", v2); err != nil {
		t.Fatal(err)
	}
	// The watch may coalesce puts, but must end on the delete and never show
	// the key outside the prefix.
	sawPut := false
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed early")
			}
			if ev.Record.Key != "w/in/a" {
				t.Fatalf("watch delivered %q outside its prefix", ev.Record.Key)
			}
			if ev.Type == meta.EventPut {
				sawPut = true
				continue
			}
			if ev.Type != meta.EventDelete || !sawPut {
				t.Fatalf("unexpected event %+v (saw put: %v)", ev, sawPut)
			}
			cancel()
			for range ch {
			}
			return
		case <-ctx.Done():
			t.Fatalf("no delete event within the timeout")
		}
	}
}

func testMetaClose(t *testing.T, s meta.Store) {
	ctx := harness.Ctx(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Create(ctx, "c/k", nil); !errors.Is(err, meta.ErrClosed) {
		t.Fatalf("Create after Close: got %v, want ErrClosed", err)
	}
	if _, err := s.Get(ctx, "c/k"); !errors.Is(err, meta.ErrClosed) {
		t.Fatalf("Get after Close: got %v, want ErrClosed", err)
	}
}

var metaModelKeys = []string{"m/a", "m/a/b", "m/b", "m/c-d", "m/c/0"}

func testMetaModel(rt *rapid.T, t *testing.T, newStore MetaFactory) {
	s := newStore(t)
	defer s.Close()
	ctx := harness.Ctx(t)
	type rec struct {
		value []byte
		ver   meta.Version
	}
	model := map[string]rec{}
	var stale []meta.Version // every version ever seen; never current once replaced
	keyGen := rapid.SampledFrom(metaModelKeys)
	valGen := rapid.SliceOfN(rapid.Byte(), 0, 32)
	// written checks a successful write's answer and records it: a new
	// version, never seen before for any key.
	written := func(rt *rapid.T, op, k string, v []byte, ver meta.Version, err error) {
		if err != nil {
			rt.Fatalf("%s(%q): %v", op, k, err)
		}
		if slices.Contains(stale, ver) {
			rt.Fatalf("%s(%q) returned a version seen before: %q", op, k, ver)
		}
		model[k] = rec{v, ver}
		stale = append(stale, ver)
	}
	staleVer := func(rt *rapid.T) meta.Version {
		if len(stale) == 0 || rapid.Bool().Draw(rt, "bogus") {
			return "999999999"
		}
		return rapid.SampledFrom(stale).Draw(rt, "stale")
	}
	rt.Repeat(map[string]func(*rapid.T){
		"Create": func(rt *rapid.T) {
			k, v := keyGen.Draw(rt, "key"), valGen.Draw(rt, "value")
			ver, err := s.Create(ctx, k, v)
			if _, ok := model[k]; ok {
				if !errors.Is(err, meta.ErrExists) {
					rt.Fatalf("Create(%q) over existing: got %v, want ErrExists", k, err)
				}
				return
			}
			written(rt, "Create", k, v, ver, err)
		},
		"Update": func(rt *rapid.T) {
			k, v := keyGen.Draw(rt, "key"), valGen.Draw(rt, "value")
			cur, ok := model[k]
			if !ok || rapid.Bool().Draw(rt, "useStale") {
				sv := staleVer(rt)
				if ok && sv == cur.ver {
					return
				}
				if _, err := s.Update(ctx, k, v, sv); !errors.Is(err, meta.ErrPrecondition) {
					rt.Fatalf("Update(%q) at wrong version %q: got %v, want ErrPrecondition", k, sv, err)
				}
				return
			}
			ver, err := s.Update(ctx, k, v, cur.ver)
			written(rt, "Update", k, v, ver, err)
		},
		"Delete": func(rt *rapid.T) {
			k := keyGen.Draw(rt, "key")
			cur, ok := model[k]
			if !ok || rapid.Bool().Draw(rt, "useStale") {
				sv := staleVer(rt)
				if ok && sv == cur.ver {
					return
				}
				if err := s.Delete(ctx, k, sv); !errors.Is(err, meta.ErrPrecondition) {
					rt.Fatalf("Delete(%q) at wrong version %q: got %v, want ErrPrecondition", k, sv, err)
				}
				return
			}
			if err := s.Delete(ctx, k, cur.ver); err != nil {
				rt.Fatalf("Delete(%q): %v", k, err)
			}
			delete(model, k)
		},
		"Get": func(rt *rapid.T) {
			k := keyGen.Draw(rt, "key")
			got, err := s.Get(ctx, k)
			want, ok := model[k]
			if !ok {
				if !errors.Is(err, meta.ErrNotFound) {
					rt.Fatalf("Get(%q) of missing: got %v, want ErrNotFound", k, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got.Value, want.value) || got.Version != want.ver {
				rt.Fatalf("Get(%q) = %+v, %v; want %x at %q", k, got, err, want.value, want.ver)
			}
		},
		"List": func(rt *rapid.T) {
			prefix := rapid.SampledFrom([]string{"", "m/", "m/a", "m/c", "m/c/", "q"}).Draw(rt, "prefix")
			recs, err := s.List(ctx, prefix)
			if err != nil {
				rt.Fatalf("List(%q): %v", prefix, err)
			}
			var want []string
			for k := range model {
				if strings.HasPrefix(k, prefix) {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			if len(recs) != len(want) {
				rt.Fatalf("List(%q) returned %d records, want %q", prefix, len(recs), want)
			}
			for i, r := range recs {
				m := model[want[i]]
				if r.Key != want[i] || !bytes.Equal(r.Value, m.value) || r.Version != m.ver {
					rt.Fatalf("List(%q)[%d] = %+v, want %q = %x at %q", prefix, i, r, want[i], m.value, m.ver)
				}
			}
		},
	})
}
