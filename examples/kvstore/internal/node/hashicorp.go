package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/kv"
	"github.com/woodpecker-wal/woodpecker/internal/redact"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// hashiNode runs hashicorp/raft over a hashiraft.Store and a TCP transport.
type hashiNode struct {
	cfg   Config
	lg    *slog.Logger
	st    *kv.State
	store *fencedStore
	trans *raft.NetworkTransport
	r     *raft.Raft

	// readyTerm is the term in which this node, as leader, completed a
	// Barrier: from then on its state machine holds every entry committed
	// before its term, and a read after VerifyLeader is linearizable.
	readyTerm atomic.Uint64

	ctx       context.Context // ends when Close begins
	cancel    context.CancelFunc
	closed    chan struct{} // closed when Close has stopped raft: futures left unanswered never will be
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	fatal     // set when the storage was fenced
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l <= slog.LevelDebug:
		return hclog.Debug
	case l <= slog.LevelInfo:
		return hclog.Info
	case l <= slog.LevelWarn:
		return hclog.Warn
	case l <= slog.LevelError:
		return hclog.Error
	default:
		return hclog.Off
	}
}

func startHashicorp(ctx context.Context, cfg Config) (Engine, error) {
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:   fmt.Sprintf("raft-%d", cfg.ID),
		Level:  hclogLevel(cfg.RaftLogLevel),
		Output: cfg.RaftLog,
	})
	store, err := hashiraft.Open(ctx, cfg.BucketURL, cfg.MetaURL, hashiraft.Options{
		LogName:     LogName(cfg.ID),
		CallTimeout: cfg.CallTimeout,
		Logger:      hashiraft.FromHclog(hlog.Named("store")),
		// Delete the segments that compaction dropped, once a minute.
		WAL: wal.Config{GCInterval: time.Minute},
	})
	if err != nil {
		return nil, fmt.Errorf("open storage (bucket %s, meta %q): %w", redact.URL(cfg.BucketURL), redact.URL(cfg.MetaURL), err)
	}
	n := &hashiNode{cfg: cfg, lg: cfg.Logger, st: kv.New(), fatal: fatal{done: make(chan struct{})}, closed: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.store = &fencedStore{Store: store, lg: n.lg, ctx: n.ctx, onFenced: func(err error) {
		n.fail(fmt.Errorf("another process opened this node's log (same --id and storage?): %w", err))
	}}
	if err := n.start(hlog); err != nil {
		n.cancel()
		store.Close()
		return nil, err
	}
	n.store.riding.Store(true) // from now on storage outages stall the node instead of ending it
	return n, nil
}

func (n *hashiNode) start(hlog hclog.Logger) error {
	cfg := n.cfg
	trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, nil, 3, 10*time.Second, hlog.Named("transport"))
	if err != nil {
		return fmt.Errorf("raft transport on %s: %w", cfg.RaftAddr, err)
	}
	n.trans = trans

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(strconv.FormatUint(cfg.ID, 10))
	conf.Logger = hlog
	conf.HeartbeatTimeout = cfg.ElectionTimeout
	conf.ElectionTimeout = cfg.ElectionTimeout
	conf.LeaderLeaseTimeout = cfg.ElectionTimeout / 2
	conf.SnapshotThreshold = cfg.SnapshotThreshold
	conf.TrailingLogs = cfg.SnapshotThreshold / 2
	conf.SnapshotInterval = time.Second // the threshold is checked every 1-2s

	snaps := n.store.Snapshots()
	has, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		trans.Close()
		return fmt.Errorf("read raft state: %w", err)
	}
	if !has {
		if _, ok := cfg.Peers[cfg.ID]; ok {
			var servers []raft.Server
			for _, id := range slices.Sorted(mapsKeys(cfg.Peers)) {
				servers = append(servers, raft.Server{
					ID:      raft.ServerID(strconv.FormatUint(id, 10)),
					Address: raft.ServerAddress(cfg.Peers[id]),
				})
			}
			if err := raft.BootstrapCluster(conf, n.store, n.store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
				trans.Close()
				return fmt.Errorf("bootstrap: %w", err)
			}
			n.lg.Info("bootstrapped a new cluster", "voters", len(servers))
		} else {
			n.lg.Info("empty storage and not an initial peer: waiting to be added by the leader (POST /join)")
		}
	}
	r, err := raft.NewRaft(conf, (*hashiFSM)(n), n.store, n.store, snaps, trans)
	if err != nil {
		trans.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.r = r
	n.lg.Info("raft started", "engine", EngineHashicorp, "restored_applied", n.st.Applied(),
		"log_first", must(n.store.FirstIndex()), "log_last", must(n.store.LastIndex()))
	n.wg.Add(1)
	go n.watchLeadership()
	return nil
}

