package hashiraft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/raftlog"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

var _ raft.SnapshotStore = (*SnapshotStore)(nil)

// Snapshot layout constants: part of the stored format (see FORMAT.md),
// never change them.
const (
	snapMetaDir   = "meta" // <prefix>/meta/<id>: the published metadata, written last
	snapDataDir   = "data" // <prefix>/data/<id>/<20-digit chunk number>: the bytes
	snapFormat    = 1      // snapshotRecord.Format
	snapIDPattern = "%020d_%020d_%016x"
)

// SnapshotStore is a raft.SnapshotStore in a blob store (a bucket). A
// snapshot is a run of chunk objects of Options.SnapshotChunkSize bytes and a
// metadata object written after them: a snapshot is visible exactly when its
// metadata object exists, so Close publishes it atomically and a crash or
// Cancel leaves nothing visible. A failed Close leaves either nothing
// visible or a complete snapshot, never a listed one missing data; metadata
// is always deleted before the chunks it describes. Chunks are written as
// the sink fills them, so neither a sink nor a reader holds more than one
// chunk in memory. The metadata records the exact size and each chunk's
// CRC-32C, which the reader checks before returning any byte of the chunk.
//
// After a successful Close the store keeps the Options.SnapshotRetain newest
// snapshots (by index, then term) and deletes the rest, except those a
// reader in this process has open (they go at a later Close). It is safe for
// concurrent use. Snapshots are not fenced by the writer epoch: a zombie
// process can still publish one, which is harmless because a snapshot only
// ever holds committed state.
type SnapshotStore struct {
	b       logstore.Blobs
	prefix  string
	retain  int
	chunk   int
	timeout time.Duration
	lg      *slog.Logger

	mu struct {
		sync.Mutex
		writing map[string]bool // sinks open in this process
		reading map[string]int  // open readers per snapshot
	}
}

// NewSnapshotStore returns a SnapshotStore keeping its objects under prefix
// (components of [0-9a-z_] separated by '/') in b, configured by opts'
// SnapshotRetain, SnapshotChunkSize, CallTimeout and Logger. Store.Snapshots
// returns one beside the log; use this to keep snapshots elsewhere.
func NewSnapshotStore(b logstore.Blobs, prefix string, opts Options) (*SnapshotStore, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := codec.ValidateLogPrefix(prefix); err != nil {
		return nil, fmt.Errorf("hashiraft: snapshot prefix %q: want components of [0-9a-z_] separated by '/'", prefix)
	}
	s := &SnapshotStore{b: b, prefix: prefix, retain: opts.SnapshotRetain, chunk: opts.SnapshotChunkSize,
		timeout: opts.CallTimeout, lg: opts.Logger}
	s.mu.writing = make(map[string]bool)
	s.mu.reading = make(map[string]int)
	return s, nil
}

// snapshotRecord is the metadata object's JSON body.
type snapshotRecord struct {
	Format             int                  `json:"format"`
	Version            raft.SnapshotVersion `json:"version"`
	ID                 string               `json:"id"`
	Index              uint64               `json:"index"`
	Term               uint64               `json:"term"`
	Configuration      raft.Configuration   `json:"configuration"`
	ConfigurationIndex uint64               `json:"configuration_index"`
	Size               int64                `json:"size"`
	ChunkSize          int                  `json:"chunk_size"`
	// ChunkCRCs holds the CRC-32C (Castagnoli) of each chunk, in order.
	ChunkCRCs []uint32 `json:"chunk_crc32c"`
}

func (r *snapshotRecord) meta() *raft.SnapshotMeta {
	return &raft.SnapshotMeta{
		Version: r.Version, ID: r.ID, Index: r.Index, Term: r.Term,
		Configuration: r.Configuration, ConfigurationIndex: r.ConfigurationIndex, Size: r.Size,
	}
}

func (s *SnapshotStore) metaKey(id string) string { return s.prefix + "/" + snapMetaDir + "/" + id }

func (s *SnapshotStore) dataPrefix(id string) string {
	return s.prefix + "/" + snapDataDir + "/" + id + "/"
}

func (s *SnapshotStore) chunkKey(id string, n uint64) string {
	return fmt.Sprintf("%s%020d", s.dataPrefix(id), n)
}

