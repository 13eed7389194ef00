package wal_test

// Regression tests for bugs found in review: each failed before its fix.

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// a Log handle in a process without the writer serves Get from the
// record cached at OpenLog: after the writer truncates and rewrites the
// tail, Get returns the old, truncated entry.
func TestRemoteReaderSeesTruncateBack(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, nil), "s")
	mustAppend(t, w, 1, entries(1, 10))
	lr := openLog(t, newClient(t, b, m, nil), "s") // another process, reading only
	wantEntries(t, lr, 5, 5)
	if err := w.TruncateBack(ctx, 4); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 5, [][]byte{[]byte("new-5")})
	got, err := lr.Get(ctx, 5)
	t.Logf("remote Get(5) after TruncateBack(4)+Append(5,new-5) = %q, %v", got, err)
	got8, err8 := lr.Get(ctx, 8)
	t.Logf("remote Get(8) (truncated, log ends at 5) = %q, %v", got8, err8)
	if string(got) != "new-5" || err8 == nil {
		t.Fatalf("stale data served")
	}
}

type seg struct {
	ID    uint64 `json:"id"`
	State string `json:"state"`
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

func segments(t *testing.T, m meta.Store, name string) []seg {
	r, err := m.Get(context.Background(), "wal/logs/"+name)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Segments []seg `json:"segments"`
	}
	json.Unmarshal(r.Value, &rec)
	return rec.Segments
}

// mutate re-applies openSegment's closure after an ambiguous CAS that
// landed: a second segment is opened, leaving two open segments.
func TestAmbiguousRecordUpdateOpensOneSegment(t *testing.T) {
	am := newAmbMeta()
	c := newClient(t, objmem.New(), am, func(c *wal.Config) { c.SegmentMaxFragments = 1 })
	_, w := newLog(t, c, "a") // Updates: epoch bump (1), openSegment (2)
	am.loseNextReply()        // the next Update (a roll) lands but reports an error
	appendRange(t, w, 1, 3, 1)
	open := 0
	for _, s := range segments(t, am.Store, "a") {
		t.Logf("segment %+v", s)
		if s.State == "open" {
			open++
		}
	}
	if open != 1 {
		t.Fatalf("%d open segments in the record; the invariant is at most one", open)
	}
}

// Writer.Close never returns when the bucket hangs.
func TestCloseWithHungBucketReturns(t *testing.T) {
	b, m := memStores()
	hb := newHeldBucket(b)
	_, w := newLog(t, newClient(t, hb, m, func(c *wal.Config) { c.RequestTimeout = 50 * time.Millisecond; c.MaxFlushRetries = 1 }), "h")
	hb.hold.Store(true) // the gate stays shut: PUTs hang until their ctx is done
	w.AppendAsync(1, entries(1, 1))
	done := make(chan error, 1)
	go func() { done <- w.Close() }()
	select {
	case err := <-done:
		wantErr(t, err, wal.ErrBroken, "Close with a hung bucket")
	case <-time.After(3 * time.Second):
		t.Fatalf("Writer.Close still blocked after 3s with a hung bucket")
	}
}

// DeleteLog "fences any writer", but the writer's data PUTs carry no
// epoch check: appends keep being acknowledged after DeleteLog returned.
func TestDeleteLogFencesWriter(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, nil), "d")
	mustAppend(t, w, 1, entries(1, 1))
	if err := newClient(t, b, m, nil).DeleteLog(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	err := w.Append(ctx, 2, entries(2, 1))
	left := countObjects(t, b, "wal/d/")
	t.Logf("Append after DeleteLog = %v; objects left under the deleted log: %d", err, left)
	if err == nil {
		t.Fatalf("append acknowledged after DeleteLog returned (orphan objects: %d)", left)
	}
}

// two concurrent OpenWriter calls in one process: the loser bumps the
// epoch and fences the winner, which stays registered but is dead.
func TestConcurrentOpenWriterInProcess(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 50; round++ {
		c := newMemClient(t, nil)
		l1 := createLog(t, c, "o")
		l2 := openLog(t, c, "o")
		var wg sync.WaitGroup
		ws := make([]*wal.Writer, 2)
		errs := make([]error, 2)
		for k, l := range []*wal.Log{l1, l2} {
			wg.Add(1)
			go func() { defer wg.Done(); ws[k], errs[k] = l.OpenWriter(ctx) }()
		}
		wg.Wait()
		for k, w := range ws {
			if w == nil {
				continue
			}
			if err := w.Append(ctx, 1, entries(1, 1)); err != nil && errs[1-k] != nil {
				t.Fatalf("round %d: the only writer OpenWriter returned is dead: %v (other OpenWriter: %v)", round, err, errs[1-k])
			}
			w.Close()
		}
	}
}

