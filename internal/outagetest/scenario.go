package outagetest

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
)

// Subject is one store an outage scenario writes continuously. Its type
// embeds the *Tracker NewSubject was given.
type Subject interface {
	Tracking() *Tracker
	// Open opens the store on the URLs NewSubject was given.
	Open(ctx context.Context) error
	Close() error
	// Run is the write loop, started with Tracker.Start.
	Run()
	// VerifyFresh opens the log from a new client (fencing the store under
	// test) and checks everything acknowledged.
	VerifyFresh(t *testing.T)
}

// Tracking returns tr (so that a type embedding a *Tracker satisfies
// Subject).
func (tr *Tracker) Tracking() *Tracker { return tr }

// NewSubject makes a subject over bucketURL and metaURL ("" for metadata in
// the bucket), tracked by tr, its payloads drawn from rng.
type NewSubject func(bucketURL, metaURL string, tr *Tracker, rng *rand.Rand) Subject

// RidesOut runs the outage scenario the adapters share: two subjects,
// one with its metadata in etcd (under key prefix name) and one with it in
// the bucket, written continuously through a Downtime outage of versitygw
// (killed, then restarted on the same port and directory) and then one of
// etcd (closed, then restarted on the same data), which the bucket-only
// subject must not notice. Every call must succeed within CallLimit.
// Afterwards each subject's log is verified from a fresh client.
func RidesOut(t *testing.T, name string, newSubject NewSubject) {
	seed := Seed(t)
	s3, etcd := testserver.Versitygw(t), etcdserver.Start(t)
	bucket := s3.NewBucket(t)
	lg := Logger(t)
	subjects := []Subject{
		newSubject(s3.URL(bucket, "etcd_meta"), etcd.URL(name), NewTracker("etcd_meta", true, lg), rand.New(rand.NewPCG(seed, 0))),
		newSubject(s3.URL(bucket, "bucket_meta"), "", NewTracker("bucket_meta", false, lg), rand.New(rand.NewPCG(seed, 1))),
	}
	trs := make([]*Tracker, len(subjects))
	for k, s := range subjects {
		trs[k] = s.Tracking()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.Open(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: open: %v", trs[k].Name, err)
		}
		t.Cleanup(func() { s.Close() })
	}
	stopAll := func() {
		for _, tr := range trs {
			tr.Stop(t)
		}
	}
	t.Cleanup(stopAll)
	for _, s := range subjects {
		s.Tracking().Start(s.Run)
	}
	for _, tr := range trs {
		if !tr.WaitAcks(0, WarmAcks, time.Now().Add(30*time.Second)) {
			t.Fatalf("%s: no progress before any outage; failed calls:\n%s", tr.Name, tr.FailureText())
		}
	}
	phases := []struct {
		what string
		srv  Server
		hits func(*Tracker) bool
	}{
		{"versitygw", s3, func(*Tracker) bool { return true }},
		{"etcd", etcd, func(tr *Tracker) bool { return tr.UsesEtcd }},
	}
	for _, p := range phases {
		if !Run(t, p.what, p.srv, trs, p.hits) {
			break // a store that did not recover makes the next outage meaningless
		}
	}
	stopAll()
	for _, s := range subjects {
		s.Tracking().Report(t)
		s.VerifyFresh(t)
	}
}

// Writer is the part of a Subject the adapters' writers share: the
// tracker, the store's URLs, the payload source and the store under test.
// A subject embeds it and sets OpenStore.
type Writer[S io.Closer] struct {
	*Tracker
	BucketURL, MetaURL string
	Rng                *rand.Rand
	S                  S // the store under test, once Open succeeded
	// OpenStore opens a store on the URLs: the one under test, and the
	// fresh one VerifyFresh reads back through.
	OpenStore func(ctx context.Context, bucketURL, metaURL string) (S, error)
}

// Open opens the store under test.
func (w *Writer[S]) Open(ctx context.Context) error {
	s, err := w.OpenStore(ctx, w.BucketURL, w.MetaURL)
	if err == nil {
		w.S = s
	}
	return err
}

// Close closes the store under test.
func (w *Writer[S]) Close() error { return w.S.Close() }

// Fresh opens the log again from a new client, which fences the store
// under test, for VerifyFresh. It reports a failure to t and returns false;
// the store is closed at cleanup.
func (w *Writer[S]) Fresh(t *testing.T) (S, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := w.OpenStore(ctx, w.BucketURL, w.MetaURL)
	if err != nil {
		t.Errorf("%s: open from a fresh client: %v", w.Name, err)
		return s, false
	}
	t.Cleanup(func() { s.Close() })
	return s, true
}

// Payload returns 16 to 255 random bytes, an entry's data.
func (w *Writer[S]) Payload() []byte {
	data := make([]byte, 16+w.Rng.IntN(240))
	for j := range data {
		data[j] = byte(w.Rng.Uint32())
	}
	return data
}
