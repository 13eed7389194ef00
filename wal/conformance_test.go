package wal_test

import (
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
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
