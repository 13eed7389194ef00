package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/bucketsuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/s3"
)

// s3Kinds are the servers every S3 test runs against.
var s3Kinds = []struct {
	name  string
	start func(testing.TB) *testserver.S3Server
}{
	{"versitygw", testserver.Versitygw},
	{"gofakes3", testserver.FakeS3},
}

func s3Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// s3Open opens bucket/prefix on s and closes it at cleanup.
func s3Open(t testing.TB, s *testserver.S3Server, bucket, prefix string) *s3.Bucket {
	t.Helper()
	return s3OpenConfig(t, s.Config(bucket, prefix))
}

func s3OpenConfig(t testing.TB, cfg s3.Config) *s3.Bucket {
	t.Helper()
	b, err := s3.New(s3Ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestS3Conformance(t *testing.T) {
	for _, k := range s3Kinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.start(t)
			// One server per backend; every factory call gets a fresh bucket.
			// versitygw also runs under a key prefix.
			prefix := ""
			if k.name == "versitygw" {
				prefix = "wp/test"
			}
			bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket {
				cfg := s.Config(s.NewBucket(t), prefix)
				b, err := s3.New(s3Ctx(t), cfg)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}, conformance.Options{Checks: 10})
		})
	}
}

// TestS3ServerQuirks pins the raw answers of each server that the backend's
// error mapping relies on (see docs/design.md, "Facts the code relies on").
func TestS3ServerQuirks(t *testing.T) {
	for _, k := range s3Kinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.start(t)
			bucket := s.NewBucket(t)
			c, err := minio.New(s.Endpoint, &minio.Options{
				Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
				Region:       "us-east-1",
				BucketLookup: minio.BucketLookupPath,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := s3Ctx(t)
			put := func(key string, data []byte, set func(*minio.PutObjectOptions)) (int, string) {
				opts := minio.PutObjectOptions{DisableMultipart: true}
				set(&opts)
				_, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), opts)
				er := minio.ToErrorResponse(err)
				return er.StatusCode, er.Code
			}
			ifNone := func(o *minio.PutObjectOptions) { o.SetMatchETagExcept("*") }
			if st, _ := put("k", []byte("one"), ifNone); st != 0 {
				t.Fatalf("first If-None-Match PUT: %d", st)
			}
			st, code := put("k", []byte("two"), ifNone)
			t.Logf("If-None-Match:* on existing key: %d %s", st, code)
			if st != http.StatusPreconditionFailed {
				t.Errorf("If-None-Match:* on existing key answered %d %s, want 412", st, code)
			}
			st, code = put("missing", []byte("x"), func(o *minio.PutObjectOptions) { o.SetMatchETag("0123456789abcdef0123456789abcdef") })
			t.Logf("If-Match on missing key: %d %s", st, code)
			want := map[string]int{"versitygw": 404, "gofakes3": 412}[k.name]
			if st != want {
				t.Errorf("If-Match on missing key answered %d %s, want %d", st, code, want)
			}
			st, code = put("k", []byte("x"), func(o *minio.PutObjectOptions) { o.SetMatchETag("0123456789abcdef0123456789abcdef") })
			t.Logf("If-Match with a stale ETag: %d %s", st, code)
			if st != http.StatusPreconditionFailed {
				t.Errorf("If-Match with a stale ETag answered %d %s, want 412", st, code)
			}
			var opts minio.GetObjectOptions
			opts.Set("Range", "bytes=10-20")
			_, _, _, err = minio.Core{Client: c}.GetObject(ctx, bucket, "k", opts)
			er := minio.ToErrorResponse(err)
			t.Logf("GET Range beyond the end: %d %s", er.StatusCode, er.Code)
			if er.StatusCode != http.StatusRequestedRangeNotSatisfiable {
				t.Errorf("GET Range beyond the end answered %d %s (%v), want 416", er.StatusCode, er.Code, err)
			}
		})
	}
}

