package meta

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
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
)

// Defaults of EtcdConfig, applied to zero fields.
const (
	etcdDefaultPrefix         = "woodpecker"
	etcdDefaultPort           = "2379"
	etcdDefaultDialTimeout    = 5 * time.Second
	etcdDefaultRequestTimeout = 10 * time.Second

	// etcdListPage is the number of records a List asks etcd for in one
	// range request. Records are small (per log and per segment), so a page
	// is normally a few KiB; with values near MaxValueSize it would be
	// ~128 MiB, still below the client's receive limit (math.MaxInt32).
	etcdListPage = 128

	// etcdListAttempts bounds how often List restarts a paged listing whose
	// pinned revision was compacted away between two pages.
	etcdListAttempts = 3

	// etcdWatchCoalesceAt is the number of events waiting for a Watch
	// consumer above which new events replace older ones of the same key.
	etcdWatchCoalesceAt = 256

	// gRPC keepalive of clients made by NewEtcd.
	etcdKeepAliveTime    = 30 * time.Second
	etcdKeepAliveTimeout = 10 * time.Second
	// etcdMaxReconnectDelay caps gRPC's reconnect backoff.
	etcdMaxReconnectDelay = 2 * time.Second

	// Watch resync backoff bounds.
	etcdWatchMinBackoff = 50 * time.Millisecond
	etcdWatchMaxBackoff = 2 * time.Second
)

// EtcdConfig configures an [EtcdStore]. The zero value of every field means
// the documented default; Endpoints is the only required field.
//
// Build one by hand or from a URL with [EtcdConfigFromURL].
type EtcdConfig struct {
	// Endpoints are the etcd client endpoints, as "host:port" (TLS is used
	// when TLS or the *File fields are set) or as URLs with scheme http,
	// https, unix or unixs. Required. Credentials never go here.
	Endpoints []string

	// Prefix is the deployment prefix: a record with key K is stored at the
	// etcd key Prefix + "/" + K. It has the form of a valid key (see
	// ValidateKey), optionally preceded by one '/' (etcd's habit, e.g.
	// "/woodpecker"). Deployments sharing a cluster need prefixes of which
	// none is a '/'-component prefix of another ("a" and "a/b" overlap; "a"
	// and "ab" do not). Default "woodpecker".
	Prefix string

	// Username and Password authenticate with etcd's auth (both or
	// neither). The password never appears in an error, a log line or
	// the String form of this struct.
	Username string
	Password string

	// TLS, when non-nil, is used as is for every connection.
	TLS *tls.Config
	// CAFile, CertFile and KeyFile, used only when TLS is nil, build the
	// TLS configuration from PEM files: CAFile replaces the system roots;
	// CertFile and KeyFile (both or neither) are the client certificate.
	// Setting any of them turns TLS on.
	CAFile   string
	CertFile string
	KeyFile  string

	// DialTimeout bounds connecting and authenticating in NewEtcd, and the
	// connectivity check it makes. Default 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds every call to etcd, on top of the caller's
	// context. Default 10s.
	RequestTimeout time.Duration

	// Logger receives lifecycle and watch-resync messages; nil discards
	// them. The etcd client's own (zap) logging is always discarded.
	Logger *slog.Logger
}

// String describes the configuration with the password redacted.
func (c EtcdConfig) String() string {
	pw := ""
	if c.Password != "" {
		pw = "xxxxx"
	}
	return fmt.Sprintf("EtcdConfig{Endpoints:%q Prefix:%q Username:%q Password:%q TLS:%t CAFile:%q CertFile:%q KeyFile:%q DialTimeout:%v RequestTimeout:%v}",
		c.Endpoints, c.Prefix, c.Username, pw, c.TLS != nil, c.CAFile, c.CertFile, c.KeyFile, c.DialTimeout, c.RequestTimeout)
}

// useTLS reports whether connections use TLS beyond what endpoint schemes say.
func (c *EtcdConfig) useTLS() bool {
	return c.TLS != nil || c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
}

