// Package wal is woodpecker's ordered-durability write-ahead log engine: dense
// 64-bit entry indexes, appends acknowledged strictly in index order,
// batching into fragment objects, segment rolling, prefix and suffix
// truncation, readers from any position, fencing of zombie writers, crash
// recovery and garbage collection, over an objstore.Bucket and a meta.Store.
//
// # Guarantees
//
//   - An append acknowledged (Append returned nil, or its Future resolved
//     with nil) is durable: it survives any crash of the writer and is read
//     back, unchanged, by every later reader and writer, until the log is
//     truncated past it.
//   - Acknowledgements happen strictly in index order, with no hole: when
//     entry i is acknowledged, every entry below it (since the last
//     truncation) is too.
//   - One writer per log: opening a writer fences the previous one, which
//     from then on cannot make anything durable; its pending and later calls
//     fail with ErrFenced.
//   - Corrupted data is detected by CRC-32C checksums and reported as
//     ErrCorrupt naming the object, never returned as data.
//   - An append that failed may or may not be in the log after recovery.
//   - A Future resolves from the outcome of the fragment holding its last
//     entry, never from another fragment that covered the same indexes
//     before a truncation.
//   - In the writer's process, Get, bounds and readers see exactly what is
//     acknowledged, as one consistent view published by the writer; a
//     failed writer's acknowledged entries stay readable until it closes.
//     Readers in other processes see what the bucket holds, a poll late.
//   - A writer's record updates are fenced by (log ID, epoch): a log
//     deleted and created again under the same name is a new incarnation
//     that no writer of the old one can touch.
//
// # Layout
//
// Each log has one metadata record ("<prefix>/logs/<name>" in the meta
// store) holding the writer epoch, the truncation point and the list of
// segments; and fragment objects "<prefix>/<name>/<id>/s/<segment>/<seq>" in
// the bucket (see FORMAT.md). A fragment holds a batch of consecutive
// entries; fragments of a segment hold contiguous index ranges.
package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/woodpecker-wal/woodpecker/internal/vfs"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// The errors of the logstore contract, which the engine returns (see the
// logstore package for what each means).
var (
	ErrFenced             = logstore.ErrFenced
	ErrLogNotFound        = logstore.ErrLogNotFound
	ErrLogExists          = logstore.ErrLogExists
	ErrTruncated          = logstore.ErrTruncated
	ErrOutOfRange         = logstore.ErrOutOfRange
	ErrBadIndex           = logstore.ErrBadIndex
	ErrClosed             = logstore.ErrClosed
	ErrCorrupt            = logstore.ErrCorrupt
	ErrUnsupportedVersion = logstore.ErrUnsupportedVersion
	ErrBroken             = logstore.ErrBroken
	ErrLostTail           = logstore.ErrLostTail
)

// LostTailError is logstore's: entries above After may be lost.
type LostTailError = logstore.LostTailError

