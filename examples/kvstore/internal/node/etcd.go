package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/adapters/etcdraft"
	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/kv"
	"github.com/woodpecker-wal/woodpecker/internal/redact"
)

// etcdNode runs an etcd raft RawNode over an etcdraft.Storage and the HTTP
// message transport. One goroutine (run) owns the RawNode: it ticks, steps
// incoming messages, proposes, persists each Ready with Storage.Save
// (snapshot, entries, HardState — crash-safe), sends messages, applies
// committed entries, answers ReadIndex requests and takes snapshots.
type etcdNode struct {
	cfg   Config
	lg    *slog.Logger
	st    *kv.State
	store *etcdraft.Storage
	tr    *transport
	rn    *raft.RawNode // owned by run

	// Owned by run.
	savedHS   *pb.HardState // the HardState last handed to the storage
	confState *pb.ConfState
	snapIndex uint64
	isLeader  bool

	recvc chan *pb.Message
	reqc  chan *request // proposals, conf changes and read index requests
	fnc   chan func()

	reportMu     sync.Mutex
	reports      []peerReport // guarded by reportMu
	reportNotify chan struct{}

	props waiters[uint64] // proposals and conf changes, by Command.ReqID / ConfChange.Id
	reads waiters[string] // read index requests, by their context

	statusMu sync.Mutex
	status   Status // refreshed by run after each Ready; guarded by statusMu

	ctx       context.Context // ends when Close begins
	cancel    context.CancelFunc
	stopped   chan struct{} // closed when run returns
	fatal                   // a storage failure that stopped run
	closeOnce sync.Once
	closeErr  error
}

type request struct {
	data []byte         // proposal
	cc   *pb.ConfChange // or conf change
	rctx []byte         // or read index (then a request only a leader takes)
	errc chan error     // the loop's answer: accepted (nil) or why not
}

type outcome struct {
	res   kv.Result
	index uint64 // read index
	err   error
}

func randID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1 // never 0
}

