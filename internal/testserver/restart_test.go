package testserver_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/s3"
)

// TestS3OutageKeepsObjects: objects written before Stop are read back
// after Restart on the same endpoint, through the client made before the
// outage and through a new one; while stopped the port refuses connections.
func TestS3OutageKeepsObjects(t *testing.T) {
	for _, kind := range []string{testserver.KindVersitygw, testserver.KindGofakes3} {
		t.Run(kind, func(t *testing.T) {
			var s *testserver.S3Server
			if kind == testserver.KindVersitygw {
				s = testserver.Versitygw(t)
			} else {
				s = testserver.FakeS3(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			bucket := s.NewBucket(t)
			b, err := s3.New(ctx, s.Config(bucket, "pre"))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			want := []byte("survives " + kind)
			if _, err := b.PutIfAbsent(ctx, "a/b", want); err != nil {
				t.Fatal(err)
			}
			endpoint, pid := s.Endpoint, s.Pid

			s.Stop()
			if s.Running() {
				t.Fatal("Running after Stop")
			}
			if kind == testserver.KindVersitygw {
				if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
					t.Fatalf("versitygw pid %d still exists after Stop (kill 0: %v)", pid, err)
				}
			}
			if c, err := net.DialTimeout("tcp", endpoint, time.Second); err == nil {
				c.Close()
				t.Fatalf("%s accepts connections after Stop", endpoint)
			}
			s.Stop() // idempotent

			s.Restart(t)
			if !s.Running() || s.Endpoint != endpoint {
				t.Fatalf("after Restart: running %v, endpoint %s, want %s", s.Running(), s.Endpoint, endpoint)
			}
			if kind == testserver.KindVersitygw && (s.Pid == 0 || s.Pid == pid) {
				t.Fatalf("after Restart: pid %d, want a new process (was %d)", s.Pid, pid)
			}
			got, _, err := objstore.ReadAll(ctx, b, "a/b")
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("old client after Restart: read %q, %v; want %q", got, err, want)
			}
			b2, err := s3.New(ctx, s.Config(bucket, "pre"))
			if err != nil {
				t.Fatal(err)
			}
			defer b2.Close()
			if _, err := b2.PutIfAbsent(ctx, "a/b", want); !errors.Is(err, objstore.ErrExists) {
				t.Fatalf("PutIfAbsent of an object written before the restart: %v, want ErrExists", err)
			}
			if _, err := b2.PutIfAbsent(ctx, "a/c", want); err != nil {
				t.Fatalf("new object after Restart: %v", err)
			}

			// Restart of a running server stops it first.
			s.Restart(t)
			if got, _, err := objstore.ReadAll(ctx, b2, "a/c"); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after a second Restart: read %q, %v; want %q", got, err, want)
			}
		})
	}
}

// TestEtcdOutageKeepsData: a key put before Stop is read after Restart
// on the same endpoint, by the client made before the outage (which
// reconnects by itself) and by a new one; auth enabled before stays on.
func TestEtcdOutageKeepsData(t *testing.T) {
	srv := testserver.Etcd(t)
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
