// Package testserver starts real servers for tests, in process where
// possible: an embedded etcd (Etcd) and S3-compatible servers. They listen
// on 127.0.0.1 only and are torn down by t.Cleanup.
package testserver

import (
	"context"
	"crypto/rand"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/woodpecker-wal/woodpecker/meta"
)

// etcdReadyTimeout bounds the wait for an embedded etcd to serve. It starts
// in 15-100 ms on an idle machine; the margin is for a loaded 2-core box
// under -race.
const etcdReadyTimeout = 20 * time.Second

// EtcdServer is a single-member etcd server running in the test process
// (go.etcd.io/etcd/server/v3/embed), listening on 127.0.0.1 only, with its
// data in a t.TempDir(). It is tuned for tests: 10 ms ticks, 100 ms election
// timeout, no fsync, the cheapest bcrypt cost, no logging. It is closed by
// t.Cleanup of the test that started it.
type EtcdServer struct {
	// Endpoints are the client endpoints, "127.0.0.1:port".
	Endpoints []string

	e *embed.Etcd

	mu struct {
		sync.Mutex
		user, pass string // set by EnableAuth; guarded by mu
	}
}

// Etcd starts an embedded etcd server and waits until it serves, failing
// the test if it does not. Each call starts an independent server; share
// one between subtests by giving each a prefix of its own.
func Etcd(t testing.TB) *EtcdServer {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = t.TempDir()
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	// Port 0 binds a free port. The advertised peer URL keeps port 0: a
	// single member never dials its own peer URL.
	cfg.ListenClientUrls = []url.URL{local}
	cfg.AdvertiseClientUrls = []url.URL{local}
	cfg.ListenPeerUrls = []url.URL{local}
	cfg.AdvertisePeerUrls = []url.URL{local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = true
	cfg.BcryptCost = uint(bcrypt.MinCost)
	cfg.EnableGRPCGateway = false
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("testserver: start embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("testserver: embedded etcd failed before serving: %v", err)
	case <-time.After(etcdReadyTimeout):
		t.Fatalf("testserver: embedded etcd not ready after %v", etcdReadyTimeout)
	}
	return &EtcdServer{
		Endpoints: []string{e.Clients[0].Addr().String()},
		e:         e,
	}
}

func (s *EtcdServer) creds() (user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.user, s.mu.pass
}

// Client returns a new client of the server, closed on t's cleanup. After
// EnableAuth it authenticates with the credentials given there.
func (s *EtcdServer) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	user, pass := s.creds()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints,
		DialTimeout: 5 * time.Second,
		Username:    user,
		Password:    pass,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("testserver: etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// URL returns an etcd:// URL of the server with the given deployment prefix
// (with the credentials of EnableAuth, if any), for meta.EtcdConfigFromURL.
func (s *EtcdServer) URL(prefix string) string {
	u := url.URL{Scheme: "etcd", Host: s.Endpoints[0], Path: "/" + prefix}
	if user, pass := s.creds(); user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// Config returns a meta.EtcdConfig for the server with the given deployment
// prefix (and the credentials of EnableAuth, if any).
func (s *EtcdServer) Config(prefix string) meta.EtcdConfig {
	user, pass := s.creds()
	return meta.EtcdConfig{
		Endpoints: append([]string(nil), s.Endpoints...),
		Prefix:    prefix,
		Username:  user,
		Password:  pass,
	}
}

// EnableAuth turns on etcd authentication. It creates the "root" user with
// the root role (required by etcd before auth can be enabled) and, when user
// is not "root", the user too, also with the root role; both get password
// pass. Later Client, URL and Config calls carry user and pass. Clients made
// before, which have no credentials, are refused from now on.
func (s *EtcdServer) EnableAuth(t testing.TB, user, pass string) {
	t.Helper()
	if user == "" || pass == "" {
		t.Fatalf("testserver: EnableAuth needs a user and a password")
	}
	cli := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	add := func(name, pw string) {
		t.Helper()
		if _, err := cli.UserAdd(ctx, name, pw); err != nil {
			t.Fatalf("testserver: etcd user add %q: %v", name, err)
		}
		if _, err := cli.UserGrantRole(ctx, name, "root"); err != nil {
			t.Fatalf("testserver: etcd grant root role to %q: %v", name, err)
		}
	}
	if user == "root" {
		add("root", pass)
	} else {
		add("root", rand.Text())
		add(user, pass)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatalf("testserver: etcd auth enable: %v", err)
	}
	s.mu.Lock()
	s.mu.user, s.mu.pass = user, pass
	s.mu.Unlock()
}
