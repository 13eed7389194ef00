package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/woodpecker-wal/woodpecker/meta"
)

// Store is a [meta.Store] and [meta.Watcher] on etcd v3 (clientv3).
//
// # Layout
//
// A record with key K lives at the etcd key Prefix + "/" + K, its value the
// record's bytes. Its [meta.Version] is the decimal ModRevision of that etcd key:
// etcd's store revision only grows, so a key's versions never repeat, also
// across delete and re-create and across compaction (not across restoring
// the cluster from an older backup, which rewinds the revision).
//
// # Transactions
//
// Every write is one etcd transaction on one key, never more: Create is
// If(CreateRevision == 0) Then(Put), Update If(ModRevision == ver) Then(Put),
// Delete If(ModRevision == ver) Then(Delete). The returned version is the
// transaction's revision, which is the Put's ModRevision. Reads (Get, List)
// are linearizable: they see every write that returned before them.
//
// # Errors
//
//   - [meta.ErrNotFound], [meta.ErrExists], [meta.ErrPrecondition]: definite outcomes, as in
//     the meta.Store contract. A meta.Version that is not a positive decimal revision
//     (from another backend, or corrupted) is meta.ErrPrecondition too.
//   - [meta.ErrInvalidKey], [meta.ErrTooLarge]: rejected before any request.
//   - [meta.ErrClosed]: the store was closed before the call, or a read was cut
//     short by Close.
//   - A timeout (RequestTimeout or ctx), a lost connection or leader, or
//     Close during a write: the write may or may not have been applied. The
//     error says "outcome unknown", names the operation and key, and wraps
//     the cause (context.DeadlineExceeded, context.Canceled, or etcd's
//     rpctypes error). Re-read to find out.
//   - Anything else from etcd (permission denied, request too large) is
//     wrapped with the operation and key.
//
// # Limits
//
// etcd rejects requests over --max-request-bytes (1.5 MiB by default): a
// value is at most [meta.MaxValueSize] (1 MiB) and a key 512 bytes plus the
// prefix, so one write always fits. etcd's default backend quota is 2 GiB;
// the store keeps no history of its own, and compaction is the cluster
// operator's business (a Watch survives it by re-listing).
//
// # Concurrency
//
// A Store is safe for concurrent use. The compare-and-swap guarantees
// hold across processes and clients sharing the cluster and prefix.
type Store struct {
	cli        *clientv3.Client
	ownsClient bool
	prefix     string // deployment prefix + "/"
	reqTimeout time.Duration
	log        *slog.Logger

	// ctx is canceled by Close; it ends watches and in-flight calls.
	ctx    context.Context
	cancel context.CancelFunc
	closed atomic.Bool
	// mu orders Watch's wg.Add against Close's wg.Wait.
	mu sync.Mutex
	wg sync.WaitGroup // watch goroutines
}

var (
	_ meta.Store   = (*Store)(nil)
	_ meta.Watcher = (*Store)(nil)
)

// New connects to etcd and returns a store that owns the client (Close
// closes it). It checks connectivity, credentials and read access to the
// prefix with one bounded read, so an unreachable cluster fails within
// cfg.DialTimeout instead of at the first real call. Authentication in the
// etcd client is bounded by DialTimeout but does not observe ctx. While a
// watch is open the client pings the server every 30s and drops a
// connection that does not answer within 10s.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tc, err := etcdBuildTLS(&cfg)
	if err != nil {
		return nil, err
	}
	who := ""
	if cfg.Username != "" {
		who = fmt.Sprintf(" as user %q", cfg.Username)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tc,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Logger:      zap.NewNop(),
		// Pings detect a dead connection under a long-lived watch; the
		// server refuses pings more often than every 5s by default.
		DialKeepAliveTime:    etcdKeepAliveTime,
		DialKeepAliveTimeout: etcdKeepAliveTimeout,
		// gRPC's default reconnect backoff grows to 120s: after a 20s
		// outage the client could stay away long after the server is back,
		// past the WAL's retry budget. Reconnect at least every 2s.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: etcdMaxReconnectDelay},
			MinConnectTimeout: 5 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("meta: etcd: connect to %v%s (dial timeout %v): %w", cfg.Endpoints, who, cfg.DialTimeout, err)
	}
	s := etcdNewStore(cli, true, cfg.Prefix, cfg.RequestTimeout, cfg.Logger)

	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	// One exact key: cheap at any size of the prefix (a count over the
	// prefix would walk its whole index).
	if _, err := cli.Get(cctx, s.prefix); err != nil {
		_ = s.Close()
		if etcdAmbiguous(err) && ctx.Err() == nil {
			return nil, fmt.Errorf("meta: etcd: no answer from %v%s within dial timeout %v: %w", cfg.Endpoints, who, cfg.DialTimeout, err)
		}
		return nil, fmt.Errorf("meta: etcd: read prefix %q on %v%s: %w", s.prefix, cfg.Endpoints, who, err)
	}
	s.log.Info("meta: etcd store open", "endpoints", cfg.Endpoints, "prefix", cfg.Prefix, "user", cfg.Username, "tls", tc != nil)
	return s, nil
}

