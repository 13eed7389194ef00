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
