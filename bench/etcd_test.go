package bench

// etcd raft's persistence step, Save of a Ready: our adapters/etcdraft in
// tiered mode against what etcd itself does (go.etcd.io/etcd/server/v3
// storage/wal: WAL.Save of the HardState and entries, one fdatasync, then
// raft.MemoryStorage.Append), interleaved on the same filesystem.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	etcdwal "go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
	"github.com/woodpecker-wal/woodpecker/internal/latency"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// saver persists a Ready's HardState and entries.
type saver interface {
	Save(hs *pb.HardState, ents []*pb.Entry) error
}

// etcdWAL is etcd server's persistence: its WAL, then the MemoryStorage
// raft reads from (raftNode's order).
type etcdWAL struct {
	w  *etcdwal.WAL
	ms *raft.MemoryStorage
}

func (e etcdWAL) Save(hs *pb.HardState, ents []*pb.Entry) error {
	if err := e.w.Save(hs, ents); err != nil {
		return err
	}
	return e.ms.Append(ents)
}

type ourSaver struct{ *etcdraft.Storage }

func (s ourSaver) Save(hs *pb.HardState, ents []*pb.Entry) error {
	return s.Storage.Save(hs, ents, nil)
}

// openEtcdraft opens etcdraft over a client on file://bucketDir (metadata
// in the bucket), in tiered mode (defaults) when localDir is set, and
// waits for the local tier's spare segment (see openTiered).
func openEtcdraft(b *testing.B, bucketDir, localDir string) (*etcdraft.Storage, func() error) {
	ctx := context.Background()
	c, err := wal.OpenURL(ctx, "file://"+bucketDir, "", wal.Config{LocalDir: localDir})
	if err != nil {
		b.Fatal(err)
	}
	st, err := etcdraft.New(ctx, c.LogStore(), "raft", etcdraft.Options{})
	if err == nil && localDir != "" {
		err = waitSpare(filepath.Join(localDir, "wal", "raft"))
	}
	if err != nil {
		if st != nil {
			st.Close()
		}
		c.Close()
		b.Fatal(err)
	}
	return st, func() error { return errors.Join(st.Close(), c.Close()) }
}

// saveCall returns one Save of n new entries of size random bytes, and a
// HardState whose commit moved (each Ready of a busy leader) unless
// sameHS: then the HardState is the one saved before, which Save skips.
func saveCall(s saver, n, size int, sameHS bool) func() error {
	data := make([]byte, size)
	_, _ = rand.Read(data)
	next := uint64(1)
	return func() error {
		ents := make([]*pb.Entry, n)
		for k := range ents {
			ents[k] = &pb.Entry{Index: new(next), Term: new(uint64(1)), Data: data}
			next++
		}
		commit := next - 1
		if sameHS {
			commit = 0
		}
		hs := &pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(commit)}
		return s.Save(hs, ents)
	}
}

