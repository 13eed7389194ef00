package hashiraft_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/embedded"
	"github.com/woodpecker-wal/woodpecker/conformance/hashiraftsuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/meta/bucket"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	s3store "github.com/woodpecker-wal/woodpecker/objstore/s3"
)

func openStore(ctx context.Context, c logstore.Client, callTimeout time.Duration) (hashiraftsuite.HashiStore, error) {
	return hashiraft.New(ctx, c, "raft", hashiraft.Options{CallTimeout: callTimeout})
}

func memStores(t testing.TB) (objstore.Bucket, meta.Store) {
	return objmem.New(), metamem.New()
}

func fileStores(t testing.TB) (objstore.Bucket, meta.Store) {
	b, err := file.New(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	m, err := bucket.New(b, "meta")
	if err != nil {
		t.Fatal(err)
	}
	return b, m
}

func s3EtcdStores(s3 *testserver.S3Server, etcd *testserver.EtcdServer) conformance.WALStores {
	n := 0
	return func(t testing.TB) (objstore.Bucket, meta.Store) {
		ctx := context.Background()
		b, err := s3store.New(ctx, s3.Config(s3.NewBucket(t), ""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		n++
		m, err := etcdmeta.New(ctx, etcd.Config(fmt.Sprintf("hashi%d", n)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return b, m
	}
}

func TestConformanceMem(t *testing.T) {
	hashiraftsuite.TestHashiLogStore(t, hashiraftsuite.HashiFactory{Stores: memStores, Client: embedded.Client(embedded.Small()), Open: openStore},
		conformance.Options{Checks: 100})
}

func TestConformanceFile(t *testing.T) {
	hashiraftsuite.TestHashiLogStore(t, hashiraftsuite.HashiFactory{Stores: fileStores, Client: embedded.Client(embedded.Small()), Open: openStore},
		conformance.Options{Checks: 30})
}

// TestConformanceVersitygwEtcd runs the suite on the real servers: S3 on
// versitygw, metadata in an embedded etcd.
func TestConformanceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), testserver.Etcd(t)
	hashiraftsuite.TestHashiLogStore(t, hashiraftsuite.HashiFactory{Stores: s3EtcdStores(s3, etcd), Client: embedded.Client(embedded.Small()), Open: openStore},
		conformance.Options{Checks: 10})
}

func snapshotStores(newBucket func(t testing.TB) objstore.Bucket) hashiraftsuite.HashiSnapshotFactory {
	return func(t testing.TB, retain int) raft.SnapshotStore {
		// Small chunks, so a few MiB make many of them.
		s, err := hashiraft.NewSnapshotStore(newBucket(t), "wal/raft/snapshots",
			hashiraft.Options{SnapshotRetain: retain, SnapshotChunkSize: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestSnapshotConformanceMem(t *testing.T) {
	hashiraftsuite.TestHashiSnapshotStore(t, snapshotStores(func(testing.TB) objstore.Bucket { return objmem.New() }))
}

func TestSnapshotConformanceFile(t *testing.T) {
	hashiraftsuite.TestHashiSnapshotStore(t, snapshotStores(func(t testing.TB) objstore.Bucket {
		b, _ := fileStores(t)
		return b
	}))
}

func TestSnapshotConformanceVersitygw(t *testing.T) {
	s3 := testserver.Versitygw(t)
	hashiraftsuite.TestHashiSnapshotStore(t, snapshotStores(func(t testing.TB) objstore.Bucket {
		b, err := s3store.New(context.Background(), s3.Config(s3.NewBucket(t), ""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}))
}
