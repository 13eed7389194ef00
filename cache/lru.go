// Package cache holds byte-bounded caches that keep woodpecker's reads off
// the network: decoded fragments for readers and recent entries for the
// writer's own readers.
package cache

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// LRU is a least-recently-used cache bounded by the total size of its
// values, as reported by the size given to Add. It is safe for concurrent
// use. Values are shared, not copied: callers must treat them as immutable.
type LRU[K comparable, V any] struct {
	mu struct {
		sync.Mutex
		items map[K]*list.Element // guarded by mu
		order *list.List          // front = most recent; guarded by mu
		bytes int64               // guarded by mu
	}
	capacity int64
	hits     atomic.Uint64
	misses   atomic.Uint64
}

type lruEntry[K comparable, V any] struct {
	key  K
	val  V
	size int64
}

// New returns an LRU holding at most capacity bytes. A capacity <= 0 makes
// a cache that holds nothing.
func New[K comparable, V any](capacity int64) *LRU[K, V] {
	c := &LRU[K, V]{capacity: capacity}
	c.mu.items = make(map[K]*list.Element)
	c.mu.order = list.New()
	return c
}

// Get returns the value cached under k and marks it recently used.
func (c *LRU[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.mu.items[k]; ok {
		c.mu.order.MoveToFront(el)
		c.hits.Add(1)
		return el.Value.(*lruEntry[K, V]).val, true
	}
	c.misses.Add(1)
	var zero V
	return zero, false
}

// Peek reports whether k is cached, without marking it used or counting a
// hit or miss.
func (c *LRU[K, V]) Peek(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.mu.items[k]; ok {
		return el.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Add caches v under k, accounting size bytes, and evicts the least recently
// used values until the cache is within capacity. A value larger than the
// capacity is not cached.
func (c *LRU[K, V]) Add(k K, v V, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.mu.items[k]; ok {
		e := el.Value.(*lruEntry[K, V])
		c.mu.bytes += size - e.size
		e.val, e.size = v, size
		c.mu.order.MoveToFront(el)
	} else {
		if size > c.capacity {
			return
		}
		c.mu.items[k] = c.mu.order.PushFront(&lruEntry[K, V]{key: k, val: v, size: size})
		c.mu.bytes += size
	}
	for c.mu.bytes > c.capacity {
		el := c.mu.order.Back()
		e := el.Value.(*lruEntry[K, V])
		c.mu.order.Remove(el)
		delete(c.mu.items, e.key)
		c.mu.bytes -= e.size
	}
}

// Remove drops k from the cache.
func (c *LRU[K, V]) Remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.mu.items[k]; ok {
		c.mu.bytes -= el.Value.(*lruEntry[K, V]).size
		c.mu.order.Remove(el)
		delete(c.mu.items, k)
	}
}

// RemoveIf drops every entry whose key satisfies pred.
func (c *LRU[K, V]) RemoveIf(pred func(K) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.mu.items {
		if pred(k) {
			c.mu.bytes -= el.Value.(*lruEntry[K, V]).size
			c.mu.order.Remove(el)
			delete(c.mu.items, k)
		}
	}
}

// Stats reports the bytes held, the entry count, and hits and misses since
// creation.
func (c *LRU[K, V]) Stats() (bytes int64, entries int, hits, misses uint64) {
	c.mu.Lock()
	bytes, entries = c.mu.bytes, len(c.mu.items)
	c.mu.Unlock()
	return bytes, entries, c.hits.Load(), c.misses.Load()
}
