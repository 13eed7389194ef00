package hashiraft_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/internal/raftbench"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/internal/teststores"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// Benchmarks of the raft-facing calls, as raft makes them:
//
//   - StoreLogs/<backend>/<entries>x<size>: one synchronous StoreLogs call
//     of 1 or 64 entries (raft's MaxAppendEntries default) of 128 B or
//     4 KiB, back to back, as the leader's main goroutine and a follower's
//     AppendEntries handler do (raftbench.StoreLogs, the loop the bench
//     module runs on raft-wal and raft-boltdb). Reports per-call p50/p99
//     latency, entries/s, and payload MB/s. Each call costs at least one
//     fragment PUT (fsync for file).
//   - GetLog/<backend>/hot: random GetLog over the last 10k entries, which
//     the tail cache holds (replication and apply); fragcache: the same
//     with the tail cache off, served by the WAL's fragment cache.
//   - GetLog/<backend>/cold: GetLog front to back on a fresh client (empty
//     cache) over 2048 entries written 64 per call, as NewRaft's startup scan
//     reads them: one GET per fragment, with the WAL's prefetch
//     (raftbench.ScanCold; the untimed reopen is reported as open-µs).
//
// Backends: file (fsync on every write; metadata in the same directory) and
// versitygw (child process, signed payloads, no fsync; metadata in an
// embedded etcd). Run: go test -run '^$' -bench . -benchtime 1s ./adapters/hashiraft/

type benchBackend struct {
	name   string
	stores func(b *testing.B) (objstore.Bucket, meta.Store)
}

// benchBackends lists the backends; the servers start on first use and
// live as long as top.
func benchBackends(top *testing.B) []benchBackend {
	srv := testserver.NewServers(top)
	etcdSrv := etcdserver.NewShared(top)
	return []benchBackend{
		{name: "file", stores: func(b *testing.B) (objstore.Bucket, meta.Store) { return teststores.File(b) }},
		{name: "versitygw", stores: func(b *testing.B) (objstore.Bucket, meta.Store) {
			return srv.Versitygw().OpenBucket(b, ""), etcdSrv.Get().OpenMeta(b)
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
	s, err := hashiraft.New(context.Background(), c.LogStore(), "raft", opts)
	if err != nil {
		b.Fatal(err)
	}
	return c, s
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
					raftbench.StoreLogs(b, s, n, size)
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
				raftbench.Fill(b, s, 10_000, 128)
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
			raftbench.Fill(b, s, n, 128)
			s.Close()
			c.Close()
			raftbench.ScanCold(b, n, func() (raft.LogStore, func() error, error) {
				c, s := benchStore(b, bk, m) // a restarted node: empty cache
				return s, func() error { return errors.Join(s.Close(), c.Close()) }, nil
			})
		})
	}
}
