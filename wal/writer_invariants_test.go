package wal

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// slowPuts delays each PUT by a random few hundred microseconds, so that
// fragments pile up in flight and finish out of order.
type slowPuts struct{ objstore.Bucket }

func (b slowPuts) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
	return b.Bucket.PutIfAbsent(ctx, key, data)
}

// checkInvariantsLocked returns how the writer's state breaks the
// invariants written on Writer.mu, or "". REQUIRES: w.mu held.
func (w *Writer) checkInvariantsLocked() string {
	if w.mu.err != nil {
		return ""
	}
	cfg := &w.c.cfg
	fl := w.mu.inflight
	if len(fl) > 0 {
		if fl[0].first != w.mu.durable+1 {
			return fmt.Sprintf("inflight[0].first = %d, durable = %d", fl[0].first, w.mu.durable)
		}
		if fl[0].seq != w.mu.ackedFrags {
			return fmt.Sprintf("inflight[0].seq = %d, ackedFrags = %d", fl[0].seq, w.mu.ackedFrags)
		}
	}
	if w.mu.nextSeq != w.mu.ackedFrags+uint64(len(fl)) {
		return fmt.Sprintf("nextSeq = %d, ackedFrags = %d, %d in flight", w.mu.nextSeq, w.mu.ackedFrags, len(fl))
	}
	sizes, notDone := 0, 0
	var futs []*Future
	for k, f := range fl {
		if k > 0 && (f.first != fl[k-1].last+1 || f.seq != fl[k-1].seq+1) {
			return fmt.Sprintf("inflight[%d] = seq %d [%d, %d] after seq %d [%d, %d]", k, f.seq, f.first, f.last, fl[k-1].seq, fl[k-1].first, fl[k-1].last)
		}
		if want := codec.FragmentKey(w.prefix, w.mu.seg, f.seq); f.key != want {
			return fmt.Sprintf("inflight[%d] is %s, not in the open segment (%s)", k, f.key, want)
		}
		sizes += f.size
		if !f.done {
			notDone++
		}
		futs = append(futs, f.futs...)
	}
	if notDone > cfg.MaxFlushThreads || len(fl) > 4*cfg.MaxFlushThreads {
		return fmt.Sprintf("%d in flight, %d PUTs unfinished (MaxFlushThreads %d)", len(fl), notDone, cfg.MaxFlushThreads)
	}
	uncut := 0
	for _, it := range w.mu.queue {
		for _, e := range it.entries[it.off:] {
			uncut += len(e)
		}
	}
	if uncut != w.mu.queueBytes {
		return fmt.Sprintf("queueBytes = %d, uncut payload %d", w.mu.queueBytes, uncut)
	}
	if w.mu.unacked != w.mu.queueBytes+sizes {
		return fmt.Sprintf("unacked = %d, queueBytes %d + in flight %d", w.mu.unacked, w.mu.queueBytes, sizes)
	}
	if len(futs) > len(w.mu.waiting) {
		return fmt.Sprintf("%d futures in flight, %d waiting", len(futs), len(w.mu.waiting))
	}
	for k, f := range futs {
		if w.mu.waiting[k] != f {
			return fmt.Sprintf("future %d in flight is not waiting[%d]", k, k)
		}
	}
	return ""
}

// The invariants written on Writer.mu hold at every moment the lock is
// free, while appends, truncations, SetMeta and segment rolls run with
// fragments in flight and finishing out of order.
func TestWriterFieldInvariants(t *testing.T) {
	ctx := context.Background()
	c, err := Open(ctx, Config{
		Bucket: slowPuts{objmem.New()}, Meta: metamem.New(), GCInterval: -1,
		MaxEntries: 3, MaxFlushThreads: 3, SegmentMaxFragments: 5, MaxInterval: 100 * time.Microsecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateLog(ctx, "inv"); err != nil {
		t.Fatal(err)
	}
	l, err := c.OpenLog(ctx, "inv")
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	var stop atomic.Bool
	var samples atomic.Int64
	var broken atomic.Pointer[string]
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			w.mu.Lock()
			why := w.checkInvariantsLocked()
			w.mu.Unlock()
			samples.Add(1)
			if why != "" {
				broken.Store(&why)
				return
			}
			runtime.Gosched()
		}
	}()
	next := uint64(1)
	for round := 0; round < 300 && broken.Load() == nil; round++ {
		var futs []*Future
		for k := 0; k < 1+rand.IntN(6); k++ {
			n := 1 + rand.IntN(4)
			batch := make([][]byte, n)
			for i := range batch {
				batch[i] = []byte(fmt.Sprintf("entry-%d", next+uint64(i)))
			}
			futs = append(futs, w.AppendAsync(next, batch))
			next += uint64(n)
		}
		switch rand.IntN(8) {
		case 0:
			if err := w.TruncateBack(ctx, next-2); err != nil {
				t.Fatal(err)
			}
			next--
		case 1:
			if err := w.TruncateFront(ctx, next-3); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := w.SetMeta(ctx, map[string][]byte{"round": []byte(fmt.Sprint(round))}); err != nil {
				t.Fatal(err)
			}
		case 3:
			if err := w.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range futs {
			if err := f.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if why := broken.Load(); why != nil {
		t.Fatalf("writer invariant broken: %s", *why)
	}
	t.Logf("%d samples", samples.Load())
}
