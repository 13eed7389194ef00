package wal_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// zombieRace runs many rounds in which a new writer takes over a log while the previous one
// is still appending asynchronously. The final log must show no
// interleaving: entries are grouped by round in increasing order, and every
// acknowledged entry is present at its index.
func zombieRace(t *testing.T, b objstore.Bucket, m meta.Store, rounds int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	// Each round's writer lives in its own client, as in its own process.
	newProc := func() *wal.Client {
		return newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 5; c.MaxEntries = 4 })
	}
	createLog(t, newProc(), "zombie")
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for round := 0; round < rounds; round++ {
		w, err := openLog(t, newProc(), "zombie").OpenWriter(ctx)
		if err != nil {
			t.Fatalf("round %d: OpenWriter: %v", round, err)
		}
		wg.Add(1)
		go func(round int, w *wal.Writer) {
			defer wg.Done()
			defer w.Close()
			next := w.LastIndex() + 1
			if w.FirstIndex() == 0 {
				next = 1
			}
			var futs []*wal.Future
			var firsts []uint64
			var datas [][][]byte
			for k := 0; k < 200; k++ {
				n := 1 + k%3
				data := make([][]byte, n)
				for j := range data {
					data[j] = []byte(fmt.Sprintf("r%03d/%d", round, next+uint64(j)))
				}
				f := w.AppendAsync(next, data)
				futs, firsts, datas = append(futs, f), append(firsts, next), append(datas, data)
				next += uint64(n)
				select {
				case <-f.Done():
					if f.Err() != nil {
						k = 1 << 30 // fenced (or failed): stop appending
					}
				default:
				}
			}
			for k, f := range futs {
				err := f.Wait(ctx)
				if err == nil {
					mu.Lock()
					for j, d := range datas[k] {
						acked[firsts[k]+uint64(j)] = string(d)
					}
					mu.Unlock()
				} else if !errors.Is(err, wal.ErrFenced) {
					t.Errorf("round %d: append: %v", round, err)
				}
			}
		}(round, w)
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
	}
	wg.Wait()
	l := openLog(t, newProc(), "zombie")
	w := openWriter(t, l)
	first, last := w.FirstIndex(), w.LastIndex()
	prevRound := -1
	for i := first; i <= last && first > 0; i++ {
		e, err := l.Get(ctx, i)
		if err != nil {
			t.Fatalf("Get(%d): %v", i, err)
		}
		var r int
		var idx uint64
		if _, err := fmt.Sscanf(string(e), "r%d/%d", &r, &idx); err != nil || idx != i {
			t.Fatalf("entry %d = %q: wrong index", i, e)
		}
		if r < prevRound {
			t.Fatalf("interleaving: entry %d from round %d after an entry of round %d", i, r, prevRound)
		}
		prevRound = r
		if want, ok := acked[i]; ok && want != string(e) {
			t.Fatalf("acknowledged entry %d = %q was replaced by %q", i, want, e)
		}
	}
	for i, want := range acked {
		if i < first || i > last {
			// A later round may have rewritten the tail only if the entry was
			// not acknowledged; acknowledged entries must all be present.
			t.Fatalf("acknowledged entry %d (%q) lost: log is [%d, %d]", i, want, first, last)
		}
	}
	t.Logf("%d rounds, log [%d, %d], %d acknowledged entries", rounds, first, last, len(acked))
}

func TestZombieRaceMem(t *testing.T) {
	b, m := memStores()
	zombieRace(t, b, m, 30)
}

func TestZombieRaceFile(t *testing.T) {
	b, m := fileStores(t)
	zombieRace(t, b, m, 15)
}

// TestBitFlipsDetected flips every bit of a stored fragment in turn: reading
// an entry of it must fail with ErrCorrupt naming the object, never return
// data.
func TestBitFlipsDetected(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, nil), "flip")
	mustAppend(t, w, 1, [][]byte{[]byte("alpha"), []byte("beta")})
	w.Close()
	var key string
	objs, _ := b.List(ctx, objstore.ListOptions{Prefix: "wal/flip/"})
	for _, o := range objs {
		if o.Size > 80 {
			key = o.Key
		}
	}
	orig, _, err := objstore.ReadAll(ctx, b, key)
	if err != nil {
		t.Fatal(err)
	}
	for bit := 0; bit < len(orig)*8; bit++ {
		flipped := append([]byte(nil), orig...)
		flipped[bit/8] ^= 1 << (bit % 8)
		if _, err := b.Put(ctx, key, strings.NewReader(string(flipped)), int64(len(flipped))); err != nil {
			t.Fatal(err)
		}
		c2 := newClient(t, b, m, nil) // no cache
		got, err := openLog(t, c2, "flip").Get(ctx, 2)
		if err == nil {
			t.Fatalf("bit %d flipped: Get returned %q", bit, got)
		}
		if !errors.Is(err, wal.ErrCorrupt) && !errors.Is(err, wal.ErrUnsupportedVersion) {
			t.Fatalf("bit %d flipped: Get = %v, want ErrCorrupt", bit, err)
		}
		if !strings.Contains(err.Error(), key) {
			t.Fatalf("bit %d flipped: error %q does not name %s", bit, err, key)
		}
		c2.Close()
	}
}
