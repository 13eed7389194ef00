package mem_test

import (
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/bucketsuite"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/mem"
)

func TestMemConformance(t *testing.T) {
	bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket { return mem.New() }, conformance.Options{Checks: 100})
}
