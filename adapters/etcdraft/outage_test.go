package etcdraft_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
	"github.com/woodpecker-wal/woodpecker/internal/outagetest"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// TestStorageRidesOutServerOutages: storages written continuously through
// Save (entries and a HardState committing them) keep working, without
// being reopened, through a 10 s outage of versitygw (killed, then
// restarted on the same port and directory) and then a 10 s outage of etcd
// (closed, then restarted on the same data). One storage keeps its
// metadata in etcd, one in the bucket (it must not notice the etcd outage).
// Calls during an outage may block until the server is back; every call
// must succeed, within the engine's retry budget and one more attempt.
// Afterwards a fresh client finds every acknowledged entry, unchanged, and
// the last acknowledged HardState.
func TestStorageRidesOutServerOutages(t *testing.T) {
	outagetest.RidesOut(t, "etcdraft_outage", func(bucketURL, metaURL string, tr *outagetest.Tracker, rng *rand.Rand) outagetest.Subject {
		w := &etcdWriter{Writer: outagetest.Writer[*etcdraft.Storage]{Tracker: tr, BucketURL: bucketURL, MetaURL: metaURL, Rng: rng}}
		w.OpenStore = func(ctx context.Context, b, m string) (*etcdraft.Storage, error) {
			return etcdraft.Open(ctx, b, m, w.options())
		}
		return w
	})
}

// etcdWriter writes a storage continuously the way an etcd raft node
// persists its Readys: Save of a batch of entries at the end of the log
// with a HardState committing them, the term rising every few batches. A
// call that fails is retried with the same arguments.
type etcdWriter struct {
	outagetest.Writer[*etcdraft.Storage]

	rec struct {
		sync.Mutex
		acked   []*pb.Entry   // acked[k] is entry k+1, as acknowledged
		hs      *pb.HardState // last acknowledged
		pending []*pb.Entry   // entries of a Save given up on
		pendHS  *pb.HardState // its HardState
	}
}

func (w *etcdWriter) options() etcdraft.Options {
	return etcdraft.Options{LogName: "node_" + w.Name, Logger: w.Log}
}

func (w *etcdWriter) Run() {
	tick := time.NewTicker(outagetest.Pace)
	defer tick.Stop()
	next, term := uint64(1), uint64(0)
	for i := 0; w.Pace(tick); i++ {
		if i%8 == 0 {
			term++
		}
		n := 1 + w.Rng.IntN(4)
		ents := make([]*pb.Entry, n)
		for k := range ents {
			data := w.Payload()
			ents[k] = &pb.Entry{Index: new(next + uint64(k)), Term: new(term), Type: pb.EntryNormal.Enum(), Data: data}
		}
		last := next + uint64(n) - 1
		hs := &pb.HardState{Term: new(term), Vote: new(uint64(1)), Commit: new(last)}
		op := fmt.Sprintf("save [%d, %d] term %d", next, last, term)
		var before uint64
		var hsBefore *pb.HardState
		ok := w.Call(op,
			func() error {
				before, _ = w.S.LastIndex()
				hsBefore, _, _ = w.S.InitialState()
				return w.S.Save(hs, ents, nil)
			},
			func(err error) []string {
				var p []string
				if errors.Is(err, etcdraft.ErrClosed) || errors.Is(err, wal.ErrFenced) {
					p = append(p, fmt.Sprintf("%s: a permanent error during a mere outage: %v", op, err))
				}
				// The entries may be durable even though the HardState
				// failed; nothing else may have changed, and the failed
				// HardState must not be reported as the saved one.
				if after, _ := w.S.LastIndex(); after != before && after != last {
					p = append(p, fmt.Sprintf("%s failed but LastIndex moved from %d to %d", op, before, after))
				}
				if got, _, _ := w.S.InitialState(); !proto.Equal(got, hsBefore) {
					p = append(p, fmt.Sprintf("%s failed but InitialState's HardState changed from %v to %v", op, hsBefore, got))
				}
				return p
			})
		w.rec.Lock()
		if ok {
			w.rec.acked = append(w.rec.acked, ents...)
			w.rec.hs = hs
		} else {
			w.rec.pending, w.rec.pendHS = ents, hs
		}
		w.rec.Unlock()
		if !ok {
			return
		}
		next = last + 1
	}
}

// VerifyFresh opens the log from a new client (fencing the storage under
// test) and checks every acknowledged entry and the last acknowledged
// HardState.
func (w *etcdWriter) VerifyFresh(t *testing.T) {
	t.Helper()
	w.rec.Lock()
	acked, pending, hs, pendHS := w.rec.acked, w.rec.pending, w.rec.hs, w.rec.pendHS
	w.rec.Unlock()
	fresh, ok := w.Fresh(t)
	if !ok {
		return
	}
	first, _ := fresh.FirstIndex()
	last, _ := fresh.LastIndex()
	n := uint64(len(acked))
	switch {
	case first != 1:
		t.Errorf("%s: fresh client: FirstIndex %d, want 1", w.Name, first)
	case last < n:
		t.Errorf("%s: fresh client: LastIndex %d, but %d entries were acknowledged", w.Name, last, n)
	case len(pending) == 0 && last != n:
		t.Errorf("%s: fresh client: LastIndex %d, want %d (the last call succeeded)", w.Name, last, n)
	case last > n+uint64(len(pending)):
		t.Errorf("%s: fresh client: LastIndex %d beyond the %d acknowledged and %d given-up entries", w.Name, last, n, len(pending))
	}
	if n > 0 {
		got, err := fresh.Entries(1, n+1, math.MaxUint64)
		if err != nil {
			t.Errorf("%s: fresh client: Entries(1, %d): %v", w.Name, n+1, err)
		} else {
			bad := 0
			for k, want := range acked {
				if k < len(got) && proto.Equal(got[k], want) {
					continue
				}
				if bad++; bad <= 5 {
					var g *pb.Entry
					if k < len(got) {
						g = got[k]
					}
					t.Errorf("%s: fresh client: entry %d = %v; want %v", w.Name, k+1, g, want)
				}
			}
			if bad > 0 {
				t.Errorf("%s: fresh client: %d of %d acknowledged entries missing or changed", w.Name, bad, n)
			}
		}
	}
	gotHS, _, err := fresh.InitialState()
	switch {
	case err != nil:
		t.Errorf("%s: fresh client: InitialState: %v", w.Name, err)
	case !proto.Equal(gotHS, hs) && (pendHS == nil || !proto.Equal(gotHS, pendHS)):
		t.Errorf("%s: fresh client: HardState %v, want %v (the last acknowledged)", w.Name, gotHS, hs)
	}
	t.Logf("%s: a fresh client reads all %d acknowledged entries (log [%d, %d]) and HardState %v", w.Name, n, first, last, gotHS)
}
