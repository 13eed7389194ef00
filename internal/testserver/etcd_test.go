package testserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
)

func TestEtcd(t *testing.T) {
	srv := testserver.Etcd(t)
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
	srv := testserver.Etcd(t)
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
