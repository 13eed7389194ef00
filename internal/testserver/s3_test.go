package testserver_test

import (
	"bytes"
	"context"
	"errors"
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

func s3RoundTrip(t *testing.T, s *testserver.S3Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bucket := s.NewBucket(t)
	b, err := s3.New(ctx, s.Config(bucket, "pre"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := []byte("hello " + s.Kind)
	if _, err := b.PutIfAbsent(ctx, "a/b", want); err != nil {
		t.Fatal(err)
	}

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
