package hashiraft_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/adapters/internal/adaptertest"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

func entries(first, n, term uint64) []*raft.Log {
	out := make([]*raft.Log, n)
	for k := range out {
		i := first + uint64(k)
		out[k] = &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte{byte(i), byte(term)}}
	}
	return out
}

func wantBounds(t *testing.T, s *hashiraft.Store, first, last uint64) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("bounds [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

// faultStore opens a store over a fault-injecting mem bucket.
func faultStore(t *testing.T, opts hashiraft.Options) (*hashiraft.Store, *fault.Bucket, *wal.Client) {
	t.Helper()
	fb := fault.Wrap(objmem.New(), 1)
	c, err := wal.Open(context.Background(), wal.Config{Bucket: fb, Meta: metamem.New(),
		RetryInterval: time.Millisecond, MaxFlushRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	s, err := hashiraft.New(context.Background(), c.LogStore(), "", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, fb, c
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	s, err := hashiraft.Open(ctx, url, "", hashiraft.Options{LogName: "node_1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 4); err != nil {
		t.Fatal(err)
	}
	sink, err := s.Snapshots().Create(1, 10, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("state"))
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.StoreLogs(entries(11, 1, 1)); !errors.Is(err, hashiraft.ErrClosed) {
		t.Fatalf("StoreLogs after Close = %v, want ErrClosed", err)
	}
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, hashiraft.ErrClosed) {
		t.Fatalf("GetLog after Close = %v, want ErrClosed", err)
	}

	s, err = hashiraft.Open(ctx, url, "", hashiraft.Options{LogName: "node_1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantBounds(t, s, 1, 10)
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 4 {
		t.Fatalf("CurrentTerm = %d, %v", v, err)
	}
	snaps, err := s.Snapshots().List()
	if err != nil || len(snaps) != 1 || snaps[0].Size != 5 {
		t.Fatalf("snapshots = %v, %v", snaps, err)
	}
	// Another log name in the same bucket is another node.
	o, err := hashiraft.Open(ctx, url, "", hashiraft.Options{LogName: "node_2"})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	wantBounds(t, o, 0, 0)
	if snaps, _ := o.Snapshots().List(); len(snaps) != 0 {
		t.Fatalf("node_2 sees node_1's snapshots: %v", snaps)
	}
}

func TestOptionsValidation(t *testing.T) {
	c, err := wal.Open(context.Background(), wal.Config{Bucket: objmem.New(), Meta: metamem.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, o := range []hashiraft.Options{
		{LogName: "Bad-Name"},
		{CallTimeout: -time.Second},
		{SnapshotRetain: -1},
		{SnapshotChunkSize: 16 << 20},
	} {
		if _, err := hashiraft.New(context.Background(), c.LogStore(), "", o); err == nil || !strings.Contains(err.Error(), "Options.") {
			t.Errorf("New(%+v) = %v, want an error naming the field", o, err)
		}
	}
	if _, err := hashiraft.Open(context.Background(), "mem://", "", hashiraft.Options{WAL: wal.Config{Bucket: objmem.New()}}); err == nil {
		t.Error("Open with Options.WAL.Bucket set succeeded")
	}
}

// TestBrokenWriterResolved: bucket writes fail often enough that the WAL
// writer gives up (ErrBroken); StoreLogs reopens it and completes within
// its timeout.
func TestBrokenWriterResolved(t *testing.T) {
	s, fb, _ := faultStore(t, hashiraft.Options{CallTimeout: 10 * time.Second})
	if err := s.StoreLogs(entries(1, 5, 1)); err != nil {
		t.Fatal(err)
	}
	var fails atomic.Int32
	fails.Store(6) // more than MaxFlushRetries in a row
	fb.SetHook(func(op fault.Op, _ string) fault.Action {
		if op == fault.OpPutIfAbsent && fails.Add(-1) >= 0 {
			return fault.Fail
		}
		return fault.Pass
	})
	if err := s.StoreLogs(entries(6, 5, 1)); err != nil {
		t.Fatalf("StoreLogs through a broken writer: %v", err)
	}
	fb.Heal()
	wantBounds(t, s, 1, 10)
	var l raft.Log
	if err := s.GetLog(8, &l); err != nil || l.Data[0] != 8 {
		t.Fatalf("GetLog(8) = %+v, %v", l, err)
	}
}

// TestAmbiguousAppendNotDuplicated: the fragment lands but the writer never
// learns it (ambiguous PUTs, and the read-back fails): the reopened writer
// recovers it, and StoreLogs appends nothing twice.
func TestAmbiguousAppendNotDuplicated(t *testing.T) {
	s, fb, _ := faultStore(t, hashiraft.Options{CallTimeout: 10 * time.Second})
	if err := s.StoreLogs(entries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	fb.SetHook(func(op fault.Op, _ string) fault.Action {
		if n.Add(1) > 12 {
			return fault.Pass
		}
		switch op {
		case fault.OpPutIfAbsent:
			return fault.Ambiguous
		case fault.OpGet:
			return fault.Fail
		}
		return fault.Pass
	})
	if err := s.StoreLogs(entries(4, 3, 1)); err != nil {
		t.Fatalf("StoreLogs: %v", err)
	}
	fb.Heal()
	wantBounds(t, s, 1, 6)
	if err := s.StoreLogs(entries(7, 1, 1)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 7; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Index != i {
			t.Fatalf("GetLog(%d) = %+v, %v", i, l, err)
		}
	}
}

// TestOutageFailsWithinTimeout: with every write failing, StoreLogs gives
// up at its call timeout; once the bucket is back the next call works.
func TestOutageFailsWithinTimeout(t *testing.T) {
	s, fb, _ := faultStore(t, hashiraft.Options{CallTimeout: 300 * time.Millisecond})
	if err := s.StoreLogs(entries(1, 2, 1)); err != nil {
		t.Fatal(err)
	}
	fb.SetHook(func(op fault.Op, _ string) fault.Action {
		if op&fault.OpWrite != 0 {
			return fault.Fail
		}
		return fault.Pass
	})
	start := time.Now()
	err := s.StoreLogs(entries(3, 2, 1))
	if err == nil {
		t.Fatal("StoreLogs succeeded with every write failing")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("StoreLogs took %s to fail with a 300ms call timeout", d)
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	wantBounds(t, s, 1, 2) // what raft saw: unchanged
	fb.Heal()
	if err := s.StoreLogs(entries(3, 3, 2)); err != nil {
		t.Fatalf("StoreLogs after the outage: %v", err)
	}
	wantBounds(t, s, 1, 5)
}

// TestGetLogRetries: GETs fail half the time on a cold cache; GetLog
// retries inside its timeout and never returns the transient error.
func TestGetLogRetries(t *testing.T) {
	ctx := context.Background()
	fb := fault.Wrap(objmem.New(), 2)
	m := metamem.New()
	open := func() (*wal.Client, *hashiraft.Store) {
		c, err := wal.Open(ctx, wal.Config{Bucket: fb, Meta: m, RetryInterval: time.Millisecond, MaxEntries: 2,
			RetryBudget: 5 * time.Second}) // within CallTimeout
		if err != nil {
			t.Fatal(err)
		}
		s, err := hashiraft.New(ctx, c.LogStore(), "", hashiraft.Options{CallTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	c, s := open()
	if err := s.StoreLogs(entries(1, 40, 1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.Close()
	c, s = open() // cold cache
	defer c.Close()
	defer s.Close()
	fb.FailRate(fault.OpGet|fault.OpList, 0.5)
	for i := uint64(1); i <= 40; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Index != i {
			t.Fatalf("GetLog(%d) = %+v, %v", i, l, err)
		}
	}
	if err := s.GetLog(41, &raft.Log{}); err != raft.ErrLogNotFound { //nolint:errorlint // raft compares with ==
		t.Fatalf("GetLog(41) = %v", err)
	}
}

func TestFromHclog(t *testing.T) {
	var buf bytes.Buffer
	l := hashiraft.FromHclog(hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info}))
	l.With("log", "raft").WithGroup("g").Info("hello", "k", 1)
	l.Debug("hidden")
	out := buf.String()
	if !strings.Contains(out, "[INFO]") || !strings.Contains(out, "hello") || !strings.Contains(out, "log=raft") ||
		!strings.Contains(out, "g.k=1") || strings.Contains(out, "hidden") {
		t.Fatalf("hclog output %q", out)
	}
}

var keyRE = regexp.MustCompile(`^[0-9a-z_/]+$`)

func bucketKeys(t *testing.T, b objstore.Bucket, prefix string) []string {
	t.Helper()
	var keys []string
	if err := objstore.ListAll(context.Background(), b, prefix, 0, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func newSnapStore(t *testing.T, b objstore.Bucket, retain int) *hashiraft.SnapshotStore {
	t.Helper()
	s, err := hashiraft.NewSnapshotStore(b, "wal/raft/snapshots",
		hashiraft.Options{SnapshotRetain: retain, SnapshotChunkSize: 1000, CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeSnap(t *testing.T, s raft.SnapshotStore, index uint64, data []byte) raft.SnapshotSink {
	t.Helper()
	sink, err := s.Create(1, index, 1, raft.Configuration{}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(data); err != nil {
		t.Fatal(err)
	}
	return sink
}

// TestSnapshotObjects checks the objects behind the SnapshotStore: key
// charset, no leftovers after Cancel or retention, orphaned chunks of an
// abandoned sink reaped, a failed Close publishing nothing, a damaged chunk
// detected before its bytes are returned.
func TestSnapshotObjects(t *testing.T) {
	mem := objmem.New()
	fb := fault.Wrap(mem, 3)
	s := newSnapStore(t, fb, 2)
	data := bytes.Repeat([]byte("0123456789"), 450) // 4500 bytes: 5 chunks

	c := writeSnap(t, s, 1, data)
	if err := c.Cancel(); err != nil {
		t.Fatal(err)
	}
	if keys := bucketKeys(t, mem, ""); len(keys) != 0 {
		t.Fatalf("Cancel left objects: %v", keys)
	}

	abandoned := writeSnap(t, s, 2, data) // a crashed process's sink: never closed
	_ = abandoned
	for i := uint64(3); i <= 6; i++ {
		if err := writeSnap(t, s, i, data).Close(); err != nil {
			t.Fatal(err)
		}
	}
	keys := bucketKeys(t, mem, "")
	for _, k := range keys {
		if !keyRE.MatchString(k) {
			t.Fatalf("key %q uses characters outside [0-9a-z_/]", k)
		}
	}
	metas := bucketKeys(t, mem, "wal/raft/snapshots/meta/")
	if len(metas) != 2 || !strings.Contains(metas[0], "00000000000000000005_") || !strings.Contains(metas[1], "00000000000000000006_") {
		t.Fatalf("metadata objects after retention: %v, want snapshots 5 and 6", metas)
	}
	// 2 retained x 5 chunks; the abandoned sink's chunks are in use here,
	// so they stay until it is done.
	if data := bucketKeys(t, mem, "wal/raft/snapshots/data/"); len(data) != 2*5+4 {
		t.Fatalf("%d chunk objects, want 14 (two snapshots and the open sink's 4 full chunks): %v", len(data), data)
	}

	// A process restarted: the abandoned chunks are orphans now, reaped by
	// the next Close.
	s2 := newSnapStore(t, fb, 2)
	if err := writeSnap(t, s2, 7, data).Close(); err != nil {
		t.Fatal(err)
	}
	if data := bucketKeys(t, mem, "wal/raft/snapshots/data/"); len(data) != 2*5 {
		t.Fatalf("%d chunk objects after reaping orphans, want 10: %v", len(data), data)
	}

	// A Close whose metadata write fails: nothing published, chunks removed.
	sink := writeSnap(t, s2, 8, data)
	fb.SetHook(func(op fault.Op, key string) fault.Action {
		if op == fault.OpPutIfAbsent && strings.Contains(key, "/meta/") {
			return fault.Fail
		}
		return fault.Pass
	})
	if err := sink.Close(); err == nil {
		t.Fatal("Close succeeded with its metadata write failing")
	}
	fb.Heal()
	if l, _ := s2.List(); len(l) != 2 || l[0].Index != 7 {
		t.Fatalf("List after a failed Close = %v", l)
	}
	if data := bucketKeys(t, mem, "wal/raft/snapshots/data/"); len(data) != 2*5 {
		t.Fatalf("a failed Close left chunks: %d objects", len(data))
	}

	// Damage a chunk: the reader fails before returning its bytes.
	l, _ := s2.List()
	chunk := bucketKeys(t, mem, "wal/raft/snapshots/data/"+l[0].ID+"/")[2]
	if _, err := mem.Put(context.Background(), chunk, strings.NewReader(strings.Repeat("x", 1000)), 1000); err != nil {
		t.Fatal(err)
	}
	_, rc, err := s2.Open(l[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, wal.ErrCorrupt) || len(got) != 2000 {
		t.Fatalf("reading a damaged snapshot: %d bytes, %v; want the 2000 bytes before the damage, then ErrCorrupt", len(got), err)
	}
}

// TestEntryTooLarge: an entry the WAL refuses fails at once, and the store
// goes on working.
func TestEntryTooLarge(t *testing.T) {
	s, _, _ := faultStore(t, hashiraft.Options{CallTimeout: 10 * time.Second})
	start := time.Now()
	big := &raft.Log{Index: 1, Term: 1, Data: make([]byte, 9<<20)} // > the WAL's 8 MiB MaxFlushSize
	if err := s.StoreLogs([]*raft.Log{big}); err == nil {
		t.Fatal("a 9 MiB entry was stored")
	} else if time.Since(start) > 2*time.Second {
		t.Fatalf("refusing a too-large entry took %s: it was retried", time.Since(start))
	}
	if err := s.StoreLogs(entries(1, 2, 1)); err != nil {
		t.Fatal(err)
	}
	wantBounds(t, s, 1, 2)
}

// TestGC: the client's janitor collects the objects raft compacted away.
func TestGC(t *testing.T) {
	ctx := context.Background()
	mem := objmem.New()
	c := adaptertest.Client(t, mem, wal.Config{GCGrace: time.Millisecond, SegmentMaxFragments: 2, GCInterval: 10 * time.Millisecond})
	s, err := hashiraft.New(ctx, c.LogStore(), "", hashiraft.Options{TailCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= 100; i += 10 {
		if err := s.StoreLogs(entries(i, 10, 1)); err != nil {
			t.Fatal(err)
		}
	}
	before := len(bucketKeys(t, mem, "wal/raft/"))
	if err := s.DeleteRange(1, 90); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := len(bucketKeys(t, mem, "wal/raft/"))
		if after <= before-8 {
			t.Logf("objects: %d before compaction, %d after GC", before, after)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("objects: %d before compaction, still %d after 5s of GC", before, after)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantBounds(t, s, 91, 100)
	for i := uint64(91); i <= 100; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d) after GC: %v", i, err)
		}
	}
}
