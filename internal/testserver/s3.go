package testserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/woodpecker-wal/woodpecker/internal/testserver/lifecycle"
	s3store "github.com/woodpecker-wal/woodpecker/objstore/s3"
)

// Kinds of S3Server.
const (
	KindVersitygw = "versitygw"
	KindGofakes3  = "gofakes3"
)

// VersitygwVersion is the versitygw release the tests run against.
const VersitygwVersion = "v1.8.0"

// S3Server is an S3-compatible server running for one test (or benchmark).
// Stop and Restart take it down and bring it back on the same address with
// the same objects, to test outages.
type S3Server struct {
	// Endpoint is host:port of the plain-HTTP S3 API on 127.0.0.1. It stays
	// the same across Stop and Restart.
	Endpoint string
	// AccessKey and SecretKey are the root credentials. gofakes3 checks no
	// credentials at all.
	AccessKey, SecretKey string
	// Dir is versitygw's posix root (empty for gofakes3).
	Dir string
	// Kind is KindVersitygw or KindGofakes3.
	Kind string
	// Pid is the id of the versitygw process started last (0 for
	// gofakes3). Restart changes it: read it from the goroutine that calls
	// Restart.
	Pid int

	stderr  *SyncBuffer  // versitygw's output across restarts, for failure messages
	bin     string       // the versitygw binary
	handler http.Handler // gofakes3's handler, holding its objects across restarts
	run     lifecycle.Running
}

// Output returns what versitygw printed so far (empty for gofakes3).
func (s *S3Server) Output() string {
	if s.stderr == nil {
		return ""
	}
	return s.stderr.String()
}

// NewBucket creates a fresh, randomly named bucket and returns its name.
func (s *S3Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := "wp-" + lifecycle.RandHex(8)
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		BucketLookup: minio.BucketLookupPath,
		Region:       "us-east-1",
	})
	if err != nil {
		t.Fatalf("testserver: %s: minio client: %v", s.Kind, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("testserver: %s: make bucket %s: %v%s", s.Kind, name, err, s.outputSuffix())
	}
	return name
}

