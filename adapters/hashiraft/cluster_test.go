package hashiraft_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// kvFSM is a map of counters: each command "key" adds the command's value
// to key. Its digest covers the whole state and the applied count.
type kvFSM struct {
	mu      sync.Mutex
	m       map[string]uint64
	applied uint64
}

type kvCmd struct {
	Key string `json:"k"`
	Add uint64 `json:"a"`
}

func newKVFSM() *kvFSM { return &kvFSM{m: map[string]uint64{}} }

func (f *kvFSM) Apply(l *raft.Log) any {
	var c kvCmd
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[c.Key] += c.Add
	f.applied++
	return f.applied
}

func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	state := struct {
		M       map[string]uint64
		Applied uint64
	}{make(map[string]uint64, len(f.m)), f.applied}
	for k, v := range f.m {
		state.M[k] = v
	}
	b, err := json.Marshal(state)
	return kvSnapshot(b), err
}

func (f *kvFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var state struct {
		M       map[string]uint64
		Applied uint64
	}
	if err := json.NewDecoder(rc).Decode(&state); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m, f.applied = state.M, state.Applied
	return nil
}

// digest returns a hash of the state and the number of commands applied.
func (f *kvFSM) digest() (string, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.m))
	for k := range f.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write(binary.BigEndian.AppendUint64(nil, f.m[k]))
	}
	return fmt.Sprintf("%x", h.Sum(nil)[:8]), f.applied
}

type kvSnapshot []byte

func (s kvSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (kvSnapshot) Release() {}

// testNode is one Raft server on our stores and an in-memory transport.
type testNode struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	url   string // its bucket: all it needs to come back
	store *hashiraft.Store
	trans *raft.InmemTransport
	fsm   *kvFSM
	raft  *raft.Raft
}

type testCluster struct {
	t      *testing.T
	nodes  []*testNode
	logger hclog.Logger
}

func (c *testCluster) config(id raft.ServerID) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = 100 * time.Millisecond
	conf.ElectionTimeout = 100 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.SnapshotInterval = time.Hour // the test snapshots explicitly
	conf.SnapshotThreshold = 1 << 40
	conf.TrailingLogs = 16
	conf.RestoreCommittedLogs = true // exercises CommitTrackingLogStore
	conf.Logger = c.logger.Named(string(id))
	return conf
}

// start opens the node's store from its bucket URL alone and starts raft.
func (c *testCluster) start(n *testNode, bootstrap bool) {
	t := c.t
	ctx := context.Background()
	s, err := hashiraft.Open(ctx, n.url, "", hashiraft.Options{
		CallTimeout: 10 * time.Second,
		Logger:      hashiraft.FromHclog(c.logger.Named(string(n.id) + "-store")),
		WAL:         wal.Config{RetryBudget: 5 * time.Second}, // within CallTimeout
	})
	if err != nil {
		t.Fatalf("node %s: open store: %v", n.id, err)
	}
	n.store = s
	_, n.trans = raft.NewInmemTransport(n.addr)
	n.fsm = newKVFSM()
	conf := c.config(n.id)
	if bootstrap {
		var servers []raft.Server
		for _, o := range c.nodes {
			servers = append(servers, raft.Server{ID: o.id, Address: o.addr})
		}
		if err := raft.BootstrapCluster(conf, s, s, s.Snapshots(), n.trans, raft.Configuration{Servers: servers}); err != nil {
			t.Fatalf("node %s: bootstrap: %v", n.id, err)
		}
	}
	r, err := raft.NewRaft(conf, n.fsm, s, s, s.Snapshots(), n.trans)
	if err != nil {
		t.Fatalf("node %s: NewRaft: %v", n.id, err)
	}
	n.raft = r
	for _, o := range c.nodes {
		if o != n && o.raft != nil {
			n.trans.Connect(o.addr, o.trans)
			o.trans.Connect(n.addr, n.trans)
		}
	}
}

func (c *testCluster) stop(n *testNode) {
	if n.raft == nil {
		return
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		c.t.Errorf("node %s: shutdown: %v", n.id, err)
	}
	for _, o := range c.nodes {
		if o != n && o.trans != nil {
			o.trans.Disconnect(n.addr)
		}
	}
	n.trans.Close()
	if err := n.store.Close(); err != nil {
		c.t.Errorf("node %s: close store: %v", n.id, err)
	}
	n.raft = nil
}

func (c *testCluster) isolate(n *testNode) {
	n.trans.DisconnectAll()
	for _, o := range c.nodes {
		if o != n && o.raft != nil {
			o.trans.Disconnect(n.addr)
		}
	}
}

func (c *testCluster) reconnect(n *testNode) {
	for _, o := range c.nodes {
		if o != n && o.raft != nil {
			n.trans.Connect(o.addr, o.trans)
			o.trans.Connect(n.addr, n.trans)
		}
	}
}

func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if n.raft != nil {
			out = append(out, n)
		}
	}
	return out
}

// leader waits for one running node to lead.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.running() {
			if n.raft.State() == raft.Leader {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected within 20s")
	return nil
}

