package hashiraft_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
)

// counter is a minimal FSM: the sum of the numbers applied.
type counter struct{ n atomic.Int64 }

func (c *counter) Apply(l *raft.Log) any {
	v, _ := strconv.ParseInt(string(l.Data), 10, 64)
	return c.n.Add(v)
}

func (c *counter) Snapshot() (raft.FSMSnapshot, error) { return counterSnap(c.n.Load()), nil }

func (c *counter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	c.n.Store(v)
	return err
}

type counterSnap int64

func (s counterSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write([]byte(strconv.FormatInt(int64(s), 10))); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (counterSnap) Release() {}

// The drop-in: one Store is raft's LogStore and StableStore, and its
// Snapshots() the SnapshotStore. Here the bucket is a local directory with
// the metadata in it; "s3://bucket/prefix?endpoint=..." with an etcd:// URL
// is the same call.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "hashiraft-example")
	defer os.RemoveAll(dir)

	store, err := hashiraft.Open(ctx, "file://"+dir, "", hashiraft.Options{})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	conf := raft.DefaultConfig()
	conf.LocalID = "node1"
	conf.Logger = hclog.NewNullLogger()
	conf.HeartbeatTimeout, conf.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	addr, trans := raft.NewInmemTransport("node1")
	fsm := &counter{}

	bootstrap := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
	if err := raft.BootstrapCluster(conf, store, store, store.Snapshots(), trans, bootstrap); err != nil {
		panic(err)
	}
	r, err := raft.NewRaft(conf, fsm, store, store, store.Snapshots(), trans)
	if err != nil {
		panic(err)
	}
	defer r.Shutdown()

	for range 100 { // wait for the single node to elect itself
		if r.State() == raft.Leader {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, v := range []string{"1", "2", "39"} {
		f := r.Apply([]byte(v), time.Second)
		if err := f.Error(); err != nil {
			panic(err)
		}
		fmt.Println("sum:", f.Response())
	}
	// Output:
	// sum: 1
	// sum: 3
	// sum: 42
}
