// Package logstore is the seam between the Raft adapters and a log engine:
// the small interfaces an adapter needs from a client of ordered,
// fenced, durable logs — Client, Log, Writer, Reader, Future — and a blob
// store (Blobs) for the objects an adapter keeps beside its log, such as
// snapshots.
//
// The embedded engine satisfies them through [wal.Client.LogStore]; a
// client of a remote log service satisfies them the same way, so the
// adapters (adapters/hashiraft, adapters/etcdraft) and the conformance
// suites run unchanged on either. The package has no dependency beyond the
// object-store contract: it links no engine and no backend.
//
// # Semantics
//
// The contract is the engine's (see the wal package documentation and
// docs/design.md): dense uint64 indexes; appends acknowledged strictly in
// index order and durable when acknowledged; one writer per log, a newer
// writer fencing the older (ErrFenced); errors are the sentinels below,
// matched with errors.Is. An error that is none of them leaves a write
// ambiguous: it may or may not be in the log, which the next writer's
// recovery decides.
//
// [wal.Client.LogStore]: https://pkg.go.dev/github.com/woodpecker-wal/woodpecker/wal#Client.LogStore
package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

var (
	// ErrFenced is returned by a writer after another writer opened the
	// same log: nothing it writes from then on becomes part of the log.
	ErrFenced = errors.New("wal: writer fenced by a newer writer")
	// ErrLogNotFound is returned when the named log does not exist.
	ErrLogNotFound = errors.New("wal: log not found")
	// ErrLogExists is returned by CreateLog when the log already exists.
	ErrLogExists = errors.New("wal: log already exists")
	// ErrTruncated is returned when an index below the log's first index,
	// or removed by TruncateBack, is read.
	ErrTruncated = errors.New("wal: entry truncated")
	// ErrOutOfRange is returned when an index above the log's last index
	// is read with Get.
	ErrOutOfRange = errors.New("wal: index beyond the end of the log")
	// ErrBadIndex is returned by Append when the first index would leave a
	// gap or go backwards, and by truncations given an invalid index.
	ErrBadIndex = errors.New("wal: bad index")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("wal: closed")
	// ErrCorrupt is returned when stored data fails its checksums or does
	// not decode; the error names the object. Never returned as data.
	ErrCorrupt = errors.New("corrupt data")
	// ErrUnsupportedVersion is returned for data written in a format this
	// version does not know (by a newer writer); it never means damaged.
	ErrUnsupportedVersion = errors.New("unsupported data format")
	// ErrBroken is returned by a writer after a write failed in a way it
	// could not resolve (retries exhausted): what landed is decided by the
	// next writer's recovery. Open a new writer.
	ErrBroken = errors.New("wal: writer broken by an unresolved write; reopen it")
	// ErrLostTail is returned (as a *LostTailError) when a writer opens a
	// log whose earlier tiered writer lost its local tier, or was taken
	// over, before it uploaded entries it had acknowledged: entries above
	// LostTailError.After may be lost. See LostTailError.
	ErrLostTail = errors.New("wal: acknowledged entries may have been lost")
)

const (
	// Earliest starts a reader at the log's first index.
	Earliest uint64 = 0
	// Latest starts a reader after the log's last durable index: it sees
	// only entries appended later.
	Latest uint64 = math.MaxUint64
)

// ValidateLogName reports whether name can name a log: 1 to 64 bytes of
// [0-9a-z_].
func ValidateLogName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("wal: log name %q: want 1 to 64 bytes of [0-9a-z_]", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '_') {
			return fmt.Errorf("wal: log name %q: byte %q at %d is not in [0-9a-z_]", name, c, i)
		}
	}
	return nil
}

// WriterID names a writer for Log.ReopenWriter: the log incarnation (a
// random ID chosen when the log was created), the epoch the writer held, and
// its owner token (chosen by OpenWriter and inherited by every reopen).
type WriterID struct {
	LogID, Epoch, Owner uint64
}

// Limits are the client's settings an adapter sizes its own calls by.
type Limits struct {
	// MaxEntrySize is the largest entry an append accepts, in bytes.
	MaxEntrySize int
	// MaxMetaSize bounds the total size of a log's metadata values
	// (Writer.SetMeta).
	MaxMetaSize int
	// RetryWindow is how long the client goes on retrying one operation
	// after its first failure; RetryWindowSource names the settings that
	// set it, for error messages.
	RetryWindow       time.Duration
	RetryWindowSource string
	// OperationBound is how long one operation may take against a failing
	// store; a caller's timeout for one operation should be at least this.
	OperationBound time.Duration
	// RequestTimeout bounds one attempt of one request to the stores, and
	// RetryInterval is the first wait between attempts: an adapter that
	// retries its own blob writes uses them.
	RequestTimeout time.Duration
	RetryInterval  time.Duration
}

