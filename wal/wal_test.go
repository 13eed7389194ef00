package wal_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

func TestBasicAppendReadReopen(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 3 })
	l := createLog(t, c, "l1")
	wantErr(t, c.CreateLog(ctx, "l1"), wal.ErrLogExists, "second CreateLog")
	w := openWriter(t, l)
	mustAppend(t, w, 5, entries(5, 3))
	var futs []*wal.Future
	for i := uint64(8); i < 40; i += 2 {
		futs = append(futs, w.AppendAsync(i, entries(i, 2)))
	}
	for _, f := range futs {
		if err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, w.Append(ctx, 39, entries(39, 1)), wal.ErrBadIndex, "backwards append")
	wantErr(t, w.Append(ctx, 41, entries(41, 1)), wal.ErrBadIndex, "gap append")
	wantEntries(t, l, 5, 39)
	wantGetErr(t, l, 4, wal.ErrTruncated)
	wantGetErr(t, l, 40, wal.ErrOutOfRange)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// A second client (another process) recovers the log.
	l2 := openLog(t, newClient(t, b, m, nil), "l1")
	if last, err := l2.LastIndex(ctx); err != nil || last != 39 {
		t.Fatalf("LastIndex from another client = %d, %v", last, err)
	}
	w2 := openWriter(t, l2)
	if got := w2.LastIndex(); got != 39 {
		t.Fatalf("recovered LastIndex = %d", got)
	}
	mustAppend(t, w2, 40, entries(40, 5))
	wantEntries(t, l2, 5, 44)
	// Truncations.
	if err := w2.TruncateBack(ctx, 30); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, w2, 31, [][]byte{[]byte("new-31")})
	if got := mustGet(t, l2, 31); got != "new-31" {
		t.Fatalf("Get(31) after rewrite = %q", got)
	}
	wantGetErr(t, l2, 32, wal.ErrOutOfRange)
	if err := w2.TruncateFront(ctx, 20); err != nil {
		t.Fatal(err)
	}
	wantGetErr(t, l2, 19, wal.ErrTruncated)
	wantEntries(t, l2, 20, 20)
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	// Recovery sees the truncations.
	w3 := openWriter(t, l2)
	if w3.FirstIndex() != 20 || w3.LastIndex() != 31 {
		t.Fatalf("recovered bounds [%d, %d], want [20, 31]", w3.FirstIndex(), w3.LastIndex())
	}
}

func TestFencing(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	l1 := createLog(t, newClient(t, b, m, nil), "f")
	l2 := openLog(t, newClient(t, b, m, nil), "f")
	w1 := openWriter(t, l1)
	mustAppend(t, w1, 1, entries(1, 10))
	w2 := openWriter(t, l2)
	wantErr(t, w1.Append(ctx, 11, entries(11, 1)), wal.ErrFenced, "zombie append")
	mustAppend(t, w2, 11, [][]byte{[]byte("w2")})
	if got := mustGet(t, l2, 11); got != "w2" {
		t.Fatalf("Get(11) = %q", got)
	}
	wantErr(t, w1.TruncateFront(ctx, 5), wal.ErrFenced, "zombie truncate")
}