func (c EtcdConfig) withDefaults() EtcdConfig {
	c.Endpoints = slices.Clone(c.Endpoints)
	if c.Prefix == "" {
		c.Prefix = etcdDefaultPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = etcdDefaultDialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = etcdDefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c *EtcdConfig) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("meta: etcd config: "+format, args...)
	}
	if len(c.Endpoints) == 0 {
		return bad("Endpoints: empty, need at least one")
	}
	for i, ep := range c.Endpoints {
		if err := etcdCheckEndpoint(ep, c.useTLS()); err != nil {
			return bad("Endpoints[%d]: %v", i, err)
		}
	}
	if err := etcdCheckPrefix(c.Prefix); err != nil {
		return bad("Prefix: %v", err)
	}
	if c.Username == "" && c.Password != "" {
		return bad("Password set without Username")
	}
	if c.Username != "" && c.Password == "" {
		return bad("Username %q set without Password", c.Username)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return bad("CertFile %q and KeyFile %q: set both or neither", c.CertFile, c.KeyFile)
	}
	if c.DialTimeout < 0 {
		return bad("DialTimeout %v: negative", c.DialTimeout)
	}
	if c.RequestTimeout < 0 {
		return bad("RequestTimeout %v: negative", c.RequestTimeout)
	}
	return nil
}

// etcdCheckEndpoint validates one endpoint. The endpoint is quoted in errors
// only after ruling out embedded credentials.
func etcdCheckEndpoint(ep string, useTLS bool) error {
	if ep == "" {
		return errors.New("empty")
	}
	if strings.Contains(ep, "@") {
		return errors.New("contains '@': credentials in an endpoint are not supported (use Username and Password)")
	}
	if strings.ContainsFunc(ep, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%q contains a space or control character", ep)
	}
	hostport := ep
	if scheme, rest, ok := strings.Cut(ep, "://"); ok {
		switch scheme {
		case "unix", "unixs":
			if rest == "" {
				return fmt.Errorf("%q: empty socket path", ep)
			}
			return nil
		case "http":
			if useTLS {
				return fmt.Errorf("%q: http:// endpoint but TLS is configured (use https:// or host:port)", ep)
			}
		case "https":
		default:
			return fmt.Errorf("%q: scheme %q is not http, https, unix or unixs", ep, scheme)
		}
		hostport = strings.TrimSuffix(rest, "/")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %v", ep, err)
	}
	if host == "" {
		return fmt.Errorf("%q: empty host", ep)
	}
	if err := etcdCheckPort(port); err != nil {
		return fmt.Errorf("%q: %v", ep, err)
	}
	return nil
}

func etcdCheckPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	return nil
}

// etcdCheckPrefix validates a deployment prefix: a valid key, optionally
// preceded by one '/'.
func etcdCheckPrefix(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	if err := ValidateKey(strings.TrimPrefix(p, "/")); err != nil {
		return fmt.Errorf("%q: %v", p, err)
	}
	return nil
}

