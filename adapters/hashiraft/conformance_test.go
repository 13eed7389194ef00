package hashiraft_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/embedded"
	"github.com/woodpecker-wal/woodpecker/conformance/hashiraftsuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/internal/teststores"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

func openStore(ctx context.Context, c logstore.Client, callTimeout time.Duration) (hashiraftsuite.HashiStore, error) {
	return hashiraft.New(ctx, c, "raft", hashiraft.Options{CallTimeout: callTimeout})
}

func TestConformanceMem(t *testing.T) {
	hashiraftsuite.TestHashiLogStore(t, hashiraftsuite.HashiFactory{Stores: teststores.Mem, Client: embedded.Client(embedded.Small()), Open: openStore},
		conformance.Options{Checks: 100})
}

func TestConformanceFile(t *testing.T) {
	hashiraftsuite.TestHashiLogStore(t, hashiraftsuite.HashiFactory{Stores: teststores.File, Client: embedded.Client(embedded.Small()), Open: openStore},
		conformance.Options{Checks: 30})
}

// TestConformanceVersitygwEtcd runs the suite on the real servers: S3 on
// versitygw, metadata in an embedded etcd.
func TestConformanceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), etcdserver.Start(t)
	hashiraftsuite.TestHashiLogStore(t, hashiraftsuite.HashiFactory{Stores: teststores.S3Etcd(s3, etcd, "hashi"), Client: embedded.Client(embedded.Small()), Open: openStore},
		conformance.Options{Checks: 10})
}

func snapshotStores(stores func(t testing.TB) (objstore.Bucket, meta.Store)) hashiraftsuite.HashiSnapshotFactory {
	return func(t testing.TB, retain int) raft.SnapshotStore {
		// Small chunks, so a few MiB make many of them.
		b, _ := stores(t)
		s, err := hashiraft.NewSnapshotStore(b, "wal/raft/snapshots",
			hashiraft.Options{SnapshotRetain: retain, SnapshotChunkSize: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestSnapshotConformanceMem(t *testing.T) {
	hashiraftsuite.TestHashiSnapshotStore(t, snapshotStores(teststores.Mem))
}

func TestSnapshotConformanceFile(t *testing.T) {
	hashiraftsuite.TestHashiSnapshotStore(t, snapshotStores(teststores.File))
}

func TestSnapshotConformanceVersitygw(t *testing.T) {
	hashiraftsuite.TestHashiSnapshotStore(t, snapshotStores(teststores.S3(testserver.Versitygw(t))))
}
