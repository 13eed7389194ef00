package etcdraft_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/meta"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// TestCluster runs three raft.RawNodes on our Storage over an in-memory
// network and proposes a few thousand entries while killing and restarting
// nodes from their buckets; a follower is kept down while the others
// snapshot and compact past its log, so it must catch up through MsgSnap.
// Every node must end with the same applied sequence holding every value
// once. It runs with the synchronous Ready loop (Save per Ready) and with
// Config.AsyncStorageWrites (MsgStorageAppend saved on a separate goroutine
// while raft reads the Storage).
func TestCluster(t *testing.T) {
	for _, async := range []bool{false, true} {
		name := "sync"
		if async {
			name = "async"
		}
		t.Run(name, func(t *testing.T) {
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			runCluster(t, async, seed)
		})
	}
}

// queue is an unbounded FIFO with a wake-up channel: senders never block.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	ready chan struct{}
}

func newQueue[T any]() *queue[T] { return &queue[T]{ready: make(chan struct{}, 1)} }

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue[T]) take() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	v := q.items
	q.items = nil
	return v
}

// stateMachine is the replicated state: the sequence of distinct values
// applied (a re-proposed duplicate is skipped, deterministically).
type stateMachine struct {
	mu      sync.Mutex
	Applied uint64   `json:"applied"`
	Values  []string `json:"values"`
	seen    map[string]bool
}

func (sm *stateMachine) apply(ents []*pb.Entry) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	for _, e := range ents {
		if e.GetIndex() <= sm.Applied {
			continue
		}
		if e.GetIndex() != sm.Applied+1 {
			panic(fmt.Sprintf("apply %d after %d", e.GetIndex(), sm.Applied))
		}
		sm.Applied = e.GetIndex()
		if v := string(e.GetData()); e.GetType() == pb.EntryNormal && v != "" && !sm.seen[v] {
			sm.seen[v] = true
			sm.Values = append(sm.Values, v)
		}
	}
}

func (sm *stateMachine) marshal() (uint64, []byte) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	b, _ := json.Marshal(sm)
	return sm.Applied, b
}

func (sm *stateMachine) restore(snap *pb.Snapshot) {
	var v stateMachine
	if err := json.Unmarshal(snap.GetData(), &v); err != nil {
		panic(err)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if snap.GetMetadata().GetIndex() <= sm.Applied {
		return
	}
	sm.Applied, sm.Values, sm.seen = snap.GetMetadata().GetIndex(), v.Values, map[string]bool{}
	for _, s := range v.Values {
		sm.seen[s] = true
	}
}

func (sm *stateMachine) view() (uint64, []string) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.Applied, slices.Clone(sm.Values)
}

func (sm *stateMachine) has(v string) bool {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.seen[v]
}

type cluster struct {
	t       *testing.T
	async   bool
	nodes   map[uint64]*node
	mu      sync.Mutex
	rng     *rand.Rand // guarded by mu
	drop    float64    // guarded by mu
	snaps   atomic.Int64
	failed  atomic.Bool
	failMsg atomic.Value
}

var clusterCS = &pb.ConfState{Voters: []uint64{1, 2, 3}}

const (
	snapEvery = 200 // entries applied between snapshots
	snapKeep  = 20  // entries kept below a snapshot
)

func (c *cluster) fail(format string, args ...any) {
	if c.failed.CompareAndSwap(false, true) {
		c.failMsg.Store(fmt.Sprintf(format, args...))
	}
}

func (c *cluster) send(m *pb.Message) {
	to := c.nodes[m.GetTo()]
	c.mu.Lock()
	lost := to == nil || !to.up.Load() || c.rng.Float64() < c.drop
	c.mu.Unlock()
	if m.GetType() == pb.MsgSnap {
		// The sender must hear how a snapshot fared, or it waits for it
		// forever.
		status := raft.SnapshotFinish
		if lost {
			status = raft.SnapshotFailure
		} else {
			c.snaps.Add(1)
		}
		if from := c.nodes[m.GetFrom()]; from != nil {
			from.reports.push(snapReport{to: m.GetTo(), status: status})
		}
	}
	if !lost {
		to.inbox.push(proto.CloneOf(m))
	}
}

