package wal_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/vfs"
	"github.com/woodpecker-wal/woodpecker/wal"
)

var tierCrashes = flag.Int("tier-crashes", 1000, "power cuts TestTieredPowerLoss makes (-short: 150)")

// plModel is the log a sequence of operations makes.
type plModel struct {
	first, next uint64
	empty       bool
	e           map[uint64]string
}

type plOp struct {
	kind    byte // 'a' append, 'b' TruncateBack, 'f' TruncateFront
	i       uint64
	entries []string
	fut     *wal.Future
	err     error
	done    bool
}

func (m plModel) apply(o plOp) plModel {
	n := plModel{first: m.first, next: m.next, empty: m.empty, e: make(map[uint64]string, len(m.e))}
	for k, v := range m.e {
		n.e[k] = v
	}
	switch o.kind {
	case 'a':
		if n.empty {
			n.empty, n.first, n.next = false, o.i, o.i
		}
		for k, s := range o.entries {
			n.e[o.i+uint64(k)] = s
		}
		n.next = o.i + uint64(len(o.entries))
	case 'b':
		if n.empty || o.i+1 >= n.next {
			break
		}
		if o.i < n.first {
			n.empty, n.next = true, n.first
		} else {
			n.next = o.i + 1
		}
	case 'f':
		if o.i <= n.first {
			break
		}
		n.first = o.i
		if o.i >= n.next {
			n.empty, n.next = true, o.i
		}
	}
	for k := range n.e {
		if n.empty || k < n.first || k >= n.next {
			delete(n.e, k)
		}
	}
	return n
}

func (m plModel) String() string {
	if m.empty {
		return fmt.Sprintf("empty (first %d)", m.first)
	}
	return fmt.Sprintf("[%d, %d]", m.first, m.next-1)
}

// TestTieredPowerLoss cuts the power of the local tier's filesystem at
// seeded random points — in a group commit's write or fdatasync, a segment
// roll (new file, rename, directory fsync), the spare's zero-filling, the
// retirement of uploaded segments, the identity's replacement, and in the
// middle of the recovery itself — while a tiered writer appends and
// truncates with uploads running. Everything not synced is lost or torn at
// the cut (vfs.Strict). After each cut the log must recover on the same
// directory to exactly the result of a prefix of the operations that
// includes every acknowledged one: nothing acknowledged lost, no torn
// record returned, no truncation undone.
func TestTieredPowerLoss(t *testing.T) {
	n := *tierCrashes
	if testing.Short() {
		n = min(n, 150)
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("WOODPECKER_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (rerun with -run TestTieredPowerLoss and WOODPECKER_SEED=%d)", seed, seed)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 7))
	cuts := 0
	for iter := 0; iter < n; iter++ {
		fs := vfs.NewStrict()
		b, m := memStores()
		mod := func(c *wal.Config) {
			c.LocalDir, c.LocalFS, c.LocalSegmentSize = "/local", fs, 1<<10
			c.UploadInterval = time.Duration(1+rng.IntN(4)) * time.Millisecond
			c.GCInterval, c.RetryInterval = -1, time.Millisecond
		}
		c := newClient(t, b, m, mod)
		if err := c.CreateLog(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		l := openLog(t, c, "a")
		w, err := l.OpenWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fs.PowerCutAfter(1+rng.Int64N(300), rand.New(rand.NewPCG(rng.Uint64(), 1))) // its own rng: the cut runs on the writer's goroutines
		var ops []plOp
		model := plModel{first: 1, next: 1, empty: true}
		for k := 0; k < 60 && !fs.PoweredOff(); k++ {
			var o plOp
			switch r := rng.IntN(10); {
			case r < 7 || model.empty:
				o.kind, o.i = 'a', model.next
				if model.empty && rng.IntN(3) == 0 {
					o.i = model.next + uint64(rng.IntN(5))
				}
				for j := 0; j < 1+rng.IntN(4); j++ {
					o.entries = append(o.entries, fmt.Sprintf("%d-%d-%d", iter, k, j)+string(make([]byte, rng.IntN(300))))
				}
			case r < 9:
				o.kind, o.i = 'b', model.first+uint64(rng.IntN(int(model.next-model.first)+1))-1
			default:
				o.kind, o.i = 'f', model.first+uint64(rng.IntN(int(model.next-model.first)+2))
			}
			bs := make([][]byte, len(o.entries))
			for j, s := range o.entries {
				bs[j] = []byte(s)
			}
			switch {
			case o.kind == 'a' && rng.IntN(2) == 0:
				o.fut = w.AppendAsync(o.i, bs)
			case o.kind == 'a':
				o.err, o.done = w.Append(ctx, o.i, bs), true
			case o.kind == 'b':
				o.err, o.done = w.TruncateBack(ctx, o.i), true
			default:
				o.err, o.done = w.TruncateFront(ctx, o.i), true
			}
			model = model.apply(o)
			ops = append(ops, o)
			if o.done && o.err != nil {
				break
			}
			if rng.IntN(15) == 0 {
				_ = w.SyncUploaded(ctx)
			}
		}
		fs.PowerCut(rand.New(rand.NewPCG(rng.Uint64(), 2))) // if the armed cut did not come yet: now
		cuts++
		wal.Crash(w)
		_ = c.Close()
		fs.Restart()
		acked := 0
		pre := plModel{first: 1, next: 1, empty: true}
		for k, o := range ops {
			next := pre.apply(o)
			noop := o.kind != 'a' && sameLog(pre, next) && pre.first == next.first
			pre = next
			if noop {
				continue // a truncation that changes nothing returns at once: it acknowledges nothing before it
			}
			if o.fut != nil {
				select {
				case <-o.fut.Done():
					o.err, o.done = o.fut.Err(), true
				default:
				}
			}
			if o.done && o.err == nil {
				acked = k + 1
			}
		}
		// Recover, sometimes through another power cut in the middle.
		var w2 *wal.Writer
		var l2 *wal.Log
		for attempt := 0; ; attempt++ {
			c2 := newClient(t, b, m, mod)
			l2 = openLog(t, c2, "a")
			if attempt == 0 && rng.IntN(3) == 0 {
				fs.PowerCutAfter(1+rng.Int64N(40), rand.New(rand.NewPCG(rng.Uint64(), 3)))
			}
			w2, err = l2.OpenWriter(ctx)
			fs.PowerCutAfter(0, nil)
			if err == nil && !fs.PoweredOff() {
				break
			}
			if !fs.PoweredOff() {
				t.Fatalf("seed %d iter %d: recovery failed without a power cut: %v", seed, iter, err)
			}
			cuts++
			if w2 != nil {
				wal.Crash(w2)
			}
			_ = c2.Close()
			fs.Restart()
			if attempt > 5 {
				t.Fatalf("seed %d iter %d: recovery keeps failing: %v", seed, iter, err)
			}
		}
		got := plModel{e: map[uint64]string{}}
		first, last := w2.FirstIndex(), w2.LastIndex()
		got.empty = first == 0
		if !got.empty {
			got.first, got.next = first, last+1
			for i := first; i <= last; i++ {
				e, err := l2.Get(ctx, i)
				if err != nil {
					t.Fatalf("seed %d iter %d: Get(%d) after recovery: %v", seed, iter, i, err)
				}
				got.e[i] = string(e)
			}
		}
		pm := plModel{first: 1, next: 1, empty: true}
		ok := false
		for j := 0; j <= len(ops); j++ {
			if j >= acked && sameLog(pm, got) {
				ok = true
				break
			}
			if j < len(ops) {
				pm = pm.apply(ops[j])
			}
		}
		if !ok {
			pm := plModel{first: 1, next: 1, empty: true}
			for k, o := range ops {
				pm = pm.apply(o)
				t.Logf("op %d: %c %d (%d entries) done=%v err=%v -> %v", k, o.kind, o.i, len(o.entries), o.done, o.err, pm)
			}
			t.Fatalf("seed %d iter %d: recovered %v matches no prefix of the %d operations that includes the %d acknowledged (all ops give %v)",
				seed, iter, got, len(ops), acked, model)
		}
		if err := w2.Close(); err != nil {
			t.Fatalf("seed %d iter %d: close after recovery: %v", seed, iter, err)
		}
	}
	t.Logf("%d power cuts", cuts)
}

