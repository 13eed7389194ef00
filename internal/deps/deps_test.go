package deps

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The heavy dependencies: the S3 client, etcd's client and server, gRPC,
// zap, and the Raft libraries.
var (
	minio     = "github.com/minio/"
	etcd      = "go.etcd.io/etcd/"
	grpc      = "google.golang.org/grpc"
	zap       = "go.uber.org/zap"
	hashiRaft = "github.com/hashicorp/raft"
	etcdRaft  = "go.etcd.io/raft/"
)

// forbidden lists, per package pattern (as go list takes it), the import
// path prefixes none of its packages may depend on, directly or not.
var forbidden = []struct {
	pattern string
	not     []string
	why     string
}{
	{"./wal/...", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "the engine links no backend and no Raft library"},
	{"./objstore", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "the bucket contract is a leaf"},
	{"./objstore/mem", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "local backends link nothing remote"},
	{"./objstore/file", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "local backends link nothing remote"},
	{"./meta", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "the metadata contract is a leaf"},
	{"./meta/mem", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "local backends link nothing remote"},
	{"./meta/bucket", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "the bucket metadata store needs only a bucket"},
	{"./cache", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft}, "the cache is a leaf"},
	{"./logstore", []string{minio, etcd, grpc, zap, hashiRaft, etcdRaft, "github.com/woodpecker-wal/woodpecker/wal"}, "the adapters' seam links no engine"},
	{"./adapters/hashiraft", []string{minio, etcd, grpc, zap, etcdRaft}, "a hashicorp/raft user on file:// links neither minio nor etcd"},
	{"./adapters/etcdraft", []string{minio, etcd, grpc, zap, hashiRaft}, "an etcd raft user on file:// links neither minio nor etcd's client"},
}

// forbiddenInTests lists, per package pattern, what not even its test
// binaries may link: an object store's tests link no Raft library (not even
// the one inside etcd's embedded server).
var forbiddenInTests = []struct {
	pattern string
	not     []string
}{
	{"./objstore/...", []string{hashiRaft, etcdRaft, "go.etcd.io/etcd/server"}},
	{"./meta/bucket", []string{hashiRaft, etcdRaft, "go.etcd.io/etcd/server"}},
	{"./meta/mem", []string{hashiRaft, etcdRaft, "go.etcd.io/etcd/server"}},
}

// TestForbiddenImports fails when a package depends on what it must not
// (in the manner of pebble's forbidden-imports test): forbidden without its
// tests (go list -deps), forbiddenInTests with them (-test).
func TestForbiddenImports(t *testing.T) {
	for _, f := range forbidden {
		check(t, f.pattern, f.not, f.why)
	}
	for _, f := range forbiddenInTests {
		check(t, f.pattern, f.not, "its tests link no Raft library", "-test")
	}
}

// check fails t for each package pattern depends on (go list -deps, with
// flags) whose import path starts with one of not.
func check(t *testing.T, pattern string, not []string, why string, flags ...string) {
	t.Helper()
	args := append(append([]string{"list", "-deps"}, flags...), pattern)
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatalf("go %s listed nothing", strings.Join(args, " "))
	}
	for _, d := range deps {
		for _, bad := range not {
			if strings.HasPrefix(d, bad) {
				t.Errorf("%s %s depends on %s (%s): %s", pattern, strings.Join(flags, " "), d, bad, why)
			}
		}
	}
}
