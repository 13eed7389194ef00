package etcdraft

import (
	"context"
	"fmt"
	"math/rand/v2"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/raftlog"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// snapKey returns a fresh key for the data of a snapshot at index:
// "<prefix>/<log>/snap/<index, 20 digits>_<random, 16 hex digits>". Keys are
// never reused, so an interrupted write can never be mistaken for a later
// one, and all are leaves (no key is a directory prefix of another).
func (s *Storage) snapKey(index uint64) string {
	return fmt.Sprintf("%s%020d_%016x", s.snapPrefix, index, rand.Uint64())
}

// putSnapshot writes data (if not empty) to a new object and returns the
// record describing the snapshot. Nothing references the object yet: a crash
// or failure leaves an orphan that the next Open deletes.
//
// The engine does not write snapshot objects, so their PUT is retried here,
// as the engine retries its own writes (raftlog.WriteRetry: backoff from the
// client's RetryInterval for its retry window), each attempt bounded by its
// RequestTimeout, or until ctx is done. Then the error wraps ErrWriteFailed;
// nothing changed.
func (s *Storage) putSnapshot(ctx context.Context, md *pb.SnapshotMetadata, data []byte) (snapRecord, error) {
	rec := snapRecord{md: md, hasData: data != nil, size: int64(len(data))}
	if len(data) == 0 {
		return rec, nil
	}
	rec.key = s.snapKey(md.GetIndex())
	r := raftlog.WriteRetry(s.client.Limits())
	sum, attempts, err := raftlog.WriteBlob(ctx, raftlog.Retry{Policy: r, AttemptTimeout: s.client.Limits().RequestTimeout,
		OnRetry: func(attempt int, err error) {
			s.logger.Warn("etcdraft: snapshot data write failed; retrying", "log", s.name, "key", rec.key,
				"attempt", attempt, "err", err)
		}}, s.blobs, rec.key, data)
	if err != nil {
		return snapRecord{}, fmt.Errorf("%w: etcdraft: write snapshot %d data (%d attempts): %w",
			ErrWriteFailed, md.GetIndex(), attempts, err)
	}
	rec.crc = sum.CRC
	return rec, nil
}

// loadSnapshot reads and verifies the data of rec, and keeps it in memory if
// rec is still the current snapshot.
func (s *Storage) loadSnapshot(rec snapRecord) ([]byte, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	s.mu.RLock()
	st := s.mu.snap
	s.mu.RUnlock()
	if st.rec.key == rec.key && st.loaded {
		return st.data, nil
	}
	ctx, cancel := s.callCtx()
	defer cancel()
	data, err := raftlog.ReadBlob(ctx, raftlog.Retry{Policy: raftlog.CallRetry}, s.blobs, rec.key,
		raftlog.Sum{Size: rec.size, CRC: rec.crc})
	if err != nil {
		return nil, fmt.Errorf("etcdraft: snapshot data: %w", err)
	}
	// The loader may set data and loaded under mu alone (an exception to the
	// rule that mu fields change only under wmu too); mutators read them only
	// under mu.
	s.mu.Lock()
	if s.mu.snap.rec.key == rec.key {
		s.mu.snap.data, s.mu.snap.loaded = data, true
	}
	s.mu.Unlock()
	return data, nil
}

// deleteSnapObject deletes a superseded snapshot object, best effort: the
// next Open deletes whatever is left.
func (s *Storage) deleteSnapObject(ctx context.Context, key string) {
	if key == "" {
		return
	}
	if err := s.blobs.Delete(ctx, key); err != nil {
		s.logger.Warn("etcdraft: delete superseded snapshot object", "log", s.name, "key", key, "err", err)
	}
}

// sweepSnapshots deletes every snapshot object but the current one: orphans
// of interrupted snapshot writes and superseded objects whose deletion
// failed. Called by recovery, holding the log's writer, so no other process
// can reference a new object meanwhile.
func (s *Storage) sweepSnapshots(ctx context.Context) {
	cur := s.mu.snap.rec.key
	var stale []string
	err := objstore.ListAll(ctx, s.blobs, s.snapPrefix, 0, func(o objstore.ObjectInfo) error {
		if o.Key != cur {
			stale = append(stale, o.Key)
		}
		return nil
	})
	if err != nil {
		s.logger.Warn("etcdraft: list snapshot objects", "log", s.name, "err", err)
		return
	}
	for _, k := range stale {
		s.deleteSnapObject(ctx, k)
	}
	if len(stale) > 0 {
		s.logger.Info("etcdraft: deleted stale snapshot objects", "log", s.name, "count", len(stale))
	}
}