// NewFromClient returns a store on an existing client, with the default
// RequestTimeout and no logging. Close does not close cli. No request is
// made.
func NewFromClient(cli *clientv3.Client, prefix string) (*Store, error) {
	if cli == nil {
		return nil, errors.New("meta: etcd: nil client")
	}
	if err := etcdCheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("meta: etcd: prefix: %w", err)
	}
	return etcdNewStore(cli, false, prefix, etcdDefaultRequestTimeout, slog.New(slog.DiscardHandler)), nil
}

func etcdNewStore(cli *clientv3.Client, owns bool, prefix string, reqTimeout time.Duration, log *slog.Logger) *Store {
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{
		cli:        cli,
		ownsClient: owns,
		prefix:     prefix + "/",
		reqTimeout: reqTimeout,
		log:        log,
		ctx:        ctx,
		cancel:     cancel,
	}
}

// Close ends every watch (closing their channels), waits for their
// goroutines, cancels in-flight calls and, when the store owns its client,
// closes it. It is idempotent; later calls fail with meta.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if s.ownsClient {
		if err := s.cli.Close(); err != nil {
			return fmt.Errorf("meta: etcd: close client: %w", err)
		}
	}
	return nil
}

// begin starts a call: it fails after Close and otherwise returns a context
// bounded by RequestTimeout and canceled by Close.
func (s *Store) begin(ctx context.Context) (context.Context, func(), error) {
	if s.closed.Load() {
		return nil, nil, meta.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// etcdAmbiguous reports whether err leaves a write's outcome unknown: a
// timeout, a cancellation, or a lost connection or leader.
func etcdAmbiguous(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.DeadlineExceeded, codes.Canceled, codes.Unavailable:
		return true
	}
	return false
}

// wrapErr adds the operation and key to an error from etcd.
func (s *Store) wrapErr(op, key string, write bool, err error) error {
	switch {
	case write && etcdAmbiguous(err):
		if s.closed.Load() {
			return fmt.Errorf("meta: etcd %s %q: store closed during the call, outcome unknown (re-read to find out): %w", op, key, err)
		}
		return fmt.Errorf("meta: etcd %s %q: outcome unknown (re-read to find out): %w", op, key, err)
	case !write && s.closed.Load():
		return fmt.Errorf("meta: etcd %s %q: %w: %w", op, key, meta.ErrClosed, err)
	}
	return fmt.Errorf("meta: etcd %s %q: %w", op, key, err)
}

func etcdVersion(rev int64) meta.Version { return meta.Version(strconv.FormatInt(rev, 10)) }

// etcdParseVersion returns the ModRevision a meta.Version stands for. A version
// this backend cannot have issued is meta.ErrPrecondition: no record has it.
func etcdParseVersion(key string, v meta.Version) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != string(v) {
		return 0, fmt.Errorf("%w: %q: version %q is not an etcd revision (want a positive decimal)", meta.ErrPrecondition, key, v)
	}
	return n, nil
}

// Get returns the record under key, or meta.ErrNotFound. The read is
// linearizable. The value is owned by the caller.
func (s *Store) Get(ctx context.Context, key string) (meta.Record, error) {
	if err := meta.ValidateKey(key); err != nil {
		return meta.Record{}, err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return meta.Record{}, err
	}
	defer done()
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return meta.Record{}, s.wrapErr("get", key, false, err)
	}
	if len(resp.Kvs) == 0 {
		return meta.Record{}, fmt.Errorf("%w: %q", meta.ErrNotFound, key)
	}
	kv := resp.Kvs[0]
	return meta.Record{Key: key, Value: kv.Value, Version: etcdVersion(kv.ModRevision)}, nil
}

// txn runs one transaction on key, If(cmp) Then(then) Else(els...), within
// the store's request timeout; op names it in the error.
func (s *Store) txn(ctx context.Context, op, key string, cmp clientv3.Cmp, then clientv3.Op, els ...clientv3.Op) (*clientv3.TxnResponse, error) {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := s.cli.Txn(ctx).If(cmp).Then(then).Else(els...).Commit()
	if err != nil {
		return nil, s.wrapErr(op, key, true, err)
	}
	return resp, nil
}

