// Package node runs one kvstore node on either Raft engine — hashicorp/raft
// or etcd raft — with its log, Raft state and snapshots kept in a bucket
// through woodpecker's adapters, behind one Engine interface that the HTTP
// API uses.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/kv"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// Engine names.
const (
	EngineHashicorp = "hashicorp"
	EngineEtcd      = "etcd"
)

// Errors an Engine returns; wrap-checked with errors.Is / errors.As.
var (
	// ErrUnknownOutcome: the command was handed to Raft but its fate is
	// not known (leadership lost, timeout): it may or may not be applied.
	ErrUnknownOutcome = errors.New("outcome unknown")
	// ErrStopped: the engine is shut down.
	ErrStopped = errors.New("node stopped")
)

// NotLeaderError is returned for a request only the leader can serve. The
// request was not started, so retrying it at the leader is safe. LeaderID
// is 0 when no leader is known; LeaderHTTP is empty when the leader has not
// published its HTTP address yet.
type NotLeaderError struct {
	LeaderID   uint64
	LeaderHTTP string
}

func (e *NotLeaderError) Error() string {
	switch {
	case e.LeaderID == 0:
		return "no leader elected right now; retry shortly"
	case e.LeaderHTTP == "":
		return fmt.Sprintf("not the leader; the leader is node %d, whose HTTP address is not known yet", e.LeaderID)
	default:
		return fmt.Sprintf("not the leader; the leader is node %d at %s", e.LeaderID, e.LeaderHTTP)
	}
}

// Engine is a running Raft node with the kv state machine.
type Engine interface {
	// Propose replicates c through the leader's log and returns once it is
	// applied here. A *NotLeaderError means it was not proposed;
	// ErrUnknownOutcome that it may or may not have been applied.
	Propose(ctx context.Context, c kv.Command) (kv.Result, error)
	// LinearizableRead returns once the local state reflects every write
	// acknowledged before the call (leader only: *NotLeaderError elsewhere).
	// hashicorp: VerifyLeader (and a Barrier once per term); etcd: ReadIndex.
	LinearizableRead(ctx context.Context) error
	// AddMember adds a voting member (leader only) and records its
	// addresses in the state machine.
	AddMember(ctx context.Context, m kv.Member) error
	// RemoveMember removes a member (leader only).
	RemoveMember(ctx context.Context, id uint64) error
	// State is the replicated state machine (read locally).
	State() *kv.State
	// Status describes the node.
	Status() Status
	// Done is closed when the engine stopped on its own (a fatal storage
	// error); Err then says why.
	Done() <-chan struct{}
	Err() error
	// Close stops the node: leadership is handed over first when it is the
	// leader, then Raft stops and the storage is closed. Idempotent.
	Close() error
}

// Status is what GET /status reports.
type Status struct {
	ID            uint64         `json:"id"`
	Engine        string         `json:"engine"`
	State         string         `json:"state"` // leader, follower, candidate, …
	LeaderID      uint64         `json:"leader_id"`
	LeaderHTTP    string         `json:"leader_http,omitempty"`
	Term          uint64         `json:"term"`
	CommitIndex   uint64         `json:"commit_index"`
	AppliedIndex  uint64         `json:"applied_index"`
	LogFirstIndex uint64         `json:"log_first_index"`
	LogLastIndex  uint64         `json:"log_last_index"`
	SnapshotIndex uint64         `json:"snapshot_index"`
	Keys          int            `json:"keys"`
	Digest        string         `json:"digest"` // hash of all keys and values
	Voters        []uint64       `json:"voters"`
	Members       []StatusMember `json:"members"`
	Bucket        string         `json:"bucket"` // redacted
}

// StatusMember is one entry of Status.Members.
type StatusMember struct {
	ID    uint64 `json:"id"`
	Raft  string `json:"raft,omitempty"`
	HTTP  string `json:"http,omitempty"`
	Voter bool   `json:"voter"`
}

