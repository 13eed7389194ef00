package wal_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/embedded"
	"github.com/woodpecker-wal/woodpecker/conformance/walsuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/meta/bucket"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	s3store "github.com/woodpecker-wal/woodpecker/objstore/s3"
	"github.com/woodpecker-wal/woodpecker/wal"
)

func TestConformanceMem(t *testing.T) {
	walsuite.TestWAL(t, func(t testing.TB) (objstore.Bucket, meta.Store) {
		return objmem.New(), metamem.New()
	}, suiteClient, conformance.Options{Checks: 100})
}

// suiteClient is the engine as the suite drives it: small fragments and
// segments, fast retries, up to eight of them.
var suiteClient = embedded.Client(func() wal.Config {
	cfg := embedded.Small()
	cfg.MaxFlushRetries = 8
	return cfg
}())

func TestConformanceFile(t *testing.T) {
	walsuite.TestWAL(t, func(t testing.TB) (objstore.Bucket, meta.Store) {
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
	}, suiteClient, conformance.Options{Checks: 30})
}

// TestConformanceVersitygwEtcd runs the suite on the real servers: S3 on
// versitygw, metadata in an embedded etcd.
func TestConformanceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), testserver.Etcd(t)
	n := 0
	walsuite.TestWAL(t, func(t testing.TB) (objstore.Bucket, meta.Store) {
		return s3Etcd(t, s3, etcd, &n)
	}, suiteClient, conformance.Options{Checks: 10})
}

func s3Etcd(t testing.TB, s3 *testserver.S3Server, etcd *testserver.EtcdServer, n *int) (objstore.Bucket, meta.Store) {
	ctx := context.Background()
	b, err := s3store.New(ctx, s3.Config(s3.NewBucket(t), ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	*n++
	m, err := etcdmeta.New(ctx, etcd.Config(fmt.Sprintf("case%d", *n)))
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
