package hashiraft

import "sync"

// tailCache holds the encoded form of the most recently stored entries, a
// contiguous run of indexes ending at the log's last index, so that GetLog
// for what raft reads most (replication to followers, apply) costs one
// decode and no trip through the WAL. The WAL's fragment cache serves the
// rest. Entries are immutable once added.
//
// Invariant: ents[k] is the entry at index lo+k; its total size is bytes <=
// max.
type tailCache struct {
	max int // byte budget; 0 disables

	mu    sync.RWMutex
	lo    uint64   // index of ents[0]; guarded by mu
	ents  [][]byte // guarded by mu
	bytes int      // guarded by mu
}

// get returns the encoded entry at i, if cached.
func (c *tailCache) get(i uint64) ([]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if i < c.lo || i-c.lo >= uint64(len(c.ents)) {
		return nil, false
	}
	return c.ents[i-c.lo], true
}

// add appends entries starting at first, which must follow the cached run
// (or the cache is restarted there), and evicts the oldest beyond the
// budget.
func (c *tailCache) add(first uint64, ents [][]byte) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ents) == 0 || first != c.lo+uint64(len(c.ents)) {
		c.resetLocked()
		c.lo = first
	}
	for _, e := range ents {
		c.ents = append(c.ents, e)
		c.bytes += len(e)
	}
	drop := 0
	for c.bytes > c.max && drop < len(c.ents) {
		c.bytes -= len(c.ents[drop])
		c.ents[drop] = nil
		drop++
	}
	c.ents = c.ents[drop:]
	c.lo += uint64(drop)
	if cap(c.ents) > 2*len(c.ents)+1024 { // reclaim the evicted front
		c.ents = append([][]byte(nil), c.ents...)
	}
}

// dropFrom removes the cached entries at index i and above.
func (c *tailCache) dropFrom(i uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i <= c.lo {
		c.resetLocked()
		return
	}
	for k := i - c.lo; k < uint64(len(c.ents)); k++ {
		c.bytes -= len(c.ents[k])
		c.ents[k] = nil
	}
	if n := i - c.lo; n < uint64(len(c.ents)) {
		c.ents = c.ents[:n]
	}
}

// dropBelow removes the cached entries below index i.
func (c *tailCache) dropBelow(i uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i <= c.lo {
		return
	}
	if i-c.lo >= uint64(len(c.ents)) {
		c.resetLocked()
		return
	}
	n := i - c.lo
	for k := range n {
		c.bytes -= len(c.ents[k])
		c.ents[k] = nil
	}
	c.ents = c.ents[n:]
	c.lo = i
}

func (c *tailCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
}

func (c *tailCache) resetLocked() {
	c.lo, c.ents, c.bytes = 0, nil, 0
}