func startEtcd(ctx context.Context, cfg Config) (Engine, error) {
	store, err := etcdraft.Open(ctx, cfg.BucketURL, cfg.MetaURL, etcdraft.Options{
		LogName:     LogName(cfg.ID),
		CallTimeout: cfg.CallTimeout,
		Logger:      slog.New(slog.NewTextHandler(cfg.RaftLog, &slog.HandlerOptions{Level: cfg.RaftLogLevel})).With("raft", cfg.ID, "component", "store"),
	})
	if err != nil {
		return nil, fmt.Errorf("open storage (bucket %s, meta %q): %w", redact.URL(cfg.BucketURL), redact.URL(cfg.MetaURL), err)
	}
	n := &etcdNode{
		cfg: cfg, lg: cfg.Logger, st: kv.New(), store: store,
		recvc: make(chan *pb.Message, 1024), reqc: make(chan *request),
		fnc: make(chan func()), reportNotify: make(chan struct{}, 1),
		stopped: make(chan struct{}), fatal: fatal{done: make(chan struct{})},
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.start(); err != nil {
		n.cancel()
		store.Close()
		return nil, err
	}
	return n, nil
}

func (n *etcdNode) start() error {
	cfg := n.cfg
	hs0, _, err := n.store.InitialState()
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	last, _ := n.store.LastIndex()
	snap, err := n.store.Snapshot()
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	fresh := (hs0 == nil || raft.IsEmptyHardState(hs0)) && last == 0 && snap.GetMetadata().GetIndex() == 0
	if fresh {
		if _, ok := cfg.Peers[cfg.ID]; ok {
			// Every initial node bootstraps from the same snapshot: index 1,
			// term 1, the peers as voters, an empty store knowing their
			// Raft addresses.
			boot := &pb.Snapshot{Data: kv.EncodeInitial(cfg.Peers), Metadata: &pb.SnapshotMetadata{
				Index: new(uint64(1)), Term: new(uint64(1)),
				ConfState: &pb.ConfState{Voters: slices.Sorted(mapsKeys(cfg.Peers))},
			}}
			// Like etcd raft's own Bootstrap, start in term 1: the current
			// term is never below the last entry's.
			hs := &pb.HardState{Term: new(uint64(1)), Commit: new(uint64(1))}
			if err := n.store.Save(hs, nil, boot); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
			snap = boot
			n.lg.Info("bootstrapped a new cluster", "voters", len(cfg.Peers))
		} else {
			n.lg.Info("empty storage and not an initial peer: waiting to be added by the leader (POST /join)")
		}
	}
	hs, cs, err := n.store.InitialState()
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	n.confState = cs
	if hs != nil && !raft.IsEmptyHardState(hs) {
		n.savedHS = proto.CloneOf(hs)
	}
	if idx := snap.GetMetadata().GetIndex(); idx > 0 {
		if err := n.st.Restore(idx, snap.GetData()); err != nil {
			return err
		}
		n.snapIndex = idx
	}
	tr, err := newTransport(cfg.ID, cfg.RaftAddr, n.lg.With("component", "transport"))
	if err != nil {
		return err
	}
	n.tr = tr
	for id, addr := range cfg.Peers {
		tr.setPeer(id, addr)
	}
	for _, m := range n.st.Members() {
		tr.setPeer(m.ID, m.Raft)
	}
	tr.deliver = func(ctx context.Context, m *pb.Message) {
		select {
		case n.recvc <- m:
		case <-ctx.Done():
		case <-n.ctx.Done():
		}
	}
	tr.report = n.queueReport

	ticks := 10
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              ticks,
		HeartbeatTick:             1,
		Storage:                   n.store,
		Applied:                   n.snapIndex,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		DisableProposalForwarding: true,
		Logger:                    &raftLogger{l: slog.New(slog.NewTextHandler(cfg.RaftLog, &slog.HandlerOptions{Level: cfg.RaftLogLevel})).With("raft", cfg.ID)},
	})
	if err != nil {
		tr.close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.rn = rn
	n.refreshStatus()
	tr.serve()
	first, _ := n.store.FirstIndex()
	n.lg.Info("raft started", "engine", EngineEtcd, "restored_snapshot", n.snapIndex,
		"log_first", first, "log_last", last, "term", hs.GetTerm(), "commit", hs.GetCommit())
	go n.run(cfg.ElectionTimeout / time.Duration(ticks))
	return nil
}

func (n *etcdNode) queueReport(r peerReport) {
	n.reportMu.Lock()
	n.reports = append(n.reports, r)
	n.reportMu.Unlock()
	select {
	case n.reportNotify <- struct{}{}:
	default:
	}
}

// run runs the loop until the node is closed or its storage fails for good,
// which stops the node.
func (n *etcdNode) run(tick time.Duration) {
	defer close(n.stopped)
	err := n.loop(tick)
	if errors.Is(err, errStopping) {
		n.failWaiters(ErrStopped, ErrStopped)
		return
	}
	n.lg.Error("node stopped: storage failure", "err", err)
	n.failWaiters(fmt.Errorf("%w: %v", ErrUnknownOutcome, err), ErrStopped)
	n.fail(err)
}

// loop drives the RawNode; it returns errStopping once the node is closed.
func (n *etcdNode) loop(tick time.Duration) error {
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return errStopping
		case <-ticker.C:
			n.rn.Tick()
		case m := <-n.recvc:
			n.step(m)
		case r := <-n.reqc:
			n.handle(r)
		case f := <-n.fnc:
			f()
		case <-n.reportNotify:
			n.applyReports()
		}
		// Take whatever else is waiting before persisting, so concurrent
		// proposals share one Save (one fragment PUT) instead of one each.
	batch:
		for range 1024 {
			select {
			case m := <-n.recvc:
				n.step(m)
			case r := <-n.reqc:
				n.handle(r)
			default:
				break batch
			}
		}
		if err := n.handleReady(); err != nil {
			return err
		}
	}
}

func (n *etcdNode) step(m *pb.Message) {
	_ = n.rn.Step(m) // errors: messages from unknown peers, local types; ignorable
}

