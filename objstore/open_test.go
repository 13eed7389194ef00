package objstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

func TestOpenErrors(t *testing.T) {
	cases := []struct{ url, want string }{
		{"", "empty bucket URL"},
		{"   ", "empty bucket URL"},
		{"gs://bucket", `unsupported bucket URL scheme "gs"`},
		{"/var/lib/x", "no scheme"},
		{"file://relative/dir", "absolute"},
		{"file:relative", "absolute"},
		{"file:///tmp/x?sync=1", `unknown parameter "sync"`},
		{"file:///tmp/x?nosync=maybe", "not a boolean"},
		{"mem://name", "takes no host"},
		{"s3://", "bucket"},
		{"s3://ak:topsecret@bucket/p?endpoint=127.0.0.1:1&bogus=1", "bogus"},
		{"%zz://x", "malformed"},
	}
	for _, c := range cases {
		b, err := objstore.Open(context.Background(), c.url)
		if err == nil {
			b.Close()
			t.Errorf("Open(%q) succeeded, want an error mentioning %q", c.url, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q) = %q, want it to mention %q", c.url, err, c.want)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Open(%q) leaked the secret: %q", c.url, err)
		}
	}
}

func TestOpenLocal(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"mem://", "file://" + t.TempDir(), "file://" + t.TempDir() + "?nosync=true"} {
		b, err := objstore.Open(ctx, u)
		if err != nil {
			t.Fatalf("Open(%q): %v", u, err)
		}
		if _, err := b.PutIfAbsent(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("%s: PutIfAbsent: %v", u, err)
		}
		b.Close()
	}
}
