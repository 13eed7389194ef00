// Package objstore is the durable home of woodpecker's data: a small bucket
// contract shaped by what the WAL needs. The backends are subpackages that
// register their URL scheme with [Open] when linked: objstore/s3 (any
// S3-compatible store, through minio-go), objstore/file (a local
// directory) and objstore/mem. This package links none of them.
//
// # Contract
//
// Keys are slash-separated paths validated by [ValidateKey]: non-empty, at most
// 1024 bytes, valid UTF-8, no NUL, no leading or trailing '/', no empty, "."
// or ".." component. Every backend rejects other keys with an error wrapping
// [ErrInvalidKey], so no key can escape a file backend's root. Backends that
// store keys as paths (the file backend, versitygw) cannot hold both "a" and
// "a/b"; callers that want portability never make one key a directory prefix
// of another (see docs/design.md, decision 11).
//
// Objects are immutable once written except through [Bucket.Put] (an
// unconditional overwrite) and [CASBucket.PutIfMatch]. A successful write is
// durable when it returns: the object PUT has been answered, or, for the file
// backend, the file and its directory have been fsynced.
//
// # Errors
//
// Backends translate provider errors into the sentinels below; callers use
// [errors.Is]. A write that fails with any other error is ambiguous: it may or
// may not have landed (a PUT whose reply was lost, a retried request that was
// answered 412 because its first attempt succeeded). Callers that must know
// read the key back.
//
// # Concurrency
//
// Every Bucket is safe for concurrent use by multiple goroutines. Conditional
// writes are atomic against concurrent writers, also in other processes: of N
// concurrent PutIfAbsent calls for one key exactly one succeeds.
package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

var (
	// ErrNotFound is returned when the object does not exist.
	ErrNotFound = errors.New("objstore: object not found")
	// ErrExists is returned by PutIfAbsent when the key already holds an object.
	ErrExists = errors.New("objstore: object already exists")
	// ErrPrecondition is returned by PutIfMatch when the object's current ETag
	// differs from the expected one, or the object does not exist.
	ErrPrecondition = errors.New("objstore: precondition failed")
	// ErrInvalidKey is returned for a key that ValidateKey rejects.
	ErrInvalidKey = errors.New("objstore: invalid key")
	// ErrClosed is returned by a bucket that has been closed.
	ErrClosed = errors.New("objstore: bucket closed")
)

// MaxKeyLen is the longest key accepted, in bytes (the S3 limit).
const MaxKeyLen = 1024

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key  string
	Size int64
	// ETag is an opaque token that changes whenever the object's content
	// changes. For S3 single-part uploads it is the quoted-stripped MD5 of the
	// content. Every backend fills it in Head, Get and the write calls; List
	// fills it where the backend can do so cheaply.
	ETag string
}

// ListOptions selects the keys a List call returns.
type ListOptions struct {
	// Prefix restricts the listing to keys starting with it (a plain byte
	// prefix, not necessarily ending in '/').
	Prefix string
	// StartAfter, when set, restricts the listing to keys strictly greater
	// than it.
	StartAfter string
	// Limit is the maximum number of keys returned; 0 means no limit.
	Limit int
}

// Bucket is the object-store abstraction the WAL writes through.
type Bucket interface {
	// Get returns a reader over the object's bytes [off, off+length), or from
	// off to the end when length < 0, together with the object's info (Size
	// is the whole object's size). A range past the end is truncated to the
	// end. It returns ErrNotFound when the key does not exist. The caller
	// must close the reader.
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, ObjectInfo, error)

	// Head returns the object's info, or ErrNotFound.
	Head(ctx context.Context, key string) (ObjectInfo, error)

	// PutIfAbsent creates the object only if no object exists under key,
	// atomically, and returns ErrExists otherwise. data is written in a single
	// request (never multipart), so the condition always holds. The bucket
	// does not retain data.
	PutIfAbsent(ctx context.Context, key string, data []byte) (ObjectInfo, error)

	// Put writes the object unconditionally, replacing any previous object.
	// size is the exact length of r, or -1 when unknown (the backend may then
	// stream it in parts). Readers never observe a partially written object.
	Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error)

	// Delete removes the object. Deleting a missing key succeeds.
	Delete(ctx context.Context, key string) error

	// List returns the objects whose keys match opts, in ascending byte
	// order of key, at most opts.Limit of them. To page, call again with
	// StartAfter set to the last key returned.
	List(ctx context.Context, opts ListOptions) ([]ObjectInfo, error)

	// Close releases the bucket's resources. Calls after Close fail with
	// ErrClosed. Close is idempotent.
	Close() error
}

// CASBucket is implemented by buckets that can replace an object only if its
// current ETag matches, which the bucket-backed metadata store needs. Detect
// it with a type assertion.
type CASBucket interface {
	Bucket
	// PutIfMatch replaces the object only if it exists and its current ETag
	// equals etag, atomically; otherwise it returns ErrPrecondition.
	PutIfMatch(ctx context.Context, key string, data []byte, etag string) (ObjectInfo, error)
}

// ValidateKey reports whether key is acceptable to every backend. The error
// wraps ErrInvalidKey and names the key and the rule it broke.
func ValidateKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why)
	}
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	case !utf8.ValidString(key):
		return bad("not valid UTF-8")
	case strings.IndexByte(key, 0) >= 0:
		return bad("contains NUL")
	case strings.IndexByte(key, '\\') >= 0:
		return bad(`contains '\'`)
	case key[0] == '/':
		return bad("absolute (leading '/')")
	case key[len(key)-1] == '/':
		return bad("trailing '/'")
	}
	for c := range strings.SplitSeq(key, "/") {
		switch c {
		case "":
			return bad("empty path component")
		case ".", "..":
			return bad(fmt.Sprintf("path component %q", c))
		}
	}
	return nil
}

// Getter is the part of a Bucket that ReadAll needs.
type Getter interface {
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, ObjectInfo, error)
}

// Lister is the part of a Bucket that ListAll needs.
type Lister interface {
	List(ctx context.Context, opts ListOptions) ([]ObjectInfo, error)
}

// ReadAll reads the whole object under key.
func ReadAll(ctx context.Context, b Getter, key string) ([]byte, ObjectInfo, error) {
	rc, info, err := b.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, info, err
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, max(info.Size, 0)+bytes.MinRead))
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, info, fmt.Errorf("objstore: read %q: %w", key, err)
	}
	return buf.Bytes(), info, nil
}

// ListAll pages through every object whose key starts with prefix, calling fn
// for each in ascending key order, pageSize keys per List call (0 means 1000).
// It stops early and returns the error when fn fails.
func ListAll(ctx context.Context, b Lister, prefix string, pageSize int, fn func(ObjectInfo) error) error {
	if pageSize <= 0 {
		pageSize = 1000
	}
	after := ""
	for {
		page, err := b.List(ctx, ListOptions{Prefix: prefix, StartAfter: after, Limit: pageSize})
		if err != nil {
			return err
		}
		for _, o := range page {
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		after = page[len(page)-1].Key
	}
}
