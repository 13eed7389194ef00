package meta_test

import (
	"context"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/meta"

	_ "github.com/woodpecker-wal/woodpecker/meta/bucket"
	_ "github.com/woodpecker-wal/woodpecker/meta/mem"
	_ "github.com/woodpecker-wal/woodpecker/objstore/file"
)

func TestOpenErrors(t *testing.T) {
	cases := []struct{ url, want string }{
		{"", "empty metadata URL"},
		{"zk://h:1/p", `unsupported metadata URL scheme "zk"`},
		{"mem://x", "takes no host"},
		{"bucket+gs://b", `unsupported bucket URL scheme "gs"`},
		{"bucket+file://rel", "absolute"},
		{"etcd://user:hunter2@/p", "hunter2"}, // checked below: must not appear
		// This test binary does not link meta/etcd: the error says what to import.
		{"etcd://h:1/p", `add import _ "github.com/woodpecker-wal/woodpecker/meta/etcd"`},
		{"bucket+s3://b/p", `add import _ "github.com/woodpecker-wal/woodpecker/objstore/s3"`},
		{"nothing", "no scheme"},
	}
	for _, c := range cases {
		s, err := meta.Open(context.Background(), c.url)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", c.url)
			continue
		}
		if c.want == "hunter2" {
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open(%q) leaked the password: %q", c.url, err)
			}
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %q, want it to mention %q", c.url, err, c.want)
		}
	}
}

// A bucket+file store reopened from the same URL sees the same records.
func TestOpenBucketFileReopen(t *testing.T) {
	ctx := context.Background()
	u := "bucket+file://" + t.TempDir()
	s, err := meta.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Create(ctx, "logs/a", []byte("rec"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = meta.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, err := s.Get(ctx, "logs/a")
	if err != nil || string(rec.Value) != "rec" || rec.Version != v {
		t.Fatalf("after reopen Get = %+v, %v; want rec at %q", rec, err, v)
	}
}

// No error of Open repeats a secret the URL holds.
func TestOpenErrorsHideSecrets(t *testing.T) {
	const secret = "S3CRETxyz"
	for _, u := range []string{
		"bucket+file://ak:" + secret + "@host/dir",
		"mem://?secret_key=" + secret,
		"etcd://user:" + secret + "/x@h:1/p",
		"nothing?password=" + secret,
	} {
		s, err := meta.Open(context.Background(), u)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open of a URL with a secret: %q shows it", err)
		}
	}
}
