package testserver_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/s3"
)

func TestS3Servers(t *testing.T) {
	var pid int
	t.Run("versitygw", func(t *testing.T) {
		s := testserver.Versitygw(t)
		if s.Pid == 0 || s.Kind != testserver.KindVersitygw {
			t.Fatalf("server %+v: want a versitygw pid", s)
		}
		pid = s.Pid
		s3RoundTrip(t, s)
	})
	t.Run("gofakes3", func(t *testing.T) {
		s3RoundTrip(t, testserver.FakeS3(t))
	})
	// The versitygw subtest's cleanup has run: its process must be gone
	// (reaped, so signal 0 finds no such process).
	if pid == 0 {
		t.Fatal("versitygw did not start")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("versitygw pid %d still exists after cleanup (kill 0: %v)", pid, err)
	}
}

// putAB creates a bucket on s, opens it with key prefix "pre" (closed on
// t's cleanup) and writes want to a/b.
func putAB(ctx context.Context, t *testing.T, s *testserver.S3Server, want []byte) (string, objstore.Bucket) {
	t.Helper()
	bucket := s.NewBucket(t)
	b, err := s3.New(ctx, s.Config(bucket, "pre"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.PutIfAbsent(ctx, "a/b", want); err != nil {
		t.Fatal(err)
	}
	return bucket, b
}

func s3RoundTrip(t *testing.T, s *testserver.S3Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := []byte("hello " + s.Kind)
	bucket, _ := putAB(ctx, t, s, want)

	// The URL form opens the same bucket and prefix.
	u, err := url.Parse(s.URL(bucket, "pre"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s3.ConfigFromURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.String() != s.Config(bucket, "pre").String() {
		t.Fatalf("URL config\n%s\nwant\n%s", cfg, s.Config(bucket, "pre"))
	}
	b2, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	got, info, err := objstore.ReadAll(ctx, b2, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) || info.Size != int64(len(want)) || info.ETag == "" {
		t.Fatalf("read %q %+v, want %q", got, info, want)
	}
	if _, err := b2.PutIfAbsent(ctx, "a/b", want); !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("second PutIfAbsent: %v, want ErrExists", err)
	}
}

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
			want := []byte("survives " + kind)
			bucket, b := putAB(ctx, t, s, want)
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
