package raftlog

// Tail is a byte-bounded cache of a log's newest entries, which the
// adapters serve the reads Raft makes most (replication to followers,
// apply) from without going through the engine. It holds a contiguous run
// of indexes [First(), First()+Len()); entries are immutable once added.
//
// A Tail is not safe for concurrent use: the adapter guards it with the
// lock that guards its view of the log.
type Tail[T any] struct {
	// Max is the byte budget. Entries beyond it are evicted oldest first.
	Max int64
	// KeepLast keeps the newest entry whatever its size; without it a Tail
	// with Max <= 0 holds nothing.
	KeepLast bool

	first uint64 // index of ents[0]; the next index to add when empty
	ents  []tailEntry[T]
	bytes int64 // the sum of ents' sizes; <= Max unless KeepLast holds one larger entry
}

type tailEntry[T any] struct {
	v    T
	size int64
}

// First returns the index of the oldest cached entry, or the index the
// next Append continues at when the Tail is empty.
func (c *Tail[T]) First() uint64 { return c.first }

// Len returns the number of cached entries.
func (c *Tail[T]) Len() int { return len(c.ents) }

// Bytes returns the cached entries' total size.
func (c *Tail[T]) Bytes() int64 { return c.bytes }

// Get returns the entry at index i and its size, if cached.
func (c *Tail[T]) Get(i uint64) (T, int64, bool) {
	if i < c.first || i-c.first >= uint64(len(c.ents)) {
		var zero T
		return zero, 0, false
	}
	e := c.ents[i-c.first]
	return e.v, e.size, true
}

// Append adds entries at indexes first, first+1, ..., each of the size
// size returns. When first does not continue the cached run the Tail
// restarts there. Then the oldest entries beyond Max are evicted.
func (c *Tail[T]) Append(first uint64, entries []T, size func(T) int64) {
	if c.Max <= 0 && !c.KeepLast {
		return
	}
	if first != c.first+uint64(len(c.ents)) {
		c.Reset(first)
	}
	for _, v := range entries {
		sz := size(v)
		c.ents = append(c.ents, tailEntry[T]{v: v, size: sz})
		c.bytes += sz
	}
	keep := 0
	if c.KeepLast {
		keep = 1
	}
	k := 0
	for c.bytes > max(c.Max, 0) && k < len(c.ents)-keep {
		c.bytes -= c.ents[k].size
		k++
	}
	c.dropFront(k)
}

// TruncateFrom removes the entries at index i and above; the next Append
// continues at i.
func (c *Tail[T]) TruncateFrom(i uint64) {
	if i <= c.first {
		c.Reset(i)
		return
	}
	n := i - c.first
	if n >= uint64(len(c.ents)) {
		return
	}
	for _, e := range c.ents[n:] {
		c.bytes -= e.size
	}
	clear(c.ents[n:]) // let the entries be collected
	c.ents = c.ents[:n]
}

// DropBelow removes the entries below index i.
func (c *Tail[T]) DropBelow(i uint64) {
	if i <= c.first {
		return
	}
	if i-c.first >= uint64(len(c.ents)) {
		c.Reset(i)
		return
	}
	k := int(i - c.first)
	for _, e := range c.ents[:k] {
		c.bytes -= e.size
	}
	c.dropFront(k)
}

// Reset empties the Tail; the next Append continues at first.
func (c *Tail[T]) Reset(first uint64) {
	clear(c.ents)
	c.first, c.ents, c.bytes = first, c.ents[:0], 0
}

// dropFront removes the k oldest entries, whose sizes the caller has
// already taken off bytes.
func (c *Tail[T]) dropFront(k int) {
	if k == 0 {
		return
	}
	clear(c.ents[:k])
	c.ents = c.ents[k:]
	c.first += uint64(k)
	if cap(c.ents) > 2*len(c.ents)+1024 { // reclaim the evicted front
		c.ents = append([]tailEntry[T](nil), c.ents...)
	}
}
