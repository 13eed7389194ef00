package hashiraft_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/internal/outagetest"
	"github.com/woodpecker-wal/woodpecker/wal"
)

var keyCurrentTerm = []byte("CurrentTerm")

// TestStoreRidesOutServerOutages: stores written continuously through
// StoreLogs and SetUint64 keep working, without being reopened, through a
// 10 s outage of versitygw (killed, then restarted on the same port and
// directory) and then a 10 s outage of etcd (closed, then restarted on the
// same data). One store keeps its metadata in etcd, one in the bucket (it
// must not notice the etcd outage). Calls during an outage may block until
// the server is back; every call must succeed, within the engine's retry
// budget and one more attempt. Afterwards a fresh client finds every
// acknowledged entry, unchanged, and the last acknowledged term.
func TestStoreRidesOutServerOutages(t *testing.T) {
	outagetest.RidesOut(t, "hashi_outage", func(bucketURL, metaURL string, tr *outagetest.Tracker, rng *rand.Rand) outagetest.Subject {
		w := &hashiWriter{Writer: outagetest.Writer[*hashiraft.Store]{Tracker: tr, BucketURL: bucketURL, MetaURL: metaURL, Rng: rng}}
		w.OpenStore = func(ctx context.Context, b, m string) (*hashiraft.Store, error) {
			return hashiraft.Open(ctx, b, m, w.options())
		}
		return w
	})
}

// hashiWriter writes a store continuously the way raft does: a new term
// (SetUint64 of CurrentTerm) every few batches, and batches of entries of
// that term (StoreLogs) at the end of the log. A call that fails is retried
// with the same arguments, as raft would.
type hashiWriter struct {
	outagetest.Writer[*hashiraft.Store]

	rec struct {
		sync.Mutex
		acked    []raft.Log // acked[k] is entry k+1, as acknowledged
		term     uint64     // last acknowledged CurrentTerm
		pending  []raft.Log // entries of a StoreLogs given up on
		pendTerm uint64     // term of a SetUint64 given up on
	}
}

func (w *hashiWriter) options() hashiraft.Options {
	return hashiraft.Options{LogName: "node_" + w.Name, Logger: w.Log, WAL: wal.Config{GCInterval: -1}}
}

func (w *hashiWriter) Run() {
	tick := time.NewTicker(outagetest.Pace)
	defer tick.Stop()
	next, term := uint64(1), uint64(0)
	for i := 0; w.Pace(tick); i++ {
		if i%8 == 0 {
			term++
			tm := term
			if !w.Call(fmt.Sprintf("set term %d", tm),
				func() error { return w.S.SetUint64(keyCurrentTerm, tm) },
				func(err error) []string { return permanentProblem(err) }) {
				w.rec.Lock()
				w.rec.pendTerm = tm
				w.rec.Unlock()
				return
			}
			w.rec.Lock()
			w.rec.term = tm
			w.rec.Unlock()
		}
		n := 1 + w.Rng.IntN(4)
		logs := make([]*raft.Log, n)
		for k := range logs {
			data := w.Payload()
			logs[k] = &raft.Log{Index: next + uint64(k), Term: term, Type: raft.LogCommand, Data: data}
		}
		op := fmt.Sprintf("store logs [%d, %d]", next, next+uint64(n)-1)
		var before uint64
		ok := w.Call(op,
			func() error {
				before, _ = w.S.LastIndex()
				return w.S.StoreLogs(logs)
			},
			func(err error) []string {
				p := permanentProblem(err)
				// What raft sees must not change: the entries are not in the
				// log as far as it knows.
				if after, _ := w.S.LastIndex(); after != before {
					p = append(p, fmt.Sprintf("%s failed but LastIndex moved from %d to %d", op, before, after))
				}
				return p
			})
		w.rec.Lock()
		for _, l := range logs {
			if ok {
				w.rec.acked = append(w.rec.acked, *l)
			} else {
				w.rec.pending = append(w.rec.pending, *l)
			}
		}
		w.rec.Unlock()
		if !ok {
			return
		}
		next += uint64(n)
	}
}

// permanentProblem reports an error that claims the store is gone for good:
// a mere outage must not cause one.
func permanentProblem(err error) []string {
	if errors.Is(err, hashiraft.ErrClosed) || errors.Is(err, wal.ErrFenced) {
		return []string{fmt.Sprintf("a permanent error during a mere outage: %v", err)}
	}
	return nil
}

// VerifyFresh opens the log from a new client (fencing the store under
// test) and checks every acknowledged entry and the last acknowledged term.
func (w *hashiWriter) VerifyFresh(t *testing.T) {
	t.Helper()
	w.rec.Lock()
	acked, pending, term, pendTerm := w.rec.acked, w.rec.pending, w.rec.term, w.rec.pendTerm
	w.rec.Unlock()
	fresh, ok := w.Fresh(t)
	if !ok {
		return
	}
	first, _ := fresh.FirstIndex()
	last, _ := fresh.LastIndex()
	n := uint64(len(acked))
	switch {
	case n > 0 && first != 1:
		t.Errorf("%s: fresh client: FirstIndex %d, want 1", w.Name, first)
	case last < n:
		t.Errorf("%s: fresh client: LastIndex %d, but %d entries were acknowledged", w.Name, last, n)
	case len(pending) == 0 && last != n:
		t.Errorf("%s: fresh client: LastIndex %d, want %d (the last call succeeded)", w.Name, last, n)
	case last > n+uint64(len(pending)):
		t.Errorf("%s: fresh client: LastIndex %d beyond the %d acknowledged and %d given-up entries", w.Name, last, n, len(pending))
	}
	bad := 0
	for k, want := range acked {
		var got raft.Log
		err := fresh.GetLog(uint64(k)+1, &got)
		if err == nil && got.Index == want.Index && got.Term == want.Term && got.Type == want.Type && bytes.Equal(got.Data, want.Data) {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("%s: fresh client: entry %d = {index %d term %d type %v, %d bytes}, %v; want {index %d term %d type %v, %d bytes}",
				w.Name, k+1, got.Index, got.Term, got.Type, len(got.Data), err, want.Index, want.Term, want.Type, len(want.Data))
		}
	}
	if bad > 0 {
		t.Errorf("%s: fresh client: %d of %d acknowledged entries missing or changed", w.Name, bad, n)
	}
	gotTerm, err := fresh.GetUint64(keyCurrentTerm)
	switch {
	case err != nil:
		t.Errorf("%s: fresh client: GetUint64(CurrentTerm): %v", w.Name, err)
	case gotTerm != term && (pendTerm == 0 || gotTerm != pendTerm):
		t.Errorf("%s: fresh client: CurrentTerm %d, want %d (the last acknowledged)", w.Name, gotTerm, term)
	}
	t.Logf("%s: a fresh client reads all %d acknowledged entries (log [%d, %d]) and CurrentTerm %d", w.Name, n, first, last, gotTerm)
}
