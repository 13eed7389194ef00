package etcdraft_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
)

// A one-node Raft whose log lives in a local directory (metadata in the same
// directory: no server). Save persists each Ready in the crash-safe order.
func ExampleStorage_Save() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "etcdraft-example")
	defer os.RemoveAll(dir)

	st, err := etcdraft.Open(ctx, "file://"+dir, "", etcdraft.Options{LogName: "node1"})
	if err != nil {
		panic(err)
	}
	defer st.Close()
	// Bootstrap: a ConfState-only snapshot naming the voters.
	st.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(1)), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}})

	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: st,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, Logger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}})
	if err != nil {
		panic(err)
	}
	rn.Campaign() // one voter: leader once its vote is persisted
	proposed := false
	for rn.HasReady() {
		rd := rn.Ready()
		// Snapshot, then entries, then HardState; durable on return.
		if err := st.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
			panic(err)
		}
		// (send rd.Messages to the peers here)
		for _, e := range rd.CommittedEntries {
			if len(e.GetData()) > 0 {
				fmt.Println(e.GetIndex(), string(e.GetData()))
			}
		}
		rn.Advance(rd)
		if !proposed && rn.BasicStatus().RaftState == raft.StateLeader {
			rn.Propose([]byte("hello"))
			rn.Propose([]byte("world"))
			proposed = true
		}
	}
	// Output:
	// 3 hello
	// 4 world
}