func sameLog(a, b plModel) bool {
	if a.empty || b.empty {
		return a.empty == b.empty
	}
	if a.first != b.first || a.next != b.next {
		return false
	}
	for i := a.first; i < a.next; i++ {
		if a.e[i] != b.e[i] {
			return false
		}
	}
	return true
}

// TestTieredOneFdatasyncPerGroupCommit counts the local filesystem's calls:
// each synchronous append is one write and one fdatasync (no directory
// fsync outside a segment roll), and concurrent appends share commits.
func TestTieredOneFdatasyncPerGroupCommit(t *testing.T) {
	ctx := context.Background()
	fs := vfs.Counting(vfs.OS)
	b, m := memStores()
	c := newClient(t, b, m, func(c *wal.Config) {
		c.LocalDir, c.LocalFS, c.UploadInterval, c.GCInterval = t.TempDir(), fs, time.Hour, -1
	})
	_, w := newLog(t, c, "a")
	defer w.Close()
	wal.WaitSpare(w) // the next segment is zero-filled in the background
	before := fs.Counts()
	const n = 100
	for i := uint64(1); i <= n; i++ {
		mustAppend(t, w, i, entries(i, 1))
	}
	d := fs.Counts().Sub(before)
	if d.Syncs != n || d.Writes != n || d.SyncDirs != 0 {
		t.Fatalf("%d synchronous appends made %d fdatasyncs, %d writes, %d directory fsyncs; want %d, %d, 0", n, d.Syncs, d.Writes, d.SyncDirs, n, n)
	}
	before = fs.Counts()
	done := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			var err error
			for k := 0; k < 50 && err == nil; k++ {
				// One writer, many callers: each takes the next index itself.
				err = appendNext(ctx, w, g)
			}
			done <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	d = fs.Counts().Sub(before)
	t.Logf("400 concurrent appends: %d fdatasyncs, %d writes", d.Syncs, d.Writes)
	if d.Syncs != d.Writes || d.Syncs > 400 {
		t.Fatalf("400 concurrent appends: %d fdatasyncs for %d writes; want one per write, at most 400", d.Syncs, d.Writes)
	}
}

var appendMu = make(chan struct{}, 1)

// appendNext appends one entry at the writer's next index; the index is
// taken and queued under a lock, the wait for the ack is concurrent.
func appendNext(ctx context.Context, w *wal.Writer, g int) error {
	appendMu <- struct{}{}
	i := w.LastIndex() + 1
	fut := w.AppendAsync(i, [][]byte{[]byte(fmt.Sprintf("g%d-%d", g, i))})
	<-appendMu
	return fut.Wait(ctx)
}
