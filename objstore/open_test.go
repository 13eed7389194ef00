package objstore_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/objstore"

	_ "github.com/woodpecker-wal/woodpecker/objstore/file"
	_ "github.com/woodpecker-wal/woodpecker/objstore/mem"
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
		// This test binary does not link objstore/s3: the error says what to import.
		{"s3://ak:topsecret@bucket/p", `add import _ "github.com/woodpecker-wal/woodpecker/objstore/s3"`},
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

func TestRegisterRejectsDuplicatesAndEmpty(t *testing.T) {
	open := func(context.Context, *url.URL) (objstore.Bucket, error) { return nil, nil }
	for name, fn := range map[string]func(){
		"duplicate": func() { objstore.Register("mem", open) },
		"empty":     func() { objstore.Register("", open) },
		"nil":       func() { objstore.Register("nilopener", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register %s did not panic", name)
				}
			}()
			fn()
		}()
	}
	if got := strings.Join(objstore.Schemes(), ","); got != "file,mem" {
		t.Errorf("Schemes() = %s, want file,mem (this binary links only those)", got)
	}
}

// No error of Open repeats a secret the URL holds: in the user info, in the
// query, or split off by an unescaped '/' or '#' that breaks the URL apart.
func TestOpenErrorsHideSecrets(t *testing.T) {
	const secret = "S3CRETxyz"
	for _, u := range []string{
		"file://ak:" + secret + "@host/dir",
		"file:dir?secret_key=" + secret,
		"mem://?secret_key=" + secret,
		"bucket/p?secret_key=" + secret,
		"s3://AKID:" + secret + "/rest@bucket/p",
		"s3://AKID:" + secret + "#rest@bucket/p",
		"gs://AKID:" + secret + "@bucket/p?secret=" + secret,
	} {
		b, err := objstore.Open(context.Background(), u)
		if err == nil {
			b.Close()
			t.Errorf("Open(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open of a URL with a secret: %q shows it", err)
		}
	}
}