// EtcdConfigFromURL parses an etcd URL:
//
//	etcd://[user:password@]host1:port1[,host2:port2...]/prefix[?param=value&...]
//	etcds://...   (the same with TLS)
//
// The path is the deployment Prefix (required; "a/b" for a path "/a/b"; one
// trailing '/' is ignored). A host without a port gets etcd's 2379; IPv6
// hosts are bracketed. Query parameters:
//
//	tls=true|false       TLS on the client connections (etcds:// implies true)
//	ca_file, cert_file, key_file   PEM files (see EtcdConfig; any implies TLS)
//	dial_timeout=5s      EtcdConfig.DialTimeout
//	timeout=10s          EtcdConfig.RequestTimeout
//	user, password       credentials, instead of the userinfo part
//
// Unknown or repeated parameters are errors. No error ever contains the
// password; callers must not log the URL itself (url.URL.Redacted hides a
// userinfo password but not a password query parameter). The returned
// config is validated.
func EtcdConfigFromURL(u *url.URL) (EtcdConfig, error) {
	var cfg EtcdConfig
	bad := func(format string, args ...any) (EtcdConfig, error) {
		return EtcdConfig{}, fmt.Errorf("meta: etcd URL: "+format, args...)
	}
	if u == nil {
		return bad("nil URL")
	}
	wantTLS := false
	switch u.Scheme {
	case "etcd":
	case "etcds":
		wantTLS = true
	default:
		return bad("scheme %q is not etcd or etcds", u.Scheme)
	}
	if u.Opaque != "" {
		return bad("want %s://host:port/prefix, got an opaque URL", u.Scheme)
	}
	if u.Fragment != "" {
		return bad("unexpected fragment %q", u.Fragment)
	}

	// Hosts.
	if u.Host == "" {
		return bad("empty host list")
	}
	for h := range strings.SplitSeq(u.Host, ",") {
		ep, err := etcdHostPort(h)
		if err != nil {
			return bad("host list: %v", err)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}

	// Prefix.
	p := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/")
	if p == "" {
		return bad("missing prefix: want %s://host:port/prefix", u.Scheme)
	}
	cfg.Prefix = p

	// Credentials from the userinfo.
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
		if cfg.Username == "" {
			return bad("userinfo without a user name")
		}
	}

	// Query parameters.
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// The raw query may hold the password: do not quote it.
		return bad("malformed query string")
	}
	tlsParam := ""
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vals := q[name]
		if len(vals) != 1 {
			return bad("parameter %q given %d times", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("tls=%q: want true or false", v)
			}
			if u.Scheme == "etcds" && !b {
				return bad("tls=false contradicts the etcds scheme")
			}
			wantTLS = b
			tlsParam = v
		case "ca_file":
			cfg.CAFile = v
		case "cert_file":
			cfg.CertFile = v
		case "key_file":
			cfg.KeyFile = v
		case "dial_timeout", "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("%s=%q: want a positive duration such as 5s", name, v)
			}
			if name == "timeout" {
				cfg.RequestTimeout = d
			} else {
				cfg.DialTimeout = d
			}
		case "user":
			if u.User != nil {
				return bad("user given both in the userinfo and as a parameter")
			}
			cfg.Username = v
		case "password":
			if u.User != nil {
				return bad("password given both in the userinfo and as a parameter")
			}
			cfg.Password = v
		default:
			return bad("unknown parameter %q (known: tls, ca_file, cert_file, key_file, dial_timeout, timeout, user, password)", name)
		}
	}
	hasFiles := cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	if tlsParam != "" && !wantTLS && hasFiles {
		return bad("tls=false but ca_file, cert_file or key_file given")
	}
	if wantTLS && !hasFiles {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	checked := cfg.withDefaults()
	if err := checked.validate(); err != nil {
		return EtcdConfig{}, err
	}
	return cfg, nil
}

// etcdHostPort validates one host of a URL host list and adds the default
// port when it has none.
func etcdHostPort(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	// A port follows the last ':' unless that colon is inside an IPv6
	// literal's brackets.
	if i, j := strings.LastIndexByte(h, ':'), strings.LastIndexByte(h, ']'); i < 0 || i < j {
		if strings.HasPrefix(h, "[") != (j >= 0) {
			return "", fmt.Errorf("host %q: unbalanced brackets", h)
		}
		h = net.JoinHostPort(strings.Trim(h, "[]"), etcdDefaultPort)
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		return "", fmt.Errorf("host %q: %v", h, err)
	}
	if host == "" {
		return "", fmt.Errorf("host %q: empty host name", h)
	}
	if err := etcdCheckPort(port); err != nil {
		return "", fmt.Errorf("host %q: %v", h, err)
	}
	return net.JoinHostPort(host, port), nil
}

