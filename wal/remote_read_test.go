package wal_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// beforeGet runs hook once, before the first GET of an object whose key
// ends with suffix.
type beforeGet struct {
	objstore.Bucket
	suffix string
	once   sync.Once
	hook   func()
}

func (b *beforeGet) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	if strings.HasSuffix(key, b.suffix) {
		b.once.Do(b.hook)
	}
	return b.Bucket.Get(ctx, key, off, length)
}

// A reader in another process that read the record before a truncation,
// whose garbage collection then deleted the fragment it was going to read,
// gets ErrTruncated, not the missing object: it looks at the record again.
func TestRemoteReadOfACollectedFragmentIsTruncated(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	small := func(c *wal.Config) { c.SegmentMaxFragments, c.GCGrace, c.GCInterval = 2, time.Nanosecond, -1 }
	writer := newClient(t, b, m, small)
	w := openWriter(t, createLog(t, writer, "l"))
	for i := uint64(1); i <= 10; i++ {
		mustAppend(t, w, i, entries(i, 1))
	}
	first := firstFragmentKey(t, b)
	hooked := &beforeGet{Bucket: b, suffix: first, hook: func() {
		if err := w.TruncateFront(ctx, 9); err != nil {
			t.Error(err)
		}
		mustGC(t, writer, "l") // marks the segments below 9
		time.Sleep(time.Millisecond)
		if st := mustGC(t, writer, "l"); st.ObjectsDeleted == 0 {
			t.Error("GC deleted nothing below the new first index")
		}
	}}
	reader := openLog(t, newClient(t, hooked, m, small), "l")
	t.Logf("the reader's GET of %s waits for a truncation to 9 and its collection", first)
	_, err := reader.Get(ctx, 1)
	if !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("Get(1) whose fragment was collected after the record was read = %v, want ErrTruncated", err)
	}
	if got := mustGet(t, reader, 9); got != string(entries(9, 1)[0]) {
		t.Errorf("Get(9) = %q after the truncation", got)
	}
}

// firstFragmentKey returns the key, below the log's prefix, of the log's
// first fragment (segment 1 or the lowest, sequence 0).
func firstFragmentKey(t *testing.T, b objstore.Bucket) string {
	t.Helper()
	var first string
	if err := objstore.ListAll(context.Background(), b, "wal/l/", 0, func(o objstore.ObjectInfo) error {
		if i := strings.Index(o.Key, "/s/"); i >= 0 && first == "" {
			first = o.Key[i:]
		}
		return nil
	}); err != nil || first == "" {
		t.Fatalf("no fragment listed (%v)", err)
	}
	return first
}
