package wal

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus collectors, registered with
// Config.Registerer when it is set, and the counters behind Client.Stats.
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
}

func newMetrics(reg prometheus.Registerer, c *Client) *metrics {
	lat := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &metrics{
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_append_latency_seconds", Buckets: lat,
			Help: "Time from an append call to its acknowledgement (async and sync appends).",
		}),
		syncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_sync_append_latency_seconds", Buckets: lat,
			Help: "Latency of synchronous Append calls.",
		}),
		flushedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_flushed_bytes_total", Help: "Entry payload bytes made durable.",
		}),
		flushedEnts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_flushed_entries_total", Help: "Entries made durable.",
		}),
		fragments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_fragment_puts_total", Help: "Fragment objects written (each one PUT; the main cost driver on S3).",
		}),
		fragmentBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "woodpecker_wal_fragment_bytes", Help: "Size of written fragment objects.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		putRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_put_retries_total", Help: "Fragment and fence PUTs retried after a transient error.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_writers_fenced_total", Help: "Writers in this process that found themselves fenced.",
		}),
		recoveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_segments_fenced_total", Help: "Open segments of earlier writers fenced and sealed on writer open.",
		}),
		gcObjects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_gc_deleted_objects_total", Help: "Objects deleted by garbage collection.",
		}),
		gcSegments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "woodpecker_wal_gc_deleted_segments_total", Help: "Segments removed by garbage collection.",
		}),
	}
	if reg != nil {
		hits := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "woodpecker_wal_cache_hits_total", Help: "Fragment cache hits.",
		}, func() float64 { _, _, h, _ := c.frags.Stats(); return float64(h) })
		misses := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "woodpecker_wal_cache_misses_total", Help: "Fragment cache misses (each a GET).",
		}, func() float64 { _, _, _, m := c.frags.Stats(); return float64(m) })
		cacheBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "woodpecker_wal_cache_bytes", Help: "Bytes held by the fragment cache.",
		}, func() float64 { b, _, _, _ := c.frags.Stats(); return float64(b) })
		reg.MustRegister(m.appendLatency, m.syncLatency, m.flushedBytes, m.flushedEnts, m.fragments,
			m.fragmentBytes, m.putRetries, m.fenced, m.recoveries, m.gcObjects, m.gcSegments,
			hits, misses, cacheBytes)
	}
	return m
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
}

// Stats returns counters of the client's activity.
func (c *Client) Stats() Stats {
	b, _, h, m := c.frags.Stats()
	return Stats{
		FragmentPuts: c.stats.puts.Load(), CacheBytes: b, CacheHits: h, CacheMisses: m,
		GCObjects: c.stats.gcObjects.Load(), WritersFenced: c.stats.fenced.Load(),
		SegmentsFenced: c.stats.segFenced.Load(),
	}
}

type statCounters struct {
	puts, gcObjects, fenced, segFenced atomic.Uint64
}