func TestS3OpenErrors(t *testing.T) {
	t.Parallel()
	vgw := testserver.Versitygw(t)
	ctx := s3Ctx(t)
	t.Run("MissingBucket", func(t *testing.T) {
		_, err := s3.New(ctx, vgw.Config("no-such-bucket", ""))
		if !errors.Is(err, s3.ErrBucketNotFound) {
			t.Fatalf("got %v, want ErrS3BucketNotFound", err)
		}
		t.Log(err)
	})
	t.Run("WrongSecret", func(t *testing.T) {
		cfg := vgw.Config(vgw.NewBucket(t), "")
		cfg.SecretKey = "wrong-secret-" + cfg.SecretKey
		_, err := s3.New(ctx, cfg)
		if !errors.Is(err, s3.ErrAccessDenied) || errors.Is(err, s3.ErrBucketNotFound) {
			t.Fatalf("got %v, want ErrS3AccessDenied", err)
		}
		if strings.Contains(err.Error(), cfg.SecretKey) {
			t.Fatalf("error contains the secret: %v", err)
		}
		t.Log(err)
	})
	t.Run("WrongAccessKey", func(t *testing.T) {
		cfg := vgw.Config(vgw.NewBucket(t), "")
		cfg.AccessKey = "nosuchuser"
		_, err := s3.New(ctx, cfg)
		if !errors.Is(err, s3.ErrAccessDenied) {
			t.Fatalf("got %v, want ErrS3AccessDenied", err)
		}
		t.Log(err)
	})
	t.Run("ClosedPort", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cfg := vgw.Config("bucket", "")
		cfg.Endpoint = addr
		start := time.Now()
		_, err = s3.New(ctx, cfg)
		if !errors.Is(err, s3.ErrUnreachable) {
			t.Fatalf("got %v, want ErrS3Unreachable", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v to report a closed port", d)
		}
		t.Log(err)
	})
	t.Run("NoAnswer", func(t *testing.T) {
		// A listener that accepts and never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		defer func() {
			l.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		}()
		cfg := vgw.Config("bucket", "")
		cfg.Endpoint = l.Addr().String()
		cfg.RequestTimeout = 300 * time.Millisecond
		start := time.Now()
		_, err = s3.New(ctx, cfg)
		if !errors.Is(err, s3.ErrUnreachable) {
			t.Fatalf("got %v, want ErrS3Unreachable", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v with RequestTimeout 300ms", d)
		}
		t.Log(err)
	})
	t.Run("CallerDeadline", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s3.New(cctx, vgw.Config("bucket", ""))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

func TestS3ConfigValidation(t *testing.T) {
	t.Parallel()
	good := s3.Config{Endpoint: "127.0.0.1:1", Bucket: "bucket", AccessKey: "ak", SecretKey: "sk-secret-value"}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(*s3.Config)
		want string // substring of the error
	}{
		{"NoEndpoint", func(c *s3.Config) { c.Endpoint = "" }, "Endpoint"},
		{"EndpointScheme", func(c *s3.Config) { c.Endpoint = "http://127.0.0.1:9000" }, "Endpoint \"http://127.0.0.1:9000\""},
		{"EndpointBadPort", func(c *s3.Config) { c.Endpoint = "127.0.0.1:99999" }, "bad port"},
		{"EndpointUserInfo", func(c *s3.Config) { c.Endpoint = "u:sk-secret-value@host" }, "user info"},
		{"NoBucket", func(c *s3.Config) { c.Bucket = "" }, "Bucket"},
		{"BadBucket", func(c *s3.Config) { c.Bucket = "Bad_Bucket" }, "Bucket \"Bad_Bucket\""},
		{"BadPrefix", func(c *s3.Config) { c.Prefix = "a//b" }, "Prefix \"a//b\""},
		{"TrailingSlashPrefix", func(c *s3.Config) { c.Prefix = "a/" }, "Prefix"},
		{"BadLookup", func(c *s3.Config) { c.Lookup = "virtual" }, "Lookup \"virtual\""},
		{"SecretWithoutAccess", func(c *s3.Config) { c.AccessKey = "" }, "SecretKey is set"},
		{"AccessWithoutSecret", func(c *s3.Config) { c.SecretKey = "" }, "AccessKey is set"},
		{"NegativeTimeout", func(c *s3.Config) { c.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"SkipVerifyWithoutTLS", func(c *s3.Config) { c.InsecureSkipVerify = true }, "InsecureSkipVerify"},
		{"CAWithoutTLS", func(c *s3.Config) { c.CAFile = caFile }, "CAFile"},
		{"CAMissing", func(c *s3.Config) { c.Secure, c.CAFile = true, caFile+".missing" }, "CAFile"},
		{"CANotPEM", func(c *s3.Config) { c.Secure, c.CAFile = true, caFile }, "no PEM certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.mod(&cfg)
			_, err := s3.New(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewS3 = %v, want an error containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "sk-secret-value") {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestS3ConfigFromURL(t *testing.T) {
	// Not parallel: it sets environment variables.
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
		"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		t.Setenv(v, "")
	}
	good := []struct {
		name string
		url  string
		env  map[string]string
		want s3.Config
	}{
		{
			name: "Full",
			url: "s3://bucket/some/prefix?endpoint=127.0.0.1:9000&region=us-east-1&secure=false&lookup=path" +
				"&access_key=AK&secret_key=S%2FK&session_token=TOK&disable_sha256=true&timeout=10s&max_retries=5",
			want: s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "bucket", Prefix: "some/prefix",
				Region: "us-east-1", AccessKey: "AK", SecretKey: "S/K", SessionToken: "TOK", Lookup: "path",
				DisableContentSha256: true, RequestTimeout: 10 * time.Second, MaxRetries: 5},
		},
		{
			name: "UserInfo",
			url:  "s3://AK:S%2BK@bucket/p/?endpoint=127.0.0.1:9000&secure=false",
			want: s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "bucket", Prefix: "p", AccessKey: "AK", SecretKey: "S+K"},
		},
		{
			name: "TLSOptions",
			url:  "s3://bucket?endpoint=minio.local:9443&insecure_skip_verify=true&ca_file=/x.pem&lookup=dns",
			want: s3.Config{Endpoint: "minio.local:9443", Bucket: "bucket", Secure: true,
				InsecureSkipVerify: true, CAFile: "/x.pem", Lookup: "dns"},
		},
		{
			name: "Defaults",
			url:  "s3://bucket",
			want: s3.Config{Endpoint: "s3.amazonaws.com", Bucket: "bucket", Secure: true},
		},
		{
			name: "Env",
			url:  "s3://bucket/x",
			env: map[string]string{"AWS_ACCESS_KEY_ID": "EAK", "AWS_SECRET_ACCESS_KEY": "ESK", "AWS_SESSION_TOKEN": "ETOK",
				"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://10.0.0.1:9000/"},
			want: s3.Config{Endpoint: "10.0.0.1:9000", Bucket: "bucket", Prefix: "x", Region: "eu-west-1",
				AccessKey: "EAK", SecretKey: "ESK", SessionToken: "ETOK"},
		},
		{
			name: "EnvS3EndpointWinsAndRegion",
			url:  "s3://bucket",
			env: map[string]string{"AWS_ENDPOINT_URL_S3": "https://s3.example.com", "AWS_ENDPOINT_URL": "http://other:1",
				"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-1"},
			want: s3.Config{Endpoint: "s3.example.com", Bucket: "bucket", Region: "ap-south-1", Secure: true},
		},
		{
			name: "URLCredentialsWinOverEnv",
			url:  "s3://bucket?access_key=AK&secret_key=SK&region=r1",
			env:  map[string]string{"AWS_ACCESS_KEY_ID": "EAK", "AWS_SECRET_ACCESS_KEY": "ESK", "AWS_SESSION_TOKEN": "ETOK", "AWS_REGION": "r2"},
			want: s3.Config{Endpoint: "s3.amazonaws.com", Bucket: "bucket", Region: "r1", AccessKey: "AK", SecretKey: "SK", Secure: true},
		},
		{
			name: "EndpointWithScheme",
			url:  "s3://bucket?endpoint=http%3A%2F%2F127.0.0.1%3A9000",
			want: s3.Config{Endpoint: "127.0.0.1:9000", Bucket: "bucket"},
		},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			u, err := url.Parse(c.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s3.ConfigFromURL(u)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got  %+v\nwant %+v\n(secrets: %q %q %q, want %q %q %q)", got, c.want,
					got.AccessKey, got.SecretKey, got.SessionToken, c.want.AccessKey, c.want.SecretKey, c.want.SessionToken)
			}
		})
	}

	const secret, token = "SUPERSECRET", "TOKENVALUE"
	bad := []struct {
		name, url, want string
	}{
		{"WrongScheme", "http://bucket", `scheme "http"`},
		{"MissingBucket", "s3:///prefix?secret_key=" + secret, "missing bucket"},
		{"MissingBucketUserInfo", "s3://AK:" + secret + "@/prefix", "missing bucket"},
		{"BucketWithPort", "s3://bucket:9000/p", "has a port"},
		{"BadPort", "s3://bucket?endpoint=127.0.0.1:notaport&secret_key=" + secret, "bad port"},
		{"PortOutOfRange", "s3://bucket?endpoint=127.0.0.1:70000", "bad port"},
		{"EndpointPath", "s3://bucket?endpoint=host:1/path", "want host or host:port"},
		{"EndpointBadScheme", "s3://bucket?endpoint=ftp://host:1", "scheme must be http or https"},
		{"EndpointUserInfo", "s3://bucket?endpoint=http://AK:" + secret + "@host:1", "user info"},
		{"Unknown", "s3://AK:" + secret + "@bucket?endpont=x&secret=" + secret + "&session_token=" + token, "endpont, secret"},
		{"Repeated", "s3://bucket?secret_key=" + secret + "&secret_key=" + secret + "2&access_key=AK", "secret_key given 2 times"},
		{"BadBool", "s3://bucket?secure=maybe&session_token=" + token, `secure="maybe"`},
		{"BadBoolSha", "s3://bucket?disable_sha256=yes", `disable_sha256="yes"`},
		{"BadBoolVerify", "s3://bucket?insecure_skip_verify=2", `insecure_skip_verify="2"`},
		{"BadDuration", "s3://bucket?timeout=10&secret_key=" + secret + "&access_key=AK", `timeout="10"`},
		{"NegativeDuration", "s3://bucket?timeout=-1s", `timeout="-1s"`},
		{"BadRetries", "s3://bucket?max_retries=many", `max_retries="many"`},
		{"BadLookup", "s3://bucket?lookup=virtual", `lookup="virtual"`},
		{"SecureContradictsScheme", "s3://bucket?endpoint=http://h:1&secure=true", "contradicts"},
		{"DoubleAccessKey", "s3://AK:" + secret + "@bucket?access_key=AK2", "access key given both"},
		{"BadQuery", "s3://bucket?secret_key=" + secret + "%zz", "malformed query"},
		{"Fragment", "s3://bucket#" + secret, "fragment"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			u, err := url.Parse(c.url)
			if err != nil {
				t.Fatalf("url.Parse: %v", err)
			}
			_, err = s3.ConfigFromURL(u)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			s3NoSecret(t, err, secret, token)
		})
	}
	t.Run("Nil", func(t *testing.T) {
		if _, err := s3.ConfigFromURL(nil); err == nil {
			t.Fatal("nil URL accepted")
		}
	})
}