// Client opens and manages logs.
type Client interface {
	// CreateLog creates an empty log, or returns ErrLogExists.
	CreateLog(ctx context.Context, name string) error
	// OpenLog returns a handle on an existing log, or ErrLogNotFound.
	OpenLog(ctx context.Context, name string) (Log, error)
	// DeleteLog deletes a log and fences its writers.
	DeleteLog(ctx context.Context, name string) error
	// ListLogs returns the names of the logs, sorted.
	ListLogs(ctx context.Context) ([]string, error)
	// Blobs returns the blob store kept beside the named log; its keys are
	// relative to that log's area, and deleting the log does not delete
	// them.
	Blobs(name string) Blobs
	// Limits returns the client's settings an adapter sizes its calls by.
	Limits() Limits
	// Close releases the client; close its writers first.
	Close() error
}

// Log is a handle on one log: reads from any process, and the way to
// become its writer.
type Log interface {
	Name() string
	// FirstIndex and LastIndex return the durable bounds, 0 and 0 for an
	// empty log.
	FirstIndex(ctx context.Context) (uint64, error)
	LastIndex(ctx context.Context) (uint64, error)
	// Get returns entry i, or ErrTruncated below the bounds and
	// ErrOutOfRange above them.
	Get(ctx context.Context, i uint64) ([]byte, error)
	// Meta returns the log's small key/value metadata.
	Meta(ctx context.Context) (map[string][]byte, error)
	// NewReader reads entries in order from index from (Earliest, Latest or
	// an index), waiting for new ones at the end.
	NewReader(ctx context.Context, from uint64) (Reader, error)
	// OpenWriter makes the caller the log's one writer, fencing any other.
	OpenWriter(ctx context.Context) (Writer, error)
	// ReopenWriter takes the log back for the writer id names, only if no
	// other writer opened it since; otherwise it returns ErrFenced.
	ReopenWriter(ctx context.Context, id WriterID) (Writer, error)
}

// Writer appends to and truncates one log. Acknowledgements come strictly
// in index order.
type Writer interface {
	ID() WriterID
	// FirstIndex and LastIndex are the bounds counting queued, not yet
	// durable operations (0 for an empty log); DurableIndex is the last
	// acknowledged index.
	FirstIndex() uint64
	LastIndex() uint64
	DurableIndex() uint64
	// Append appends entries at first (LastIndex()+1, or any index when the
	// log is empty) and returns when they are durable.
	Append(ctx context.Context, first uint64, entries [][]byte) error
	// AppendAsync queues entries and returns their Future.
	AppendAsync(first uint64, entries [][]byte) Future
	// Flush starts writing what is queued without waiting for more.
	Flush()
	// Sync returns when everything queued before it is durable.
	Sync(ctx context.Context) error
	// TruncateFront drops entries below i; TruncateBack drops entries
	// above i.
	TruncateFront(ctx context.Context, i uint64) error
	TruncateBack(ctx context.Context, i uint64) error
	// Meta returns the log's metadata as of the last durable SetMeta;
	// SetMeta merges kv into it (a nil value deletes a key), durably, once
	// every operation queued before it is durable.
	Meta() map[string][]byte
	SetMeta(ctx context.Context, kv map[string][]byte) error
	// Reopen closes the writer and takes its log back with
	// ReopenWriter(ID()): the way to resume after ErrBroken.
	Reopen(ctx context.Context) (Writer, error)
	// Close flushes and waits for every queued operation, then releases
	// the log; it returns the writer's failure, if any.
	Close() error
}

// Reader reads a log's entries in index order.
type Reader interface {
	// Next returns the next entry, waiting for it at the end of the log
	// until ctx is done.
	Next(ctx context.Context) (uint64, []byte, error)
	Close() error
}

// Future is the pending result of an asynchronous append.
type Future interface {
	// Done is closed when the result is known.
	Done() <-chan struct{}
	// Err returns the result, waiting for it.
	Err() error
	// Wait waits for the result or for ctx; a ctx error does not cancel
	// the append.
	Wait(ctx context.Context) error
}

// Blobs is a store of whole objects beside a log, with the object-store
// contract (see the objstore package): keys valid for objstore.ValidateKey,
// a write durable when it returns, PutIfAbsent atomic. An objstore.Bucket
// restricted to a key prefix is one.
type Blobs interface {
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error)
	Head(ctx context.Context, key string) (objstore.ObjectInfo, error)
	PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error)
	Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error)
}

// LostTailError reports that entries above After may have been acknowledged
// by a tiered writer and lost: its local tier was lost (disk loss), or the
// log was taken over from another local tier, before they were uploaded.
// The log holds entries up to After (or fewer, after truncations).
//
// The marker is kept in the log's record, across crashes and clean closes,
// until the writer clears it naming the same After: opening a writer fails
// with this error until the caller acknowledges the point (wal's
// AcceptLostTail option), and Raft adapters use it to keep a node that may
// have forgotten acknowledged entries from voting.
type LostTailError struct {
	Log   string
	After uint64
	// Epoch is the writer epoch that found the earlier tier gone.
	Epoch uint64
}

func (e *LostTailError) Error() string {
	return fmt.Sprintf("%v: log %q: entries above index %d may have been acknowledged by a tiered writer and lost (found by epoch %d)",
		ErrLostTail, e.Log, e.After, e.Epoch)
}

// Is makes errors.Is(err, ErrLostTail) hold.
func (e *LostTailError) Is(target error) bool { return target == ErrLostTail }