// Create writes a new record if key holds none, or returns meta.ErrExists.
func (s *Store) Create(ctx context.Context, key string, value []byte) (meta.Version, error) {
	if err := meta.CheckWrite(key, value); err != nil {
		return "", err
	}
	k := s.prefix + key
	resp, err := s.txn(ctx, "create", key, clientv3.Compare(clientv3.CreateRevision(k), "=", 0), clientv3.OpPut(k, string(value)))
	if err != nil {
		return "", err
	}
	if !resp.Succeeded {
		return "", fmt.Errorf("%w: %q", meta.ErrExists, key)
	}
	return etcdVersion(resp.Header.Revision), nil
}

// Update replaces the record if its version is ver and returns the new
// version; otherwise (another version, no record, a foreign ver) it returns
// meta.ErrPrecondition, naming the current version when there is one.
func (s *Store) Update(ctx context.Context, key string, value []byte, ver meta.Version) (meta.Version, error) {
	if err := meta.CheckWrite(key, value); err != nil {
		return "", err
	}
	rev, err := etcdParseVersion(key, ver)
	if err != nil {
		return "", err
	}
	k := s.prefix + key
	resp, err := s.txn(ctx, "update", key, clientv3.Compare(clientv3.ModRevision(k), "=", rev),
		clientv3.OpPut(k, string(value)), clientv3.OpGet(k, clientv3.WithKeysOnly()))
	if err != nil {
		return "", err
	}
	if !resp.Succeeded {
		return "", etcdMismatch(key, ver, resp)
	}
	return etcdVersion(resp.Header.Revision), nil
}

// Delete removes the record if its version is ver, or returns
// meta.ErrPrecondition.
func (s *Store) Delete(ctx context.Context, key string, ver meta.Version) error {
	if err := meta.ValidateKey(key); err != nil {
		return err
	}
	rev, err := etcdParseVersion(key, ver)
	if err != nil {
		return err
	}
	k := s.prefix + key
	resp, err := s.txn(ctx, "delete", key, clientv3.Compare(clientv3.ModRevision(k), "=", rev),
		clientv3.OpDelete(k), clientv3.OpGet(k, clientv3.WithKeysOnly()))
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return etcdMismatch(key, ver, resp)
	}
	return nil
}

// etcdMismatch builds the meta.ErrPrecondition of a failed compare, using the
// Else branch's read of the key.
func etcdMismatch(key string, ver meta.Version, resp *clientv3.TxnResponse) error {
	if len(resp.Responses) == 1 {
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) == 1 {
			return fmt.Errorf("%w: %q: expected version %s, current %d", meta.ErrPrecondition, key, ver, r.Kvs[0].ModRevision)
		}
	}
	return fmt.Errorf("%w: %q: expected version %s, record does not exist", meta.ErrPrecondition, key, ver)
}

// List returns every record whose key starts with prefix, in ascending key
// order. It reads in pages of a bounded number of records, all at the
// revision of the first page, so the result is one consistent snapshot.
func (s *Store) List(ctx context.Context, prefix string) ([]meta.Record, error) {
	if err := meta.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	var recs []meta.Record
	_, err = s.rangeAll(ctx, s.prefix+prefix, false, func(kv *mvccpb.KeyValue) {
		recs = append(recs, meta.Record{
			Key:     string(kv.Key[len(s.prefix):]),
			Value:   kv.Value,
			Version: etcdVersion(kv.ModRevision),
		})
	}, func() { recs = recs[:0] })
	if err != nil {
		return nil, s.wrapErr("list", prefix, false, err)
	}
	return recs, nil
}

// rangeAll calls fn for every key under the etcd key prefix full, in key
// order, in pages of etcdListPage, all at one revision, which it returns.
// When that revision is compacted between pages it calls reset and starts
// over (a few times at most). Keys passed to fn start with s.prefix.
func (s *Store) rangeAll(ctx context.Context, full string, keysOnly bool, fn func(*mvccpb.KeyValue), reset func()) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(full)
	for attempt := 1; ; attempt++ {
		rev, err := s.rangeOnce(ctx, full, end, keysOnly, fn)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, rpctypes.ErrCompacted) || attempt == etcdListAttempts {
			return 0, err
		}
		reset()
	}
}

func (s *Store) rangeOnce(ctx context.Context, from, end string, keysOnly bool, fn func(*mvccpb.KeyValue)) (int64, error) {
	var rev int64 // 0: the first page reads the current revision
	for {
		// Range results come back in ascending key order without a sort
		// option (the client drops SortByKey/SortAscend for that reason).
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(etcdListPage), clientv3.WithRev(rev)}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			fn(kv)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
