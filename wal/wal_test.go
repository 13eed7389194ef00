package wal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

func newClient(t testing.TB, b objstore.Bucket, m meta.Store, mod func(*wal.Config)) *wal.Client {
	t.Helper()
	cfg := wal.Config{Bucket: b, Meta: m, RetryInterval: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := wal.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func entries(first uint64, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("entry-%d", first+uint64(i)))
	}
	return out
}

func mustGet(t *testing.T, l *wal.Log, i uint64) string {
	t.Helper()
	b, err := l.Get(context.Background(), i)
	if err != nil {
		t.Fatalf("Get(%d): %v", i, err)
	}
	return string(b)
}

func TestBasicAppendReadReopen(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, func(c *wal.Config) { c.SegmentMaxFragments = 3 })
	if err := c.CreateLog(ctx, "l1"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateLog(ctx, "l1"); !errors.Is(err, wal.ErrLogExists) {
		t.Fatalf("second CreateLog = %v", err)
	}
	l, err := c.OpenLog(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 5, entries(5, 3)); err != nil {
		t.Fatal(err)
	}
	var futs []*wal.Future
	for i := uint64(8); i < 40; i += 2 {
		futs = append(futs, w.AppendAsync(i, entries(i, 2)))
	}
	for _, f := range futs {
		if err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Append(ctx, 39, entries(39, 1)); !errors.Is(err, wal.ErrBadIndex) {
		t.Fatalf("backwards append = %v", err)
	}
	if err := w.Append(ctx, 41, entries(41, 1)); !errors.Is(err, wal.ErrBadIndex) {
		t.Fatalf("gap append = %v", err)
	}
	for i := uint64(5); i < 40; i++ {
		if got := mustGet(t, l, i); got != fmt.Sprintf("entry-%d", i) {
			t.Fatalf("Get(%d) = %q", i, got)
		}
	}
	if _, err := l.Get(ctx, 4); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("Get(4) = %v", err)
	}
	if _, err := l.Get(ctx, 40); !errors.Is(err, wal.ErrOutOfRange) {
		t.Fatalf("Get(40) = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// A second client (another process) recovers the log.
	c2 := newClient(t, b, m, nil)
	l2, err := c2.OpenLog(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	if last, err := l2.LastIndex(ctx); err != nil || last != 39 {
		t.Fatalf("LastIndex from another client = %d, %v", last, err)
	}
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := w2.LastIndex(); got != 39 {
		t.Fatalf("recovered LastIndex = %d", got)
	}
	if err := w2.Append(ctx, 40, entries(40, 5)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(5); i < 45; i++ {
		if got := mustGet(t, l2, i); got != fmt.Sprintf("entry-%d", i) {
			t.Fatalf("after reopen Get(%d) = %q", i, got)
		}
	}
	// Truncations.
	if err := w2.TruncateBack(ctx, 30); err != nil {
		t.Fatal(err)
	}
	if err := w2.Append(ctx, 31, [][]byte{[]byte("new-31")}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, l2, 31); got != "new-31" {
		t.Fatalf("Get(31) after rewrite = %q", got)
	}
	if _, err := l2.Get(ctx, 32); !errors.Is(err, wal.ErrOutOfRange) {
		t.Fatalf("Get(32) after truncate = %v", err)
	}
	if err := w2.TruncateFront(ctx, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Get(ctx, 19); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("Get(19) = %v", err)
	}
	if got := mustGet(t, l2, 20); got != "entry-20" {
		t.Fatalf("Get(20) = %q", got)
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	// Recovery sees the truncations.
	w3, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Close()
	if w3.FirstIndex() != 20 || w3.LastIndex() != 31 {
		t.Fatalf("recovered bounds [%d, %d], want [20, 31]", w3.FirstIndex(), w3.LastIndex())
	}
}

func TestFencing(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	c1 := newClient(t, b, m, nil)
	c2 := newClient(t, b, m, nil)
	if err := c1.CreateLog(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	l1, _ := c1.OpenLog(ctx, "f")
	l2, _ := c2.OpenLog(ctx, "f")
	w1, err := l1.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Append(ctx, 1, entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := w1.Append(ctx, 11, entries(11, 1)); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie append = %v, want ErrFenced", err)
	}
	if err := w2.Append(ctx, 11, [][]byte{[]byte("w2")}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, l2, 11); got != "w2" {
		t.Fatalf("Get(11) = %q", got)
	}
	if err := w1.TruncateFront(ctx, 5); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("zombie truncate = %v", err)
	}
	w1.Close()
}

func TestReaderTails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, func(c *wal.Config) { c.PollInterval = 5 * time.Millisecond })
	c.CreateLog(ctx, "r")
	l, _ := c.OpenLog(ctx, "r")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(ctx, 1, entries(1, 5)); err != nil {
		t.Fatal(err)
	}
	r, err := l.NewReader(ctx, wal.Earliest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A reader in another client polls.
	c2 := newClient(t, b, m, func(c *wal.Config) { c.PollInterval = 5 * time.Millisecond })
	l2, _ := c2.OpenLog(ctx, "r")
	r2, err := l2.NewReader(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := uint64(6); i <= 50; i++ {
			if err := w.Append(ctx, i, entries(i, 1)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for want := uint64(1); want <= 50; want++ {
		i, e, err := r.Next(ctx)
		if err != nil || i != want || string(e) != fmt.Sprintf("entry-%d", i) {
			t.Fatalf("Next = %d %q %v, want %d", i, e, err, want)
		}
	}
	for want := uint64(3); want <= 50; want++ {
		i, e, err := r2.Next(ctx)
		if err != nil || i != want || string(e) != fmt.Sprintf("entry-%d", i) {
			t.Fatalf("remote Next = %d %q %v, want %d", i, e, err, want)
		}
	}
}

// TestMeta: SetMeta values are durable, survive a new writer, are ordered
// after earlier appends, and a fenced writer cannot change them.
func TestMeta(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, nil)
	c.CreateLog(ctx, "meta")
	l, _ := c.OpenLog(ctx, "meta")
	w, err := l.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
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
	c2 := newClient(t, b, m, nil)
	l2, _ := c2.OpenLog(ctx, "meta")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	got := w2.Meta()
	if string(got["term"]) != "7" || got["vote"] != nil || len(got) != 1 {
		t.Fatalf("meta after reopen = %q", got)
	}
	if err := w.SetMeta(ctx, map[string][]byte{"term": []byte("1")}); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("fenced SetMeta = %v, want ErrFenced", err)
	}
	w.Close()
	if mv, err := l2.Meta(ctx); err != nil || string(mv["term"]) != "7" {
		t.Fatalf("Log.Meta = %q, %v", mv, err)
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for round := 0; round < 2; round++ {
		c, err := wal.OpenURL(ctx, "file://"+dir, "", wal.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			if err := c.CreateLog(ctx, "u"); err != nil {
				t.Fatal(err)
			}
		}
		l, err := c.OpenLog(ctx, "u")
		if err != nil {
			t.Fatal(err)
		}
		w, err := l.OpenWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Append(ctx, uint64(round+1), entries(uint64(round+1), 1)); err != nil {
			t.Fatal(err)
		}
		if w.LastIndex() != uint64(round+1) {
			t.Fatalf("round %d: LastIndex %d", round, w.LastIndex())
		}
		w.Close()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := wal.OpenURL(ctx, "file://"+dir, "", wal.Config{Bucket: objmem.New()}); err == nil {
		t.Fatalf("OpenURL with Config.Bucket set succeeded")
	}
	if _, err := wal.OpenURL(ctx, "nope://x", "", wal.Config{}); err == nil {
		t.Fatalf("OpenURL with a bad URL succeeded")
	}
}

func TestConfigValidation(t *testing.T) {
	b, m := objmem.New(), metamem.New()
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
	b, m := objmem.New(), metamem.New()
	c := newClient(t, b, m, nil)
	for _, n := range []string{"b", "a", "c"} {
		if err := c.CreateLog(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := c.OpenLog(ctx, "b")
	w, _ := l.OpenWriter(ctx)
	if err := w.Append(ctx, 1, entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteLog(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 11, entries(11, 1)); !errors.Is(err, wal.ErrFenced) {
		t.Fatalf("append to a deleted log = %v, want ErrFenced", err)
	}
	w.Close()
	names, err := c.ListLogs(ctx)
	if err != nil || strings.Join(names, ",") != "a,c" {
		t.Fatalf("ListLogs = %v, %v", names, err)
	}
	if n := countObjects(t, b, "wal/b/"); n != 1 {
		t.Fatalf("DeleteLog left %d objects, want only the fence", n)
	}
	if _, err := c.OpenLog(ctx, "b"); !errors.Is(err, wal.ErrLogNotFound) {
		t.Fatalf("OpenLog of a deleted log = %v", err)
	}
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
	b, m := objmem.New(), metamem.New()
	fb := fault.Wrap(b, 1)
	c := newClient(t, fb, m, func(c *wal.Config) { c.MaxEntries = 1 })
	c.CreateLog(ctx, "d")
	l, _ := c.OpenLog(ctx, "d")
	w, _ := l.OpenWriter(ctx)
	if err := w.Append(ctx, 1, entries(1, 5)); err != nil {
		t.Fatal(err)
	}
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
	if _, err := m.Get(ctx, "wal/logs/d"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("record left behind: %v", err)
	}
}