// s3NoSecret fails if any rendering of err contains one of the secrets.
func s3NoSecret(t testing.TB, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		for _, text := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(text, s) {
				t.Fatalf("error text contains a secret: %s", text)
			}
		}
	}
}

// TestS3SecretsNeverLeak provokes every error it can with credentials that
// are easy to spot and checks that no error text contains them.
func TestS3SecretsNeverLeak(t *testing.T) {
	t.Parallel()
	const secret, token = "LEAKYSECRETKEY0123456789", "LEAKYSESSIONTOKEN0123456789"
	ctx := s3Ctx(t)
	var errs []error
	add := func(err error) {
		if err == nil {
			t.Helper()
			t.Fatal("expected an error")
		}
		errs = append(errs, err)
	}

	cfg := s3.Config{Endpoint: "127.0.0.1:1", Bucket: "bucket", AccessKey: "AK", SecretKey: secret, SessionToken: token}
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(s, secret) || strings.Contains(s, token) {
			t.Fatalf("printed config contains a secret: %s", s)
		}
	}

	// Validation and connection errors.
	for _, mod := range []func(*s3.Config){
		func(c *s3.Config) { c.Bucket = "" },
		func(c *s3.Config) { c.AccessKey = "" },
		func(c *s3.Config) { c.Lookup = "x" },
		func(c *s3.Config) { c.Endpoint = "AK:" + secret + "@host:1" },
		func(c *s3.Config) {}, // closed port
		func(c *s3.Config) { c.Secure = true },
	} {
		c := cfg
		c.RequestTimeout = time.Second
		mod(&c)
		_, err := s3.New(ctx, c)
		add(err)
	}

	// A real server refusing the credentials.
	vgw := testserver.Versitygw(t)
	c := vgw.Config(vgw.NewBucket(t), "")
	c.SecretKey, c.SessionToken = secret, token
	_, err := s3.New(ctx, c)
	add(err)
	c.SessionToken = ""
	_, err = s3.New(ctx, c)
	add(err)

	// A server that echoes the request's credentials in its error messages,
	// for every operation.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && r.URL.Path == "/bucket" || r.URL.Path == "/bucket/" {
			if r.URL.Query().Has("location") || r.Method == http.MethodHead {
				w.WriteHeader(http.StatusOK)
				return
			}
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>Echo</Code><Message>you sent %s and %s</Message></Error>`,
			secret, token)
	}))
	defer echo.Close()
	ec := s3.Config{Endpoint: strings.TrimPrefix(echo.URL, "http://"), Bucket: "bucket", Region: "us-east-1",
		Lookup: "path", AccessKey: "AK", SecretKey: secret, SessionToken: token, MaxRetries: -1}
	b, err := s3.New(ctx, ec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.PutIfAbsent(ctx, "k", []byte("x"))
	add(err)
	_, err = b.PutIfMatch(ctx, "k", []byte("x"), "etag")
	add(err)
	_, err = b.Put(ctx, "k", strings.NewReader("x"), 1)
	add(err)
	_, _, err = b.Get(ctx, "k", 0, -1)
	add(err)
	_, err = b.Head(ctx, "k")
	add(err)
	_, err = b.List(ctx, objstore.ListOptions{})
	add(err)
	add(b.Delete(ctx, "k"))
	b.Close()
	_, err = b.Head(ctx, "k")
	add(err)

	for _, err := range errs {
		s3NoSecret(t, err, secret, token)
	}
	t.Logf("checked %d errors, e.g. %v", len(errs), errs[len(errs)-3])
}

// s3FlakyProxy forwards to target, but answers the first n requests that
// match with status/code instead (forward: after forwarding them).
type s3FlakyProxy struct {
	proxy   *httputil.ReverseProxy
	match   func(*http.Request) bool
	n       atomic.Int32 // failures left
	status  int
	code    string
	forward bool // forward the request, then replace the answer (a lost reply)
	seen    atomic.Int32
}

func (p *s3FlakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.match(r) {
		p.proxy.ServeHTTP(w, r)
		return
	}
	p.seen.Add(1)
	if p.n.Add(-1) < 0 {
		p.proxy.ServeHTTP(w, r)
		return
	}
	if p.status == 0 {
		// Hang until the client gives up. The server notices a closed
		// connection only once the body has been read.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	if p.forward {
		p.proxy.ServeHTTP(httptest.NewRecorder(), r)
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(p.status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, p.code)
}

func s3Proxy(t *testing.T, s *testserver.S3Server, match func(*http.Request) bool, n int, status int, code string, forward bool) (*s3FlakyProxy, string) {
	t.Helper()
	target, _ := url.Parse("http://" + s.Endpoint)
	p := &s3FlakyProxy{proxy: httputil.NewSingleHostReverseProxy(target), match: match, status: status, code: code, forward: forward}
	p.n.Store(int32(n))
	ts := httptest.NewServer(p)
	t.Cleanup(ts.Close)
	return p, strings.TrimPrefix(ts.URL, "http://")
}

func s3IsPut(r *http.Request) bool { return r.Method == http.MethodPut }

func TestS3Retry(t *testing.T) {
	t.Parallel()
	vgw := testserver.Versitygw(t)
	ctx := s3Ctx(t)
	open := func(t *testing.T, endpoint string, retries int) *s3.Bucket {
		cfg := vgw.Config(vgw.NewBucket(t), "")
		cfg.Endpoint = endpoint
		cfg.MaxRetries = retries
		return s3OpenConfig(t, cfg)
	}

	t.Run("NoRetriesByDefault", func(t *testing.T) {
		// The caller (the WAL) owns the retry budget: by default this
		// package does not retry, and minio-go resends at most once.
		p, ep := s3Proxy(t, vgw, s3IsPut, 2, http.StatusServiceUnavailable, "SlowDown", false)
		b := open(t, ep, 0)
		if _, err := b.PutIfAbsent(ctx, "k", []byte("v")); err == nil || errors.Is(err, objstore.ErrExists) {
			t.Fatalf("got %v, want the 503", err)
		}
		if got := p.seen.Load(); got != 2 {
			t.Fatalf("%d PUT attempts, want 2 (one resend inside the attempt)", got)
		}
	})
	t.Run("SlowDownTwice", func(t *testing.T) {
		// With MaxRetries set, 503 is retried by this package; the write
		// lands once.
		p, ep := s3Proxy(t, vgw, s3IsPut, 2, http.StatusServiceUnavailable, "SlowDown", false)
		b := open(t, ep, 2)
		if _, err := b.PutIfAbsent(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if got := p.seen.Load(); got != 3 {
			t.Fatalf("%d PUT attempts, want 3", got)
		}
	})
	t.Run("ConflictTwice", func(t *testing.T) {
		// minio-go does not retry 409; we do.
		p, ep := s3Proxy(t, vgw, s3IsPut, 2, http.StatusConflict, "ConditionalRequestConflict", false)
		b := open(t, ep, 3)
		info, err := b.PutIfAbsent(ctx, "k", []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.seen.Load(); got != 3 {
			t.Fatalf("%d PUT attempts, want 3", got)
		}
		if got, _, err := objstore.ReadAll(ctx, b, "k"); err != nil || string(got) != "v" {
			t.Fatalf("read %q, %v", got, err)
		}
		if info.ETag == "" {
			t.Fatal("no ETag")
		}
	})
	t.Run("ConflictExhaustsRetries", func(t *testing.T) {
		p, ep := s3Proxy(t, vgw, s3IsPut, 100, http.StatusConflict, "ConditionalRequestConflict", false)
		b := open(t, ep, 2)
		_, err := b.PutIfAbsent(ctx, "k", []byte("v"))
		if err == nil || errors.Is(err, objstore.ErrExists) || !strings.Contains(err.Error(), "409 ConditionalRequestConflict") {
			t.Fatalf("got %v, want an ambiguous 409 error", err)
		}
		if got := p.seen.Load(); got != 3 {
			t.Fatalf("%d PUT attempts, want 3 (1 + MaxRetries 2)", got)
		}
	})
	t.Run("NoRetriesOfOurOwn", func(t *testing.T) {
		p, ep := s3Proxy(t, vgw, s3IsPut, 100, http.StatusConflict, "ConditionalRequestConflict", false)
		b := open(t, ep, -1)
		if _, err := b.PutIfAbsent(ctx, "k", []byte("v")); err == nil {
			t.Fatal("succeeded")
		}
		if got := p.seen.Load(); got != 1 {
			t.Fatalf("%d PUT attempts, want 1", got)
		}
	})
	t.Run("OtherConflictNotRetried", func(t *testing.T) {
		p, ep := s3Proxy(t, vgw, s3IsPut, 100, http.StatusConflict, "BucketNotEmpty", false)
		b := open(t, ep, 3)
		if _, err := b.PutIfAbsent(ctx, "k", []byte("v")); err == nil {
			t.Fatal("succeeded")
		}
		if got := p.seen.Load(); got != 1 {
			t.Fatalf("%d PUT attempts, want 1", got)
		}
	})
	t.Run("SlowDownBoundedByContext", func(t *testing.T) {
		_, ep := s3Proxy(t, vgw, s3IsPut, 1000, http.StatusServiceUnavailable, "SlowDown", false)
		// 20 retries with backoff up to 2s take half a minute; the context
		// cuts them short (the bound is loose: the box may be loaded).
		b := open(t, ep, 20)
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := b.PutIfAbsent(cctx, "k", []byte("v"))
		if err == nil || errors.Is(err, objstore.ErrExists) {
			t.Fatalf("got %v, want an ambiguous error", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %v with a 500ms context", d)
		}
	})
	t.Run("HungRequestBoundedByRequestTimeout", func(t *testing.T) {
		_, ep := s3Proxy(t, vgw, s3IsPut, 1000, 0, "", false)
		cfg := vgw.Config(vgw.NewBucket(t), "")
		cfg.Endpoint = ep
		cfg.RequestTimeout = 300 * time.Millisecond
		b := s3OpenConfig(t, cfg)
		start := time.Now()
		_, err := b.PutIfAbsent(ctx, "k", []byte("v"))
		if err == nil || errors.Is(err, objstore.ErrExists) {
			t.Fatalf("got %v, want an ambiguous error", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v with RequestTimeout 300ms", d)
		}
		t.Log(err)
	})
	t.Run("LostReplyReadsAs412", func(t *testing.T) {
		// The first PUT lands but its reply is replaced by a 503: the retry
		// is answered 412. This is the documented ambiguity: ErrExists
		// although the write is ours.
		p, ep := s3Proxy(t, vgw, s3IsPut, 1, http.StatusServiceUnavailable, "SlowDown", true)
		b := open(t, ep, 1)
		_, err := b.PutIfAbsent(ctx, "k", []byte("mine"))
		if !errors.Is(err, objstore.ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
		if got, _, err := objstore.ReadAll(ctx, b, "k"); err != nil || string(got) != "mine" {
			t.Fatalf("read %q, %v; want our own write", got, err)
		}
		if got := p.seen.Load(); got != 2 {
			t.Fatalf("%d PUT attempts, want 2", got)
		}
	})
}

func TestS3GetEdgeCases(t *testing.T) {
	t.Parallel()
	for _, k := range s3Kinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.start(t)
			b := s3Open(t, s, s.NewBucket(t), "g")
			ctx := s3Ctx(t)
			if _, err := b.PutIfAbsent(ctx, "empty", nil); err != nil {
				t.Fatal(err)
			}
			data := []byte("0123456789")
			if _, err := b.PutIfAbsent(ctx, "ten", data); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				key         string
				off, length int64
				want        string
			}{
				{"empty", 0, -1, ""}, {"empty", 0, 5, ""}, {"empty", 1, -1, ""}, {"empty", 0, 0, ""},
				{"ten", 0, -1, "0123456789"}, {"ten", 3, 4, "3456"}, {"ten", 9, -1, "9"}, {"ten", 9, 100, "9"},
				{"ten", 10, -1, ""}, {"ten", 10, 1, ""}, {"ten", 11, -1, ""}, {"ten", 1 << 40, 1, ""}, {"ten", 5, 0, ""},
			}
			for _, c := range cases {
				rc, info, err := b.Get(ctx, c.key, c.off, c.length)
				if err != nil {
					t.Fatalf("Get(%s, %d, %d): %v", c.key, c.off, c.length, err)
				}
				got, err := io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
				if err := rc.Close(); err != nil {
					t.Fatal(err)
				}
				_ = rc.Close() // idempotent
				wantSize := int64(len(data))
				if c.key == "empty" {
					wantSize = 0
				}
				if string(got) != c.want || info.Size != wantSize || info.Key != c.key || info.ETag == "" || strings.Contains(info.ETag, `"`) {
					t.Fatalf("Get(%s, %d, %d) = %q %+v, want %q size %d", c.key, c.off, c.length, got, info, c.want, wantSize)
				}
			}
			for _, length := range []int64{-1, 0, 5} {
				if _, _, err := b.Get(ctx, "missing", 3, length); !errors.Is(err, objstore.ErrNotFound) {
					t.Fatalf("Get(missing, 3, %d) = %v, want ErrNotFound", length, err)
				}
			}
			if _, _, err := b.Get(ctx, "ten", -1, 1); err == nil {
				t.Fatal("negative offset accepted")
			}
			// A reader abandoned half way releases its connection on Close.
			rc, _, err := b.Get(ctx, "ten", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 3)
			if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "012" {
				t.Fatalf("read %q, %v", buf, err)
			}
			rc.Close()
		})
	}
}

