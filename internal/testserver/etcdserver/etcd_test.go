package etcdserver_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/meta"
)

func TestEtcd(t *testing.T) {
	srv := etcdserver.Start(t)
	if len(srv.Endpoints) != 1 {
		t.Fatalf("Endpoints = %v, want one", srv.Endpoints)
	}
	cli := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get k = %v, want v", resp.Kvs)
	}
	if got, want := srv.URL("p/q"), "etcd://"+srv.Endpoints[0]+"/p/q"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if cfg := srv.Config("p"); cfg.Prefix != "p" || len(cfg.Endpoints) != 1 || cfg.Username != "" {
		t.Errorf("Config = %v", cfg)
	}
}

func TestEtcdEnableAuth(t *testing.T) {
	srv := etcdserver.Start(t)
	anon := srv.Client(t)
	srv.EnableAuth(t, "alice", "s3cret")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := anon.Put(ctx, "k", "v"); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Fatalf("put without credentials: %v, want %v", err, rpctypes.ErrUserEmpty)
	}
	if _, err := srv.Client(t).Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put with credentials: %v", err)
	}
	if got, want := srv.URL("p"), "etcd://alice:s3cret@"+srv.Endpoints[0]+"/p"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}

// TestEtcdOutageKeepsData: a key put before Stop is read after Restart
// on the same endpoint, by the client made before the outage (which
// reconnects by itself) and by a new one; auth enabled before stays on.
func TestEtcdOutageKeepsData(t *testing.T) {
	srv := etcdserver.Start(t)
	srv.EnableAuth(t, "alice", "s3cret")
	cli := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	endpoints := append([]string(nil), srv.Endpoints...)

	srv.Stop()
	if srv.Running() {
		t.Fatal("Running after Stop")
	}
	if c, err := net.DialTimeout("tcp", endpoints[0], time.Second); err == nil {
		c.Close()
		t.Fatalf("%s accepts connections after Stop", endpoints[0])
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := cli.Get(short, "k")
	cancelShort()
	if err == nil {
		t.Fatal("get succeeded while the server is stopped")
	}
	srv.Stop() // idempotent

	start := time.Now()
	srv.Restart(t)
	t.Logf("restarted in %v", time.Since(start).Round(time.Millisecond))
	if !srv.Running() || srv.Endpoints[0] != endpoints[0] {
		t.Fatalf("after Restart: running %v, endpoints %v, want %v", srv.Running(), srv.Endpoints, endpoints)
	}
	start = time.Now()
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("old client after Restart: get k = %v, %v; want v", resp, err)
	}
	t.Logf("the old client answered %v after the restart", time.Since(start).Round(time.Millisecond))
	fresh := srv.Client(t)
	if resp, err := fresh.Get(ctx, "k"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("new client after Restart: get k = %v, %v; want v", resp, err)
	}
	if _, err := fresh.Put(ctx, "k2", "v2"); err != nil {
		t.Fatalf("put after Restart: %v", err)
	}

	// Restart of a running server stops it first.
	srv.Restart(t)
	if resp, err := srv.Client(t).Get(ctx, "k2"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v2" {
		t.Fatalf("after a second Restart: get k2 = %v, %v; want v2", resp, err)
	}
}

// Shared starts the server once and hands the same one out after; two
// stores opened on it see nothing of each other.
func TestShared(t *testing.T) {
	sh := etcdserver.NewShared(t)
	etcd := sh.Get()
	if sh.Get() != etcd {
		t.Fatal("Shared started a second server")
	}
	ctx := context.Background()
	m1, m2 := etcd.OpenMeta(t), etcd.OpenMeta(t)
	if _, err := m1.Create(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Get(ctx, "k"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("a second store on the same server sees the first one's record: %v", err)
	}
}