// Config configures a node of either engine.
type Config struct {
	Engine   string
	ID       uint64
	RaftAddr string // Raft transport listen (and advertised) address, host:port
	HTTPAddr string // HTTP API address published to the cluster
	// Peers are the initial members (ID → Raft address). A node whose ID is
	// in Peers and whose storage is empty bootstraps the cluster with them;
	// a node not in Peers waits to be added (POST /join at the leader).
	Peers map[uint64]string
	// BucketURL and MetaURL name the node's storage (see wal.OpenURL). Each
	// node's log is named node_<ID>, so nodes may share a bucket and an
	// etcd prefix.
	BucketURL, MetaURL string
	// SnapshotThreshold: a snapshot is taken once this many entries were
	// applied since the last one; the log is then compacted, keeping
	// SnapshotThreshold/2 entries behind it for lagging followers.
	SnapshotThreshold uint64
	// ElectionTimeout (hashicorp: heartbeat and election timeout; etcd: 10
	// ticks of ElectionTimeout/10, heartbeat every tick).
	ElectionTimeout time.Duration
	// CallTimeout bounds each storage call (the adapters' CallTimeout). It
	// must be at least the WAL's retry budget (wal.Config.RetryBudget, 30 s
	// by default), which the adapters enforce. 0: the adapters' default,
	// the retry budget plus one request timeout.
	CallTimeout time.Duration
	Logger      *slog.Logger // kvstore's own records; nil discards
	// RaftLog receives the Raft library's records at RaftLogLevel and
	// above; nil discards.
	RaftLog      io.Writer
	RaftLogLevel slog.Level
}

// LogName is the WAL log name of node id.
func LogName(id uint64) string { return "node_" + strconv.FormatUint(id, 10) }

func (c *Config) check() error {
	if c.ID == 0 {
		return errors.New("node ID must be at least 1")
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		return fmt.Errorf("raft address %q: %w", c.RaftAddr, err)
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 1000
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RaftLog == nil {
		c.RaftLog = io.Discard
	}
	return nil
}

// Start opens the node's storage and starts Raft. ctx bounds the opening
// only. The error names the storage when it cannot be reached.
func Start(ctx context.Context, cfg Config) (Engine, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	switch cfg.Engine {
	case EngineHashicorp:
		return startHashicorp(ctx, cfg)
	case EngineEtcd:
		return startEtcd(ctx, cfg)
	default:
		return nil, fmt.Errorf("unknown engine %q (want %s or %s)", cfg.Engine, EngineHashicorp, EngineEtcd)
	}
}

// ParsePeers parses "1=127.0.0.1:7001,2=127.0.0.1:7002".
func ParsePeers(s string) (map[uint64]string, error) {
	peers := map[uint64]string{}
	if strings.TrimSpace(s) == "" {
		return peers, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		idStr, addr, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("peer %q: want id=host:port", part)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("peer %q: id must be a positive integer", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("peer %q: address: %v", part, err)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("peer id %d given twice", id)
		}
		peers[id] = addr
	}
	return peers, nil
}

// errStopping says the node was closed: the etcd loop returns it then, and
// retryStorage returns it with the last error when the node is closed while
// it waits to try again.
var errStopping = errors.New("node closing")

// storageRetry paces a node's retries of a failed storage call: 100ms
// doubling to 3s, until the node stops.
var storageRetry = retry.Policy{Initial: 100 * time.Millisecond, Max: 3 * time.Second}

// retryStorage calls call until it succeeds or fails with an error again
// rejects, waiting between attempts (100 ms, doubling up to 3 s) and
// logging each retry and the recovery, until ctx ends (the node is closed):
// then it returns errStopping with the last error. The goroutine making the
// call waits meanwhile, as it would for a slow disk.
func retryStorage(ctx context.Context, lg *slog.Logger, op string, again func(error) bool, call func(attempt int) error) error {
	start := time.Now()
	waits := storageRetry.Retrier()
	for {
		attempt := waits.Attempt()
		err := call(attempt)
		if err == nil || !again(err) {
			if err == nil && attempt > 1 {
				lg.Info("storage back", "op", op, "attempts", attempt, "took", time.Since(start).Round(time.Millisecond))
			}
			return err
		}
		d, _ := waits.Next() // an unbounded policy never says no
		lg.Warn("storage call failed; retrying it", "op", op, "attempt", attempt, "retry_in", d, "err", err)
		if retry.Sleep(ctx, d) != nil {
			return fmt.Errorf("%w: %w", errStopping, err)
		}
	}
}

// fatal is an Engine's Done and Err: the failure that stopped the node on
// its own, set once.
type fatal struct {
	done chan struct{} // closed when err is set; made by the engine's constructor
	once sync.Once
	err  error
}

// fail records err as the reason the node stopped, unless one was already.
func (f *fatal) fail(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.done)
	})
}

func (f *fatal) Done() <-chan struct{} { return f.done }

func (f *fatal) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}
