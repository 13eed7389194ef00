package cache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestLRUBoundAndOrder(t *testing.T) {
	c := New[string, []byte](100)
	for i := 0; i < 5; i++ {
		c.Add(fmt.Sprint(i), make([]byte, 30), 30)
	}
	bytes, n, _, _ := c.Stats()
	if bytes > 100 || n != 3 {
		t.Fatalf("holds %d bytes in %d entries, want <= 100 in 3", bytes, n)
	}
	if _, ok := c.Get("0"); ok {
		t.Fatalf("the least recently used entry survived")
	}
	c.Get("2") // 2 is now most recent; adding evicts 3
	c.Add("5", nil, 30)
	if _, ok := c.Get("3"); ok {
		t.Fatalf("recently used order ignored")
	}
	if _, ok := c.Get("2"); !ok {
		t.Fatalf("recently used entry evicted")
	}
	c.Add("huge", nil, 1000)
	if _, ok := c.Get("huge"); ok {
		t.Fatalf("a value larger than the capacity was cached")
	}
	c.RemoveIf(func(k string) bool { return k == "2" })
	if _, ok := c.Get("2"); ok {
		t.Fatalf("RemoveIf kept the entry")
	}
}

// Under concurrent load the cache never exceeds its capacity.
func TestLRUConcurrentBound(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	c := New[int, int](1 << 10)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for i := 0; i < 2000; i++ {
				k := r.IntN(200)
				if _, ok := c.Get(k); !ok {
					c.Add(k, k, int64(1+r.IntN(100)))
				}
				if b, _, _, _ := c.Stats(); b > 1<<10 {
					t.Errorf("cache holds %d bytes, capacity %d", b, 1<<10)
					return
				}
			}
		}()
	}
	wg.Wait()
}