// handle hands r to raft (leader only) and answers whether it was taken.
func (n *etcdNode) handle(r *request) {
	switch {
	case !n.isLeader:
		r.errc <- n.notLeader()
	case r.rctx != nil:
		n.rn.ReadIndex(r.rctx)
		r.errc <- nil
	case r.cc != nil:
		r.errc <- n.proposeErr(n.rn.ProposeConfChange(r.cc))
	default:
		r.errc <- n.proposeErr(n.rn.Propose(r.data))
	}
}

func (n *etcdNode) applyReports() {
	n.reportMu.Lock()
	reps := n.reports
	n.reports = nil
	n.reportMu.Unlock()
	for _, r := range reps {
		if r.unreachable {
			n.rn.ReportUnreachable(r.id)
		}
		if r.snapshot {
			st := raft.SnapshotFailure
			if r.snapshotOK {
				st = raft.SnapshotFinish
			}
			n.rn.ReportSnapshot(r.id, st)
		}
	}
}

func (n *etcdNode) proposeErr(err error) error {
	if errors.Is(err, raft.ErrProposalDropped) {
		return n.notLeader()
	}
	return err
}

func (n *etcdNode) handleReady() error {
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		if err := n.save(n.hardStateToSave(rd), rd.Entries, rd.Snapshot); err != nil {
			return err
		}
		if !raft.IsEmptySnap(rd.Snapshot) {
			md := rd.Snapshot.GetMetadata()
			if err := n.st.Restore(md.GetIndex(), rd.Snapshot.GetData()); err != nil {
				return err
			}
			n.confState = proto.CloneOf(md.GetConfState())
			n.snapIndex = md.GetIndex()
			for _, m := range n.st.Members() {
				n.tr.setPeer(m.ID, m.Raft)
			}
			n.lg.Info("installed snapshot from the leader", "index", md.GetIndex(), "keys", n.st.Len())
		}
		for _, m := range rd.Messages {
			if m.GetType() == pb.MsgSnap {
				n.freshenSnapshot(m)
			}
			n.tr.send(m)
		}
		if err := n.apply(rd.CommittedEntries); err != nil {
			return err
		}
		for _, rs := range rd.ReadStates {
			n.reads.settle(string(rs.RequestCtx), outcome{index: rs.Index})
		}
		if rd.SoftState != nil {
			n.onSoftState(rd.SoftState)
		}
		n.rn.Advance(rd)
	}
	if err := n.maybeSnapshot(); err != nil {
		return err
	}
	n.refreshStatus()
	return nil
}

// save persists one Ready. A write the storage failed but recovers from
// (etcdraft.ErrWriteFailed: the stores were unreachable for longer than a
// storage call; the storage reopens the log at its next write) is not the
// end of the node: the same Ready is saved again, with backoff, until it
// goes through, the node is closed, or the storage fails for good (fenced
// by another process, closed, damaged data), which stops the node. The
// loop waits meanwhile, as it would for a slow disk; the cluster carries on
// without this node.
func (n *etcdNode) save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	recovers := func(err error) bool { return errors.Is(err, etcdraft.ErrWriteFailed) }
	err := retryStorage(n.ctx, n.lg, "save ready", recovers, func(attempt int) error {
		err := n.store.Save(hs, ents, snap)
		if attempt > 1 && err == raft.ErrSnapOutOfDate && snap != nil {
			// The failed attempt's snapshot landed; what is left is the
			// entries and the HardState.
			snap = nil
			err = n.store.Save(hs, ents, nil)
		}
		return err
	})
	if err != nil && !errors.Is(err, errStopping) {
		return fmt.Errorf("persist ready: %w", err)
	}
	return err
}

