// Package meta is woodpecker's small metadata store: versioned key/value
// records with compare-and-swap, sized for per-log and per-segment records,
// never per entry. The backends are subpackages that register their URL
// scheme with [Open] when linked: meta/etcd (clientv3 transactions on
// ModRevision), meta/bucket (records as objects updated with If-Match /
// If-None-Match, the zero-service default) and meta/mem. This package links
// none of them.
//
// # Contract
//
// Keys are validated by [ValidateKey]. Values are at most [MaxValueSize]
// bytes. Every record carries an opaque [Version] that changes on every
// successful write and never repeats for a key, also across delete and
// re-create. A write returns only after it is durable in the backend.
//
// Create succeeds only when the key is absent; Update and Delete only when the
// record's current version equals the given one. Any mismatch, including a
// record that no longer exists, is [ErrPrecondition]: the caller re-reads and
// decides. Exactly one of N concurrent Create calls for one key succeeds, and
// of N concurrent Update calls holding the same version, at most one succeeds.
//
// An error that is none of the sentinels leaves the write ambiguous: it may
// or may not have been applied. Re-read to find out.
//
// # Concurrency
//
// Every Store is safe for concurrent use, and the CAS guarantees hold across
// processes sharing the backend.
package meta

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound is returned by Get when the key holds no record.
	ErrNotFound = errors.New("meta: record not found")
	// ErrExists is returned by Create when the key already holds a record.
	ErrExists = errors.New("meta: record already exists")
	// ErrPrecondition is returned by Update and Delete when the record's
	// current version is not the expected one (or the record is gone).
	ErrPrecondition = errors.New("meta: version mismatch")
	// ErrInvalidKey is returned for a key ValidateKey rejects.
	ErrInvalidKey = errors.New("meta: invalid key")
	// ErrTooLarge is returned for a value larger than MaxValueSize.
	ErrTooLarge = errors.New("meta: value too large")
	// ErrClosed is returned by a store that has been closed.
	ErrClosed = errors.New("meta: store closed")
)

// MaxValueSize is the largest record value accepted. etcd rejects requests
// over 1.5 MiB; records are meant to be far smaller.
const MaxValueSize = 1 << 20

// Version identifies one state of a record. It is opaque: compare versions
// only for equality. The zero Version is never the version of a record.
type Version string

// Record is one key with its value and version.
type Record struct {
	Key     string
	Value   []byte
	Version Version
}

// Store is a versioned key/value store with compare-and-swap.
type Store interface {
	// Get returns the record under key, or ErrNotFound. The returned value is
	// owned by the caller.
	Get(ctx context.Context, key string) (Record, error)

	// Create writes a new record and returns its version, or ErrExists if
	// the key already holds one.
	Create(ctx context.Context, key string, value []byte) (Version, error)

	// Update replaces the record if its current version is ver, returning the
	// new version, or ErrPrecondition.
	Update(ctx context.Context, key string, value []byte, ver Version) (Version, error)

	// Delete removes the record if its current version is ver, or returns
	// ErrPrecondition.
	Delete(ctx context.Context, key string, ver Version) error

	// List returns every record whose key starts with prefix, in ascending
	// key order. The prefix is a plain string prefix; it may be empty.
	List(ctx context.Context, prefix string) ([]Record, error)

	// Close releases the store's resources; later calls fail with ErrClosed.
	// Close is idempotent.
	Close() error
}

// EventType says what happened to a watched record.
type EventType int

const (
	// EventPut means the record was created or updated.
	EventPut EventType = iota + 1
	// EventDelete means the record was deleted.
	EventDelete
)

// Event is one change seen by a watch. For EventDelete, Record.Value is nil.
type Event struct {
	Type   EventType
	Record Record
}

// Watcher is implemented by stores that can push changes. Detect it with a
// type assertion; callers without it poll.
type Watcher interface {
	// Watch delivers changes to records whose keys start with prefix, made
	// after the call, until ctx is done; then the channel is closed. A slow
	// consumer may miss intermediate versions of a record but always sees
	// its latest state eventually.
	Watch(ctx context.Context, prefix string) (<-chan Event, error)
}

// ValidateKey reports whether key is acceptable to every backend: one or more
// '/'-separated components, each non-empty, made of [0-9a-z_.-] and neither
// "." nor "..", at most 512 bytes in all. The error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why)
	}
	if key == "" {
		return bad("empty")
	}
	if len(key) > 512 {
		return bad("longer than 512 bytes")
	}
	for c := range strings.SplitSeq(key, "/") {
		if c == "" {
			return bad("empty component")
		}
		if c == "." || c == ".." {
			return bad(fmt.Sprintf("component %q", c))
		}
		for i := 0; i < len(c); i++ {
			if !keyChar(c[i]) {
				return bad(fmt.Sprintf("character %q not in [0-9a-z_.-]", c[i]))
			}
		}
	}
	return nil
}

func keyChar(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b == '_' || b == '.' || b == '-'
}

// CheckWrite validates the key and the value of a write.
func CheckWrite(key string, value []byte) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	return CheckValue(key, value)
}

// CheckValue validates a value's size.
func CheckValue(key string, v []byte) error {
	if len(v) > MaxValueSize {
		return fmt.Errorf("%w: %q is %d bytes, limit %d", ErrTooLarge, key, len(v), MaxValueSize)
	}
	return nil
}

// CheckPrefix validates a List/Watch prefix: empty, or a string that could
// begin a valid key.
func CheckPrefix(prefix string) error {
	for i := 0; i < len(prefix); i++ {
		if b := prefix[i]; b != '/' && !keyChar(b) {
			return fmt.Errorf("%w: prefix %q: character %q not in [0-9a-z_.-/]", ErrInvalidKey, prefix, b)
		}
	}
	return nil
}