// apply applies n commands through the leader, up to 64 in flight,
// retrying on a new leader if leadership moves.
func (c *testCluster) apply(rng *rand.Rand, n int) {
	c.t.Helper()
	for done := 0; done < n; {
		l := c.leader()
		batch := min(64, n-done)
		futs := make([]raft.ApplyFuture, batch)
		for i := range futs {
			b, _ := json.Marshal(kvCmd{Key: fmt.Sprintf("k%d", rng.IntN(50)), Add: rng.Uint64N(1000)})
			futs[i] = l.raft.Apply(b, 5*time.Second)
		}
		ok := 0
		for _, f := range futs {
			if err := f.Error(); err == nil {
				ok++
			}
		}
		if ok < batch {
			// Leadership changed mid-batch: some commands may or may not be
			// applied. The FSM comparison below still holds; count what we
			// know and carry on.
			c.t.Logf("apply: %d of %d commands failed (leadership change); continuing", batch-ok, batch)
		}
		done += batch
	}
}

// converge waits until every given node has the same state as the leader
// and returns it.
func (c *testCluster) converge(nodes []*testNode) (string, uint64) {
	c.t.Helper()
	l := c.leader()
	if err := l.raft.Barrier(5 * time.Second).Error(); err != nil {
		c.t.Fatalf("barrier: %v", err)
	}
	want, applied := l.fsm.digest()
	deadline := time.Now().Add(30 * time.Second)
	for {
		same := true
		for _, n := range nodes {
			if d, a := n.fsm.digest(); d != want || a != applied {
				same = false
			}
		}
		if same {
			return want, applied
		}
		if time.Now().After(deadline) {
			for _, n := range nodes {
				d, a := n.fsm.digest()
				c.t.Logf("node %s: digest %s applied %d; leader %s: %s %d", n.id, d, a, l.id, want, applied)
			}
			c.t.Fatal("nodes did not converge within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCluster runs a real 3-node hashicorp/raft cluster on our stores (a
// directory bucket per node, metadata in the bucket): it applies ~2000
// commands, kills the leader and goes on with a new one, brings the killed
// node back from its bucket alone, isolates a follower while the leader
// snapshots and compacts so that the follower catches up through
// InstallSnapshot, and checks every FSM ends identical.
func TestCluster(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	c := &testCluster{t: t, logger: hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.Error, Output: testWriter{t},
	})}
	for i := range 3 {
		dir := t.TempDir()
		c.nodes = append(c.nodes, &testNode{
			id: raft.ServerID(fmt.Sprintf("n%d", i)), addr: raft.ServerAddress(fmt.Sprintf("addr%d", i)),
			url: "file://" + dir,
		})
	}
	defer func() {
		for _, n := range c.nodes {
			c.stop(n)
		}
	}()
	for _, n := range c.nodes {
		c.start(n, true)
	}
	start := time.Now()
	c.apply(rng, 2000)
	d, applied := c.converge(c.nodes)
	t.Logf("2000 commands: applied %d, digest %s, %s", applied, d, time.Since(start).Round(time.Millisecond))

	// Kill the leader: a new one is elected and applies continue.
	old := c.leader()
	c.stop(old)
	c.apply(rng, 200)
	if l := c.leader(); l == old {
		t.Fatal("the stopped node is still the leader")
	}
	c.converge(c.running())

	// The killed node comes back from its bucket alone: a fresh Store from
	// the same URL, a fresh FSM, no local state.
	c.start(old, false)
	d, applied = c.converge(c.nodes)
	t.Logf("node %s rejoined from its bucket: applied %d, digest %s", old.id, applied, d)

	// Isolate a follower; the others apply more, snapshot and compact their
	// logs past the follower's last index.
	l := c.leader()
	var f *testNode
	for _, n := range c.nodes {
		if n != l {
			f = n
			break
		}
	}
	fLast, _ := f.store.LastIndex()
	c.isolate(f)
	c.apply(rng, 300)
	// Snapshot and compact on both connected nodes, so whichever leads when
	// the follower comes back lacks the entries it needs.
	for _, n := range c.running() {
		if n == f {
			continue
		}
		if err := n.raft.Snapshot().Error(); err != nil {
			t.Fatalf("node %s: snapshot: %v", n.id, err)
		}
		if first, _ := n.store.FirstIndex(); first <= fLast+1 {
			t.Fatalf("node %s: log starts at %d after compaction; the follower needs %d, so no snapshot would be sent", n.id, first, fLast+1)
		}
	}
	c.reconnect(f)
	c.apply(rng, 50)
	d, applied = c.converge(c.nodes)
	snaps, err := f.store.Snapshots().List()
	if err != nil || len(snaps) == 0 {
		t.Fatalf("follower has no snapshot after catching up (%v): InstallSnapshot was not used", err)
	}
	if fFirst, _ := f.store.FirstIndex(); fFirst <= fLast {
		t.Fatalf("follower's log starts at %d, at or below its last index %d before isolation: "+
			"the monotonic store should have been wiped after InstallSnapshot", fFirst, fLast)
	}
	t.Logf("follower %s caught up by InstallSnapshot of index %d; applied %d, digest %s",
		f.id, snaps[0].Index, applied, d)

	// Restart everything from the buckets: the same state comes back.
	for _, n := range c.nodes {
		c.stop(n)
	}
	for _, n := range c.nodes {
		c.start(n, false)
	}
	d2, applied2 := c.converge(c.nodes)
	if d2 != d || applied2 < applied {
		t.Fatalf("after restarting every node: digest %s applied %d, before %s %d", d2, applied2, d, applied)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// testWriter sends raft's log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