func TestReaderTails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, m := memStores()
	poll := func(c *wal.Config) { c.PollInterval = 5 * time.Millisecond }
	l, w := newLog(t, newClient(t, b, m, poll), "r")
	mustAppend(t, w, 1, entries(1, 5))
	r := newReader(t, l, wal.Earliest)
	// A reader in another client polls.
	r2 := newReader(t, openLog(t, newClient(t, b, m, poll), "r"), 3)
	go func() {
		for i := uint64(6); i <= 50; i++ {
			if err := w.Append(ctx, i, entries(i, 1)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wantNexts(t, ctx, r, 1, 50)
	wantNexts(t, ctx, r2, 3, 50)
}

// TestMeta: SetMeta values are durable, survive a new writer, are ordered
// after earlier appends, and a fenced writer cannot change them.
func TestMeta(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	_, w := newLog(t, newClient(t, b, m, nil), "meta")
	fut := w.AppendAsync(1, entries(1, 3))
	if err := w.SetMeta(ctx, map[string][]byte{"term": []byte("7"), "vote": []byte("n1")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fut.Done():
	default:
		t.Fatalf("SetMeta returned before the append queued before it was durable")
	}
	if err := w.SetMeta(ctx, map[string][]byte{"vote": nil}); err != nil {
		t.Fatal(err)
	}
	if err := w.SetMeta(ctx, map[string][]byte{"big": make([]byte, wal.MaxMetaSize+1)}); err == nil {
		t.Fatalf("oversized meta accepted")
	}
	if err := w.Append(ctx, 4, entries(4, 1)); err != nil {
		t.Fatalf("writer unusable after a rejected SetMeta: %v", err)
	}
	l2 := openLog(t, newClient(t, b, m, nil), "meta")
	w2 := openWriter(t, l2)
	got := w2.Meta()
	if string(got["term"]) != "7" || got["vote"] != nil || len(got) != 1 {
		t.Fatalf("meta after reopen = %q", got)
	}
	wantErr(t, w.SetMeta(ctx, map[string][]byte{"term": []byte("1")}), wal.ErrFenced, "fenced SetMeta")
	w.Close()
	if mv, err := l2.Meta(ctx); err != nil || string(mv["term"]) != "7" {
		t.Fatalf("Log.Meta = %q, %v", mv, err)
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for round := uint64(1); round <= 2; round++ {
		c, err := wal.OpenURL(ctx, "file://"+dir, "", wal.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var l *wal.Log
		if round == 1 {
			l = createLog(t, c, "u")
		} else {
			l = openLog(t, c, "u")
		}
		w := openWriter(t, l)
		mustAppend(t, w, round, entries(round, 1))
		if w.LastIndex() != round {
			t.Fatalf("round %d: LastIndex %d", round, w.LastIndex())
		}
		w.Close()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := memStores()
	if _, err := wal.OpenURL(ctx, "file://"+dir, "", wal.Config{Bucket: b}); err == nil {
		t.Fatalf("OpenURL with Config.Bucket set succeeded")
	}
	if _, err := wal.OpenURL(ctx, "nope://x", "", wal.Config{}); err == nil {
		t.Fatalf("OpenURL with a bad URL succeeded")
	}
}

func TestConfigValidation(t *testing.T) {
	b, m := memStores()
	cases := []struct {
		mod  func(*wal.Config)
		want string
	}{
		{func(c *wal.Config) { c.Bucket = nil }, "Bucket is required"},
		{func(c *wal.Config) { c.Meta = nil }, "Meta is required"},
		{func(c *wal.Config) { c.Prefix = "Bad/Prefix" }, "Config.Prefix"},
		{func(c *wal.Config) { c.MaxFlushSize = 32 << 20 }, "MaxFlushSize"},
		{func(c *wal.Config) { c.MaxFlushThreads = 1000 }, "MaxFlushThreads"},
		{func(c *wal.Config) { c.MaxEntries = -1 }, "MaxEntries"},
		{func(c *wal.Config) { c.Compression = 9 }, "Compression"},
	}
	for _, tc := range cases {
		cfg := wal.Config{Bucket: b, Meta: m}
		tc.mod(&cfg)
		_, err := wal.Open(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open with bad config = %v, want an error naming %q", err, tc.want)
		}
	}
	c := newClient(t, b, m, nil)
	for _, name := range []string{"", "UPPER", "a/b", "dash-ed", strings.Repeat("x", 65)} {
		if err := c.CreateLog(context.Background(), name); err == nil {
			t.Errorf("CreateLog(%q) succeeded", name)
		}
	}
}

func TestListAndDeleteLogs(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := newClient(t, b, m, nil)
	for _, n := range []string{"b", "a", "c"} {
		if err := c.CreateLog(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	w := openWriter(t, openLog(t, c, "b"))
	mustAppend(t, w, 1, entries(1, 10))
	if err := c.DeleteLog(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, w.Append(ctx, 11, entries(11, 1)), wal.ErrFenced, "append to a deleted log")
	w.Close()
	names, err := c.ListLogs(ctx)
	if err != nil || strings.Join(names, ",") != "a,c" {
		t.Fatalf("ListLogs = %v, %v", names, err)
	}
	if n := countObjects(t, b, "wal/b/"); n != 1 {
		t.Fatalf("DeleteLog left %d objects, want only the fence", n)
	}
	_, err = c.OpenLog(ctx, "b")
	wantErr(t, err, wal.ErrLogNotFound, "OpenLog of a deleted log")
	if err := c.DeleteLog(ctx, "b"); err != nil {
		t.Fatalf("DeleteLog is not idempotent: %v", err)
	}
	if err := c.CreateLog(ctx, "b"); err != nil {
		t.Fatalf("re-create after delete: %v", err)
	}
}

// An interrupted DeleteLog is finished by the next call.
func TestDeleteLogResumes(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	fb := fault.Wrap(b, 1)
	c := newClient(t, fb, m, func(c *wal.Config) { c.MaxEntries = 1 })
	_, w := newLog(t, c, "d")
	mustAppend(t, w, 1, entries(1, 5))
	w.Close()
	fb.FailNth(fault.OpDelete, 2)
	if err := c.DeleteLog(ctx, "d"); err == nil {
		t.Fatalf("DeleteLog with a failing DELETE succeeded")
	}
	if names, _ := c.ListLogs(ctx); len(names) != 0 {
		t.Fatalf("a log being deleted is listed: %v", names)
	}
	if err := c.DeleteLog(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	// Only fences are left: the first deletion's and the resumed one's.
	left, err := b.List(ctx, objstore.ListOptions{Prefix: "wal/d/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range left {
		if o.Size != codec.FixedHeaderSize {
			t.Fatalf("resumed DeleteLog left %s (%d bytes), not a fence", o.Key, o.Size)
		}
	}
	if len(left) > 2 {
		t.Fatalf("resumed DeleteLog left %d fences", len(left))
	}
	_, err = m.Get(ctx, "wal/logs/d")
	wantErr(t, err, meta.ErrNotFound, "the deleted log's record")
}