// hardStateToSave returns the part of rd to persist as HardState: nil when
// only the commit index moved. Term and vote must be durable before any
// message that depends on them leaves, but a stale commit index is
// harmless: raft learns it again from the leader (etcd itself does not
// fsync a commit-only change: raft.MustSync). Skipping it saves one
// compare-and-swap of the log record per Ready. The commit index is
// persisted with the next term or vote change, with a snapshot received
// from the leader, and before every local snapshot, so that on restart it
// is never below the snapshot index (raft panics otherwise).
func (n *etcdNode) hardStateToSave(rd raft.Ready) *pb.HardState {
	hs := rd.HardState
	if !raft.IsEmptySnap(rd.Snapshot) && hs == nil {
		// The commit index may equal the snapshot's already in memory
		// while the stored one lags: store it with the snapshot.
		hs = n.rn.BasicStatus().HardState
	}
	if hs == nil || raft.IsEmptyHardState(hs) {
		return nil
	}
	if n.savedHS != nil && hs.GetTerm() == n.savedHS.GetTerm() && hs.GetVote() == n.savedHS.GetVote() &&
		raft.IsEmptySnap(rd.Snapshot) {
		return nil
	}
	n.savedHS = proto.CloneOf(hs)
	return hs
}

// saveCommit persists the current HardState if its commit index is newer
// than the one stored.
func (n *etcdNode) saveCommit() error {
	bs := n.rn.BasicStatus()
	hs := bs.HardState
	if hs == nil || (n.savedHS != nil && hs.GetCommit() <= n.savedHS.GetCommit()) {
		return nil
	}
	if err := n.store.SetHardState(hs); err != nil {
		return err
	}
	n.savedHS = proto.CloneOf(hs)
	return nil
}

func (n *etcdNode) apply(ents []*pb.Entry) error {
	for _, e := range ents {
		idx := e.GetIndex()
		if idx <= n.st.Applied() {
			continue
		}
		switch e.GetType() {
		case pb.EntryNormal:
			if len(e.GetData()) == 0 {
				n.st.SetApplied(idx) // the empty entry of a new leader's term
				continue
			}
			c, err := kv.DecodeCommand(e.GetData())
			if err != nil {
				n.st.SetApplied(idx)
				n.lg.Warn("skipping undecodable entry", "index", idx, "err", err)
				continue
			}
			res := n.st.Apply(idx, c)
			n.props.settle(c.ReqID, outcome{res: res})
		case pb.EntryConfChange:
			cc := &pb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return fmt.Errorf("conf change at %d: %w", idx, err)
			}
			n.confState = n.rn.ApplyConfChange(cc)
			var m kv.Member
			if len(cc.GetContext()) > 0 {
				_ = json.Unmarshal(cc.GetContext(), &m)
			}
			m.ID = cc.GetNodeId()
			var res kv.Result
			switch cc.GetType() {
			case pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode, pb.ConfChangeUpdateNode:
				n.tr.setPeer(m.ID, m.Raft)
				res = n.st.Apply(idx, kv.Command{Op: kv.OpMember, Member: &m})
				n.lg.Info("member added", "id", m.ID, "raft", m.Raft, "http", m.HTTP)
			case pb.ConfChangeRemoveNode:
				n.tr.removePeer(m.ID)
				res = n.st.Apply(idx, kv.Command{Op: kv.OpUnmember, Member: &m})
				if m.ID == n.cfg.ID {
					n.lg.Warn("this node was removed from the cluster")
				} else {
					n.lg.Info("member removed", "id", m.ID)
				}
			}
			n.props.settle(cc.GetId(), outcome{res: res})
		case pb.EntryConfChangeV2:
			cc := &pb.ConfChangeV2{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return fmt.Errorf("conf change at %d: %w", idx, err)
			}
			n.confState = n.rn.ApplyConfChange(cc)
			n.st.SetApplied(idx)
		}
	}
	return nil
}

// freshenSnapshot replaces the stored snapshot in m (which raft took from
// the storage) with one of the state as applied right now, as etcd's server
// does: a member added after the last snapshot is in the current ConfState
// only, and a new member refuses a snapshot whose ConfState lacks it.
func (n *etcdNode) freshenSnapshot(m *pb.Message) {
	idx := n.st.Applied()
	if idx <= m.GetSnapshot().GetMetadata().GetIndex() {
		return
	}
	term, err := n.store.Term(idx)
	if err != nil {
		return // keep the stored one
	}
	m.Snapshot = &pb.Snapshot{Data: n.st.Snapshot(), Metadata: &pb.SnapshotMetadata{
		Index: new(idx), Term: new(term), ConfState: proto.CloneOf(n.confState),
	}}
}

