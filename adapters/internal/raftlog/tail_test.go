package raftlog_test

import (
	"math/rand/v2"
	"testing"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/raftlog"
)

// tailModel is the plain map a Tail is checked against.
type tailModel struct {
	ents       map[uint64]int64 // index -> size
	first, end uint64           // [first, end) cached
}

// A Tail holds exactly a contiguous suffix of what was appended, within its
// budget (the newest entry always, with KeepLast), through random appends,
// truncations and drops.
func TestTailAgainstModel(t *testing.T) {
	for _, keepLast := range []bool{false, true} {
		seed := rand.Uint64()
		t.Logf("seed %d, KeepLast %v", seed, keepLast)
		rng := rand.New(rand.NewPCG(seed, 0))
		c := raftlog.Tail[int64]{Max: 100, KeepLast: keepLast}
		size := func(v int64) int64 { return v }
		vals := map[uint64]int64{} // what the log holds
		next := uint64(1)
		for step := 0; step < 5000; step++ {
			switch op := rng.IntN(10); {
			case op < 6:
				n := rng.IntN(5) + 1
				batch := make([]int64, n)
				for k := range batch {
					batch[k] = rng.Int64N(60)
					vals[next+uint64(k)] = batch[k]
				}
				c.Append(next, batch, size)
				next += uint64(n)
			case op < 8:
				i := uint64(rng.IntN(int(next) + 1))
				if i == 0 {
					i = 1
				}
				c.TruncateFrom(i)
				for k := i; k < next; k++ {
					delete(vals, k)
				}
				next = i
			default:
				c.DropBelow(c.First() + uint64(rng.IntN(4)))
			}
			// Whatever is cached is the log's entry; the run ends at the
			// log's end when not empty; bytes add up and keep the budget.
			var sum int64
			for k := 0; k < c.Len(); k++ {
				i := c.First() + uint64(k)
				v, sz, ok := c.Get(i)
				if !ok || v != vals[i] || sz != v {
					t.Fatalf("step %d: Get(%d) = %d, %d, %v; the log holds %d", step, i, v, sz, ok, vals[i])
				}
				sum += sz
			}
			if c.Len() > 0 && c.First()+uint64(c.Len()) != next {
				t.Fatalf("step %d: cached [%d, %d), log ends at %d", step, c.First(), c.First()+uint64(c.Len()), next)
			}
			if sum != c.Bytes() {
				t.Fatalf("step %d: Bytes() = %d, entries sum to %d", step, c.Bytes(), sum)
			}
			if c.Bytes() > c.Max && !(keepLast && c.Len() == 1) {
				t.Fatalf("step %d: %d bytes cached over a budget of %d", step, c.Bytes(), c.Max)
			}
			if _, _, ok := c.Get(c.First() + uint64(c.Len())); ok {
				t.Fatalf("step %d: Get past the cached run succeeded", step)
			}
		}
	}
}

// KeepLast keeps an entry larger than the whole budget; without it such
// an entry is not cached, and a Tail with no budget holds nothing.
func TestTailBudgetEdges(t *testing.T) {
	size := func(v int64) int64 { return v }
	keep := raftlog.Tail[int64]{Max: 10, KeepLast: true}
	keep.Append(1, []int64{5, 50}, size)
	if _, _, ok := keep.Get(2); !ok || keep.Len() != 1 {
		t.Errorf("KeepLast: the newest entry of 50 bytes is not kept alone (len %d)", keep.Len())
	}
	drop := raftlog.Tail[int64]{Max: 10}
	drop.Append(1, []int64{5, 50}, size)
	if drop.Len() != 0 || drop.First() != 3 {
		t.Errorf("without KeepLast: len %d first %d, want nothing cached and the next index 3", drop.Len(), drop.First())
	}
	off := raftlog.Tail[int64]{}
	off.Append(1, []int64{1}, size)
	if off.Len() != 0 {
		t.Error("a Tail with no budget cached an entry")
	}
}