// OpenBucket opens a client of a fresh bucket (NewBucket) with the given
// key prefix, closed on t's cleanup.
func (s *S3Server) OpenBucket(t testing.TB, prefix string) *s3store.Bucket {
	t.Helper()
	b, err := s3store.New(context.Background(), s.Config(s.NewBucket(t), prefix))
	if err != nil {
		t.Fatalf("testserver: %s: open bucket: %v", s.Kind, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// Config returns an objstore configuration for bucket (and key prefix) on
// this server. For gofakes3 it sets DisableContentSha256: gofakes3 v1.2.0
// stores the aws-chunked framing of streaming-signed (STREAMING-AWS4-
// HMAC-SHA256-PAYLOAD) uploads as part of multipart objects, corrupting them.
func (s *S3Server) Config(bucket, prefix string) s3store.Config {
	return s3store.Config{
		Endpoint:             s.Endpoint,
		Bucket:               bucket,
		Prefix:               prefix,
		Region:               "us-east-1",
		AccessKey:            s.AccessKey,
		SecretKey:            s.SecretKey,
		Lookup:               "path",
		DisableContentSha256: s.Kind == KindGofakes3,
		RequestTimeout:       30 * time.Second,
	}
}

// URL returns an s3:// URL that s3store.ConfigFromURL turns into Config(bucket, prefix).
func (s *S3Server) URL(bucket, prefix string) string {
	q := url.Values{}
	q.Set("endpoint", s.Endpoint)
	q.Set("region", "us-east-1")
	q.Set("secure", "false")
	q.Set("lookup", "path")
	q.Set("access_key", s.AccessKey)
	q.Set("secret_key", s.SecretKey)
	q.Set("timeout", "30s")
	if s.Kind == KindGofakes3 {
		q.Set("disable_sha256", "true")
	}
	u := url.URL{Scheme: "s3", Host: bucket, Path: "/" + prefix, RawQuery: q.Encode()}
	return u.String()
}

func (s *S3Server) outputSuffix() string {
	if out := s.Output(); out != "" {
		return "\nversitygw output:\n" + out
	}
	return ""
}

// FakeS3 starts gofakes3 (in memory, in process) on 127.0.0.1 for the test.
// It is fast but checks no credentials, ignores conditional GETs, and needs
// DisableContentSha256 for multipart uploads (Config sets it). Its objects
// survive Stop and Restart (they live in this process).
func FakeS3(t testing.TB) *S3Server {
	t.Helper()
	s := &S3Server{
		AccessKey: "fakeaccess",
		SecretKey: "fakesecret" + lifecycle.RandHex(8),
		Kind:      KindGofakes3,
		handler:   gofakes3.New(s3mem.New()).Server(),
	}
	ts := httptest.NewServer(s.handler)
	s.Endpoint = strings.TrimPrefix(ts.URL, "http://")
	s.run.Set(ts.Close)
	t.Cleanup(s.Stop)
	return s
}

// Stop takes the server down: versitygw is killed (SIGKILL to its process
// group, as in a crash; requests in flight get their connections reset) and
// waited for; gofakes3 stops listening and closes its connections. The
// objects stay (in Dir, or in memory) for Restart. Stop returns once the
// port refuses connections. It is a no-op when the server is stopped, and
// safe to call from any goroutine.
func (s *S3Server) Stop() { s.run.Down() }

// Running reports whether the server is up (not stopped).
func (s *S3Server) Running() bool { return s.run.Up() }

// Restart starts the server again on the same Endpoint with the same
// objects and credentials (stopping it first if it is running), and waits
// until it serves. A port found busy is retried for a few seconds. It fails
// the test if the server cannot come back; call it from the test's
// goroutine.
func (s *S3Server) Restart(t testing.TB) {
	t.Helper()
	s.run.Restart(t, s.Kind+": restart on "+s.Endpoint, func(attempt int) error {
		if s.Kind == KindVersitygw {
			fmt.Fprintf(s.stderr, "--- testserver: restarting versitygw on %s (attempt %d) ---\n", s.Endpoint, attempt)
			return s.startVersitygw(s.Endpoint)
		}
		return s.startFake()
	})
}

func (s *S3Server) startFake() error {
	ln, err := net.Listen("tcp", s.Endpoint)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: %s: %v", lifecycle.ErrPortClash, s.Endpoint, err)
		}
		return err
	}
	ts := httptest.NewUnstartedServer(s.handler)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	s.run.Set(ts.Close)
	return nil
}

// Versitygw starts a versitygw posix gateway as a child process on a free
// 127.0.0.1 port, rooted in a fresh t.TempDir(), and stops it (SIGKILL to its
// process group) in t.Cleanup. The child also dies with the test binary
// (Pdeathsig). The binary is $WOODPECKER_VERSITYGW, else
// <module root>/.cache/bin/versitygw, built there with `go install` under a
// file lock if missing. It fails the test (never skips) when it cannot start.
// Stop kills it (as in a crash) and Restart starts a new process on the same
// port, directory and credentials.
func Versitygw(t testing.TB) *S3Server {
	t.Helper()
	s := &S3Server{
		AccessKey: "wpaccess" + lifecycle.RandHex(4),
		SecretKey: "wpsecret" + lifecycle.RandHex(12),
		Dir:       t.TempDir(),
		Kind:      KindVersitygw,
		bin:       VersitygwBinary(t),
		stderr:    &SyncBuffer{},
	}
	t.Cleanup(func() {
		s.Stop()
		if out := s.stderr.String(); t.Failed() && out != "" {
			t.Logf("versitygw output:\n%s", out)
		}
	})
	var lastErr error
	for range 5 {
		port, err := s3FreePort()
		if err != nil {
			t.Fatalf("testserver: versitygw: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", port)
		err = s.startVersitygw(addr)
		if err == nil {
			s.Endpoint = addr
			return s
		}
		lastErr = err
		if !errors.Is(err, lifecycle.ErrPortClash) {
			break
		}
	}
	t.Fatalf("testserver: versitygw: %v", lastErr)
	return nil
}

// startVersitygw starts versitygw on addr and waits until it serves.
func (s *S3Server) startVersitygw(addr string) error {
	out := &SyncBuffer{} // this process's output; s.stderr gets all of them
	w := io.MultiWriter(out, s.stderr)
	// Without --keep-alive (versitygw closes each connection after one
	// request): with it, v1.8.0 leaves the unread body of a PUT it refused
	// (412) on the connection and answers it as the next request
	// ("400 BadRequest ... parsing the HTTP request").
	cmd := exec.Command(s.bin,
		"--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey, "--quiet",
		"posix", s.Dir)
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.Env = s3ChildEnv()
	// Own process group, so Stop kills everything it may spawn; SIGKILL
	// when the thread that started it dies (the Go runtime does not retire
	// threads of goroutines that do not lock them, so in practice: when the
	// test binary exits).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}

	// Ready when an unauthenticated GET / answers (403).
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			msg := out.String()
			if strings.Contains(msg, "address already in use") {
				return fmt.Errorf("%w: %s", lifecycle.ErrPortClash, addr)
			}
			return fmt.Errorf("exited before it was ready (%v)\noutput:\n%s", waitErr, msg)
		default:
		}
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusForbidden {
				break
			}
			kill()
			return fmt.Errorf("GET / on %s answered %d, want 403 (another server on the port?)\noutput:\n%s",
				addr, resp.StatusCode, out.String())
		}
		if time.Now().After(deadline) {
			kill()
			return fmt.Errorf("not ready on %s after 15s: %v\noutput:\n%s", addr, err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Pid = cmd.Process.Pid
	s.run.Set(kill)
	return nil
}

// s3ChildEnv is the environment without versitygw's own configuration
// variables, so the host's settings cannot change the test server.
func s3ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "VGW_") || strings.HasPrefix(name, "ROOT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// VersitygwBinary returns the path of the versitygw binary, building it if
// needed (see Versitygw). It fails the test when the binary cannot be had.
func VersitygwBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WOODPECKER_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("testserver: WOODPECKER_VERSITYGW=%s: %v", p, err)
		}
		return p
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("testserver: versitygw: %v", err)
	}
	binDir := filepath.Join(root, ".cache", "bin")
	bin := filepath.Join(binDir, "versitygw")
	if s3Executable(bin) {
		return bin
	}

	// Build it once, while holding a lock: test packages run in parallel.
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatalf("testserver: versitygw: %v", err)
	}
	lockPath := filepath.Join(root, ".cache", "versitygw.lock")
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("testserver: versitygw: lock: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testserver: versitygw: flock %s: %v", lockPath, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if s3Executable(bin) {
		return bin // another package built it while we waited
	}
	t.Logf("testserver: building versitygw %s into %s (about a minute)", VersitygwVersion, binDir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install",
		"github.com/versity/versitygw/cmd/versitygw@"+VersitygwVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+binDir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil || !s3Executable(bin) {
		t.Fatalf("testserver: cannot build versitygw %s into %s (set WOODPECKER_VERSITYGW to a binary, "+
			"or run `GOBIN=%s go install github.com/versity/versitygw/cmd/versitygw@%s`): %v\n%s",
			VersitygwVersion, binDir, binDir, VersitygwVersion, err, out)
	}
	return bin
}

func s3Executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// s3FreePort returns a port that was free a moment ago.
func s3FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}