// maybeSnapshot takes a snapshot once SnapshotThreshold entries were
// applied since the last one, and compacts the log behind it, keeping
// SnapshotThreshold/2 entries for followers that lag a little.
func (n *etcdNode) maybeSnapshot() error {
	applied := n.st.Applied()
	if applied < n.snapIndex+n.cfg.SnapshotThreshold {
		return nil
	}
	// A write the storage recovers from (etcdraft.ErrWriteFailed) only
	// postpones the snapshot or the compaction to a later Ready.
	later := func(what string, err error) error {
		if errors.Is(err, etcdraft.ErrWriteFailed) {
			n.lg.Warn(what+" failed; trying again later", "applied", applied, "err", err)
			return nil
		}
		return fmt.Errorf("%s at %d: %w", what, applied, err)
	}
	if err := n.saveCommit(); err != nil {
		return later("persist commit index before snapshot", err)
	}
	data := n.st.Snapshot()
	if _, err := n.store.CreateSnapshot(applied, n.confState, data); err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			return nil
		}
		return later("create snapshot", err)
	}
	n.snapIndex = applied
	keep := n.cfg.SnapshotThreshold / 2
	if applied > keep {
		first, _ := n.store.FirstIndex()
		if at := applied - keep; at >= first {
			if err := n.store.Compact(at); err != nil && !errors.Is(err, raft.ErrCompacted) {
				return later(fmt.Sprintf("compact to %d", at), err)
			}
		}
	}
	first, _ := n.store.FirstIndex()
	n.lg.Info("snapshot written", "applied", applied, "bytes", len(data), "log_first", first)
	return nil
}

func (n *etcdNode) onSoftState(ss *raft.SoftState) {
	leader := ss.RaftState == raft.StateLeader
	if n.isLeader && !leader {
		n.lg.Info("lost leadership", "state", ss.RaftState.String(), "leader", ss.Lead)
		// Proposals may still commit under the next leader; reads were
		// not served and may go to the next leader.
		nl := &NotLeaderError{LeaderID: ss.Lead}
		if m, ok := n.st.Member(ss.Lead); ok {
			nl.LeaderHTTP = m.HTTP
		}
		n.failWaiters(fmt.Errorf("%w: leadership lost", ErrUnknownOutcome), nl)
	}
	if !n.isLeader && leader {
		n.lg.Info("became leader", "term", n.rn.BasicStatus().GetTerm())
		go n.onLeader()
	}
	n.isLeader = leader
}

// onLeader publishes this node's HTTP address in the state machine (after a
// ReadIndex shows the leader has committed in its term), so followers can
// redirect clients here.
func (n *etcdNode) onLeader() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*n.cfg.ElectionTimeout)
	defer cancel()
	if err := n.LinearizableRead(ctx); err != nil {
		n.lg.Debug("leader not ready to publish its address", "err", err)
		return
	}
	m, _ := n.st.Member(n.cfg.ID)
	if m.HTTP == n.cfg.HTTPAddr && m.Raft == n.cfg.RaftAddr {
		return
	}
	if _, err := n.Propose(ctx, kv.Command{Op: kv.OpMember, Member: &kv.Member{ID: n.cfg.ID, Raft: n.cfg.RaftAddr, HTTP: n.cfg.HTTPAddr}}); err != nil {
		n.lg.Warn("publish HTTP address", "err", err)
	}
}

// waiters are the callers waiting for the loop to settle their requests,
// by request key.
type waiters[K comparable] struct {
	mu sync.Mutex
	m  map[K]chan outcome // guarded by mu
}

// add registers a waiter for key: the channel receives its outcome.
func (w *waiters[K]) add(key K) chan outcome {
	ch := make(chan outcome, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[K]chan outcome{}
	}
	w.m[key] = ch
	w.mu.Unlock()
	return ch
}