// BenchmarkSave compares etcd raft's Save of a Ready (n entries + a
// HardState whose commit moved), interleaved (interleave):
//
//   - etcdraft-tiered: adapters/etcdraft on a tiered wal.Client (file://
//     bucket with the metadata in it, LocalDir beside it, defaults).
//   - etcdwal: etcd's storage/wal (v3.7.3) WAL.Save + MemoryStorage.Append,
//     what etcd's raftNode does.
//   - etcdraft-tiered-samehs: the tiered Save with an unchanged HardState
//     (Save skips it): the entries' part alone, to show what the HardState
//     costs (its compare-and-swap of the log record in the metadata store).
//   - etcdraft-file: etcdraft object-synchronous on the same file://
//     bucket (no LocalDir), the mode tiering replaces.
//   - floor-meta-cas: one compare-and-swap of a 271 B record in the
//     bucket's metadata store, alone: the floor of the HardState's part.
func BenchmarkSave(b *testing.B) {
	for _, shape := range []struct{ n, size int }{{1, 128}, {64, 128}, {16, 4096}} {
		b.Run(fmt.Sprintf("%dx%s", shape.n, sizeName(shape.size)), func(b *testing.B) {
			ours := func(tiered, sameHS bool) func(b *testing.B) (func() error, func() error) {
				return func(b *testing.B) (func() error, func() error) {
					bucketDir, localDir := tieredDirs(b)
					if !tiered {
						localDir = ""
					}
					st, stop := openEtcdraft(b, bucketDir, localDir)
					return saveCall(ourSaver{st}, shape.n, shape.size, sameHS), stop
				}
			}
			cs := []contender{
				{"etcdraft-tiered", ours(true, false)},
				{"etcdwal", func(b *testing.B) (func() error, func() error) {
					dir := filepath.Join(b.TempDir(), "etcdwal") // Create makes it
					w, err := etcdwal.Create(zap.NewNop(), dir, nil)
					if err != nil {
						b.Fatal(err)
					}
					return saveCall(etcdWAL{w, raft.NewMemoryStorage()}, shape.n, shape.size, false), w.Close
				}},
				{"etcdraft-tiered-samehs", ours(true, true)},
				{"etcdraft-file", ours(false, false)},
				{"floor-meta-cas", func(b *testing.B) (func() error, func() error) {
					// What the HardState costs in etcdraft-tiered: one
					// compare-and-swap of a record the size of the log's
					// (271 B here) in the bucket's metadata store.
					bucketDir, _ := tieredDirs(b)
					ctx := context.Background()
					c, err := wal.OpenURL(ctx, "file://"+bucketDir, "", wal.Config{})
					if err != nil {
						b.Fatal(err)
					}
					val := make([]byte, 271)
					ver, err := c.Meta().Create(ctx, "floor/rec", val)
					if err != nil {
						b.Fatal(err)
					}
					return func() error {
						val[0]++
						ver, err = c.Meta().Update(ctx, "floor/rec", val, ver)
						return err
					}, c.Close
				}},
			}
			b.SetBytes(int64(shape.n * shape.size))
			interleave(b, "etcdwal", cs)
		})
	}
}

// BenchmarkTieredPUTRateEtcdraft is BenchmarkTieredPUTRate's question for
// etcd raft: proposals of one 128 B entry arrive 1,000 times a second and
// a single Ready loop persists what arrived with etcdraft's Save (tiered,
// default UploadInterval 1s) as fast as Save returns, each Ready with a
// HardState whose commit moved to the previous Ready's last index (a
// leader's commit advancing every Ready), for -tiered.dur. It reports the
// Readys per second and the PUT-class requests per second, fragments and
// metadata apart: each changed HardState is a SetMeta, one
// compare-and-swap of the log record, which in tiered mode still goes to
// the metadata store synchronously (with the metadata in an S3 bucket,
// one conditional PUT per Ready).
func BenchmarkTieredPUTRateEtcdraft(b *testing.B) {
	ctx := context.Background()
	var n putCounts
	c, _ := countedWriter(b, &n, wal.Config{}, true) // the client; its "log" writer stays idle
	st, err := etcdraft.New(ctx, c.LogStore(), "raft", etcdraft.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	data := make([]byte, 128)
	_, _ = rand.Read(data)
	d := *flagTieredDur
	var arrived atomic.Int64
	stop := make(chan struct{})
	go func() {
		_, _ = pace(1000, d, func(int) error { arrived.Add(1); return nil })
		close(stop)
	}()
	next, commit, readys := uint64(1), uint64(0), 0
	lat := make([]time.Duration, 0, int(d.Seconds()*1000))
	b.ResetTimer()
	bu0, me0 := n.snapshot()
	t0 := time.Now()
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		k := arrived.Load() - int64(next-1)
		if k == 0 {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		ents := make([]*pb.Entry, k)
		for i := range ents {
			ents[i] = &pb.Entry{Index: new(next), Term: new(uint64(1)), Data: data}
			next++
		}
		hs := &pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(commit)}
		t := time.Now()
		if err := st.Save(hs, ents, nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
		commit = next - 1
		readys++
	}
	el := time.Since(t0).Seconds()
	bu1, me1 := n.snapshot()
	b.StopTimer()
	b.ReportMetric(float64(next-1)/el, "entries/s")
	b.ReportMetric(float64(readys)/el, "readys/s")
	b.ReportMetric(float64(bu1-bu0+me1-me0)/el, "puts/s")
	b.ReportMetric(float64(bu1-bu0)/el, "data-puts/s")
	b.ReportMetric(float64(me1-me0)/el, "meta-puts/s")
	b.ReportMetric(2, "target-puts/s")
	latency.Report(b, "save-", lat)
}
