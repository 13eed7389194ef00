package wal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woodpecker-wal/woodpecker/internal/vfs"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// tieredClient is a client in tiered mode on dir, over b and m, whose
// uploader waits an hour unless told (SyncUploaded, Close).
func tieredClient(t testing.TB, b objstore.Bucket, m meta.Store, dir string, mod func(*wal.Config)) *wal.Client {
	return newClient(t, b, m, func(c *wal.Config) {
		c.LocalDir, c.UploadInterval, c.LocalSegmentSize = dir, time.Hour, 64<<10
		c.GCInterval = -1
		if mod != nil {
			mod(c)
		}
	})
}

func TestTieredAcksLocallyAndUploadsOnRequest(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := tieredClient(t, b, m, t.TempDir(), nil)
	l, w := newLog(t, c, "a")
	for i := uint64(1); i <= 20; i++ {
		mustAppend(t, w, i, entries(i, 1))
	}
	if got := w.DurableIndex(); got != 20 {
		t.Fatalf("DurableIndex = %d, want 20", got)
	}
	if got := wal.UploadedIndex(w); got != 0 {
		t.Fatalf("UploadedIndex = %d before any upload, want 0", got)
	}
	if n := countObjects(t, b, ""); n != 0 {
		t.Fatalf("%d objects in the bucket before the first upload", n)
	}
	// This process reads what is locally durable; another one sees the bucket.
	wantEntries(t, l, 1, 20)
	r := newReader(t, l, wal.Earliest)
	wantNexts(t, ctx, r, 1, 20)
	other := openLog(t, newClient(t, b, m, nil), "a")
	if last, err := other.LastIndex(ctx); err != nil || last != 0 {
		t.Fatalf("another process: LastIndex = %d, %v; want 0 before the upload", last, err)
	}
	if err := w.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	if got := wal.UploadedIndex(w); got != 20 {
		t.Fatalf("UploadedIndex = %d after SyncUploaded, want 20", got)
	}
	wantEntries(t, other, 1, 20)
	mustAppend(t, w, 21, entries(21, 1))
	wantNexts(t, ctx, r, 21, 21)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, other, 1, 21)
}

