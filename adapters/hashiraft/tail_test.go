package hashiraft

import (
	"fmt"
	"testing"
)

func TestTailCache(t *testing.T) {
	c := newTailCache(100)
	ents := func(first, n uint64) [][]byte {
		var out [][]byte
		for i := first; i < first+n; i++ {
			out = append(out, fmt.Appendf(nil, "%09d", i)) // 9 bytes each
		}
		return out
	}
	want := func(i uint64, ok bool) {
		t.Helper()
		b, got := c.get(i)
		if got != ok || (ok && string(b) != fmt.Sprintf("%09d", i)) {
			t.Fatalf("get(%d) = %q, %v; want present %v", i, b, got, ok)
		}
	}
	c.add(10, ents(10, 5)) // 10..14
	want(9, false)
	want(10, true)
	want(14, true)
	want(15, false)
	c.add(15, ents(15, 10)) // 10..24 is 135 bytes: evicts 10..13
	want(13, false)
	want(14, true)
	want(24, true)
	if c.c.Bytes() > c.c.Max {
		t.Fatalf("%d bytes cached, budget %d", c.c.Bytes(), c.c.Max)
	}
	c.dropFrom(20)
	want(19, true)
	want(20, false)
	c.add(20, ents(20, 1)) // contiguous again
	want(20, true)
	c.dropBelow(18)
	want(17, false)
	want(18, true)
	c.add(40, ents(40, 2)) // not contiguous: restarts
	want(20, false)
	want(40, true)
	c.dropFrom(0)
	want(40, false)
	off := tailCache{}
	off.add(1, ents(1, 1))
	if _, ok := off.get(1); ok {
		t.Fatal("a disabled cache cached")
	}
}
