package mem_test

import (
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/metasuite"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/meta/mem"
)

func TestMemConformance(t *testing.T) {
	metasuite.TestMetaStore(t, func(t testing.TB) meta.Store { return mem.New() }, conformance.Options{Checks: 100})
}
