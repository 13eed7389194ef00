package wal

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus collectors, registered with
// Config.Registerer when it is set, and the counters behind Client.Stats.
//
// Every client registering on one Registerer shares its counters and
// histograms: the first registration wins and later ones reuse the
// collector the Registerer already holds. The fragment-cache metrics read
// the clients' caches, so they are one clientSet per Registerer that sums
// over the clients open on it.
type metrics struct {
	appendLatency prometheus.Histogram
	syncLatency   prometheus.Histogram
	flushedBytes  prometheus.Counter
	flushedEnts   prometheus.Counter
	fragments     prometheus.Counter
	fragmentBytes prometheus.Histogram
	putRetries    prometheus.Counter
	fenced        prometheus.Counter
	recoveries    prometheus.Counter
	gcObjects     prometheus.Counter
	gcSegments    prometheus.Counter
	// Tiered mode.
	tierFsync         prometheus.Histogram
	tierCommits       prometheus.Counter
	tierUploads       prometheus.Counter
	tierUploadLatency prometheus.Histogram
	tierBackpressure  prometheus.Counter

	c   *Client
	set *clientSet // nil without a Registerer
}

func newMetrics(reg prometheus.Registerer, c *Client) *metrics {
	lat := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_append_latency_seconds", Buckets: lat,
			Help: "Time from an append call to its acknowledgement (async and sync appends).",
		}),
		syncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_sync_append_latency_seconds", Buckets: lat,
			Help: "Latency of synchronous Append calls.",
		}),
		flushedBytes: counter("woodpecker_wal_flushed_bytes_total", "Entry payload bytes made durable."),
		flushedEnts:  counter("woodpecker_wal_flushed_entries_total", "Entries made durable."),
		fragments:    counter("woodpecker_wal_fragment_puts_total", "Fragment objects written (each one PUT; the main cost driver on S3)."),
		fragmentBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_fragment_bytes", Help: "Size of written fragment objects.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		putRetries: counter("woodpecker_wal_put_retries_total", "Fragment and fence PUTs retried after a transient error."),
		fenced:     counter("woodpecker_wal_writers_fenced_total", "Writers in this process that found themselves fenced."),
		recoveries: counter("woodpecker_wal_segments_fenced_total", "Open segments of earlier writers fenced and sealed on writer open."),
		gcObjects:  counter("woodpecker_wal_gc_deleted_objects_total", "Objects deleted by garbage collection."),
		gcSegments: counter("woodpecker_wal_gc_deleted_segments_total", "Segments removed by garbage collection."),
		tierFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_tier_commit_latency_seconds", Buckets: lat,
			Help: "Tiered mode: latency of one local group commit (one write and one fdatasync).",
		}),
		tierCommits: counter("woodpecker_wal_tier_commits_total", "Tiered mode: local group commits (each one fdatasync)."),
		tierUploads: counter("woodpecker_wal_tier_uploads_total", "Tiered mode: batches the uploader made durable in the bucket."),
		tierUploadLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_tier_upload_latency_seconds", Buckets: lat,
			Help: "Tiered mode: time from handing a batch to the bucket until it is durable there.",
		}),
		tierBackpressure: counter("woodpecker_wal_tier_backpressure_total", "Tiered mode: appends that waited because MaxUploadLag was reached."),
		c:                c,
	}
	if reg == nil {
		return m
	}
	m.appendLatency = register(reg, m.appendLatency)
	m.syncLatency = register(reg, m.syncLatency)
	m.flushedBytes = register(reg, m.flushedBytes)
	m.flushedEnts = register(reg, m.flushedEnts)
	m.fragments = register(reg, m.fragments)
	m.fragmentBytes = register(reg, m.fragmentBytes)
	m.putRetries = register(reg, m.putRetries)
	m.fenced = register(reg, m.fenced)
	m.recoveries = register(reg, m.recoveries)
	m.gcObjects = register(reg, m.gcObjects)
	m.gcSegments = register(reg, m.gcSegments)
	m.tierFsync = register(reg, m.tierFsync)
	m.tierCommits = register(reg, m.tierCommits)
	m.tierUploads = register(reg, m.tierUploads)
	m.tierUploadLatency = register(reg, m.tierUploadLatency)
	m.tierBackpressure = register(reg, m.tierBackpressure)
	m.set = register(reg, newClientSet())
	m.set.add(c)
	return m
}

// register registers col with reg and returns it, or returns the collector
// of the same description reg already holds (registered by another client,
// or by this Registerer's earlier clients). Any other registration failure
// (a different metric under one of these names) panics, as MustRegister
// would.
func register[T prometheus.Collector](reg prometheus.Registerer, col T) T {
	err := reg.Register(col)
	if err == nil {
		return col
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing
		}
		err = fmt.Errorf("a %T is registered under the same name, want %T", are.ExistingCollector, col)
	}
	panic(fmt.Sprintf("wal: registering metrics with Config.Registerer: %v", err))
}

// release takes the client out of the cache metrics at once; its cache hits
// and misses stay counted. Without it a closed client leaves them at the
// next scrape or the next client opened on the Registerer. Idempotent.
func (m *metrics) release() {
	if m.set != nil {
		m.set.remove(m.c)
	}
}

// clientSet is the collector of the fragment-cache metrics of every client
// open on one Registerer. Closed clients' hits and misses are folded into
// retired so the counters never go down.
type clientSet struct {
	hits, misses, bytes *prometheus.Desc
	// Tiered writers, per log (summed over the clients).
	tierDurable, tierUploaded, tierLagEntries, tierLagBytes, tierLagSeconds *prometheus.Desc

	mu struct {
		sync.Mutex
		clients               map[*Client]struct{}
		retiredHits, retiredM uint64
	}
}