// remove forgets the waiter for key, settled or not.
func (w *waiters[K]) remove(key K) {
	w.mu.Lock()
	delete(w.m, key)
	w.mu.Unlock()
}

// settle hands o to the waiter for key, if one waits.
func (w *waiters[K]) settle(key K, o outcome) {
	w.mu.Lock()
	ch := w.m[key]
	delete(w.m, key)
	w.mu.Unlock()
	if ch != nil {
		ch <- o
	}
}

// failAll settles every waiter with err.
func (w *waiters[K]) failAll(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, ch := range w.m {
		ch <- outcome{err: err}
		delete(w.m, key)
	}
}

// failWaiters fails every pending proposal with errWrite and every pending
// read with errRead.
func (n *etcdNode) failWaiters(errWrite, errRead error) {
	n.props.failAll(errWrite)
	n.reads.failAll(errRead)
}

// submit hands r to the loop and returns its answer.
func (n *etcdNode) submit(ctx context.Context, r *request) error {
	r.errc = make(chan error, 1)
	select {
	case n.reqc <- r:
	case <-ctx.Done():
		return fmt.Errorf("raft loop busy: %w", ctx.Err())
	case <-n.stopped:
		return ErrStopped
	}
	return <-r.errc
}

func (n *etcdNode) await(ctx context.Context, ch chan outcome) (outcome, error) {
	select {
	case o := <-ch:
		return o, o.err
	case <-ctx.Done():
		return outcome{}, fmt.Errorf("%w: %v", ErrUnknownOutcome, ctx.Err())
	}
}

func (n *etcdNode) Propose(ctx context.Context, c kv.Command) (kv.Result, error) {
	c.ReqID = randID()
	ch := n.props.add(c.ReqID)
	defer n.props.remove(c.ReqID)
	if err := n.submit(ctx, &request{data: c.Encode()}); err != nil {
		return kv.Result{}, err
	}
	o, err := n.await(ctx, ch)
	if err == nil && o.res.Err != "" {
		err = errors.New(o.res.Err)
	}
	return o.res, err
}

func (n *etcdNode) LinearizableRead(ctx context.Context) error {
	key := string(binary.LittleEndian.AppendUint64(nil, randID()))
	ch := n.reads.add(key)
	defer n.reads.remove(key)
	if err := n.submit(ctx, &request{rctx: []byte(key)}); err != nil {
		return err
	}
	var o outcome
	select {
	case o = <-ch:
		if o.err != nil {
			return o.err
		}
	case <-ctx.Done():
		return fmt.Errorf("read index: %w", ctx.Err())
	}
	return n.st.WaitApplied(ctx, o.index)
}

func (n *etcdNode) changeConf(ctx context.Context, cc *pb.ConfChange) error {
	cc.Id = new(randID())
	ch := n.props.add(cc.GetId())
	defer n.props.remove(cc.GetId())
	if err := n.submit(ctx, &request{cc: cc}); err != nil {
		return err
	}
	_, err := n.await(ctx, ch)
	return err
}

func (n *etcdNode) AddMember(ctx context.Context, m kv.Member) error {
	b, _ := json.Marshal(m)
	t := pb.ConfChangeAddNode
	return n.changeConf(ctx, &pb.ConfChange{Type: &t, NodeId: new(m.ID), Context: b})
}

func (n *etcdNode) RemoveMember(ctx context.Context, id uint64) error {
	t := pb.ConfChangeRemoveNode
	return n.changeConf(ctx, &pb.ConfChange{Type: &t, NodeId: new(id)})
}

func (n *etcdNode) State() *kv.State { return n.st }

// notLeader describes the current leader. Called by run, or with statusMu
// not held.
func (n *etcdNode) notLeader() error {
	n.statusMu.Lock()
	id := n.status.LeaderID
	n.statusMu.Unlock()
	if id == n.cfg.ID {
		id = 0 // stepping down
	}
	e := &NotLeaderError{LeaderID: id}
	if m, ok := n.st.Member(id); ok {
		e.LeaderHTTP = m.HTTP
	}
	return e
}

