package hashiraft_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

func openStore(ctx context.Context, c *wal.Client, callTimeout time.Duration) (conformance.HashiStore, error) {
	return hashiraft.New(ctx, c, "raft", hashiraft.Options{CallTimeout: callTimeout})
}

func memStores(t testing.TB) (objstore.Bucket, meta.Store) {
	return objstore.NewMem(), meta.NewMem()
}

func fileStores(t testing.TB) (objstore.Bucket, meta.Store) {
	b, err := objstore.NewFile(t.TempDir(), objstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	m, err := meta.NewBucketStore(b, "meta")
	if err != nil {
		t.Fatal(err)
	}
	return b, m
}

func s3EtcdStores(s3 *testserver.S3Server, etcd *testserver.EtcdServer) conformance.WALStores {
	n := 0
	return func(t testing.TB) (objstore.Bucket, meta.Store) {
		ctx := context.Background()
		b, err := objstore.NewS3(ctx, s3.Config(s3.NewBucket(t), ""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		n++
		m, err := meta.NewEtcd(ctx, etcd.Config(fmt.Sprintf("hashi%d", n)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return b, m
	}
}

func TestConformanceMem(t *testing.T) {
	conformance.TestHashiLogStore(t, conformance.HashiFactory{Stores: memStores, Open: openStore},
		conformance.Options{Checks: 100})
}

func TestConformanceFile(t *testing.T) {
	conformance.TestHashiLogStore(t, conformance.HashiFactory{Stores: fileStores, Open: openStore},
		conformance.Options{Checks: 30})
}

// TestConformanceVersitygwEtcd runs the suite on the real servers: S3 on
// versitygw, metadata in an embedded etcd.
func TestConformanceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), testserver.Etcd(t)
	conformance.TestHashiLogStore(t, conformance.HashiFactory{Stores: s3EtcdStores(s3, etcd), Open: openStore},
		conformance.Options{Checks: 10})
}

func snapshotStores(newBucket func(t testing.TB) objstore.Bucket) conformance.HashiSnapshotFactory {
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
	conformance.TestHashiSnapshotStore(t, snapshotStores(func(testing.TB) objstore.Bucket { return objstore.NewMem() }))
}

func TestSnapshotConformanceFile(t *testing.T) {
	conformance.TestHashiSnapshotStore(t, snapshotStores(func(t testing.TB) objstore.Bucket {
		b, _ := fileStores(t)
		return b
	}))
}

func TestSnapshotConformanceVersitygw(t *testing.T) {
	s3 := testserver.Versitygw(t)
	conformance.TestHashiSnapshotStore(t, snapshotStores(func(t testing.TB) objstore.Bucket {
		b, err := objstore.NewS3(context.Background(), s3.Config(s3.NewBucket(t), ""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}))
}
