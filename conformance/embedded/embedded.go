// Package embedded runs the conformance suites on the embedded engine: it
// turns a wal.Config into the conformance.ClientFactory the suites take.
// It is the one conformance package that links the engine.
package embedded

import (
	"context"
	"time"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// Client returns a factory of embedded-engine clients configured by cfg over
// the stores the suite passes (cfg.Bucket and cfg.Meta are set by it).
func Client(cfg wal.Config) conformance.ClientFactory {
	return func(ctx context.Context, b objstore.Bucket, m meta.Store) (logstore.Client, error) {
		cfg := cfg
		cfg.Bucket, cfg.Meta = b, m
		c, err := wal.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return c.LogStore(), nil
	}
}

// Small is a configuration that makes the suites' histories cross every
// boundary quickly: fragments of at most three entries, segments of four
// fragments, a 1ms batching window, fast retries, a small cache. Its retry
// window (three retries from 1ms) is far below the raft suites' short call
// timeout, as the adapters require.
func Small() wal.Config {
	return wal.Config{
		RetryInterval: time.Millisecond, MaxFlushRetries: 3,
		SegmentMaxFragments: 4, MaxInterval: time.Millisecond, MaxEntries: 3, CacheBytes: 1 << 20,
	}
}