type snapReport struct {
	to     uint64
	status raft.SnapshotStatus
}

func (c *cluster) leader() *node {
	for _, n := range c.nodes {
		if n.up.Load() && n.lead.Load() == n.id {
			return n
		}
	}
	return nil
}

type node struct {
	id    uint64
	c     *cluster
	b     objstore.Bucket
	m     meta.Store
	st    ownedStorage
	dead  []ownedStorage // abandoned by kills, closed at the next start
	rn    *raft.RawNode
	sm    *stateMachine
	up    atomic.Bool
	lead  atomic.Uint64
	stop  chan struct{}
	wg    sync.WaitGroup
	saved atomic.Uint64 // HardState.Commit durable in the Storage

	// The queues live as long as the node, across restarts.
	inbox, local, appendQ *queue[*pb.Message]
	props                 *queue[[]byte]
	reports               *queue[snapReport]
	lastSnap              uint64 // node goroutine only
}

var discardLogger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

func (n *node) start(t *testing.T) {
	ctx := testCtx(t)
	st, err := openOwned(ctx, n.b, n.m, 256<<10)
	require.NoError(t, err)
	for _, d := range n.dead {
		d.Close() // fenced by the open above
	}
	n.dead, n.st = nil, st
	snap, err := st.Snapshot()
	require.NoError(t, err)
	n.sm = &stateMachine{seen: map[string]bool{}}
	n.sm.restore(snap)
	n.lastSnap = snap.GetMetadata().GetIndex()
	hs, _, err := st.InitialState()
	require.NoError(t, err)
	n.saved.Store(hs.GetCommit())
	n.rn, err = raft.NewRawNode(&raft.Config{
		ID: n.id, ElectionTick: 10, HeartbeatTick: 1, Storage: st,
		MaxSizePerMsg: 64 << 10, MaxInflightMsgs: 64, CheckQuorum: true, PreVote: true,
		AsyncStorageWrites: n.c.async, Logger: discardLogger,
	})
	require.NoError(t, err)
	// Whatever reached the queues while the node was down is lost.
	n.inbox.take()
	n.local.take()
	n.appendQ.take()
	n.props.take()
	n.reports.take()
	n.stop = make(chan struct{})
	n.lead.Store(0)
	n.up.Store(true)
	n.wg.Add(1)
	go n.run()
	if n.c.async {
		n.wg.Add(1)
		go n.appendLoop()
	}
}

// kill stops the node like a crash: queued writes are lost and the Storage
// is abandoned without Close.
func (n *node) kill() {
	n.up.Store(false)
	close(n.stop)
	n.wg.Wait()
	n.dead = append(n.dead, n.st)
}

func (n *node) stopped() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

func (n *node) route(m *pb.Message) {
	if m.GetTo() == n.id {
		n.local.push(m)
		return
	}
	n.c.send(m)
}

func (n *node) run() {
	defer n.wg.Done()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
			n.rn.Tick()
		case <-n.inbox.ready:
		case <-n.local.ready:
		case <-n.props.ready:
		case <-n.reports.ready:
		}
		for _, m := range n.local.take() {
			if err := n.rn.Step(m); err != nil {
				n.c.fail("node %d: step local %v: %v", n.id, m.GetType(), err)
				return
			}
		}
		for _, m := range n.inbox.take() {
			_ = n.rn.Step(m)
		}
		for _, p := range n.props.take() {
			_ = n.rn.Propose(p) // dropped without a leader: the driver re-proposes
		}
		for _, r := range n.reports.take() {
			n.rn.ReportSnapshot(r.to, r.status)
		}
		for n.rn.HasReady() {
			if !n.handleReady() {
				return
			}
		}
	}
}

