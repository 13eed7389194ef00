package hashiraft_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/s3"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// Benchmarks of the raft-facing calls, as raft makes them:
//
//   - StoreLogs/<backend>/<entries>x<size>: one synchronous StoreLogs call
//     of 1 or 64 entries (raft's MaxAppendEntries default) of 128 B or
//     4 KiB, back to back, as the leader's main goroutine and a follower's
//     AppendEntries handler do. Reports per-call p50/p99 latency, entries/s,
//     and payload MB/s. Each call costs at least one fragment PUT (fsync for
//     file).
//   - GetLog/<backend>/hot: random GetLog over the last 10k entries, which
//     the tail cache holds (replication and apply); fragcache: the same
//     with the tail cache off, served by the WAL's fragment cache.
//   - GetLog/<backend>/cold: GetLog front to back on a fresh client (empty
//     cache) over 2000 entries written 64 per call, as NewRaft's startup scan
//     reads them: one GET per fragment, with the WAL's prefetch.
//
// Backends: file (fsync on every write; metadata in the same directory) and
// versitygw (child process, signed payloads, no fsync; metadata in an
// embedded etcd). Run: go test -run '^$' -bench . -benchtime 1s ./adapters/hashiraft/

type benchBackend struct {
	name   string
	stores func(b *testing.B) (objstore.Bucket, meta.Store)
}

func benchBackends(top *testing.B) []benchBackend {
	var (
		vgw  *testserver.S3Server
		etcd *testserver.EtcdServer
		n    int
	)
	return []benchBackend{
		{name: "file", stores: func(b *testing.B) (objstore.Bucket, meta.Store) { return fileStores(b) }},
		{name: "versitygw", stores: func(b *testing.B) (objstore.Bucket, meta.Store) {
			if vgw == nil {
				vgw, etcd = testserver.Versitygw(top), testserver.Etcd(top)
			}
			n++
			bk, err := s3.New(context.Background(), vgw.Config(vgw.NewBucket(b), ""))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { bk.Close() })
			m, err := etcdmeta.New(context.Background(), etcd.Config(fmt.Sprintf("hbench%d", n)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { m.Close() })
			return bk, m
		}},
	}
}

func benchStore(b *testing.B, bk objstore.Bucket, m meta.Store) (*wal.Client, *hashiraft.Store) {
	return benchStoreOpts(b, bk, m, hashiraft.Options{})
}

func benchStoreOpts(b *testing.B, bk objstore.Bucket, m meta.Store, opts hashiraft.Options) (*wal.Client, *hashiraft.Store) {
	b.Helper()
	c, err := wal.Open(context.Background(), wal.Config{Bucket: bk, Meta: m})
	if err != nil {
		b.Fatal(err)
	}
	s, err := hashiraft.New(context.Background(), c, "raft", opts)
	if err != nil {
		b.Fatal(err)
	}
	return c, s
}

func benchLogs(first uint64, n, size int) []*raft.Log {
	out := make([]*raft.Log, n)
	for k := range out {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i + k)
		}
		out[k] = &raft.Log{Index: first + uint64(k), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	}
	return out
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

func BenchmarkStoreLogs(b *testing.B) {
	for _, be := range benchBackends(b) {
		for _, n := range []int{1, 64} {
			for _, size := range []int{128, 4096} {
				name := fmt.Sprintf("%s/%dx%s", be.name, n, map[int]string{128: "128B", 4096: "4KiB"}[size])
				b.Run(name, func(b *testing.B) {
					bk, m := be.stores(b)
					c, s := benchStore(b, bk, m)
					defer c.Close()
					defer s.Close()
					next := uint64(1)
					batch := benchLogs(1, n, size)
					lat := make([]time.Duration, 0, b.N)
					b.SetBytes(int64(n * size))
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						for k, l := range batch {
							l.Index = next + uint64(k)
						}
						t0 := time.Now()
						if err := s.StoreLogs(batch); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t0))
						next += uint64(n)
					}
					b.StopTimer()
					b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
					reportLatency(b, lat)
				})
			}
		}
	}
}

func BenchmarkGetLog(b *testing.B) {
	for _, be := range benchBackends(b) {
		for _, v := range []struct {
			name string
			tail int
		}{{"hot", 0}, {"fragcache", -1}} {
			b.Run(be.name+"/"+v.name, func(b *testing.B) {
				bk, m := be.stores(b)
				c, s := benchStoreOpts(b, bk, m, hashiraft.Options{TailCacheBytes: v.tail})
				defer c.Close()
				defer s.Close()
				const n = 10_000
				for i := uint64(1); i <= n; i += 64 {
					if err := s.StoreLogs(benchLogs(i, 64, 128)); err != nil {
						b.Fatal(err)
					}
				}
				last, _ := s.LastIndex()
				var l raft.Log
				b.ReportAllocs()
				b.ResetTimer()
				var i atomic.Uint64
				for range b.N {
					idx := 1 + (i.Add(7919) % last)
					if err := s.GetLog(idx, &l); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(be.name+"/cold", func(b *testing.B) {
			bk, m := be.stores(b)
			c, s := benchStore(b, bk, m)
			const n = 2048
			for i := uint64(1); i <= n; i += 64 {
				if err := s.StoreLogs(benchLogs(i, 64, 128)); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
			c.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				c, s := benchStore(b, bk, m) // a restarted node: empty cache
				b.StartTimer()
				var l raft.Log
				for i := uint64(1); i <= n; i++ {
					if err := s.GetLog(i, &l); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				s.Close()
				c.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