// The uploader ships on its own every UploadInterval.
func TestTieredUploadsEveryInterval(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := tieredClient(t, b, m, t.TempDir(), func(c *wal.Config) { c.UploadInterval = 20 * time.Millisecond })
	_, w := newLog(t, c, "a")
	mustAppend(t, w, 1, entries(1, 5))
	other := openLog(t, newClient(t, b, m, nil), "a")
	deadline := time.Now().Add(10 * time.Second)
	for {
		last, err := other.LastIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if last == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bucket holds up to %d after 10s; the uploader did not ship", last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTieredCleanCloseLeavesNothingPending(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	dir := t.TempDir()
	c := tieredClient(t, b, m, dir, nil)
	_, w := newLog(t, c, "a")
	mustAppend(t, w, 1, entries(1, 10))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "a", "*.seg"))
	if len(segs) != 0 {
		t.Fatalf("local segments left after a clean close: %v", segs)
	}
	// Another machine takes over: nothing was lost, so no marker.
	c2 := tieredClient(t, b, m, t.TempDir(), nil)
	l2 := openLog(t, c2, "a")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatalf("open after a clean close: %v", err)
	}
	wantEntries(t, l2, 1, 10)
	if _, ok := w2.LostTail(); ok {
		t.Fatal("a lost-tail marker after a clean close")
	}
	mustAppend(t, w2, 11, entries(11, 1))
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTieredRestartOnSameDirRecoversAndUploads(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	dir := t.TempDir()
	c := tieredClient(t, b, m, dir, nil)
	_, w := newLog(t, c, "a")
	mustAppend(t, w, 1, entries(1, 10))
	if err := w.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 11, entries(11, 10)) // acknowledged locally only
	if err := w.TruncateBack(ctx, 15); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 16, entriesOf("new", 16, 5))
	wal.Crash(w)

	c2 := tieredClient(t, b, m, dir, nil)
	l2 := openLog(t, c2, "a")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatalf("recovery on the same directory: %v", err)
	}
	wantEntries(t, l2, 1, 15)
	wantEntriesOf(t, l2, "new", 16, 20)
	if got := wal.UploadedIndex(w2); got != 20 {
		t.Fatalf("after recovery UploadedIndex = %d, want 20 (recovery uploads the local tail)", got)
	}
	other := openLog(t, newClient(t, b, m, nil), "a")
	wantEntries(t, other, 1, 15)
	wantEntriesOf(t, other, "new", 16, 20)
	if _, ok := w2.LostTail(); ok {
		t.Fatal("a lost-tail marker after a recovery on the same directory")
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTieredLostDirReportsLostTail(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	dir := t.TempDir()
	c := tieredClient(t, b, m, dir, nil)
	_, w := newLog(t, c, "a")
	mustAppend(t, w, 1, entries(1, 10))
	if err := w.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 11, entries(11, 10))
	wal.Crash(w)
	if err := os.RemoveAll(dir); err != nil { // the disk is lost
		t.Fatal(err)
	}
	c2 := tieredClient(t, b, m, dir, nil)
	l2 := openLog(t, c2, "a")
	_, err := l2.OpenWriter(ctx)
	var lt *wal.LostTailError
	if !errors.As(err, &lt) || !errors.Is(err, wal.ErrLostTail) || lt.After != 10 {
		t.Fatalf("open after losing the local tier: %v; want a LostTailError with After 10", err)
	}
	// The marker survives further opens (and a process without tiering).
	plain := openLog(t, newClient(t, b, m, nil), "a")
	if _, err := plain.OpenWriter(ctx); !errors.As(err, &lt) || lt.After != 10 {
		t.Fatalf("second open: %v; want the same LostTailError", err)
	}
	if after, ok, err := plain.LostTail(ctx); err != nil || !ok || after != 10 {
		t.Fatalf("Log.LostTail = %d, %v, %v", after, ok, err)
	}
	if _, err := l2.OpenWriter(ctx, wal.AcceptLostTail(9)); !errors.As(err, &lt) {
		t.Fatalf("accepting the wrong point: %v; want the LostTailError", err)
	}
	w2, err := l2.OpenWriter(ctx, wal.AcceptLostTail(10))
	if err != nil {
		t.Fatal(err)
	}
	wantEntries(t, l2, 1, 10)
	mustAppend(t, w2, 11, entriesOf("b", 11, 3))
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	// Still there after a clean close, until cleared.
	w3, err := l2.OpenWriter(ctx, wal.AcceptLostTail(10))
	if err != nil {
		t.Fatal(err)
	}
	if err := w3.ClearLostTail(ctx, 9); err == nil {
		t.Fatal("ClearLostTail with the wrong point succeeded")
	}
	if err := w3.ClearLostTail(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if err := w3.Close(); err != nil {
		t.Fatal(err)
	}
	w4, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatalf("open after ClearLostTail: %v", err)
	}
	wantEntriesOf(t, l2, "b", 11, 13)
	w4.Close()
}

func TestTieredTakeoverDiscardsStaleLocalTail(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	dir := t.TempDir()
	c := tieredClient(t, b, m, dir, nil)
	_, w := newLog(t, c, "a")
	mustAppend(t, w, 1, entries(1, 5))
	if err := w.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 6, entriesOf("stale", 6, 5))
	wal.Crash(w)

	// Another machine takes the log over and writes its own history.
	c2 := tieredClient(t, b, m, t.TempDir(), nil)
	l2 := openLog(t, c2, "a")
	w2, err := l2.OpenWriter(ctx, wal.AcceptLostTail(5))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w2, 6, entriesOf("owner", 6, 5))
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	// The first machine comes back: its local tail must not be uploaded.
	c3 := tieredClient(t, b, m, dir, nil)
	l3 := openLog(t, c3, "a")
	w3, err := l3.OpenWriter(ctx, wal.AcceptLostTail(5))
	if err != nil {
		t.Fatal(err)
	}
	wantEntries(t, l3, 1, 5)
	wantEntriesOf(t, l3, "owner", 6, 10)
	if got := c3.Stats().TiersDiscarded; got != 1 {
		t.Fatalf("TiersDiscarded = %d, want 1", got)
	}
	w3.Close()
}