func newClientSet() *clientSet {
	s := &clientSet{
		hits:   prometheus.NewDesc("woodpecker_wal_cache_hits_total", "Fragment cache hits.", nil, nil),
		misses: prometheus.NewDesc("woodpecker_wal_cache_misses_total", "Fragment cache misses (each a GET).", nil, nil),
		bytes:  prometheus.NewDesc("woodpecker_wal_cache_bytes", "Bytes held by the fragment caches of the open clients.", nil, nil),

		tierDurable:    prometheus.NewDesc("woodpecker_wal_tier_durable_index", "Tiered mode: the last locally durable index of the log's writer.", []string{"log"}, nil),
		tierUploaded:   prometheus.NewDesc("woodpecker_wal_tier_uploaded_index", "Tiered mode: the last index of the log in the bucket.", []string{"log"}, nil),
		tierLagEntries: prometheus.NewDesc("woodpecker_wal_tier_upload_lag_entries", "Tiered mode: entries acknowledged and not yet uploaded.", []string{"log"}, nil),
		tierLagBytes:   prometheus.NewDesc("woodpecker_wal_tier_upload_lag_bytes", "Tiered mode: payload bytes acknowledged and not yet uploaded.", []string{"log"}, nil),
		tierLagSeconds: prometheus.NewDesc("woodpecker_wal_tier_upload_lag_seconds", "Tiered mode: age of the oldest acknowledged entry not yet uploaded.", []string{"log"}, nil),
	}
	s.mu.clients = make(map[*Client]struct{})
	return s
}

func (s *clientSet) add(c *Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	s.mu.clients[c] = struct{}{}
}

func (s *clientSet) remove(c *Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.clients[c]; ok {
		s.retireLocked(c)
	}
}

func (s *clientSet) retireLocked(c *Client) {
	_, _, h, m := c.frags.Stats()
	s.mu.retiredHits += h
	s.mu.retiredM += m
	delete(s.mu.clients, c)
}

// pruneLocked retires the clients that have been closed.
func (s *clientSet) pruneLocked() {
	for c := range s.mu.clients {
		select {
		case <-c.life.Done():
			s.retireLocked(c)
		default:
		}
	}
}

// Describe implements prometheus.Collector.
func (s *clientSet) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.hits
	ch <- s.misses
	ch <- s.bytes
	ch <- s.tierDurable
	ch <- s.tierUploaded
	ch <- s.tierLagEntries
	ch <- s.tierLagBytes
	ch <- s.tierLagSeconds
}

// Collect implements prometheus.Collector.
func (s *clientSet) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	s.pruneLocked()
	hits, misses, bytes := s.mu.retiredHits, s.mu.retiredM, int64(0)
	tiers := map[string]TierStats{}
	for c := range s.mu.clients {
		b, _, h, m := c.frags.Stats()
		hits, misses, bytes = hits+h, misses+m, bytes+b
		c.tiers.Range(func(k, _ any) bool {
			t := k.(*tierWriter)
			st, sum := t.stats(), tiers[t.name]
			sum.DurableIndex, sum.UploadedIndex = max(sum.DurableIndex, st.DurableIndex), max(sum.UploadedIndex, st.UploadedIndex)
			sum.LagEntries, sum.LagBytes, sum.LagAge = sum.LagEntries+st.LagEntries, sum.LagBytes+st.LagBytes, max(sum.LagAge, st.LagAge)
			tiers[t.name] = sum
			return true
		})
	}
	s.mu.Unlock()
	for name, st := range tiers {
		ch <- prometheus.MustNewConstMetric(s.tierDurable, prometheus.GaugeValue, float64(st.DurableIndex), name)
		ch <- prometheus.MustNewConstMetric(s.tierUploaded, prometheus.GaugeValue, float64(st.UploadedIndex), name)
		ch <- prometheus.MustNewConstMetric(s.tierLagEntries, prometheus.GaugeValue, float64(st.LagEntries), name)
		ch <- prometheus.MustNewConstMetric(s.tierLagBytes, prometheus.GaugeValue, float64(st.LagBytes), name)
		ch <- prometheus.MustNewConstMetric(s.tierLagSeconds, prometheus.GaugeValue, st.LagAge.Seconds(), name)
	}
	ch <- prometheus.MustNewConstMetric(s.hits, prometheus.CounterValue, float64(hits))
	ch <- prometheus.MustNewConstMetric(s.misses, prometheus.CounterValue, float64(misses))
	ch <- prometheus.MustNewConstMetric(s.bytes, prometheus.GaugeValue, float64(bytes))
}

// Stats is a pull-style snapshot of a client's activity since it opened.
type Stats struct {
	FragmentPuts   uint64 // fragments written (PUTs)
	CacheBytes     int64  // bytes held by the fragment cache
	CacheHits      uint64
	CacheMisses    uint64
	GCObjects      uint64 // objects deleted by GC
	WritersFenced  uint64
	SegmentsFenced uint64
	// TiersDiscarded counts local tiers discarded because their log was
	// taken over by another writer (tiered mode).
	TiersDiscarded uint64
}

// Stats returns counters of the client's activity.
func (c *Client) Stats() Stats {
	b, _, h, m := c.frags.Stats()
	return Stats{
		FragmentPuts: c.stats.puts.Load(), CacheBytes: b, CacheHits: h, CacheMisses: m,
		GCObjects: c.stats.gcObjects.Load(), WritersFenced: c.stats.fenced.Load(),
		SegmentsFenced: c.stats.segFenced.Load(), TiersDiscarded: c.stats.tierDiscarded.Load(),
	}
}

type statCounters struct {
	puts, gcObjects, fenced, segFenced, tierDiscarded atomic.Uint64
}
