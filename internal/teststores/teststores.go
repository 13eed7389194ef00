// Package teststores is the one way a test gets a bucket and a metadata
// store to run on: in memory, in a temporary directory, or on the real
// servers internal/testserver starts (S3 on versitygw or gofakes3, etcd
// embedded). Each function has the shape of conformance.WALStores.
package teststores

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/meta/bucket"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	s3store "github.com/woodpecker-wal/woodpecker/objstore/s3"
)

// Mem returns a new in-memory bucket and metadata store.
func Mem(testing.TB) (objstore.Bucket, meta.Store) { return objmem.New(), metamem.New() }

// File returns a bucket in a new temporary directory, with the metadata
// kept in it under "meta" (the embedded default). Closed at cleanup.
func File(t testing.TB) (objstore.Bucket, meta.Store) {
	t.Helper()
	return FileBucket(t)
}

// FileBucket is File with the bucket's concrete type.
func FileBucket(t testing.TB) (*file.Bucket, meta.Store) {
	t.Helper()
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

// S3 returns a factory of stores with the bucket on s3 (a new one each
// call, closed at cleanup) and the metadata in memory.
func S3(s3 *testserver.S3Server) func(t testing.TB) (objstore.Bucket, meta.Store) {
	return func(t testing.TB) (objstore.Bucket, meta.Store) {
		t.Helper()
		b, err := s3store.New(context.Background(), s3.Config(s3.NewBucket(t), ""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b, metamem.New()
	}
}

// S3Etcd returns a factory of stores on the real servers: each call a new
// bucket on s3 and a new key prefix (name plus a counter) on etcd, both
// closed at cleanup.
func S3Etcd(s3 *testserver.S3Server, etcd *etcdserver.Server, name string) func(t testing.TB) (objstore.Bucket, meta.Store) {
	var n atomic.Int64
	return func(t testing.TB) (objstore.Bucket, meta.Store) {
		t.Helper()
		ctx := context.Background()
		b, err := s3store.New(ctx, s3.Config(s3.NewBucket(t), ""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		m, err := etcdmeta.New(ctx, etcd.Config(fmt.Sprintf("%s%d", name, n.Add(1))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return b, m
	}
}