func TestS3PrefixIsolation(t *testing.T) {
	t.Parallel()
	s := testserver.FakeS3(t)
	bucket := s.NewBucket(t)
	ctx := s3Ctx(t)
	a := s3Open(t, s, bucket, "tenant/a")
	ab := s3Open(t, s, bucket, "tenant/ab")
	root := s3Open(t, s, bucket, "")
	for _, b := range []*s3.Bucket{a, ab} {
		if _, err := b.PutIfAbsent(ctx, "k", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []*s3.Bucket{a, ab} {
		objs, err := b.List(ctx, objstore.ListOptions{})
		if err != nil || len(objs) != 1 || objs[0].Key != "k" {
			t.Fatalf("List = %+v, %v; want just k", objs, err)
		}
	}
	objs, err := root.List(ctx, objstore.ListOptions{Prefix: "tenant/"})
	if err != nil || len(objs) != 2 || objs[0].Key != "tenant/a/k" || objs[1].Key != "tenant/ab/k" {
		t.Fatalf("root List = %+v, %v", objs, err)
	}
	// The prefix counts toward the key length limit.
	long := strings.Repeat("k", objstore.MaxKeyLen-3)
	if _, err := a.PutIfAbsent(ctx, long, nil); !errors.Is(err, objstore.ErrInvalidKey) {
		t.Fatalf("over-long key with prefix: %v, want ErrInvalidKey", err)
	}
	if _, err := root.PutIfAbsent(ctx, long, nil); err != nil {
		t.Fatalf("same key without prefix: %v", err)
	}
}

func TestS3Close(t *testing.T) {
	t.Parallel()
	s := testserver.FakeS3(t)
	b := s3Open(t, s, s.NewBucket(t), "")
	ctx := s3Ctx(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	errs := map[string]error{}
	_, errs["PutIfAbsent"] = b.PutIfAbsent(ctx, "k", nil)
	_, errs["PutIfMatch"] = b.PutIfMatch(ctx, "k", nil, "e")
	_, errs["Put"] = b.Put(ctx, "k", strings.NewReader(""), 0)
	_, _, errs["Get"] = b.Get(ctx, "k", 0, -1)
	_, errs["Head"] = b.Head(ctx, "k")
	errs["Delete"] = b.Delete(ctx, "k")
	_, errs["List"] = b.List(ctx, objstore.ListOptions{})
	for op, err := range errs {
		if !errors.Is(err, objstore.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
}

// s3Stream is a deterministic pseudo-random stream that is not an io.Seeker.
type s3Stream struct {
	r *rand.ChaCha8
	n int64
}

func (s *s3Stream) Read(p []byte) (int, error) {
	if s.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.n)]
	n, _ := s.r.Read(p)
	s.n -= int64(n)
	return n, nil
}

func TestS3PutStream(t *testing.T) {
	t.Parallel()
	const size = 40 << 20
	seed := [32]byte{1, 2, 3}
	want := sha256.New()
	if _, err := io.Copy(want, &s3Stream{r: rand.NewChaCha8(seed), n: size}); err != nil {
		t.Fatal(err)
	}
	for _, k := range s3Kinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.start(t)
			b := s3Open(t, s, s.NewBucket(t), "")
			ctx := s3Ctx(t)
			info, err := b.Put(ctx, "big", &s3Stream{r: rand.NewChaCha8(seed), n: size}, -1)
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != size || info.ETag == "" {
				t.Fatalf("Put info %+v, want size %d", info, size)
			}
			t.Logf("multipart ETag %q", info.ETag)
			rc, ginfo, err := b.Get(ctx, "big", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got := sha256.New()
			if n, err := io.Copy(got, rc); err != nil || n != size {
				t.Fatalf("read %d bytes, %v", n, err)
			}
			if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Fatal("content differs")
			}
			if ginfo.ETag != info.ETag || ginfo.Size != size {
				t.Fatalf("Get info %+v, Put info %+v", ginfo, info)
			}
			// A ranged read across a part boundary.
			rc2, _, err := b.Get(ctx, "big", 16<<20-5, 10)
			if err != nil {
				t.Fatal(err)
			}
			part, _ := io.ReadAll(rc2)
			rc2.Close()
			all := make([]byte, 16<<20+5)
			_, _ = io.ReadFull(&s3Stream{r: rand.NewChaCha8(seed), n: size}, all)
			if !bytes.Equal(part, all[16<<20-5:]) {
				t.Fatalf("ranged read across parts differs")
			}
		})
	}
}

