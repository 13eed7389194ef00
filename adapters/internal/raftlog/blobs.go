package raftlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sum is what a reader checks a blob against: its exact size and CRC-32C
// (Castagnoli), recorded by the writer where the blob is published.
type Sum struct {
	Size int64
	CRC  uint32
}

// SumOf returns the Sum of data.
func SumOf(data []byte) Sum {
	return Sum{Size: int64(len(data)), CRC: crc32.Checksum(data, castagnoli)}
}

// Check returns nil if data has sum s, and otherwise an error wrapping
// logstore.ErrCorrupt that names what (the blob) and both sums.
func (s Sum) Check(what string, data []byte) error {
	if got := SumOf(data); got != s {
		return fmt.Errorf("%w: %s: %d bytes with CRC-32C %08x, want %d bytes with %08x",
			logstore.ErrCorrupt, what, got.Size, got.CRC, s.Size, s.CRC)
	}
	return nil
}

// permanentBlobErr reports a blob failure no retry mends.
func permanentBlobErr(err error) bool {
	return errors.Is(err, objstore.ErrNotFound) || errors.Is(err, objstore.ErrInvalidKey) ||
		errors.Is(err, objstore.ErrClosed) || errors.Is(err, logstore.ErrCorrupt) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// WriteBlob writes data under key as one object, retried by r (its
// Permanent, when nil, is the blob errors no retry mends: an invalid key, a
// closed store), and returns data's Sum and the attempts made. A failed
// write may or may not have landed; a blob is only ever read through a
// Sum published after WriteBlob returned, so a stray one is never read.
func WriteBlob(ctx context.Context, r Retry, b logstore.Blobs, key string, data []byte) (Sum, int, error) {
	if r.Permanent == nil {
		r.Permanent = permanentBlobErr
	}
	n, err := r.Do(ctx, func(ctx context.Context) error {
		_, err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
		return err
	})
	return SumOf(data), n, err
}

// ReadBlob reads the object under key, retried by r (Permanent defaulting
// as for WriteBlob; a missing object is objstore.ErrNotFound), and checks it
// against want: a mismatch wraps logstore.ErrCorrupt and no byte of it is
// returned.
func ReadBlob(ctx context.Context, r Retry, b logstore.Blobs, key string, want Sum) ([]byte, error) {
	if r.Permanent == nil {
		r.Permanent = permanentBlobErr
	}
	var data []byte
	_, err := r.Do(ctx, func(ctx context.Context) error {
		var err error
		data, _, err = objstore.ReadAll(ctx, b, key)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := want.Check(fmt.Sprintf("object %q", key), data); err != nil {
		return nil, err
	}
	return data, nil
}