func must(v uint64, _ error) uint64 { return v }

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// watchLeadership logs leadership changes and, on becoming leader, makes
// the node ready for linearizable reads (a Barrier) and publishes its HTTP
// address in the state machine so followers can redirect clients here.
func (n *hashiNode) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-n.r.LeaderCh():
			if !isLeader {
				n.lg.Info("lost leadership", "term", n.r.CurrentTerm())
				continue
			}
			n.lg.Info("became leader", "term", n.r.CurrentTerm())
			ctx, cancel := context.WithTimeout(context.Background(), 10*n.cfg.ElectionTimeout)
			if err := n.ensureReady(ctx); err != nil {
				n.lg.Warn("leader not ready", "err", err)
			} else if err := n.publishSelf(ctx); err != nil {
				n.lg.Warn("publish HTTP address", "err", err)
			}
			cancel()
		}
	}
}

func (n *hashiNode) publishSelf(ctx context.Context) error {
	m, _ := n.st.Member(n.cfg.ID)
	if m.HTTP == n.cfg.HTTPAddr && m.Raft == n.cfg.RaftAddr {
		return nil
	}
	_, err := n.Propose(ctx, kv.Command{Op: kv.OpMember, Member: &kv.Member{ID: n.cfg.ID, Raft: n.cfg.RaftAddr, HTTP: n.cfg.HTTPAddr}})
	return err
}

// ensureReady runs a Barrier once per leadership term.
func (n *hashiNode) ensureReady(ctx context.Context) error {
	term := n.r.CurrentTerm()
	if n.readyTerm.Load() == term {
		return nil
	}
	if err := n.wait(ctx, n.r.Barrier(n.timeout(ctx))); err != nil {
		return err
	}
	n.readyTerm.Store(term)
	return nil
}

func (n *hashiNode) timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return 10 * time.Second
}

// wait waits for f or ctx, translating raft's errors.
func (n *hashiNode) wait(ctx context.Context, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return n.translate(err)
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrUnknownOutcome, ctx.Err())
	case <-n.closed:
		return ErrStopped
	}
}

func (n *hashiNode) translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return n.notLeader()
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrStopped
	case errors.Is(err, wal.ErrFenced):
		return fmt.Errorf("%w: %v", ErrStopped, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	default:
		return err
	}
}

func (n *hashiNode) notLeader() error {
	_, id := n.r.LeaderWithID()
	e := &NotLeaderError{}
	if id != "" && id != raft.ServerID(strconv.FormatUint(n.cfg.ID, 10)) { // not itself: stepping down
		e.LeaderID, _ = strconv.ParseUint(string(id), 10, 64)
		if m, ok := n.st.Member(e.LeaderID); ok {
			e.LeaderHTTP = m.HTTP
		}
	}
	return e
}

func (n *hashiNode) Propose(ctx context.Context, c kv.Command) (kv.Result, error) {
	if n.r.State() != raft.Leader {
		return kv.Result{}, n.notLeader()
	}
	f := n.r.Apply(c.Encode(), n.timeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return kv.Result{}, err
	}
	res, _ := f.Response().(kv.Result)
	if res.Err != "" {
		return res, errors.New(res.Err)
	}
	return res, nil
}

func (n *hashiNode) LinearizableRead(ctx context.Context) error {
	if n.r.State() != raft.Leader {
		return n.notLeader()
	}
	err := n.ensureReady(ctx)
	if err == nil {
		// Writes return after they are applied here, and the Barrier
		// applied everything of earlier terms: once a quorum confirms this
		// node still leads, the local state is at least as new as any
		// acknowledged write.
		err = n.wait(ctx, n.r.VerifyLeader())
	}
	if errors.Is(err, ErrUnknownOutcome) && ctx.Err() == nil {
		// Leadership lost: nothing was read; the client may retry at the
		// new leader.
		return n.notLeader()
	}
	return err
}

func (n *hashiNode) AddMember(ctx context.Context, m kv.Member) error {
	if n.r.State() != raft.Leader {
		return n.notLeader()
	}
	id := raft.ServerID(strconv.FormatUint(m.ID, 10))
	if err := n.wait(ctx, n.r.AddVoter(id, raft.ServerAddress(m.Raft), 0, n.timeout(ctx))); err != nil {
		return err
	}
	_, err := n.Propose(ctx, kv.Command{Op: kv.OpMember, Member: &m})
	return err
}