// after reopening an emptied log, the writer's durable index is
// First-1; an append at a lower index makes Log.LastIndex report entries
// that do not exist while the reset is pending.
func TestBoundsWhileResetPending(t *testing.T) {
	ctx := context.Background()
	hm := newHeldMeta()
	l, w := newLog(t, newClient(t, objmem.New(), hm, nil), "e")
	mustAppend(t, w, 1, entries(1, 99))
	if err := w.TruncateFront(ctx, 100); err != nil { // empties the log
		t.Fatal(err)
	}
	w.Close()
	w = openWriter(t, l)
	gate := make(chan struct{})
	hm.gate.Store(&gate) // the reset CAS is slow
	w.AppendAsync(5, entries(5, 1))
	time.Sleep(20 * time.Millisecond)
	first, _ := l.FirstIndex(ctx)
	last, _ := l.LastIndex(ctx)
	gctx, gcancel := context.WithTimeout(ctx, time.Second)
	defer gcancel()
	start := time.Now()
	gdone := make(chan error, 1)
	go func() { _, err := l.Get(gctx, 50); gdone <- err }()
	var gerr error
	select {
	case gerr = <-gdone:
	case <-time.After(2 * time.Second):
		gerr = errors.New("Get still blocked after 2s despite its 1s ctx")
	}
	t.Logf("nothing durable yet: Log.FirstIndex=%d Log.LastIndex=%d Get(50) err=%v after %v", first, last, gerr, time.Since(start))
	hm.gate.Store(nil)
	close(gate)
	if last != 0 {
		t.Fatalf("Log.LastIndex = %d for a log with no durable entry", last)
	}
}

// an in-process tailing reader that has read past a later TruncateBack
// point just blocks: no ErrTruncated until the log regrows past it.
func TestTailingReaderToldOfTruncateBack(t *testing.T) {
	ctx := context.Background()
	l, w := newLog(t, newMemClient(t, nil), "rt")
	mustAppend(t, w, 1, entries(1, 10))
	r := newReader(t, l, 1)
	skipNexts(t, r, 10)
	if err := w.TruncateBack(ctx, 5); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 6, [][]byte{[]byte("new-6")}) // 6 replaced; the reader returned the old 6..10
	_, _, err := nextWithin(r, 500*time.Millisecond)
	t.Logf("Next after TruncateBack(5)+Append(6) = %v", err)
	if !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("reader not told that entries 6..10 it returned were removed")
	}
}

