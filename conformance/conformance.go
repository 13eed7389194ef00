// Package conformance holds importable test suites that every woodpecker
// backend and adapter runs from its own _test.go, the way testing/fstest.TestFS
// checks any fs.FS:
//
//	func TestConformance(t *testing.T) {
//		bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket { return newMyBucket(t) }, conformance.Options{})
//	}
//
// Each subject has its own package, so a backend's test binary links only
// what its suite needs (an object store's tests do not link a Raft library):
//
//	bucketsuite     objstore.Bucket backends
//	metasuite       meta.Store backends
//	walsuite        the WAL engine over any bucket and metadata store
//	hashiraftsuite  hashicorp/raft LogStore, StableStore and SnapshotStore
//	etcdraftsuite   etcd raft's Storage and its persistence calls
//
// The suites mix fixed cases, race tests (many goroutines on one key) and
// property-based state machines (pgregory.net/rapid) checked against a plain
// model. rapid logs the seed of a failing run and saves it in testdata/rapid
// for replay with -rapid.seed / -rapid.failfile.
//
// Suites must not run in parallel with each other within one test binary:
// they adjust rapid's check count for the backend at hand.
package conformance

import (
	"context"
	"testing"

	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// Options tunes a suite for a backend.
type Options struct {
	// Checks is the number of rapid cases per property when -rapid.checks
	// (or RAPID_CHECKS) is not given explicitly; 0 means rapid's default
	// (100). Slow backends pass a smaller number to stay within the test
	// budget: mem 100, file ~30, network ~10.
	Checks int
}

// ClientFactory opens a log client over a bucket and a metadata store: the
// suites that crash and restart a process call it again over the same
// stores (wrapped to inject faults). The suite closes what it returns.
// conformance/embedded makes one for the embedded engine.
type ClientFactory func(ctx context.Context, b objstore.Bucket, m meta.Store) (logstore.Client, error)

// WALStores returns a fresh, empty bucket and metadata store for one WAL
// test case. The suites close neither; register cleanup with t.Cleanup.
type WALStores func(t testing.TB) (objstore.Bucket, meta.Store)
