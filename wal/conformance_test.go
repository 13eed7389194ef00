package wal_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

func TestConformanceMem(t *testing.T) {
	conformance.TestWAL(t, func(t testing.TB) (objstore.Bucket, meta.Store) {
		return objstore.NewMem(), meta.NewMem()
	}, conformance.Options{Checks: 100})
}

func TestConformanceFile(t *testing.T) {
	conformance.TestWAL(t, func(t testing.TB) (objstore.Bucket, meta.Store) {
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
	}, conformance.Options{Checks: 30})
}

// TestConformanceVersitygwEtcd runs the suite on the real servers: S3 on
// versitygw, metadata in an embedded etcd.
func TestConformanceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), testserver.Etcd(t)
	n := 0
	conformance.TestWAL(t, func(t testing.TB) (objstore.Bucket, meta.Store) {
		return s3Etcd(t, s3, etcd, &n)
	}, conformance.Options{Checks: 10})
}

func s3Etcd(t testing.TB, s3 *testserver.S3Server, etcd *testserver.EtcdServer, n *int) (objstore.Bucket, meta.Store) {
	ctx := context.Background()
	b, err := objstore.NewS3(ctx, s3.Config(s3.NewBucket(t), ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	*n++
	m, err := meta.NewEtcd(ctx, etcd.Config(fmt.Sprintf("case%d", *n)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return b, m
}

func TestZombieRaceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), testserver.Etcd(t)
	n := 0
	b, m := s3Etcd(t, s3, etcd, &n)
	zombieRace(t, b, m, 8)
}
