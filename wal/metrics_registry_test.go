package wal_test

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woodpecker-wal/woodpecker/wal"
)

// appendAndRead creates log name on c, appends n entries synchronously
// (one fragment each) and reads them back, so the client's fragment cache
// sees lookups; it closes the writer before it returns. n must be at least 2.
func appendAndRead(t *testing.T, c *wal.Client, name string, n uint64) {
	t.Helper()
	l, w := newLog(t, c, name)
	defer w.Close()
	appendRange(t, w, 1, n, 1)
	for _, i := range []uint64{1, 2, 1} {
		mustGet(t, l, i)
	}
}

func cacheLookups(st wal.Stats) float64 { return float64(st.CacheHits + st.CacheMisses) }

// TestMetricsSharedByClientsOnOneRegistry: two clients on one Registerer
// both open (no duplicate-registration panic), and the gathered metrics
// count the activity of both.
func TestMetricsSharedByClientsOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	onReg := func(c *wal.Config) { c.Registerer = reg }
	c1 := newMemClient(t, onReg)
	c2 := newMemClient(t, onReg)
	appendAndRead(t, c1, "a", 3)
	appendAndRead(t, c2, "b", 5)

	got := gatherValues(t, reg)
	for _, name := range []string{"woodpecker_wal_flushed_entries_total", "woodpecker_wal_fragment_puts_total",
		"woodpecker_wal_sync_append_latency_seconds", "woodpecker_wal_fragment_bytes"} {
		if got[name] != 8 {
			t.Errorf("%s = %v, want 8 (3 from one client, 5 from the other)", name, got[name])
		}
	}
	s1, s2 := c1.Stats(), c2.Stats()
	if cacheLookups(s1) == 0 || cacheLookups(s2) == 0 {
		t.Fatalf("a client made no cache lookups: %+v, %+v", s1, s2)
	}
	if h := got["woodpecker_wal_cache_hits_total"]; h != float64(s1.CacheHits+s2.CacheHits) {
		t.Errorf("cache hits = %v, want %d + %d", h, s1.CacheHits, s2.CacheHits)
	}
	if m := got["woodpecker_wal_cache_misses_total"]; m != float64(s1.CacheMisses+s2.CacheMisses) {
		t.Errorf("cache misses = %v, want %d + %d", m, s1.CacheMisses, s2.CacheMisses)
	}
	if b := got["woodpecker_wal_cache_bytes"]; b != float64(s1.CacheBytes+s2.CacheBytes) || b == 0 {
		t.Errorf("cache bytes = %v, want %d + %d", b, s1.CacheBytes, s2.CacheBytes)
	}
}

// TestMetricsRegistryCloseAndReopen: a client closed and opened again on
// the same Registerer does not panic; the counters keep counting from where
// they were (they never go down), and the closed client's cache no longer
// counts in the cache size.
func TestMetricsRegistryCloseAndReopen(t *testing.T) {
	reg := prometheus.NewRegistry()
	onReg := func(c *wal.Config) { c.Registerer = reg }
	b, m := memStores()
	c1 := newClient(t, b, m, onReg)
	appendAndRead(t, c1, "a", 3)
	s1 := c1.Stats()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	c2 := newClient(t, b, m, onReg)
	appendAndRead(t, c2, "b", 4)
	s2 := c2.Stats()

	got := gatherValues(t, reg)
	if v := got["woodpecker_wal_flushed_entries_total"]; v != 7 {
		t.Errorf("flushed entries = %v, want 7 (3 before the reopen, 4 after)", v)
	}
	if v := got["woodpecker_wal_fragment_puts_total"]; v != 7 {
		t.Errorf("fragment puts = %v, want 7", v)
	}
	if h := got["woodpecker_wal_cache_hits_total"]; h != float64(s1.CacheHits+s2.CacheHits) {
		t.Errorf("cache hits = %v, want %d (closed client) + %d", h, s1.CacheHits, s2.CacheHits)
	}
	if v := got["woodpecker_wal_cache_misses_total"]; v != float64(s1.CacheMisses+s2.CacheMisses) {
		t.Errorf("cache misses = %v, want %d (closed client) + %d", v, s1.CacheMisses, s2.CacheMisses)
	}
	if v := got["woodpecker_wal_cache_bytes"]; v != float64(s2.CacheBytes) {
		t.Errorf("cache bytes = %v, want %d (the open client's only)", v, s2.CacheBytes)
	}
}

// TestMetricsRegistryConcurrentOpens: clients opened concurrently on one
// Registerer all open and all count.
func TestMetricsRegistryConcurrentOpens(t *testing.T) {
	reg := prometheus.NewRegistry()
	const n = 8
	clients := make([]*wal.Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			b, m := memStores()
			clients[i], errs[i] = wal.Open(context.Background(), wal.Config{Bucket: b, Meta: m, Registerer: reg})
		})
	}
	wg.Wait()
	for i, c := range clients {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(func() { c.Close() })
	}
	want := 0
	for i, c := range clients {
		appendAndRead(t, c, "l", uint64(i+2))
		want += i + 2
	}
	if v := gatherValues(t, reg)["woodpecker_wal_flushed_entries_total"]; v != float64(want) {
		t.Errorf("flushed entries = %v, want %d", v, want)
	}
}

// TestMetricsRegistryLabelledPerClient: clients given one registry wrapped
// with different constant labels report separately.
func TestMetricsRegistryLabelledPerClient(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i, node := range []string{"a", "b"} {
		c := newMemClient(t, func(c *wal.Config) {
			c.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg)
		})
		appendAndRead(t, c, "l", uint64(i+2))
	}
	got := gatherValues(t, reg)
	if a, b := got["woodpecker_wal_flushed_entries_total{node=a}"], got["woodpecker_wal_flushed_entries_total{node=b}"]; a != 2 || b != 3 {
		t.Errorf("flushed entries node=a %v, node=b %v; want 2 and 3", a, b)
	}
	if a, b := got["woodpecker_wal_cache_bytes{node=a}"], got["woodpecker_wal_cache_bytes{node=b}"]; a == 0 || b == 0 {
		t.Errorf("cache bytes node=a %v, node=b %v; want both counted", a, b)
	}
}