// parseID returns the index and term an ID names.
func parseID(id string) (index, term uint64, ok bool) {
	parts := strings.Split(id, "_")
	if len(parts) != 3 || len(parts[0]) != 20 || len(parts[1]) != 20 || len(parts[2]) != 16 {
		return 0, 0, false
	}
	index, err1 := strconv.ParseUint(parts[0], 10, 64)
	term, err2 := strconv.ParseUint(parts[1], 10, 64)
	_, err3 := strconv.ParseUint(parts[2], 16, 64)
	return index, term, err1 == nil && err2 == nil && err3 == nil
}

// retry runs fn until it succeeds, fails permanently, or the store's call
// timeout passes.
func (s *SnapshotStore) retry(what string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	attempts, err := s.retrier(what).Do(ctx, fn)
	switch {
	case err == nil:
		return nil
	case permanentSnapErr(err):
		return fmt.Errorf("hashiraft: snapshot: %s: %w", what, err)
	default:
		return fmt.Errorf("hashiraft: snapshot: %s: gave up after %d attempts: %w", what, attempts, err)
	}
}

// retrier is how the store retries one request: until its call timeout,
// logging each retry.
func (s *SnapshotStore) retrier(what string) raftlog.Retry {
	return raftlog.Retry{Policy: raftlog.CallRetry, Permanent: permanentSnapErr, OnRetry: func(attempt int, err error) {
		s.lg.Warn("hashiraft: snapshot request failed; retrying", "what", what, "attempt", attempt, "err", err)
	}}
}

// permanentSnapErr reports a failure no retry of a snapshot request mends.
func permanentSnapErr(err error) bool {
	return errors.Is(err, objstore.ErrNotFound) || errors.Is(err, objstore.ErrInvalidKey) ||
		errors.Is(err, objstore.ErrClosed) || errors.Is(err, logstore.ErrCorrupt)
}

// Create starts a snapshot. Only version 1 is supported (as by raft's own
// stores). The sink writes chunks as it fills them; Close publishes.
func (s *SnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("hashiraft: snapshot: unsupported snapshot version %d", version)
	}
	id := fmt.Sprintf(snapIDPattern, index, term, rand.Uint64())
	s.mu.Lock()
	s.mu.writing[id] = true
	s.mu.Unlock()
	return &snapshotSink{
		s: s,
		rec: snapshotRecord{Format: snapFormat, Version: version, ID: id, Index: index, Term: term,
			Configuration: cloneConfiguration(configuration), ConfigurationIndex: configurationIndex, ChunkSize: s.chunk},
		buf: make([]byte, 0, s.chunk),
	}, nil
}

func cloneConfiguration(c raft.Configuration) raft.Configuration {
	return raft.Configuration{Servers: slices.Clone(c.Servers)}
}

// List returns the published snapshots, newest (highest index, then term)
// first, at most SnapshotRetain of them. A metadata object that does not
// decode is skipped with a warning.
func (s *SnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	recs, err := s.list()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, 0, min(len(recs), s.retain))
	for _, r := range recs[:min(len(recs), s.retain)] {
		out = append(out, r.meta())
	}
	return out, nil
}

