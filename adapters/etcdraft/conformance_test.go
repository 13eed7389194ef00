package etcdraft_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/etcdraftsuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/internal/teststores"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// ownedStorage closes the WAL client it was opened with.
type ownedStorage struct {
	*etcdraft.Storage
	c *wal.Client
}

func (s ownedStorage) Close() error {
	err := s.Storage.Close()
	s.c.Close()
	return err
}

// testWALConfig makes the WAL retry fast and roll segments often, so the
// suites cross segment boundaries.
func testWALConfig(b objstore.Bucket, m meta.Store) wal.Config {
	return wal.Config{Bucket: b, Meta: m, RetryInterval: time.Millisecond, MaxFlushRetries: 8,
		SegmentMaxFragments: 4, CacheBytes: 1 << 20}
}

// openOwned opens a Storage over b and m with a small tail cache, so reads
// also go through the WAL.
func openOwned(ctx context.Context, b objstore.Bucket, m meta.Store, cacheBytes int64) (ownedStorage, error) {
	c, err := wal.Open(ctx, testWALConfig(b, m))
	if err != nil {
		return ownedStorage{}, err
	}
	s, err := etcdraft.New(ctx, c.LogStore(), "raft", etcdraft.Options{TailCacheBytes: cacheBytes})
	if err != nil {
		c.Close()
		return ownedStorage{}, err
	}
	return ownedStorage{s, c}, nil
}

// factory opens storages alternately with a tiny tail cache (reads go
// through the WAL) and a large one (reads come from memory).
func factory(stores conformance.WALStores) etcdraftsuite.EtcdStorageFactory {
	var opens atomic.Int64
	return etcdraftsuite.EtcdStorageFactory{
		Stores: stores,
		Open: func(ctx context.Context, b objstore.Bucket, m meta.Store) (etcdraftsuite.EtcdStorage, error) {
			cache := int64(64)
			if opens.Add(1)%2 == 0 {
				cache = 1 << 20
			}
			return openOwned(ctx, b, m, cache)
		},
	}
}

func TestConformanceMem(t *testing.T) {
	etcdraftsuite.TestEtcdStorage(t, factory(teststores.Mem), conformance.Options{Checks: 100})
}

func TestConformanceFile(t *testing.T) {
	etcdraftsuite.TestEtcdStorage(t, factory(teststores.File), conformance.Options{Checks: 30})
}

// TestConformanceVersitygwEtcd runs the suite on the real servers: S3 on
// versitygw, metadata in an embedded etcd.
func TestConformanceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), etcdserver.Start(t)
	etcdraftsuite.TestEtcdStorage(t, factory(teststores.S3Etcd(s3, etcd, "etcdraft")), conformance.Options{Checks: 10})
}