// a busy zombie outruns fenceSegment's one-step-at-a-time chase; the
// takeover waits until the zombie stops (roll, or it runs out of work).
func TestFenceOvertakesBusyZombie(t *testing.T) {
	ctx := context.Background()
	base, m := memStores()
	mk := func() *wal.Client {
		fb := fault.Wrap(base, 1)
		fb.SetLatency(2*time.Millisecond, 0)
		return newClient(t, fb, m, func(c *wal.Config) { c.MaxEntries = 1; c.MaxFlushThreads = 8; c.SegmentMaxFragments = 2000 })
	}
	_, w1 := newLog(t, mk(), "z")
	var stop atomic.Bool
	var acked atomic.Int64
	go func() {
		for i := uint64(1); !stop.Load(); i++ {
			f := w1.AppendAsync(i, entries(i, 1))
			go func() {
				if f.Err() == nil {
					acked.Add(1)
				}
			}()
			if i%8 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	l2 := openLog(t, mk(), "z")
	start := time.Now()
	a0 := acked.Load()
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w2, err := l2.OpenWriter(octx)
	t.Logf("OpenWriter took %v (err %v); zombie acked %d appends during the takeover", time.Since(start), err, acked.Load()-a0)
	stop.Store(true)
	if err != nil {
		t.Fatalf("OpenWriter could not fence a busy zombie: %v", err)
	}
	w2.Close()
	w1.Close()
}

// lateLander makes an old writer's in-flight fragment land at the key the
// new writer is about to fence, just before its fence PUT.
type lateLander struct {
	objstore.Bucket
	once   sync.Once
	craft  func(key string) []byte
	landed atomic.Bool
}

func (b *lateLander) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	if len(data) == 80 { // a fence
		b.once.Do(func() {
			if _, err := b.Bucket.PutIfAbsent(ctx, key, b.craft(key)); err == nil {
				b.landed.Store(true)
			}
		})
	}
	return b.Bucket.PutIfAbsent(ctx, key, data)
}

// TestFenceCountsLateFragment: a fragment of the old writer that lands
// between the new writer's LIST and its fence PUT is below the fence, so it
// is part of the log (its writer may acknowledge it).
func TestFenceCountsLateFragment(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w1 := newLog(t, newClient(t, b, m, nil), "late")
	mustAppend(t, w1, 1, entries(1, 5))
	objs, _ := b.List(ctx, objstore.ListOptions{Prefix: "wal/late/"})
	var hdr codec.Header
	data, _, _ := objstore.ReadAll(ctx, b, objs[len(objs)-1].Key)
	hdr, _, err := codec.DecodeHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	lb := &lateLander{Bucket: b, craft: func(key string) []byte {
		seg, seq, _ := codec.ParseFragmentKey(key)
		h := hdr
		h.Segment, h.Seq, h.FirstIndex, h.Count = seg, seq, 6, 2
		frag, err := codec.AppendFragment(nil, h, [][]byte{[]byte("late-6"), []byte("late-7")})
		if err != nil {
			t.Error(err)
		}
		return frag
	}}
	l2 := openLog(t, newClient(t, lb, m, nil), "late")
	w2 := openWriter(t, l2)
	if !lb.landed.Load() {
		t.Fatalf("the late fragment did not land")
	}
	if w2.LastIndex() != 7 {
		t.Fatalf("recovered LastIndex = %d, want 7 (the late fragment is below the fence)", w2.LastIndex())
	}
	if got := mustGet(t, l2, 7); got != "late-7" {
		t.Fatalf("Get(7) = %q", got)
	}
}

// failUpdatesAfter lets the first n Updates through, then fails the rest.
type failUpdatesAfter struct {
	meta.Store
	n atomic.Int64
}

func (f *failUpdatesAfter) Update(ctx context.Context, k string, v []byte, ver meta.Version) (meta.Version, error) {
	if f.n.Add(-1) < 0 {
		return "", errors.New("injected: metadata store down")
	}
	return f.Store.Update(ctx, k, v, ver)
}

// TestRecoveryAfterInterruptedTakeover: a takeover that wrote its fence but
// could not seal the segment leaves the fence; the next writer must end the
// segment there, not read the fence as data.
func TestRecoveryAfterInterruptedTakeover(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w1 := newLog(t, newClient(t, b, m, func(c *wal.Config) { c.MaxEntries = 2 }), "it")
	mustAppend(t, w1, 1, entries(1, 6))
	fm := &failUpdatesAfter{Store: m}
	fm.n.Store(1) // the epoch bump passes; sealing the fenced segment fails
	l2 := openLog(t, newClient(t, b, fm, func(c *wal.Config) { c.MaxFlushRetries = 1 }), "it")
	if _, err := l2.OpenWriter(ctx); err == nil {
		t.Fatalf("OpenWriter succeeded with the metadata store down")
	}
	l3 := openLog(t, newClient(t, b, m, nil), "it")
	w3 := openWriter(t, l3)
	if w3.LastIndex() != 6 {
		t.Fatalf("recovered LastIndex = %d, want 6", w3.LastIndex())
	}
	mustAppend(t, w3, 7, entries(7, 1))
	wantEntries(t, l3, 1, 7)
}

// TestQueueBounded: with the store stalled, AppendAsync admits at most
// MaxQueueBytes of unacknowledged payload, then blocks until acks free
// space; nothing is lost.
func TestQueueBounded(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	createLog(t, newClient(t, b, m, nil), "q")
	hb := newHeldBucket(b)
	hb.hold.Store(true) // the store is stalled: every PUT waits at the gate
	l := openLog(t, newClient(t, hb, m, func(c *wal.Config) { c.MaxQueueBytes = 1 << 20 }), "q")
	w := openWriter(t, l) // the log is empty: no fragment is written on open
	entry := make([]byte, 64<<10)
	var returned atomic.Int64
	futs := make(chan *wal.Future, 100)
	go func() {
		for i := uint64(1); i <= 40; i++ {
			futs <- w.AppendAsync(i, [][]byte{entry})
			returned.Add(1)
		}
		close(futs)
	}()
	time.Sleep(100 * time.Millisecond)
	if n := returned.Load(); n != 16 {
		t.Fatalf("%d appends of 64 KiB were admitted with the store stalled; MaxQueueBytes 1 MiB allows 16", n)
	}
	close(hb.gate)
	for f := range futs {
		if err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if w.DurableIndex() != 40 {
		t.Fatalf("DurableIndex = %d, want 40", w.DurableIndex())
	}
}