// etcdBuildTLS returns the TLS configuration for cfg, or nil for none.
func etcdBuildTLS(cfg *EtcdConfig) (*tls.Config, error) {
	if cfg.TLS != nil {
		return cfg.TLS, nil
	}
	if !cfg.useTLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("meta: etcd config: CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("meta: etcd config: CAFile %q: no PEM certificate found", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("meta: etcd config: CertFile %q / KeyFile %q: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// EtcdStore is a [Store] and [Watcher] on etcd v3 (clientv3).
//
// # Layout
//
// A record with key K lives at the etcd key Prefix + "/" + K, its value the
// record's bytes. Its [Version] is the decimal ModRevision of that etcd key:
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
//   - [ErrNotFound], [ErrExists], [ErrPrecondition]: definite outcomes, as in
//     the Store contract. A Version that is not a positive decimal revision
//     (from another backend, or corrupted) is ErrPrecondition too.
//   - [ErrInvalidKey], [ErrTooLarge]: rejected before any request.
//   - [ErrClosed]: the store was closed before the call, or a read was cut
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
// value is at most [MaxValueSize] (1 MiB) and a key 512 bytes plus the
// prefix, so one write always fits. etcd's default backend quota is 2 GiB;
// the store keeps no history of its own, and compaction is the cluster
// operator's business (a Watch survives it by re-listing).
//
// # Concurrency
//
// An EtcdStore is safe for concurrent use. The compare-and-swap guarantees
// hold across processes and clients sharing the cluster and prefix.
type EtcdStore struct {
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
	_ Store   = (*EtcdStore)(nil)
	_ Watcher = (*EtcdStore)(nil)
)

// NewEtcd connects to etcd and returns a store that owns the client (Close
// closes it). It checks connectivity, credentials and read access to the
// prefix with one bounded read, so an unreachable cluster fails within
// cfg.DialTimeout instead of at the first real call. Authentication in the
// etcd client is bounded by DialTimeout but does not observe ctx. While a
// watch is open the client pings the server every 30s and drops a
// connection that does not answer within 10s.
func NewEtcd(ctx context.Context, cfg EtcdConfig) (*EtcdStore, error) {
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

// NewEtcdFromClient returns a store on an existing client, with the default
// RequestTimeout and no logging. Close does not close cli. No request is
// made.
func NewEtcdFromClient(cli *clientv3.Client, prefix string) (*EtcdStore, error) {
	if cli == nil {
		return nil, errors.New("meta: etcd: nil client")
	}
	if err := etcdCheckPrefix(prefix); err != nil {
		return nil, fmt.Errorf("meta: etcd: prefix: %w", err)
	}
	return etcdNewStore(cli, false, prefix, etcdDefaultRequestTimeout, slog.New(slog.DiscardHandler)), nil
}

func etcdNewStore(cli *clientv3.Client, owns bool, prefix string, reqTimeout time.Duration, log *slog.Logger) *EtcdStore {
	ctx, cancel := context.WithCancel(context.Background())
	return &EtcdStore{
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
// closes it. It is idempotent; later calls fail with ErrClosed.
func (s *EtcdStore) Close() error {
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
func (s *EtcdStore) begin(ctx context.Context) (context.Context, func(), error) {
	if s.closed.Load() {
		return nil, nil, ErrClosed
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
func (s *EtcdStore) wrapErr(op, key string, write bool, err error) error {
	switch {
	case write && etcdAmbiguous(err):
		if s.closed.Load() {
			return fmt.Errorf("meta: etcd %s %q: store closed during the call, outcome unknown (re-read to find out): %w", op, key, err)
		}
		return fmt.Errorf("meta: etcd %s %q: outcome unknown (re-read to find out): %w", op, key, err)
	case !write && s.closed.Load():
		return fmt.Errorf("meta: etcd %s %q: %w: %w", op, key, ErrClosed, err)
	}
	return fmt.Errorf("meta: etcd %s %q: %w", op, key, err)
}

func etcdVersion(rev int64) Version { return Version(strconv.FormatInt(rev, 10)) }

// etcdParseVersion returns the ModRevision a Version stands for. A version
// this backend cannot have issued is ErrPrecondition: no record has it.
func etcdParseVersion(key string, v Version) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != string(v) {
		return 0, fmt.Errorf("%w: %q: version %q is not an etcd revision (want a positive decimal)", ErrPrecondition, key, v)
	}
	return n, nil
}

// Get returns the record under key, or ErrNotFound. The read is
// linearizable. The value is owned by the caller.
func (s *EtcdStore) Get(ctx context.Context, key string) (Record, error) {
	if err := ValidateKey(key); err != nil {
		return Record{}, err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return Record{}, err
	}
	defer done()
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return Record{}, s.wrapErr("get", key, false, err)
	}
	if len(resp.Kvs) == 0 {
		return Record{}, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	kv := resp.Kvs[0]
	return Record{Key: key, Value: kv.Value, Version: etcdVersion(kv.ModRevision)}, nil
}

// Create writes a new record if key holds none, or returns ErrExists.
func (s *EtcdStore) Create(ctx context.Context, key string, value []byte) (Version, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := checkValue(key, value); err != nil {
		return "", err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	k := s.prefix + key
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).
		Commit()
	if err != nil {
		return "", s.wrapErr("create", key, true, err)
	}
	if !resp.Succeeded {
		return "", fmt.Errorf("%w: %q", ErrExists, key)
	}
	return etcdVersion(resp.Header.Revision), nil
}

// Update replaces the record if its version is ver and returns the new
// version; otherwise (another version, no record, a foreign ver) it returns
// ErrPrecondition, naming the current version when there is one.
func (s *EtcdStore) Update(ctx context.Context, key string, value []byte, ver Version) (Version, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	if err := checkValue(key, value); err != nil {
		return "", err
	}
	rev, err := etcdParseVersion(key, ver)
	if err != nil {
		return "", err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	k := s.prefix + key
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(value))).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return "", s.wrapErr("update", key, true, err)
	}
	if !resp.Succeeded {
		return "", etcdMismatch(key, ver, resp)
	}
	return etcdVersion(resp.Header.Revision), nil
}

// Delete removes the record if its version is ver, or returns
// ErrPrecondition.
func (s *EtcdStore) Delete(ctx context.Context, key string, ver Version) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	rev, err := etcdParseVersion(key, ver)
	if err != nil {
		return err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	k := s.prefix + key
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpDelete(k)).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return s.wrapErr("delete", key, true, err)
	}
	if !resp.Succeeded {
		return etcdMismatch(key, ver, resp)
	}
	return nil
}

// etcdMismatch builds the ErrPrecondition of a failed compare, using the
// Else branch's read of the key.
func etcdMismatch(key string, ver Version, resp *clientv3.TxnResponse) error {
	if len(resp.Responses) == 1 {
		if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) == 1 {
			return fmt.Errorf("%w: %q: expected version %s, current %d", ErrPrecondition, key, ver, r.Kvs[0].ModRevision)
		}
	}
	return fmt.Errorf("%w: %q: expected version %s, record does not exist", ErrPrecondition, key, ver)
}

// List returns every record whose key starts with prefix, in ascending key
// order. It reads in pages of a bounded number of records, all at the
// revision of the first page, so the result is one consistent snapshot.
func (s *EtcdStore) List(ctx context.Context, prefix string) ([]Record, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	var recs []Record
	_, err = s.rangeAll(ctx, s.prefix+prefix, false, func(kv *mvccpb.KeyValue) {
		recs = append(recs, Record{
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
func (s *EtcdStore) rangeAll(ctx context.Context, full string, keysOnly bool, fn func(*mvccpb.KeyValue), reset func()) (int64, error) {
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

func (s *EtcdStore) rangeOnce(ctx context.Context, from, end string, keysOnly bool, fn func(*mvccpb.KeyValue)) (int64, error) {
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

// Watch delivers changes to records whose keys start with prefix, made after
// the call, until ctx is done or the store is closed; then the channel is
// closed. It reads the keys under the prefix first (keys only, paged), so it
// fails early when etcd cannot be reached.
//
// Events of one key arrive in order. A consumer that keeps up sees every
// change; once etcdWatchCoalesceAt (256) events wait for it, a new event
// replaces the newest waiting event of its key, so memory stays bounded by
// that many events plus one per key, and a slow consumer may miss
// intermediate versions (and a put followed by a delete may show only the
// delete). The watch also keeps the key and ModRevision of every record
// under the prefix, to turn a re-list into events. When the
// etcd watch breaks (compaction of the revision it needs, a lost leader or
// connection), the store re-lists the prefix, emits the difference as puts
// and deletes, and watches again from the listing's revision, retrying with
// backoff until ctx ends; so the latest state of every key is always
// delivered eventually. The Version of an EventDelete is empty.
func (s *EtcdStore) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	w := &etcdWatch{
		s:     s,
		full:  s.prefix + prefix,
		out:   make(chan Event, 16),
		known: make(map[string]int64),
		pidx:  make(map[string]int),
	}
	lctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := s.rangeAll(lctx, w.full, true, func(kv *mvccpb.KeyValue) {
		w.known[string(kv.Key[len(s.prefix):])] = kv.ModRevision
	}, func() { clear(w.known) })
	done()
	if err != nil {
		return nil, s.wrapErr("watch", prefix, false, err)
	}

	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	go func() {
		defer s.wg.Done()
		defer close(w.out)
		defer cancel()
		defer stop()
		w.run(wctx, prefix, rev)
	}()
	return w.out, nil
}

// etcdWatch is the state of one Watch goroutine; only that goroutine
// touches it.
type etcdWatch struct {
	s    *EtcdStore
	full string // etcd key prefix watched
	out  chan Event

	// known maps the key of every record believed to exist under the
	// prefix to its ModRevision, for turning a re-list into events.
	known map[string]int64

	// pending[head:] are events not yet sent, oldest first; pidx maps a
	// key to the index of its newest pending event.
	pending []Event
	head    int
	pidx    map[string]int
}

func (w *etcdWatch) run(ctx context.Context, prefix string, rev int64) {
	backoff := etcdWatchMinBackoff
	for {
		began := time.Now()
		err := w.stream(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > etcdWatchMaxBackoff {
			backoff = etcdWatchMinBackoff // it was healthy for a while
		}
		for {
			w.s.log.Warn("meta: etcd watch broken, re-listing", "prefix", prefix, "revision", rev, "err", err, "retry_in", backoff)
			if !w.sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, etcdWatchMaxBackoff)
			var rerr error
			rev, rerr = w.resync(ctx)
			if rerr == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			err = rerr
		}
	}
}

// stream watches from rev+1 and turns etcd events into pending events until
// the watch breaks or ctx ends. A healthy stream resets nothing: run re-lists
// after any break, which is correct whatever the cause.
func (w *etcdWatch) stream(ctx context.Context, rev int64) error {
	sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.s.cli.Watch(sctx, w.full, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		var out chan<- Event
		var next Event
		if w.head < len(w.pending) {
			out, next = w.out, w.pending[w.head]
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case out <- next:
			w.pop()
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				w.apply(ev)
			}
		}
	}
}

// sleep waits d while still delivering pending events; false if ctx ended.
func (w *etcdWatch) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		var out chan<- Event
		var next Event
		if w.head < len(w.pending) {
			out, next = w.out, w.pending[w.head]
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case out <- next:
			w.pop()
		}
	}
}

// resync re-lists the prefix and queues the difference from known.
func (w *etcdWatch) resync(ctx context.Context) (int64, error) {
	lctx, done, err := w.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var kvs []*mvccpb.KeyValue
	rev, err := w.s.rangeAll(lctx, w.full, false, func(kv *mvccpb.KeyValue) {
		kvs = append(kvs, kv)
	}, func() { kvs = kvs[:0] })
	if err != nil {
		return 0, err
	}
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		k := string(kv.Key[len(w.s.prefix):])
		seen[k] = true
		if w.known[k] != kv.ModRevision {
			w.known[k] = kv.ModRevision
			w.push(Event{Type: EventPut, Record: Record{Key: k, Value: kv.Value, Version: etcdVersion(kv.ModRevision)}})
		}
	}
	var gone []string
	for k := range w.known {
		if !seen[k] {
			gone = append(gone, k)
		}
	}
	slices.Sort(gone)
	for _, k := range gone {
		delete(w.known, k)
		w.push(Event{Type: EventDelete, Record: Record{Key: k}})
	}
	return rev, nil
}

func (w *etcdWatch) apply(ev *clientv3.Event) {
	if len(ev.Kv.Key) < len(w.s.prefix) {
		return // cannot happen: the watch is on a longer prefix
	}
	k := string(ev.Kv.Key[len(w.s.prefix):])
	switch ev.Type {
	case clientv3.EventTypePut:
		w.known[k] = ev.Kv.ModRevision
		w.push(Event{Type: EventPut, Record: Record{Key: k, Value: ev.Kv.Value, Version: etcdVersion(ev.Kv.ModRevision)}})
	case clientv3.EventTypeDelete:
		delete(w.known, k)
		w.push(Event{Type: EventDelete, Record: Record{Key: k}})
	}
}

// push queues ev. Once etcdWatchCoalesceAt events are pending, it replaces
// the newest pending event of the same key instead, if there is one.
func (w *etcdWatch) push(ev Event) {
	k := ev.Record.Key
	if i, ok := w.pidx[k]; ok && len(w.pending)-w.head >= etcdWatchCoalesceAt {
		w.pending[i] = ev
		return
	}
	w.pidx[k] = len(w.pending)
	w.pending = append(w.pending, ev)
}

// pop drops the event at the head of the queue, which was just sent.
func (w *etcdWatch) pop() {
	if k := w.pending[w.head].Record.Key; w.pidx[k] == w.head {
		delete(w.pidx, k)
	}
	w.pending[w.head] = Event{}
	w.head++
	switch {
	case w.head == len(w.pending):
		w.pending, w.head = w.pending[:0], 0
	case w.head > 64 && w.head > len(w.pending)/2:
		n := copy(w.pending, w.pending[w.head:])
		clear(w.pending[n:])
		w.pending, w.head = w.pending[:n], 0
		for i, ev := range w.pending {
			w.pidx[ev.Record.Key] = i
		}
	}
}