// list returns every published snapshot, newest first.
func (s *SnapshotStore) list() ([]*snapshotRecord, error) {
	var ids []string
	err := s.retry("list", func(ctx context.Context) error {
		ids = ids[:0]
		return objstore.ListAll(ctx, s.b, s.prefix+"/"+snapMetaDir+"/", 0, func(o objstore.ObjectInfo) error {
			id := strings.TrimPrefix(o.Key, s.prefix+"/"+snapMetaDir+"/")
			if _, _, ok := parseID(id); ok {
				ids = append(ids, id)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var recs []*snapshotRecord
	for _, id := range ids {
		r, err := s.readMeta(id)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // deleted meanwhile
		}
		if errors.Is(err, logstore.ErrCorrupt) {
			s.lg.Warn("hashiraft: skipping a snapshot whose metadata does not decode", "id", id, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b *snapshotRecord) int {
		switch {
		case a.Index != b.Index:
			return cmpDesc(a.Index, b.Index)
		case a.Term != b.Term:
			return cmpDesc(a.Term, b.Term)
		}
		return strings.Compare(b.ID, a.ID)
	})
	return recs, nil
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
}

func (s *SnapshotStore) readMeta(id string) (*snapshotRecord, error) {
	var data []byte
	err := s.retry("read metadata "+id, func(ctx context.Context) error {
		var err error
		data, _, err = objstore.ReadAll(ctx, s.b, s.metaKey(id))
		return err
	})
	if err != nil {
		return nil, err
	}
	var r snapshotRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: snapshot %s: metadata: %v", logstore.ErrCorrupt, id, err)
	}
	if r.Format != snapFormat {
		return nil, fmt.Errorf("%w: snapshot %s: metadata format %d (this version reads %d)", logstore.ErrUnsupportedVersion, id, r.Format, snapFormat)
	}
	n := int64(len(r.ChunkCRCs))
	if r.ID != id || r.ChunkSize < 1 || r.Size < 0 || r.Size > n*int64(r.ChunkSize) || r.Size <= (n-1)*int64(r.ChunkSize) && n > 0 {
		return nil, fmt.Errorf("%w: snapshot %s: inconsistent metadata (id %q, size %d, %d chunks of %d)", logstore.ErrCorrupt, id, r.ID, r.Size, n, r.ChunkSize)
	}
	return &r, nil
}

// Open returns the snapshot's metadata and a reader streaming its bytes one
// chunk at a time. The reader fails with an error wrapping logstore.ErrCorrupt,
// before returning any of its bytes, on a chunk that does not match its
// recorded size and checksum. Close it: the
// snapshot is not deleted by retention while it is open.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if _, _, ok := parseID(id); !ok {
		return nil, nil, fmt.Errorf("hashiraft: snapshot: open: malformed id %q", id)
	}
	s.mu.Lock()
	s.mu.reading[id]++
	s.mu.Unlock()
	r, err := s.readMeta(id)
	if err != nil {
		s.doneReading(id)
		return nil, nil, fmt.Errorf("hashiraft: snapshot: open %s: %w", id, err)
	}
	return r.meta(), &snapshotReader{s: s, rec: r}, nil
}

func (s *SnapshotStore) doneReading(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.reading[id]--; s.mu.reading[id] <= 0 {
		delete(s.mu.reading, id)
	}
}

// reap deletes published snapshots beyond the retain count, oldest first,
// and data without metadata (a crashed or failed sink) older than the oldest
// snapshot kept. Snapshots open for reading or writing here are skipped.
// A snapshot's metadata is deleted before any of its chunks, and its chunks
// only once that deletion succeeded, so no listed snapshot loses its data.
func (s *SnapshotStore) reap() error {
	recs, err := s.list()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	var oldestKept uint64
	for i, r := range recs {
		if i < s.retain {
			keep[r.ID] = true
			oldestKept = r.Index
			continue
		}
		if s.busy(r.ID) {
			continue
		}
		if err := s.retry("delete metadata "+r.ID, func(ctx context.Context) error { return s.b.Delete(ctx, s.metaKey(r.ID)) }); err != nil {
			return err
		}
		if err := s.deleteData(r.ID); err != nil {
			return err
		}
		s.lg.Info("hashiraft: snapshot deleted", "id", r.ID, "index", r.Index, "term", r.Term)
	}
	// Orphaned data: chunks whose metadata was never written.
	orphans := map[string]bool{}
	err = s.retry("list data", func(ctx context.Context) error {
		return objstore.ListAll(ctx, s.b, s.prefix+"/"+snapDataDir+"/", 0, func(o objstore.ObjectInfo) error {
			rest := strings.TrimPrefix(o.Key, s.prefix+"/"+snapDataDir+"/")
			id, _, _ := strings.Cut(rest, "/")
			if index, _, ok := parseID(id); ok && !keep[id] && index < oldestKept {
				orphans[id] = true
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for id := range orphans {
		if s.busy(id) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		_, herr := s.b.Head(ctx, s.metaKey(id))
		cancel()
		if !errors.Is(herr, objstore.ErrNotFound) {
			continue // published meanwhile by another process, or unknown: the next reap decides
		}
		if err := s.deleteData(id); err != nil {
			return err
		}
		s.lg.Info("hashiraft: orphaned snapshot data deleted", "id", id)
	}
	return nil
}

func (s *SnapshotStore) busy(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.writing[id] || s.mu.reading[id] > 0
}

// deleteData deletes a snapshot's chunks, highest first.
func (s *SnapshotStore) deleteData(id string) error {
	var keys []string
	if err := s.retry("list chunks of "+id, func(ctx context.Context) error {
		keys = keys[:0]
		return objstore.ListAll(ctx, s.b, s.dataPrefix(id), 0, func(o objstore.ObjectInfo) error {
			keys = append(keys, o.Key)
			return nil
		})
	}); err != nil {
		return err
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if err := s.retry("delete "+keys[i], func(ctx context.Context) error { return s.b.Delete(ctx, keys[i]) }); err != nil {
			return err
		}
	}
	return nil
}

// snapshotSink writes one snapshot. raft uses a sink from one goroutine.
type snapshotSink struct {
	s      *SnapshotStore
	rec    snapshotRecord
	buf    []byte // the chunk being filled
	err    error  // sticky
	closed bool
}

// ID returns the snapshot's ID: "<index>_<term>_<random>", zero-padded.
func (k *snapshotSink) ID() string { return k.rec.ID }

// Write buffers p and writes every full chunk to the bucket.
func (k *snapshotSink) Write(p []byte) (int, error) {
	if k.closed {
		return 0, fmt.Errorf("hashiraft: snapshot %s: write after Close or Cancel", k.rec.ID)
	}
	if k.err != nil {
		return 0, k.err
	}
	n := 0
	for len(p) > 0 {
		m := copy(k.buf[len(k.buf):cap(k.buf)], p)
		k.buf = k.buf[:len(k.buf)+m]
		p = p[m:]
		n += m
		if len(k.buf) == cap(k.buf) {
			if err := k.flush(); err != nil {
				k.err = err
				return n, err
			}
		}
	}
	return n, nil
}

// flush writes the buffered chunk.
func (k *snapshotSink) flush() error {
	if len(k.buf) == 0 {
		return nil
	}
	key := k.s.chunkKey(k.rec.ID, uint64(len(k.rec.ChunkCRCs)))
	ctx, cancel := context.WithTimeout(context.Background(), k.s.timeout)
	defer cancel()
	sum, attempts, err := raftlog.WriteBlob(ctx, k.s.retrier("write "+key), k.s.b, key, k.buf)
	if err != nil {
		return fmt.Errorf("hashiraft: snapshot: write %s (%d attempts): %w", key, attempts, err)
	}
	k.rec.ChunkCRCs = append(k.rec.ChunkCRCs, sum.CRC)
	k.rec.Size += sum.Size
	k.buf = k.buf[:0]
	return nil
}

// Close writes the last chunk and then the metadata, which publishes the
// snapshot, and deletes snapshots beyond the retain count.
//
// A failed Close never leaves a snapshot listed that cannot be read in full.
// When a chunk fails, no metadata was written: nothing is published and the
// chunks are deleted. A failed metadata write may still have landed (its
// reply lost), so before deleting any chunk Close reads the metadata back,
// retrying for up to CallTimeout more:
//
//   - it is there, as written: the snapshot is published, and Close reports
//     success;
//   - it is absent: nothing is published; the chunks are deleted and Close
//     returns the error;
//   - it cannot be read (or holds other contents): the snapshot may be
//     published, so the chunks are kept and Close returns an error saying
//     so. The snapshot is then either not listed or complete; retention
//     removes it like any other, or its chunks as orphans if the metadata
//     never landed.
//
// Close may take up to twice CallTimeout for the metadata. Calling Close or
// Cancel again does nothing.
func (k *snapshotSink) Close() error {
	if k.closed {
		return nil
	}
	k.closed = true
	s := k.s
	id := k.rec.ID
	defer func() {
		s.mu.Lock()
		delete(s.mu.writing, id)
		s.mu.Unlock()
	}()
	err := k.err
	if err == nil {
		err = k.flush()
	}
	k.buf = nil
	if err != nil {
		// No metadata was written: nothing is visible.
		s.discardData(id)
		return fmt.Errorf("hashiraft: snapshot %s: %w", id, err)
	}
	body, _ := json.Marshal(&k.rec)
	err = s.retry("publish "+id, func(ctx context.Context) error {
		_, err := s.b.PutIfAbsent(ctx, s.metaKey(id), body)
		if errors.Is(err, objstore.ErrExists) {
			return s.metaIs(ctx, id, body) // an earlier attempt landed
		}
		return err
	})
	if err != nil {
		rerr := s.retry("read back metadata of "+id, func(ctx context.Context) error { return s.metaIs(ctx, id, body) })
		switch {
		case errors.Is(rerr, objstore.ErrNotFound):
			s.discardData(id)
			return fmt.Errorf("hashiraft: snapshot %s: not published: %w", id, err)
		case rerr != nil:
			s.lg.Warn("hashiraft: snapshot may be published although writing its metadata failed; keeping its data",
				"id", id, "err", err, "read_back_err", rerr)
			return fmt.Errorf("hashiraft: snapshot %s: writing the metadata failed and reading it back failed too, "+
				"so the snapshot may be published: its data is kept (a later retention or reap removes it): %w; %w", id, err, rerr)
		}
		s.lg.Warn("hashiraft: snapshot metadata write reported an error but landed", "id", id, "err", err)
	}
	s.lg.Info("hashiraft: snapshot published", "id", id, "index", k.rec.Index, "term", k.rec.Term,
		"size", k.rec.Size, "chunks", len(k.rec.ChunkCRCs))
	if err := s.reap(); err != nil {
		s.lg.Warn("hashiraft: snapshot retention failed; the next snapshot retries", "err", err)
	}
	return nil
}

// metaIs returns nil if id's metadata object holds exactly body, an error
// wrapping objstore.ErrNotFound if there is none, and another error if it
// holds something else or cannot be read.
func (s *SnapshotStore) metaIs(ctx context.Context, id string, body []byte) error {
	got, _, err := objstore.ReadAll(ctx, s.b, s.metaKey(id))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, body) {
		return fmt.Errorf("%w: snapshot %s: metadata exists with other contents", logstore.ErrCorrupt, id)
	}
	return nil
}

// discardData deletes the chunks of a snapshot known not to be published,
// logging a failure: the chunks are then orphans, which a later reap
// deletes.
func (s *SnapshotStore) discardData(id string) {
	if err := s.deleteData(id); err != nil {
		s.lg.Warn("hashiraft: could not delete the data of a failed snapshot; a later reap will", "id", id, "err", err)
	}
}

// Cancel abandons the snapshot and deletes what was written. No metadata is
// written before Close, so nothing is visible even if the deletion fails.
// After Close (even a failed one, whose snapshot may be published) Cancel
// does nothing.
func (k *snapshotSink) Cancel() error {
	if k.closed {
		return nil
	}
	k.closed = true
	k.buf = nil
	s := k.s
	defer func() {
		s.mu.Lock()
		delete(s.mu.writing, k.rec.ID)
		s.mu.Unlock()
	}()
	if err := s.deleteData(k.rec.ID); err != nil {
		return fmt.Errorf("hashiraft: snapshot %s: cancel: %w", k.rec.ID, err)
	}
	return nil
}

// snapshotReader streams a snapshot's chunks in order.
type snapshotReader struct {
	s      *SnapshotStore
	rec    *snapshotRecord
	chunk  []byte // unread rest of the current chunk
	next   uint64 // next chunk to read
	read   int64
	err    error
	closed bool
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("hashiraft: snapshot %s: read after Close", r.rec.ID)
	}
	for len(r.chunk) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.next == uint64(len(r.rec.ChunkCRCs)) {
			r.err = io.EOF
			if r.read != r.rec.Size {
				r.err = fmt.Errorf("%w: snapshot %s: read %d bytes, metadata says %d", logstore.ErrCorrupt, r.rec.ID, r.read, r.rec.Size)
			}
			continue
		}
		key := r.s.chunkKey(r.rec.ID, r.next)
		want := raftlog.Sum{Size: int64(r.rec.ChunkSize), CRC: r.rec.ChunkCRCs[r.next]}
		if r.next+1 == uint64(len(r.rec.ChunkCRCs)) {
			want.Size = r.rec.Size - int64(r.next)*int64(r.rec.ChunkSize)
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.s.timeout)
		data, err := raftlog.ReadBlob(ctx, r.s.retrier("read "+key), r.s.b, key, want)
		cancel()
		if err != nil {
			r.err = fmt.Errorf("hashiraft: snapshot %s: chunk %d: %w", r.rec.ID, r.next, err)
			if errors.Is(err, objstore.ErrNotFound) {
				r.err = fmt.Errorf("%w: snapshot %s: chunk %d is missing: %v", logstore.ErrCorrupt, r.rec.ID, r.next, err)
			}
			continue
		}
		r.next++
		r.chunk = data
		r.read += int64(len(data))
	}
	n := copy(p, r.chunk)
	r.chunk = r.chunk[n:]
	return n, nil
}

func (r *snapshotReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.chunk = nil
	r.s.doneReading(r.rec.ID)
	return nil
}