func (n *node) handleReady() bool {
	rd := n.rn.Ready()
	if rd.SoftState != nil {
		n.lead.Store(rd.SoftState.Lead)
	}
	if n.c.async {
		for _, m := range rd.Messages {
			switch m.GetTo() {
			case raft.LocalAppendThread:
				n.appendQ.push(m)
			case raft.LocalApplyThread:
				n.sm.apply(m.GetEntries())
				for _, r := range m.GetResponses() {
					n.route(r)
				}
			default:
				n.c.send(m)
			}
		}
		return n.maybeSnapshot()
	}
	if err := n.st.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		n.c.fail("node %d: Save: %v", n.id, err)
		return false
	}
	if rd.HardState != nil {
		n.saved.Store(rd.HardState.GetCommit())
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		n.sm.restore(rd.Snapshot)
	}
	for _, m := range rd.Messages {
		n.c.send(m)
	}
	n.sm.apply(rd.CommittedEntries)
	n.rn.Advance(rd)
	return n.maybeSnapshot()
}

// appendLoop is the AsyncStorageWrites append thread: it saves each
// MsgStorageAppend and only then delivers its responses.
func (n *node) appendLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.appendQ.ready:
		}
		for _, m := range n.appendQ.take() {
			if n.stopped() {
				return // a crash: the rest is lost
			}
			hs := &pb.HardState{Term: new(m.GetTerm()), Vote: new(m.GetVote()), Commit: new(m.GetCommit())}
			if err := n.st.Save(hs, m.GetEntries(), m.GetSnapshot()); err != nil {
				n.c.fail("node %d: Save (async): %v", n.id, err)
				return
			}
			if !raft.IsEmptyHardState(hs) {
				n.saved.Store(hs.GetCommit())
			}
			if !raft.IsEmptySnap(m.GetSnapshot()) {
				n.sm.restore(m.GetSnapshot())
			}
			for _, r := range m.GetResponses() {
				n.route(r)
			}
		}
	}
}

// maybeSnapshot snapshots the state machine every snapEvery entries and
// compacts the log below it, keeping snapKeep entries. It snapshots only an
// applied index whose commit is durable, so a restart never finds the log
// compacted past its HardState.Commit.
func (n *node) maybeSnapshot() bool {
	applied, data := n.sm.marshal()
	if applied < n.lastSnap+snapEvery || applied > n.saved.Load() {
		return true
	}
	_, err := n.st.CreateSnapshot(applied, clusterCS, data)
	if err != nil && err != raft.ErrSnapOutOfDate {
		n.c.fail("node %d: CreateSnapshot(%d): %v", n.id, applied, err)
		return false
	}
	n.lastSnap = applied
	if err := n.st.Compact(applied - snapKeep); err != nil && err != raft.ErrCompacted {
		n.c.fail("node %d: Compact(%d): %v", n.id, applied-snapKeep, err)
		return false
	}
	return true
}

func (c *cluster) check() {
	if c.failed.Load() {
		c.t.Fatal(c.failMsg.Load())
	}
}