// refreshStatus copies the loop's view into status. Called by run.
func (n *etcdNode) refreshStatus() {
	bs := n.rn.BasicStatus()
	first, _ := n.store.FirstIndex()
	last, _ := n.store.LastIndex()
	s := Status{
		ID: n.cfg.ID, Engine: EngineEtcd,
		State:    strings.ToLower(strings.TrimPrefix(bs.RaftState.String(), "State")),
		LeaderID: bs.Lead, Term: bs.GetTerm(), CommitIndex: bs.GetCommit(), AppliedIndex: n.st.Applied(),
		LogFirstIndex: first, LogLastIndex: last, SnapshotIndex: n.snapIndex,
		Voters: slices.Clone(n.confState.GetVoters()), Bucket: redact.URL(n.cfg.BucketURL),
	}
	slices.Sort(s.Voters)
	n.statusMu.Lock()
	n.status = s
	n.statusMu.Unlock()
}

func (n *etcdNode) Status() Status {
	n.statusMu.Lock()
	s := n.status
	n.statusMu.Unlock()
	s.Voters = slices.Clone(s.Voters)
	if m, ok := n.st.Member(s.LeaderID); ok {
		s.LeaderHTTP = m.HTTP
	}
	s.Keys = n.st.Len()
	s.Digest = fmt.Sprintf("%016x", n.st.Digest())
	s.AppliedIndex = n.st.Applied()
	known := map[uint64]kv.Member{}
	for _, m := range n.st.Members() {
		known[m.ID] = m
	}
	for _, id := range s.Voters {
		m := known[id]
		s.Members = append(s.Members, StatusMember{ID: id, Raft: m.Raft, HTTP: m.HTTP, Voter: true})
	}
	return s
}

// do runs f on the loop goroutine.
func (n *etcdNode) do(f func()) bool {
	done := make(chan struct{})
	select {
	case n.fnc <- func() { f(); close(done) }:
		<-done
		return true
	case <-n.stopped:
		return false
	}
}

// transferLeadership hands leadership to the most up-to-date follower and
// waits (briefly) for it to take over.
func (n *etcdNode) transferLeadership() {
	var to uint64
	ok := n.do(func() {
		if !n.isLeader {
			return
		}
		var best uint64
		for id, pr := range n.rn.Status().Progress {
			if id != n.cfg.ID && pr.Match >= best {
				to, best = id, pr.Match
			}
		}
		if to != 0 {
			n.rn.TransferLeader(to)
		}
	})
	if !ok || to == 0 {
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if s := n.Status(); s.State != "leader" {
			if s.LeaderID != 0 {
				n.lg.Info("handed leadership over", "to", s.LeaderID)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *etcdNode) Close() error {
	n.closeOnce.Do(func() {
		n.transferLeadership()
		n.cancel()
		<-n.stopped
		var errs []error
		if err := n.tr.close(); err != nil {
			errs = append(errs, err)
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: %w", err))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// raftLogger adapts slog to raft.Logger.
type raftLogger struct{ l *slog.Logger }

func (r *raftLogger) Debug(v ...any)                 { r.l.Debug(fmt.Sprint(v...)) }
func (r *raftLogger) Debugf(format string, v ...any) { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Info(v ...any)                  { r.l.Info(fmt.Sprint(v...)) }
func (r *raftLogger) Infof(format string, v ...any)  { r.l.Info(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Warning(v ...any)               { r.l.Warn(fmt.Sprint(v...)) }
func (r *raftLogger) Warningf(format string, v ...any) {
	r.l.Warn(fmt.Sprintf(format, v...))
}
func (r *raftLogger) Error(v ...any)                 { r.l.Error(fmt.Sprint(v...)) }
func (r *raftLogger) Errorf(format string, v ...any) { r.l.Error(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Fatal(v ...any)                 { r.Panic(v...) }
func (r *raftLogger) Fatalf(format string, v ...any) { r.Panicf(format, v...) }
func (r *raftLogger) Panic(v ...any) {
	s := fmt.Sprint(v...)
	r.l.Error(s)
	panic(s)
}
func (r *raftLogger) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error(s)
	panic(s)
}
