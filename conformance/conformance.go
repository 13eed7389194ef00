// Package conformance holds importable test suites that every woodpecker
// backend and adapter runs from its own _test.go, the way testing/fstest.TestFS
// checks any fs.FS:
//
//	func TestConformance(t *testing.T) {
//		conformance.TestBucket(t, func(t testing.TB) objstore.Bucket { return newMyBucket(t) }, conformance.Options{})
//	}
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
	"flag"
	"os"
	"strconv"
	"sync"
)

// Options tunes a suite for a backend.
type Options struct {
	// Checks is the number of rapid cases per property when -rapid.checks
	// (or RAPID_CHECKS) is not given explicitly; 0 means rapid's default
	// (100). Slow backends pass a smaller number to stay within the test
	// budget: mem 100, file ~30, network ~10.
	Checks int
}

var checksMu sync.Mutex

// withChecks runs fn with rapid's check count set to n, unless the user set
// it on the command line or in the environment.
func withChecks(n int, fn func()) {
	if n <= 0 || checksExplicit() {
		fn()
		return
	}
	checksMu.Lock()
	defer checksMu.Unlock()
	f := flag.Lookup("rapid.checks")
	if f == nil {
		fn()
		return
	}
	old := f.Value.String()
	_ = f.Value.Set(strconv.Itoa(n))
	defer func() { _ = f.Value.Set(old) }()
	fn()
}

func checksExplicit() bool {
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok {
		return true
	}
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			set = true
		}
	})
	return set
}