func TestS3RacePutIfAbsent(t *testing.T) {
	t.Parallel()
	const writers = 16
	for _, k := range s3Kinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.start(t)
			bucket := s.NewBucket(t)
			// Each writer has its own client, as separate processes would.
			bs := make([]*s3.Bucket, writers)
			for i := range bs {
				bs[i] = s3Open(t, s, bucket, "")
			}
			ctx := s3Ctx(t)
			for round := range 3 {
				key := fmt.Sprintf("race/%d", round)
				var wins atomic.Int32
				var winner atomic.Value
				var wg sync.WaitGroup
				start := make(chan struct{})
				for g := range writers {
					wg.Go(func() {
						<-start
						body := fmt.Sprintf("writer-%d", g)
						_, err := bs[g].PutIfAbsent(ctx, key, []byte(body))
						switch {
						case err == nil:
							wins.Add(1)
							winner.Store(body)
						case errors.Is(err, objstore.ErrExists):
						default:
							t.Errorf("PutIfAbsent: %v", err)
						}
					})
				}
				close(start)
				wg.Wait()
				if n := wins.Load(); n != 1 {
					t.Fatalf("round %d: %d winners, want 1", round, n)
				}
				got, _, err := objstore.ReadAll(ctx, bs[0], key)
				if err != nil || string(got) != winner.Load().(string) {
					t.Fatalf("round %d: stored %q (%v), winner %q", round, got, err, winner.Load())
				}
			}
		})
	}
}

