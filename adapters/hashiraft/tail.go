package hashiraft

import (
	"sync"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/raftlog"
)

// tailCache holds the encoded form of the most recently stored entries, a
// contiguous run of indexes ending at the log's last index, so that GetLog
// for what raft reads most (replication to followers, apply) costs one
// decode and no trip through the WAL. The WAL's fragment cache serves the
// rest. It is the adapters' raftlog.Tail behind a lock of its own, since
// GetLog reads it without the store's mutation lock.
type tailCache struct {
	mu sync.RWMutex
	c  raftlog.Tail[[]byte] // guarded by mu; c.Max <= 0 disables the cache
}

func newTailCache(maxBytes int) *tailCache {
	return &tailCache{c: raftlog.Tail[[]byte]{Max: int64(maxBytes)}}
}

// get returns the encoded entry at i, if cached.
func (t *tailCache) get(i uint64) ([]byte, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	b, _, ok := t.c.Get(i)
	return b, ok
}

// add appends entries starting at first, which must follow the cached run
// (or the cache is restarted there), and evicts the oldest beyond the
// budget.
func (t *tailCache) add(first uint64, ents [][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Append(first, ents, func(b []byte) int64 { return int64(len(b)) })
}

// dropFrom removes the cached entries at index i and above.
func (t *tailCache) dropFrom(i uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.TruncateFrom(i)
}

// dropBelow removes the cached entries below index i.
func (t *tailCache) dropBelow(i uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.DropBelow(i)
}

func (t *tailCache) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Reset(0)
}