// propose gets every value applied on a leader, re-proposing what a leader
// change lost.
func (c *cluster) propose(values []string) {
	pending := slices.Clone(values)
	deadline := time.Now().Add(20 * time.Second)
	for len(pending) > 0 {
		c.check()
		if time.Now().After(deadline) {
			c.t.Fatalf("%d values not applied in time (first %q)", len(pending), pending[0])
		}
		l := c.leader()
		if l == nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		batch := pending[:min(len(pending), 300)]
		for _, v := range batch {
			l.props.push([]byte(v))
		}
		for wait := time.Now().Add(500 * time.Millisecond); time.Now().Before(wait); {
			pending = slices.DeleteFunc(pending, l.sm.has)
			if len(pending) == 0 || (len(batch) > 0 && !slices.Contains(pending, batch[len(batch)-1])) || !l.up.Load() {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func values(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("v%05d", i))
	}
	return out
}

func runCluster(t *testing.T, async bool, seed int64) {
	c := &cluster{t: t, async: async, nodes: map[uint64]*node{}, rng: rand.New(rand.NewPCG(uint64(seed), 7))}
	_, boot := (&stateMachine{Applied: 1}).marshal()
	for id := uint64(1); id <= 3; id++ {
		n := &node{id: id, c: c, b: objmem.New(), m: metamem.New(),
			inbox: newQueue[*pb.Message](), local: newQueue[*pb.Message](), appendQ: newQueue[*pb.Message](),
			props: newQueue[[]byte](), reports: newQueue[snapReport]()}
		s, err := openOwned(testCtx(t), n.b, n.m, 0)
		require.NoError(t, err)
		require.NoError(t, s.ApplySnapshot(&pb.Snapshot{Data: boot, Metadata: &pb.SnapshotMetadata{
			Index: new(uint64(1)), Term: new(uint64(1)), ConfState: clusterCS}}))
		require.NoError(t, s.Close())
		c.nodes[id] = n
	}
	for _, n := range c.nodes {
		n.start(t)
	}
	defer func() {
		for _, n := range c.nodes {
			if n.up.Load() {
				n.kill()
			}
			for _, d := range n.dead {
				d.Close()
			}
		}
	}()
	pick := func(exclude uint64) *node {
		c.mu.Lock()
		defer c.mu.Unlock()
		for {
			if n := c.nodes[uint64(c.rng.IntN(3)+1)]; n.id != exclude {
				return n
			}
		}
	}
	leaderID := func() uint64 {
		for c.leader() == nil {
			c.check()
			time.Sleep(5 * time.Millisecond)
		}
		return c.leader().id
	}

	c.propose(values(0, 600))

	// A follower misses enough for the others to compact past its log.
	f := pick(leaderID())
	fLast, err := f.st.LastIndex()
	require.NoError(t, err)
	f.kill()
	c.propose(values(600, 1500))
	l := c.leader()
	require.NotNil(t, l)
	first, err := l.st.FirstIndex()
	require.NoError(t, err)
	require.Greater(t, first, fLast+1, "the leader must have compacted past the follower's log")
	f.start(t)

	c.propose(values(1500, 2000))
	old := c.nodes[leaderID()]
	old.kill()
	c.propose(values(2000, 2500))
	old.start(t)

	c.mu.Lock()
	c.drop = 0.02
	c.mu.Unlock()
	c.propose(values(2500, 3000))
	c.mu.Lock()
	c.drop = 0
	c.mu.Unlock()

	// Every node converges on the same sequence, holding each value once.
	want := values(0, 3000)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.check()
		var seqs [][]string
		for id := uint64(1); id <= 3; id++ {
			_, v := c.nodes[id].sm.view()
			seqs = append(seqs, v)
		}
		if len(seqs[0]) == len(want) && slices.Equal(seqs[0], seqs[1]) && slices.Equal(seqs[0], seqs[2]) {
			sorted := slices.Clone(seqs[0])
			slices.Sort(sorted)
			require.Equal(t, want, sorted)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not converge: applied %d, %d, %d values", len(seqs[0]), len(seqs[1]), len(seqs[2]))
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Positive(t, c.snaps.Load(), "no MsgSnap was sent")
	t.Logf("%d MsgSnap sent", c.snaps.Load())

	// Restart everything from the buckets: the persisted state is coherent.
	for _, n := range c.nodes {
		n.kill()
		n.start(t)
		hs, _, err := n.st.InitialState()
		require.NoError(t, err)
		last, err := n.st.LastIndex()
		require.NoError(t, err)
		require.LessOrEqual(t, hs.GetCommit(), last)
	}
	c.check()
}