// TestS3TLS talks HTTPS to gofakes3 behind httptest's TLS server: rejected
// without the CA, accepted with CAFile or InsecureSkipVerify.
func TestS3TLS(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(gofakes3.New(s3mem.New()).Server())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake is expected
	ts.StartTLS()
	defer ts.Close()
	ctx := s3Ctx(t)
	cfg := s3.Config{Endpoint: strings.TrimPrefix(ts.URL, "https://"), Bucket: "tls", Region: "us-east-1",
		Lookup: "path", AccessKey: "ak", SecretKey: "sk", Secure: true, RequestTimeout: 5 * time.Second}

	mk, err := minio.New(cfg.Endpoint, &minio.Options{Creds: credentials.NewStaticV4("ak", "sk", ""), Secure: true,
		Transport: ts.Client().Transport, Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := mk.MakeBucket(ctx, "tls", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}

	if _, err := s3.New(ctx, cfg); !errors.Is(err, s3.ErrUnreachable) {
		t.Fatalf("unknown CA: %v, want ErrS3Unreachable", err)
	} else {
		t.Log(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*s3.Config){
		"CAFile":             func(c *s3.Config) { c.CAFile = ca },
		"InsecureSkipVerify": func(c *s3.Config) { c.InsecureSkipVerify = true },
	} {
		c := cfg
		mod(&c)
		b, err := s3.New(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := b.Put(ctx, "k-"+name, strings.NewReader("x"), 1); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b.Close()
	}
}

func ExampleConfigFromURL() {
	u, err := url.Parse("s3://AKID:secret@logs/raft/cluster1?endpoint=127.0.0.1:9000&secure=false&region=us-east-1&lookup=path")
	if err != nil {
		panic(err)
	}
	cfg, err := s3.ConfigFromURL(u)
	if err != nil {
		panic(err)
	}
	fmt.Println(cfg.Endpoint, cfg.Bucket, cfg.Prefix, cfg.Secure, cfg.Lookup)
	fmt.Println(cfg) // secrets are redacted
	// Then: bucket, err := s3.New(ctx, cfg)

	// Output:
	// 127.0.0.1:9000 logs raft/cluster1 false path
	// s3.Config{Endpoint:"127.0.0.1:9000" Bucket:"logs" Prefix:"raft/cluster1" Region:"us-east-1" AccessKey:"AKID" SecretKey:"REDACTED" SessionToken:"" Secure:false InsecureSkipVerify:false CAFile:"" Lookup:"path" DisableContentSha256:false MaxRetries:0 RequestTimeout:0s}
}

// Linking objstore/s3 registers the s3 scheme with objstore.Open.
func TestOpenRegistersScheme(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"s3://", "bucket"},
		{"s3://ak:topsecret@bucket/p?endpoint=127.0.0.1:1&bogus=1", "bogus"},
	} {
		b, err := objstore.Open(context.Background(), c.url)
		if err == nil {
			b.Close()
			t.Fatalf("Open(%q) succeeded", c.url)
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Open(%q) = %q, want it to mention %q and not the secret", c.url, err, c.want)
		}
	}
}