// Config configures a Client. Zero values mean the documented defaults. The
// policy names follow Zilliz Woodpecker's woodpecker.yaml (docs/design.md,
// "Configuration names").
type Config struct {
	// Bucket holds the fragments. Required.
	Bucket objstore.Bucket
	// Meta holds one record per log. Required.
	Meta meta.Store
	// Prefix namespaces this deployment's keys in both stores. Default "wal".
	Prefix string

	// MaxInterval is how long an asynchronous append may wait for more
	// appends to share its fragment. Synchronous appends never wait for it.
	// Default 2ms.
	MaxInterval time.Duration
	// MaxEntries flushes a fragment once this many entries are pending.
	// Default 100000.
	MaxEntries int
	// MaxBytes flushes a fragment once this many payload bytes are pending.
	// Default 4 MiB.
	MaxBytes int
	// MaxFlushSize caps one fragment's payload. Default 8 MiB; at most 15 MiB
	// (fragments must stay single-part PUTs).
	MaxFlushSize int
	// MaxQueueBytes bounds the payload bytes appended but not yet
	// acknowledged (woodpecker.yaml's queueSize, in bytes): AppendAsync
	// blocks while more would be queued, so memory stays bounded when the
	// store is slower than the appenders. A single append larger than the
	// bound is admitted when nothing else is queued. Default 64 MiB.
	MaxQueueBytes int
	// MaxFlushThreads is how many fragments may be in flight at once.
	// Default 4.
	MaxFlushThreads int
	// RetryBudget is the outage a writer rides out: a fragment PUT, fence
	// or record update failing with a transient error (a timeout, a 5xx,
	// connection refused, a lost reply) is retried with backoff until this
	// long after its first failure; then the writer is ErrBroken. The
	// engine is the only layer that retries these (see retry.go). Default
	// 30s.
	RetryBudget time.Duration
	// MaxFlushRetries, when positive, also caps the retries of one such
	// operation. Default 0: only RetryBudget bounds them.
	MaxFlushRetries int
	// RetryInterval is the first retry's longest backoff; it doubles each
	// time, up to 64 times this, and each wait is drawn from the upper half
	// of its bound. Default 50ms.
	RetryInterval time.Duration
	// RequestTimeout bounds each attempt of a fragment PUT, its read-back,
	// and each metadata update the writer makes, so a hung store turns
	// into retries and then ErrBroken instead of a hang (Close included).
	// Default 10s.
	RequestTimeout time.Duration

	// SegmentMaxFragments rolls a segment after this many fragments, so
	// recovery's LIST stays short. Default 10000.
	SegmentMaxFragments int
	// SegmentMaxBytes rolls a segment after this many payload bytes.
	// Default 2 GB.
	SegmentMaxBytes int64
	// SegmentMaxAge rolls a segment this long after it opened, on Clock
	// (checked when the next fragment is cut). Default 10 minutes.
	SegmentMaxAge time.Duration

	// Compression of fragment payloads. Default none.
	Compression codec.Compression

	// CacheBytes bounds the cache of decoded fragments and recent entries.
	// Default 64 MiB.
	CacheBytes int64

	// Prefetch is how many fragments ahead of a sequential reader are
	// fetched in the background (and how many such GETs a client runs at
	// once). Default 4; negative disables.
	Prefetch int

	// GCGrace is how long a segment marked deleted keeps its objects, so
	// readers positioned in it can finish. Measured on this process's
	// Clock from when it saw the mark. Default 10 minutes.
	GCGrace time.Duration
	// ReaderLease, when positive, makes every Reader keep a lease record
	// with its position in the metadata store, renewed every third of this
	// period while it reads or waits; GC in any process keeps the segments
	// at and after the position of every lease renewed within the period
	// (as observed on the collecting process's own clock). Default 0: only
	// readers in the collecting process are respected.
	ReaderLease time.Duration
	// GCInterval is how often, on Clock, the client's janitor collects the
	// garbage of every log (Client.GC), whether or not a writer is open
	// anywhere. The janitor is the engine's only GC scheduler. Default 1
	// minute; negative disables it (then call GC yourself).
	GCInterval time.Duration
	// PollInterval is the longest a tailing reader waits between polls of
	// the bucket when no in-process writer wakes it. Default 200ms.
	PollInterval time.Duration

	// LocalDir, when set, turns on tiered mode: an append is acknowledged
	// once it is written and fdatasynced to a local segment under
	// LocalDir/<Prefix>/<log> (one write and one fdatasync for everything
	// pending: group commit), and an uploader ships it to the bucket as
	// fragments, in index order, through the same fenced protocol, every
	// UploadInterval or once MaxFlushSize is pending. What survives what:
	//
	//   - A crash or power loss with the same LocalDir: every acknowledged
	//     entry. The next writer opened on this LocalDir recovers the local
	//     tier and uploads it — unless another writer took the log over
	//     meanwhile: then the local tail is discarded (and logged), never
	//     uploaded over the new owner's history.
	//   - LocalDir lost, or the log taken over by a writer elsewhere, before
	//     a clean Close: the log is what was uploaded, and opening a writer
	//     fails with a *LostTailError (entries above After may have been
	//     acknowledged and lost) until one opened with AcceptLostTail
	//     clears it.
	//   - A fenced tiered writer notices at its next upload: until then (up
	//     to about UploadInterval) it goes on acknowledging locally, and
	//     those acknowledgements are lost.
	//
	// Readers in the writer's process see what is locally durable; readers
	// elsewhere see what is uploaded. Empty means object-synchronous mode:
	// every acknowledgement is a PUT.
	LocalDir string
	// UploadInterval is how often the uploader ships what is locally
	// durable: about 1/UploadInterval fragment PUTs a second per busy log.
	// Default 1s (README, "Tiered mode": the cost table).
	UploadInterval time.Duration
	// MaxUploadLag bounds what is acknowledged and not uploaded, in payload
	// bytes (also the memory it holds) and in age: beyond either, appends
	// block until the uploader catches up. Defaults 64 MiB and 30s.
	MaxUploadLag     int
	MaxUploadLagTime time.Duration
	// LocalSegmentSize is the size local segments are zero-filled to.
	// Default 16 MiB.
	LocalSegmentSize int64
	// LocalFS is the filesystem of the local tier; nil is the real one.
	// Tests pass vfs.NewStrict to simulate power loss.
	LocalFS vfs.FS

	// Clock is the time every duration of the engine is measured on:
	// MaxInterval batching, segment age (SegmentMaxAge), RequestTimeout,
	// retry waits and RetryBudget, GCGrace, GCInterval, ReaderLease
	// renewal and expiry, PollInterval, and the latencies of the metrics.
	// nil is the real clock. Tests pass clockwork's fake clock to control
	// segment age, grace periods and leases; on it time passes only when
	// the test advances it, so an asynchronous append waits for MaxInterval
	// to pass there (Flush or a synchronous Append does not wait).
	Clock clockwork.Clock

	// Logger receives lifecycle (Info) and retry (Warn) records. nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the engine's Prometheus metrics (names prefixed
	// woodpecker_wal_). nil registers nothing; Client.Stats works anyway.
	//
	// Any number of clients may share one Registerer, also one after
	// another (Close, then Open again): they share its counters and
	// histograms, which count the activity of all of them and never go
	// down, and the cache metrics sum over the clients open on it (a
	// closed client's cache hits and misses stay counted, its cache bytes
	// do not). To tell clients apart, give each its own labels:
	// prometheus.WrapRegistererWith(prometheus.Labels{"node": id}, reg).
	// Registering panics only if another collector already uses one of
	// these names with a different type, help or labels.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Prefix == "" {
		c.Prefix = "wal"
	}
	defDur(&c.MaxInterval, 2*time.Millisecond)
	def(&c.MaxEntries, 100000)
	def(&c.MaxBytes, 4<<20)
	def(&c.MaxFlushSize, 8<<20)
	def(&c.MaxFlushThreads, 4)
	def(&c.MaxQueueBytes, 64<<20)
	defDur(&c.RetryBudget, 30*time.Second)
	defDur(&c.RetryInterval, 50*time.Millisecond)
	defDur(&c.RequestTimeout, 10*time.Second)
	def(&c.SegmentMaxFragments, 10000)
	if c.SegmentMaxBytes == 0 {
		c.SegmentMaxBytes = 2_000_000_000
	}
	defDur(&c.SegmentMaxAge, 10*time.Minute)
	if c.CacheBytes == 0 {
		c.CacheBytes = 64 << 20
	}
	def(&c.Prefetch, 4)
	if c.Prefetch < 0 {
		c.Prefetch = 0
	}
	defDur(&c.GCGrace, 10*time.Minute)
	defDur(&c.GCInterval, time.Minute)
	defDur(&c.PollInterval, 200*time.Millisecond)
	defDur(&c.UploadInterval, time.Second)
	def(&c.MaxUploadLag, 64<<20)
	defDur(&c.MaxUploadLagTime, 30*time.Second)
	if c.LocalSegmentSize == 0 {
		c.LocalSegmentSize = 16 << 20
	}
	if c.LocalFS == nil {
		c.LocalFS = vfs.OS
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("wal: Config.%s = %v: %s", field, v, why)
	}
	switch {
	case c.Bucket == nil:
		return errors.New("wal: Config.Bucket is required")
	case c.Meta == nil:
		return errors.New("wal: Config.Meta is required")
	case codec.ValidateLogPrefix(c.Prefix) != nil:
		return bad("Prefix", fmt.Sprintf("%q", c.Prefix), "want components of [0-9a-z_] separated by '/'")
	case c.MaxInterval < 0:
		return bad("MaxInterval", c.MaxInterval, "must not be negative")
	case c.MaxEntries < 1 || c.MaxEntries > codec.MaxEntries:
		return bad("MaxEntries", c.MaxEntries, fmt.Sprintf("want 1..%d", codec.MaxEntries))
	case c.MaxFlushSize < 1 || c.MaxFlushSize > 15<<20:
		return bad("MaxFlushSize", c.MaxFlushSize, "want 1..15 MiB (fragments are single-part PUTs)")
	case c.MaxBytes < 1:
		return bad("MaxBytes", c.MaxBytes, "must be positive")
	case c.MaxQueueBytes < 1:
		return bad("MaxQueueBytes", c.MaxQueueBytes, "must be positive")
	case c.MaxFlushThreads < 1 || c.MaxFlushThreads > 64:
		return bad("MaxFlushThreads", c.MaxFlushThreads, "want 1..64")
	case c.MaxFlushRetries < 0:
		return bad("MaxFlushRetries", c.MaxFlushRetries, "must not be negative")
	case c.RetryBudget < 0:
		return bad("RetryBudget", c.RetryBudget, "must not be negative")
	case c.RetryInterval < 0:
		return bad("RetryInterval", c.RetryInterval, "must not be negative")
	case c.RequestTimeout < 0:
		return bad("RequestTimeout", c.RequestTimeout, "must not be negative")
	case c.SegmentMaxFragments < 1:
		return bad("SegmentMaxFragments", c.SegmentMaxFragments, "must be positive")
	case c.SegmentMaxBytes < 1:
		return bad("SegmentMaxBytes", c.SegmentMaxBytes, "must be positive")
	case c.Compression > codec.CompressionS2:
		return bad("Compression", c.Compression, "unknown codec")
	case c.UploadInterval < 0:
		return bad("UploadInterval", c.UploadInterval, "must not be negative")
	case c.MaxUploadLag < 0:
		return bad("MaxUploadLag", c.MaxUploadLag, "must not be negative")
	case c.MaxUploadLagTime < 0:
		return bad("MaxUploadLagTime", c.MaxUploadLagTime, "must not be negative")
	case c.LocalSegmentSize < 0:
		return bad("LocalSegmentSize", c.LocalSegmentSize, "must not be negative")
	case c.CacheBytes < 0:
		return bad("CacheBytes", c.CacheBytes, "must not be negative")
	}
	return nil
}

// ValidateLogName reports whether name can name a log: 1 to 64 bytes of
// [0-9a-z_].
func ValidateLogName(name string) error { return logstore.ValidateLogName(name) }
