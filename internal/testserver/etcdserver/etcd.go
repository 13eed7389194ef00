// Package etcdserver starts an embedded, single-member etcd on 127.0.0.1
// for tests, torn down by t.Cleanup: the metadata store's real server. It is
// apart from internal/testserver (the S3 servers) so that a test binary that
// needs no etcd does not link etcd's server and its raft.
package etcdserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/woodpecker-wal/woodpecker/internal/testserver/lifecycle"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
)

// etcdReadyTimeout bounds the wait for an embedded etcd to serve. It starts
// in 15-100 ms on an idle machine; the margin is for a loaded 2-core box
// under -race.
const etcdReadyTimeout = 20 * time.Second

// Server is a single-member etcd server running in the test process
// (go.etcd.io/etcd/server/v3/embed), listening on 127.0.0.1 only, with its
// data in a t.TempDir(). It is tuned for tests: 10 ms ticks, 100 ms election
// timeout, no fsync, the cheapest bcrypt cost, no logging. It is closed by
// t.Cleanup of the test that started it. Stop and Restart take it down and
// bring it back on the same addresses with the same data, to test outages.
type Server struct {
	// Endpoints are the client endpoints, "127.0.0.1:port". They stay the
	// same across Stop and Restart.
	Endpoints []string

	dir        string
	clientAddr string // host:port the client listener is bound to
	peerAddr   string // host:port the peer listener is bound to

	run lifecycle.Running // e.Close of the running server

	mu struct {
		sync.Mutex
		user, pass string // set by EnableAuth; guarded by mu
	}
}

// etcdConfig is the server's configuration, listening on clientAddr and
// peerAddr ("127.0.0.1:0" binds free ports). The advertised URLs stay
// "127.0.0.1:0" across restarts, so the member's stored attributes never
// change: a single member never dials its own peer URL, and clients are
// given Endpoints, not the advertised URLs.
func etcdConfig(dir, clientAddr, peerAddr string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = dir
	advertise := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{{Scheme: "http", Host: clientAddr}}
	cfg.AdvertiseClientUrls = []url.URL{advertise}
	cfg.ListenPeerUrls = []url.URL{{Scheme: "http", Host: peerAddr}}
	cfg.AdvertisePeerUrls = []url.URL{advertise}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = true
	cfg.BcryptCost = uint(bcrypt.MinCost)
	cfg.EnableGRPCGateway = false
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	return cfg
}

// startEtcd starts a server with cfg and waits until it serves.
func startEtcd(cfg *embed.Config) (*embed.Etcd, error) {
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("%w: %v", lifecycle.ErrPortClash, err)
		}
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("failed before serving: %v", err)
	case <-time.After(etcdReadyTimeout):
		e.Close()
		return nil, fmt.Errorf("not ready after %v", etcdReadyTimeout)
	}
}

// Etcd starts an embedded etcd server and waits until it serves, failing
// the test if it does not. Each call starts an independent server; share
// one between subtests by giving each a prefix of its own.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	e, err := startEtcd(etcdConfig(dir, "127.0.0.1:0", "127.0.0.1:0"))
	if err != nil {
		t.Fatalf("testserver: embedded etcd: %v", err)
	}
	s := &Server{
		Endpoints:  []string{e.Clients[0].Addr().String()},
		dir:        dir,
		clientAddr: e.Clients[0].Addr().String(),
		peerAddr:   e.Peers[0].Addr().String(),
	}
	s.run.Set(e.Close)
	t.Cleanup(s.Stop)
	return s
}

// Stop closes the server, as a shutdown: it stops accepting connections,
// gives requests in flight up to etcd's request timeout (5 s and two
// elections) to finish, then closes every connection. Its data stays for
// Restart. It is a no-op when the server is stopped, and safe to call from
// any goroutine.
func (s *Server) Stop() { s.run.Down() }

// Running reports whether the server is up (not stopped).
func (s *Server) Running() bool { return s.run.Up() }

// Restart starts the server again with the same data directory and the
// same client and peer addresses (stopping it first if it is running), and
// waits until it serves. A port found busy is retried for a few seconds.
// Users and auth set by EnableAuth are part of the data and stay. It fails
// the test if the server cannot come back; call it from the test's
// goroutine.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.run.Restart(t, "embedded etcd: restart on "+s.clientAddr, func(int) error {
		e, err := startEtcd(etcdConfig(s.dir, s.clientAddr, s.peerAddr))
		if err == nil {
			s.run.Set(e.Close)
		}
		return err
	})
}

func (s *Server) creds() (user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.user, s.mu.pass
}

// Client returns a new client of the server, closed on t's cleanup. After
// EnableAuth it authenticates with the credentials given there.
func (s *Server) Client(t testing.TB) *clientv3.Client {
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
// (with the credentials of EnableAuth, if any), for etcdmeta.ConfigFromURL.
func (s *Server) URL(prefix string) string {
	u := url.URL{Scheme: "etcd", Host: s.Endpoints[0], Path: "/" + prefix}
	if user, pass := s.creds(); user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// NewPrefix returns a fresh deployment prefix, so that stores sharing the
// server see none of each other's records.
func (s *Server) NewPrefix() string { return "wp-" + lifecycle.RandHex(6) }

// OpenMeta opens a metadata store on a fresh prefix (NewPrefix), closed on
// t's cleanup.
func (s *Server) OpenMeta(t testing.TB) *etcdmeta.Store {
	t.Helper()
	m, err := etcdmeta.New(context.Background(), s.Config(s.NewPrefix()))
	if err != nil {
		t.Fatalf("testserver: embedded etcd: open metadata store: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Config returns a etcdmeta.Config for the server with the given deployment
// prefix (and the credentials of EnableAuth, if any).
func (s *Server) Config(prefix string) etcdmeta.Config {
	user, pass := s.creds()
	return etcdmeta.Config{
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
func (s *Server) EnableAuth(t testing.TB, user, pass string) {
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

// Shared starts the server on first use and keeps it as long as owner, as
// testserver.Servers does for the S3 servers. It is safe for concurrent use.
type Shared struct {
	owner testing.TB
	mu    sync.Mutex
	srv   *Server
}

// NewShared returns a Shared whose server lives as long as owner.
func NewShared(owner testing.TB) *Shared { return &Shared{owner: owner} }

// Get returns the server, starting it first.
func (s *Shared) Get() *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		s.srv = Start(s.owner)
	}
	return s.srv
}
