package wal

import (
	"errors"
	"fmt"

	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// Stage 3 of the flush pipeline (see flush.go): put.

// put writes a fragment with If-None-Match, retrying transient errors with
// the engine's retry policy (retry.go), each attempt bounded by
// RequestTimeout. A write answered "exists" is resolved by reading the key
// (docs/design.md, decision 4): our epoch and nonce mean an earlier attempt
// landed; anything else means we are fenced. An invalid key or a closed
// bucket fails at once; a spent budget is ErrBroken.
func (w *Writer) put(key string, data []byte) error {
	c := w.c
	ctx := w.bgCtx
	for rt := w.retrier(); ; {
		actx, cancel := c.requestCtx(ctx)
		_, err := c.cfg.Bucket.PutIfAbsent(actx, key, data)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, objstore.ErrExists) {
			c.frags.Remove(key)
			actx, cancel := c.requestCtx(ctx)
			f, ferr := c.fragment(actx, key)
			cancel()
			switch {
			case ferr == nil && f.Header.Kind == codec.KindData && f.Header.Epoch == w.epoch && f.Header.Nonce == w.nonce:
				return nil // our own earlier attempt landed
			case ferr == nil:
				return fmt.Errorf("%w: log %q: %s at %s written by epoch %d", ErrFenced, w.name, f.Header.Kind, key, f.Header.Epoch)
			case errors.Is(ferr, codec.ErrCorrupt), errors.Is(ferr, codec.ErrUnsupportedVersion):
				// Cannot tell whether our write landed: let recovery decide.
				return fmt.Errorf("%w: log %q: %w", ErrBroken, w.name, ferr)
			}
			err = ferr
		} else if errors.Is(err, objstore.ErrInvalidKey) || errors.Is(err, objstore.ErrClosed) {
			return fmt.Errorf("wal: log %q: write %s: %w", w.name, key, err)
		}
		c.cfg.Logger.Warn("wal: fragment write failed; retrying", "log", w.name, "key", key, "attempt", rt.Attempt(), "err", err)
		if !rt.Again(ctx) {
			return fmt.Errorf("%w: log %q: write %s: %v", ErrBroken, w.name, key, err)
		}
		c.metrics.putRetries.Inc()
	}
}
