package counting_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/bucketsuite"
	"github.com/woodpecker-wal/woodpecker/internal/counting"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// The wrapper is a conforming bucket.
func TestConformance(t *testing.T) {
	bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket { return counting.NewBucket(mem.New()) }, conformance.Options{Checks: 50})
}

func TestCounts(t *testing.T) {
	ctx := context.Background()
	b := counting.NewBucket(mem.New())
	b.SetDataPrefix("data/")
	m := counting.NewMeta(mustMeta(t, mem.New()))
	b.CountMeta(m)
	start := b.Snapshot()

	for _, k := range []string{"data/1", "data/2", "other"} {
		if _, err := b.PutIfAbsent(ctx, k, []byte("abcd")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Put(ctx, "p", strings.NewReader("xy"), 2); err != nil {
		t.Fatal(err)
	}
	rc, _, err := b.Get(ctx, "data/1", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // one GET in flight
	if _, err := io.ReadAll(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := b.Head(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.List(ctx, objstore.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "rec", []byte("v")); err != nil {
		t.Fatal(err)
	}
	now := b.Snapshot()
	got := now.Sub(start)
	want := counting.Counts{
		PutIfAbsent: 3, Put: 1, Get: 1, Head: 1, List: 1, Delete: 1,
		PutBytes: 14, GetBytes: 4, DataPuts: 2, DataPutBytes: 8, DataGets: 1, DataGetBytes: 4, MetaOps: 1,
	}
	if got != want {
		t.Fatalf("counts\n%+v\nwant\n%+v", got, want)
	}
	if got.Puts() != 4 {
		t.Fatalf("Puts = %d, want 4", got.Puts())
	}
	if f := now.GetsInFlight(start); f <= 0 || f > 1 {
		t.Fatalf("GetsInFlight = %v, want within (0, 1]", f)
	}
	if f := now.PutsInFlight(start); f < 0 || f >= 1 {
		t.Fatalf("PutsInFlight = %v, want within [0, 1)", f)
	}
}

func mustMeta(t *testing.T, b objstore.Bucket) *metabucket.Store {
	t.Helper()
	s, err := metabucket.New(b, "meta")
	if err != nil {
		t.Fatal(err)
	}
	return s
}