func TestTieredTruncateBackOfUploadedEntriesIsInTheRecord(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := tieredClient(t, b, m, t.TempDir(), nil)
	_, w := newLog(t, c, "a")
	mustAppend(t, w, 1, entries(1, 10))
	if err := w.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w, 11, entries(11, 5)) // local only: the cut of these needs no bucket write
	if err := w.TruncateBack(ctx, 4); err != nil {
		t.Fatal(err)
	}
	other := openLog(t, newClient(t, b, m, nil), "a")
	if last, err := other.LastIndex(ctx); err != nil || last != 4 {
		t.Fatalf("another process after TruncateBack(4): LastIndex = %d, %v; want 4", last, err)
	}
	mustAppend(t, w, 5, entriesOf("x", 5, 3))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantEntries(t, other, 1, 4)
	wantEntriesOf(t, other, "x", 5, 7)
	if last, _ := other.LastIndex(ctx); last != 7 {
		t.Fatalf("LastIndex = %d, want 7", last)
	}
}

func TestTieredSecondWriterOnDirIsRefused(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	dir := t.TempDir()
	_, w := newLog(t, tieredClient(t, b, m, dir, nil), "a")
	defer w.Close()
	l2 := openLog(t, tieredClient(t, b, m, dir, nil), "a")
	if w2, err := l2.OpenWriter(ctx); err == nil {
		w2.Close()
		t.Fatal("a second writer on the same local directory opened")
	} else if !errors.Is(err, vfs.ErrLocked) {
		t.Fatal(err)
	} else {
		t.Logf("refused: %v", err)
	}
}

