package hashiraft_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
)

const (
	snapPrefix     = "wal/raft/snapshots"
	snapMetaPrefix = snapPrefix + "/meta/"
	snapDataPrefix = snapPrefix + "/data/"
	// snapTestTimeout is the CallTimeout of these tests' stores: short,
	// because several of them wait for a call to give up.
	snapTestTimeout = 250 * time.Millisecond
)

// snapFixture is a SnapshotStore over a fault-injecting in-memory bucket,
// with seeded snapshot contents.
type snapFixture struct {
	mem *objmem.Bucket
	fb  *fault.Bucket
	s   *hashiraft.SnapshotStore
	rng *rand.Rand
}

func newSnapFixture(t *testing.T, seed uint64, retain int) *snapFixture {
	t.Helper()
	t.Logf("seed %d", seed)
	mem := objmem.New()
	fb := fault.Wrap(mem, seed)
	return &snapFixture{mem: mem, fb: fb, s: openSnapStore(t, fb, retain),
		rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

func openSnapStore(t *testing.T, b objstore.Bucket, retain int) *hashiraft.SnapshotStore {
	t.Helper()
	s, err := hashiraft.NewSnapshotStore(b, snapPrefix,
		hashiraft.Options{SnapshotRetain: retain, SnapshotChunkSize: 1000, CallTimeout: snapTestTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// data returns n seeded random bytes.
func (f *snapFixture) data(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(f.rng.Uint32())
	}
	return p
}

// publish writes and closes a snapshot at index, failing the test if Close
// fails.
func (f *snapFixture) publish(t *testing.T, index uint64, data []byte) string {
	t.Helper()
	sink := writeSnap(t, f.s, index, data)
	if err := sink.Close(); err != nil {
		t.Fatalf("Close of snapshot %d: %v", index, err)
	}
	return sink.ID()
}

// readSnapshot opens id through a fresh store on the bucket's real contents
// (as a restarted process would) and reads it to the end.
func readSnapshot(t *testing.T, b objstore.Bucket, id string) (*raft.SnapshotMeta, []byte, error) {
	t.Helper()
	meta, rc, err := openSnapStore(t, b, 1).Open(id)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	return meta, got, err
}

// listed reports whether a fresh store on b lists id.
func listed(t *testing.T, b objstore.Bucket, id string) bool {
	t.Helper()
	l, err := openSnapStore(t, b, 1000).List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return slices.ContainsFunc(l, func(m *raft.SnapshotMeta) bool { return m.ID == id })
}

// requireUsableIfListed checks that a snapshot whose Close failed is either
// absent from List or complete: Open succeeds, every byte reads back and the
// size matches.
func requireUsableIfListed(t *testing.T, b objstore.Bucket, id string, want []byte) {
	t.Helper()
	if !listed(t, b, id) {
		return
	}
	meta, got, err := readSnapshot(t, b, id)
	if err != nil {
		t.Fatalf("snapshot %s is listed after a failed Close but does not read: %v", id, err)
	}
	if meta.Size != int64(len(want)) || !bytes.Equal(got, want) {
		t.Fatalf("snapshot %s is listed after a failed Close with size %d and %d bytes reading back; want %d bytes as written",
			id, meta.Size, len(got), len(want))
	}
}

func requireReadable(t *testing.T, b objstore.Bucket, id string, want []byte) {
	t.Helper()
	if !listed(t, b, id) {
		t.Fatalf("snapshot %s is not listed", id)
	}
	meta, got, err := readSnapshot(t, b, id)
	if err != nil {
		t.Fatalf("reading snapshot %s: %v", id, err)
	}
	if meta.Size != int64(len(want)) || !bytes.Equal(got, want) {
		t.Fatalf("snapshot %s: size %d, %d bytes read back; want %d bytes as written", id, meta.Size, len(got), len(want))
	}
}

// TestSnapshotCloseAmbiguousMetadataNeverPublishesUnreadable: the metadata
// PUT lands but its reply is lost, and the attempts after it fail. Whatever
// Close reports, a listed snapshot reads back in full; a Close reporting
// success leaves it listed.
func TestSnapshotCloseAmbiguousMetadataNeverPublishesUnreadable(t *testing.T) {
	for _, tc := range []struct {
		name string
		// after decides the action for a call once the metadata PUT has
		// landed ambiguously.
		after func(op fault.Op, key string) fault.Action
		// wantOK: the metadata can be read back, so Close resolves it
		// and reports success.
		wantOK bool
	}{
		{
			// Every request on the metadata fails until Close gives up;
			// chunk requests work.
			name: "metadata unreachable",
			after: func(op fault.Op, key string) fault.Action {
				if strings.HasPrefix(key, snapMetaPrefix) {
					return fault.Fail
				}
				return fault.Pass
			},
		},
		{
			// Only the metadata PUT keeps failing; it can be read back.
			name: "metadata writes fail",
			after: func(op fault.Op, key string) fault.Action {
				if op&fault.OpWrite != 0 && strings.HasPrefix(key, snapMetaPrefix) {
					return fault.Fail
				}
				return fault.Pass
			},
			wantOK: true,
		},
		{
			// The whole bucket is down until Close gives up.
			name:  "bucket unreachable",
			after: func(fault.Op, string) fault.Action { return fault.Fail },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSnapFixture(t, 0x5a17, 2)
			oldData := f.data(2500)
			oldID := f.publish(t, 1, oldData)

			data := f.data(4500) // 5 chunks
			sink := writeSnap(t, f.s, 2, data)
			id := sink.ID()
			var landed atomic.Bool
			var failedAfter atomic.Int64
			f.fb.SetHook(func(op fault.Op, key string) fault.Action {
				if landed.Load() {
					a := tc.after(op, key)
					if a != fault.Pass {
						failedAfter.Add(1)
					}
					return a
				}
				if op == fault.OpPutIfAbsent && key == snapMetaPrefix+id {
					landed.Store(true)
					return fault.Ambiguous
				}
				return fault.Pass
			})
			err := sink.Close()
			f.fb.Heal()
			t.Logf("Close: %v", err)
			if !landed.Load() || failedAfter.Load() == 0 {
				t.Fatalf("the scenario did not happen: metadata PUT ambiguous %v, %d failed calls after it", landed.Load(), failedAfter.Load())
			}
			if _, herr := f.mem.Head(context.Background(), snapMetaPrefix+id); herr != nil {
				t.Fatalf("the ambiguous metadata PUT did not land: %v", herr)
			}

			if err == nil {
				requireReadable(t, f.mem, id, data)
			} else {
				requireUsableIfListed(t, f.mem, id, data)
			}
			switch {
			case tc.wantOK && err != nil:
				t.Fatalf("Close = %v; want success, the metadata reads back as written", err)
			case !tc.wantOK && err == nil:
				t.Fatal("Close succeeded although its metadata could not be written or read")
			}

			// The usual Persist pattern cancels a sink whose Close failed:
			// that must not take the data of a published snapshot.
			if cerr := sink.Cancel(); cerr != nil {
				t.Fatalf("Cancel after Close: %v", cerr)
			}
			if err == nil {
				requireReadable(t, f.mem, id, data)
			} else {
				requireUsableIfListed(t, f.mem, id, data)
			}
			requireReadable(t, f.mem, oldID, oldData)

			// The store goes on working, and retention eventually
			// removes the snapshot cleanly.
			for i := uint64(3); i <= 4; i++ {
				f.publish(t, i, f.data(1500))
			}
			if listed(t, f.mem, id) || listed(t, f.mem, oldID) {
				t.Fatal("retention kept snapshots beyond the retain count")
			}
			if left := bucketKeys(t, f.mem, snapDataPrefix+id+"/"); len(left) != 0 {
				t.Fatalf("retention left chunks of the deleted snapshot: %v", left)
			}
		})
	}
}

// TestSnapshotCloseFailedMetadataWritePublishesNothing: a metadata PUT that
// never lands fails Close, publishes nothing and removes the chunks; so does
// a failed write of the last chunk.
func TestSnapshotCloseFailedMetadataWritePublishesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(id string) func(op fault.Op, key string) fault.Action
	}{
		{
			name: "metadata",
			fail: func(id string) func(fault.Op, string) fault.Action {
				return func(op fault.Op, key string) fault.Action {
					if op == fault.OpPutIfAbsent && key == snapMetaPrefix+id {
						return fault.Fail
					}
					return fault.Pass
				}
			},
		},
		{
			name: "last chunk",
			fail: func(id string) func(fault.Op, string) fault.Action {
				return func(op fault.Op, key string) fault.Action {
					if op == fault.OpPut && key == snapDataPrefix+id+"/00000000000000000004" {
						return fault.Fail
					}
					return fault.Pass
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSnapFixture(t, 0xfa11, 2)
			oldData := f.data(2500)
			oldID := f.publish(t, 1, oldData)

			sink := writeSnap(t, f.s, 2, f.data(4500)) // 4 full chunks written, 500 bytes buffered
			id := sink.ID()
			f.fb.SetHook(tc.fail(id))
			err := sink.Close()
			f.fb.Heal()
			if err == nil {
				t.Fatal("Close succeeded although a write it needs failed")
			}
			t.Logf("Close: %v", err)
			if listed(t, f.mem, id) {
				t.Fatalf("snapshot %s is listed after a failed Close", id)
			}
			if _, herr := f.mem.Head(context.Background(), snapMetaPrefix+id); !errors.Is(herr, objstore.ErrNotFound) {
				t.Fatalf("metadata of the failed snapshot: %v, want ErrNotFound", herr)
			}
			if left := bucketKeys(t, f.mem, snapDataPrefix+id+"/"); len(left) != 0 {
				t.Fatalf("a failed Close left chunks: %v", left)
			}
			requireReadable(t, f.mem, oldID, oldData)
		})
	}
}

// TestSnapshotRetentionDeletesMetadataBeforeChunks: retention removes a
// snapshot's metadata before any of its chunks, and keeps the chunks while
// the metadata cannot be deleted.
func TestSnapshotRetentionDeletesMetadataBeforeChunks(t *testing.T) {
	f := newSnapFixture(t, 0x4e7a, 1)
	data1 := f.data(3500)
	id1 := f.publish(t, 1, data1)

	var mu sync.Mutex
	var deletes []string
	f.fb.SetHook(func(op fault.Op, key string) fault.Action {
		if op == fault.OpDelete {
			mu.Lock()
			deletes = append(deletes, key)
			mu.Unlock()
		}
		return fault.Pass
	})
	data2 := f.data(2500)
	id2 := f.publish(t, 2, data2)
	f.fb.Heal()
	mu.Lock()
	got := slices.Clone(deletes)
	mu.Unlock()
	if len(got) != 1+4 || got[0] != snapMetaPrefix+id1 {
		t.Fatalf("retention deleted %v; want the metadata of %s, then its 4 chunks", got, id1)
	}
	for _, k := range got[1:] {
		if !strings.HasPrefix(k, snapDataPrefix+id1+"/") {
			t.Fatalf("retention deleted %v; want the metadata of %s, then its 4 chunks", got, id1)
		}
	}
	if listed(t, f.mem, id1) {
		t.Fatalf("snapshot %s is still listed after retention", id1)
	}

	// The metadata of the snapshot to drop cannot be deleted: its chunks
	// stay and it stays readable; the new snapshot is published anyway.
	f.fb.SetHook(func(op fault.Op, key string) fault.Action {
		if op == fault.OpDelete && key == snapMetaPrefix+id2 {
			return fault.Fail
		}
		return fault.Pass
	})
	data3 := f.data(1200)
	id3 := f.publish(t, 3, data3)
	f.fb.Heal()
	if _, herr := f.mem.Head(context.Background(), snapMetaPrefix+id2); herr != nil {
		t.Fatalf("metadata of %s: %v; the failing delete should have left it", id2, herr)
	}
	if _, got, err := readSnapshot(t, f.mem, id2); err != nil || !bytes.Equal(got, data2) {
		t.Fatalf("snapshot %s whose metadata retention could not delete: %d bytes, %v; want it whole", id2, len(got), err)
	}
	requireReadable(t, f.mem, id3, data3)

	// Healed, the next Close completes retention.
	id4 := f.publish(t, 4, f.data(900))
	if keys := bucketKeys(t, f.mem, snapMetaPrefix); len(keys) != 1 || keys[0] != snapMetaPrefix+id4 {
		t.Fatalf("metadata after retention: %v, want only %s", keys, id4)
	}
	for _, id := range []string{id2, id3} {
		if left := bucketKeys(t, f.mem, snapDataPrefix+id+"/"); len(left) != 0 {
			t.Fatalf("retention left chunks of %s: %v", id, left)
		}
	}
}

// TestSnapshotCancelLeavesNothingVisible: Cancel never publishes, and
// removes the chunks written, including when a chunk write failed.
func TestSnapshotCancelLeavesNothingVisible(t *testing.T) {
	f := newSnapFixture(t, 0xca9c, 2)
	oldData := f.data(2500)
	oldID := f.publish(t, 1, oldData)

	sink := writeSnap(t, f.s, 2, f.data(3500))
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if listed(t, f.mem, sink.ID()) {
		t.Fatal("a cancelled snapshot is listed")
	}

	// A chunk write lands but every attempt reports an error; the sink is
	// cancelled after the failed Write.
	sink2, err := f.s.Create(1, 3, 1, raft.Configuration{}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.fb.SetHook(func(op fault.Op, key string) fault.Action {
		if op == fault.OpPut && key == snapDataPrefix+sink2.ID()+"/00000000000000000001" {
			return fault.Ambiguous
		}
		return fault.Pass
	})
	_, werr := sink2.Write(f.data(2500))
	f.fb.Heal()
	if werr == nil {
		t.Fatal("Write succeeded with every attempt at its second chunk failing")
	}
	if n := len(bucketKeys(t, f.mem, snapDataPrefix+sink2.ID()+"/")); n != 2 {
		t.Fatalf("%d chunks landed before Cancel, want 2", n)
	}
	if err := sink2.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := sink2.Close(); err != nil {
		t.Fatalf("Close after Cancel: %v", err)
	}
	if listed(t, f.mem, sink2.ID()) {
		t.Fatal("a cancelled snapshot is listed")
	}
	if keys := bucketKeys(t, f.mem, snapMetaPrefix); len(keys) != 1 || keys[0] != snapMetaPrefix+oldID {
		t.Fatalf("metadata after Cancel: %v, want only %s", keys, oldID)
	}
	if left := bucketKeys(t, f.mem, snapDataPrefix); len(left) != 3 {
		t.Fatalf("chunks after Cancel: %v, want only the 3 of %s", left, oldID)
	}
	requireReadable(t, f.mem, oldID, oldData)
}
