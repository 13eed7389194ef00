package etcdraft_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// saver is what a Ready loop persists with: etcdraft.Storage, or memSaver.
type saver interface {
	Save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error
}

// memSaver is raft.MemoryStorage used the way a Ready loop uses it.
type memSaver struct{ *raft.MemoryStorage }

func (m memSaver) Save(hs *pb.HardState, ents []*pb.Entry, _ *pb.Snapshot) error {
	if err := m.Append(ents); err != nil {
		return err
	}
	return m.SetHardState(hs)
}

// BenchmarkSave persists Readys the way a leader's loop does: each carries
// `batch` new entries of 128 bytes and a HardState whose commit moved, so
// each Save is one fragment PUT plus one compare-and-swap of the log record.
// It reports Readys and entries persisted per second, against
// raft.MemoryStorage (no durability). The "floor" runs do the same I/O by
// hand — one PUT of the fragment's size and one metadata CAS, back to back
// on the same stores — the least a durable Save can cost there.
func BenchmarkSave(b *testing.B) {
	srv := testserver.NewServers(b) // the servers live as long as the whole benchmark
	etcdSrv := etcdserver.NewShared(b)
	versitygwURL := func(b *testing.B) string {
		s := srv.Versitygw()
		return s.URL(s.NewBucket(b), "")
	}
	backends := []struct {
		name string
		urls func(b *testing.B) (bucketURL, metaURL string) // nil: raft.MemoryStorage
	}{
		{"memorystorage", nil},
		{"file", func(b *testing.B) (string, string) { return "file://" + b.TempDir(), "" }},
		{"versitygw", func(b *testing.B) (string, string) { return versitygwURL(b), "" }},
		{"versitygw_etcd", func(b *testing.B) (string, string) {
			etcd := etcdSrv.Get()
			return versitygwURL(b), etcd.URL(etcd.NewPrefix())
		}},
	}
	data := make([]byte, 128)
	entries := func(next *uint64, batch int) []*pb.Entry {
		ents := make([]*pb.Entry, batch)
		for k := range ents {
			ents[k] = &pb.Entry{Index: new(*next), Term: new(uint64(1)), Data: data}
			*next++
		}
		return ents
	}
	report := func(b *testing.B, start time.Time, batch int) {
		sec := time.Since(start).Seconds()
		b.ReportMetric(float64(b.N)/sec, "readys/s")
		b.ReportMetric(float64(b.N*batch)/sec, "entries/s")
	}
	for _, be := range backends {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", be.name, batch), func(b *testing.B) {
				var s saver = memSaver{raft.NewMemoryStorage()}
				if be.urls != nil {
					bu, mu := be.urls(b)
					st, err := etcdraft.Open(context.Background(), bu, mu, etcdraft.Options{})
					if err != nil {
						b.Fatal(err)
					}
					defer st.Close()
					s = st
					b.SetBytes(int64(batch * len(data)))
				}
				b.ReportAllocs()
				next, start := uint64(1), time.Now()
				for b.Loop() {
					hs := &pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(next - 1)}
					if err := s.Save(hs, entries(&next, batch), nil); err != nil {
						b.Fatal(err)
					}
				}
				report(b, start, batch)
			})
			if be.urls == nil {
				continue
			}
			b.Run(fmt.Sprintf("%s/batch=%d/floor", be.name, batch), func(b *testing.B) {
				ctx := context.Background()
				bu, mu := be.urls(b)
				c, err := wal.OpenURL(ctx, bu, mu, wal.Config{})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				frag := make([]byte, batch*(len(data)+12)+100) // about a fragment's size
				ver, err := c.Meta().Create(ctx, "floor/rec", []byte("0"))
				if err != nil {
					b.Fatal(err)
				}
				i, start := 0, time.Now()
				for b.Loop() {
					i++
					if _, err := c.Bucket().PutIfAbsent(ctx, fmt.Sprintf("floor/%020d", i), frag); err != nil {
						b.Fatal(err)
					}
					if ver, err = c.Meta().Update(ctx, "floor/rec", fmt.Appendf(nil, "%d", i), ver); err != nil {
						b.Fatal(err)
					}
				}
				report(b, start, batch)
			})
		}
	}
}