func TestTieredMetrics(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b, m := memStores()
	c := tieredClient(t, b, m, t.TempDir(), func(c *wal.Config) { c.Registerer = reg })
	_, w := newLog(t, c, "a")
	mustAppend(t, w, 1, entries(1, 7))
	got := gatherValues(t, reg)
	want := map[string]float64{
		"woodpecker_wal_tier_durable_index{log=a}":      7,
		"woodpecker_wal_tier_uploaded_index{log=a}":     0,
		"woodpecker_wal_tier_upload_lag_entries{log=a}": 7,
		"woodpecker_wal_tier_upload_lag_bytes{log=a}":   float64(len(entryAt(1)) * 7),
		"woodpecker_wal_tier_commits_total":             1,
		"woodpecker_wal_tier_commit_latency_seconds":    1,
		"woodpecker_wal_tier_uploads_total":             0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got["woodpecker_wal_tier_upload_lag_seconds{log=a}"] <= 0 {
		t.Errorf("upload lag seconds = %v, want > 0", got["woodpecker_wal_tier_upload_lag_seconds{log=a}"])
	}
	if err := w.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	got = gatherValues(t, reg)
	for k, v := range map[string]float64{
		"woodpecker_wal_tier_uploaded_index{log=a}":     7,
		"woodpecker_wal_tier_upload_lag_entries{log=a}": 0,
		"woodpecker_wal_tier_upload_lag_bytes{log=a}":   0,
		"woodpecker_wal_tier_upload_lag_seconds{log=a}": 0,
		"woodpecker_wal_tier_uploads_total":             1,
		"woodpecker_wal_tier_upload_latency_seconds":    1,
	} {
		if got[k] != v {
			t.Errorf("after SyncUploaded: %s = %v, want %v", k, got[k], v)
		}
	}
	if s := w.TierStats(); s.DurableIndex != 7 || s.UploadedIndex != 7 || s.Commits != 1 || s.Uploads != 1 {
		t.Errorf("TierStats = %+v", s)
	}
}

// TestTieredOutage: with the bucket down, appends go on being acknowledged
// locally until MaxUploadLag, then block (backpressure, not memory); once
// the bucket is back the lag drains and nothing is lost.
func TestTieredOutage(t *testing.T) {
	ctx := context.Background()
	inner, m := memStores()
	fb := fault.Wrap(inner, 1)
	c := tieredClient(t, fb, m, t.TempDir(), func(c *wal.Config) {
		c.UploadInterval, c.MaxUploadLag = 5*time.Millisecond, 10<<10
	})
	_, w := newLog(t, c, "a")
	defer w.Close()
	fb.FailRate(fault.OpPut|fault.OpPutIfAbsent, 1) // the bucket is down for writes
	entry := make([]byte, 1<<10)
	i := uint64(1)
	for ; i <= 10; i++ { // 10 KiB: up to the lag bound
		if err := w.Append(ctx, i, [][]byte{entry}); err != nil {
			t.Fatalf("append %d during the outage, below MaxUploadLag: %v", i, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := w.Append(short, i, [][]byte{entry})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("append beyond MaxUploadLag during the outage: %v; want it to block (DeadlineExceeded)", err)
	}
	if s := w.TierStats(); s.LagBytes != 10<<10 || s.UploadedIndex != 0 {
		t.Fatalf("during the outage: %+v; want 10 KiB of lag and nothing uploaded", s)
	}
	fb.Heal()
	for ; i <= 30; i++ {
		if err := w.Append(ctx, i, [][]byte{entry}); err != nil {
			t.Fatalf("append %d after the outage: %v", i, err)
		}
	}
	if err := w.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	other := openLog(t, newClient(t, inner, m, nil), "a")
	if last, err := other.LastIndex(ctx); err != nil || last != 30 {
		t.Fatalf("after the outage another process sees up to %d (%v); want 30", last, err)
	}
}

// TestTieredFencedWriterAcksAreLost asserts the documented rule for a
// fenced tiered writer: until an upload tells it, it goes on acknowledging
// locally, and those acknowledgements are lost — the new owner's history
// is the log, and the zombie's tail is never uploaded, now or on restart.
func TestTieredFencedWriterAcksAreLost(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	dir := t.TempDir()
	_, zombie := newLog(t, tieredClient(t, b, m, dir, nil), "a")
	mustAppend(t, zombie, 1, entries(1, 5))
	if err := zombie.SyncUploaded(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, newClient(t, b, m, nil), "a")
	owner, err := l2.OpenWriter(ctx, wal.AcceptLostTail(5))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, owner, 6, entriesOf("owner", 6, 3))
	// The zombie does not know yet: its local acknowledgements go on.
	if err := zombie.Append(ctx, 6, entriesOf("zombie", 6, 5)); err != nil {
		t.Fatalf("a fenced tiered writer's local append failed before any upload: %v", err)
	}
	if err := zombie.SyncUploaded(ctx); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("the zombie's upload: %v; want ErrFenced", err)
	}
	wantEntries(t, l2, 1, 5)
	wantEntriesOf(t, l2, "owner", 6, 8)
	_ = zombie.Close()
	// Restarted on its directory, the zombie's tail is discarded.
	c3 := tieredClient(t, b, m, dir, nil)
	w3, err := openLog(t, c3, "a").OpenWriter(ctx, wal.AcceptLostTail(5))
	if err != nil {
		t.Fatal(err)
	}
	wantEntriesOf(t, l2, "owner", 6, 8)
	if last := w3.LastIndex(); last != 8 {
		t.Fatalf("after the zombie's restart LastIndex = %d, want 8", last)
	}
	w3.Close()
	_ = owner.Close()
}
