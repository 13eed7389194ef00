// Package raftlog is the plumbing both Raft adapters share on top of a
// logstore.Client, so that each adapter is only a translation of its Raft
// library's contract: opening or creating the log, checking a call timeout
// against the client's retry window, retrying the adapter's own blob writes
// and reads as the engine retries its writes, and verified snapshot blobs.
package raftlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// OpenOrCreate opens the named log, creating it first if it does not exist.
// Two processes racing to create it both succeed.
func OpenOrCreate(ctx context.Context, c logstore.Client, name string) (logstore.Log, error) {
	l, err := c.OpenLog(ctx, name)
	if errors.Is(err, logstore.ErrLogNotFound) {
		if err = c.CreateLog(ctx, name); err == nil || errors.Is(err, logstore.ErrLogExists) {
			l, err = c.OpenLog(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open log %q: %w", name, err)
	}
	return l, nil
}

// CallTimeout returns the per-call timeout an adapter uses: callTimeout, or
// the client's OperationBound when it is 0. It refuses one shorter than the
// client's retry window, which would give up on a call while the engine
// still retries it. adapter names the adapter in the error.
func CallTimeout(adapter string, callTimeout time.Duration, l logstore.Limits) (time.Duration, error) {
	if callTimeout == 0 {
		return l.OperationBound, nil
	}
	if callTimeout < 0 {
		return 0, fmt.Errorf("%s: Options.CallTimeout = %v: must not be negative", adapter, callTimeout)
	}
	if callTimeout < l.RetryWindow {
		return 0, fmt.Errorf("%s: Options.CallTimeout = %v is shorter than the client's %s: a call would give up "+
			"while the engine still retries it; give at least %v, or leave it 0 for RetryBudget + 2×RequestTimeout (%v)",
			adapter, callTimeout, l.RetryWindowSource, l.RetryWindow, l.OperationBound)
	}
	return callTimeout, nil
}

// OpenEmbedded opens the embedded engine over stores named by URLs (see
// wal.OpenURL) and hands its client to newStore; the store returned owns
// the client, which is closed if newStore fails. The adapters' Open
// constructors are this, so that their New sees only a logstore.Client.
func OpenEmbedded[S any](ctx context.Context, bucketURL, metaURL string, cfg wal.Config,
	newStore func(logstore.Client) (S, error)) (S, error) {
	var zero S
	c, err := wal.OpenURL(ctx, bucketURL, metaURL, cfg)
	if err != nil {
		return zero, err
	}
	s, err := newStore(c.LogStore())
	if err != nil {
		c.Close()
		return zero, err
	}
	return s, nil
}