func (n *hashiNode) RemoveMember(ctx context.Context, id uint64) error {
	if n.r.State() != raft.Leader {
		return n.notLeader()
	}
	if err := n.wait(ctx, n.r.RemoveServer(raft.ServerID(strconv.FormatUint(id, 10)), 0, n.timeout(ctx))); err != nil {
		return err
	}
	if id == n.cfg.ID {
		return nil // no longer the leader: nothing more to propose
	}
	_, err := n.Propose(ctx, kv.Command{Op: kv.OpUnmember, Member: &kv.Member{ID: id}})
	return err
}

func (n *hashiNode) State() *kv.State { return n.st }

func (n *hashiNode) Status() Status {
	s := Status{
		ID: n.cfg.ID, Engine: EngineHashicorp, State: n.r.State().String(),
		Term: n.r.CurrentTerm(), CommitIndex: n.r.CommitIndex(), AppliedIndex: n.r.AppliedIndex(),
		Keys: n.st.Len(), Digest: fmt.Sprintf("%016x", n.st.Digest()), Bucket: redact.URL(n.cfg.BucketURL),
	}
	s.State = map[string]string{"Leader": "leader", "Follower": "follower", "Candidate": "candidate", "Shutdown": "shutdown"}[s.State]
	s.LogFirstIndex, _ = n.store.FirstIndex()
	s.LogLastIndex, _ = n.store.LastIndex()
	// From memory: Snapshots().List() would LIST the bucket.
	s.SnapshotIndex, _ = strconv.ParseUint(n.r.Stats()["last_snapshot_index"], 10, 64)
	if _, id := n.r.LeaderWithID(); id != "" {
		s.LeaderID, _ = strconv.ParseUint(string(id), 10, 64)
		if m, ok := n.st.Member(s.LeaderID); ok {
			s.LeaderHTTP = m.HTTP
		}
	}
	known := map[uint64]kv.Member{}
	for _, m := range n.st.Members() {
		known[m.ID] = m
	}
	if f := n.r.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			id, _ := strconv.ParseUint(string(srv.ID), 10, 64)
			m := known[id]
			voter := srv.Suffrage == raft.Voter
			if voter {
				s.Voters = append(s.Voters, id)
			}
			s.Members = append(s.Members, StatusMember{ID: id, Raft: string(srv.Address), HTTP: m.HTTP, Voter: voter})
		}
	}
	return s
}

func (n *hashiNode) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		if n.r.State() == raft.Leader {
			// Hand leadership over so the cluster does not wait for an
			// election timeout.
			f := n.r.LeadershipTransfer()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := n.wait(ctx, f); err != nil {
				n.lg.Info("leadership transfer before shutdown", "err", err)
			}
			cancel()
		}
		var errs []error
		if err := n.r.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		n.wg.Wait()
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft transport: %w", err))
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage: %w", err))
		}
		n.closeErr = errors.Join(errs...)
		close(n.closed)
	})
	return n.closeErr
}

// hashiFSM adapts kv.State to raft.FSM.
type hashiFSM hashiNode

func (f *hashiFSM) Apply(l *raft.Log) any {
	c, err := kv.DecodeCommand(l.Data)
	if err != nil {
		// Deterministic on every node: the entry is skipped everywhere.
		f.st.SetApplied(l.Index)
		return kv.Result{Index: l.Index, Err: err.Error()}
	}
	return f.st.Apply(l.Index, c)
}

// Snapshot serializes the state at once (cheap at this example's sizes), so
// Persist runs while Apply continues.
func (f *hashiFSM) Snapshot() (raft.FSMSnapshot, error) {
	return hashiSnap{index: f.st.Applied(), data: f.st.Snapshot(), lg: f.lg}, nil
}

func (f *hashiFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	// The snapshot carries its own applied index; raft calls Apply only
	// for later entries.
	if err := f.st.Restore(0, b); err != nil {
		return err
	}
	f.lg.Info("state restored from snapshot", "applied", f.st.Applied(), "keys", f.st.Len())
	return nil
}

type hashiSnap struct {
	index uint64
	data  []byte
	lg    *slog.Logger
}

func (s hashiSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	s.lg.Info("snapshot written", "applied", s.index, "bytes", len(s.data), "id", sink.ID())
	return nil
}

func (hashiSnap) Release() {}
