package bench

// Comparison of hashicorp/raft LogStores, measured in the same run:
//
//   - ours-file: woodpecker's adapters/hashiraft on file:// (a temp dir,
//     metadata in the bucket): every object is created with fsync + link +
//     directory fsync.
//   - ours-vgw: the same on a versitygw child process (S3 over loopback,
//     signed payloads; versitygw itself does not fsync) with metadata in an
//     embedded etcd (no fsync). Skipped when the versitygw binary is missing
//     (../.cache/bin/versitygw, or $WOODPECKER_VERSITYGW; `make` in the main
//     module builds it).
//   - raftwal: github.com/hashicorp/raft-wal v0.4.0 on a temp dir.
//   - boltdb: github.com/hashicorp/raft-boltdb/v2 v2.3.0 on a temp dir.
//
// All temp dirs are on the same filesystem (os.TempDir()).
//
// Benchmarks:
//
//   - StoreLogs/<store>/<n>x<size>: synchronous StoreLogs calls of 1 or 64
//     entries (raft's MaxAppendEntries default) of 128 B or 4 KiB, back to
//     back, as raft's leader loop and a follower's AppendEntries handler make
//     them. Reports per-call p50/p99 latency (µs), entries/s and payload MB/s.
//   - GetLogRecent/<store>: random GetLog over the most recent 1024 of 10240
//     entries of 128 B (what replication and apply read).
//   - ScanCold/<store>: GetLog front to back over 8192 entries of 128 B
//     (written 64 per call) on a freshly reopened store, as NewRaft's startup
//     does; the reopen is not timed (reported as open-us). "Cold" means the
//     store's own caches are empty; the OS page cache is warm for everyone.
//   - Floor/*: the filesystem primitives under each design (see
//     BenchmarkFloor), to read the StoreLogs numbers against.
//
// Run: cd bench && go test -run '^$' -bench . -benchtime 2s
// Syscall and fsync counts per StoreLogs: ./syscalls.sh (needs strace).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
)

// logStore is what every compared store offers.
type logStore interface {
	raft.LogStore
	Close() error
}

// location is one store's storage; open (re)opens a store on it.
type location struct {
	open func() (logStore, error)
}

type storeKind struct {
	name string
	// newLocation makes fresh, empty storage for b (cleaned up with b).
	newLocation func(b *testing.B) location
}

var storeKinds = []storeKind{
	{"ours-file", func(b *testing.B) location {
		u := "file://" + b.TempDir()
		return location{open: func() (logStore, error) {
			return hashiraft.Open(context.Background(), u, "", hashiraft.Options{})
		}}
	}},
	{"ours-vgw", func(b *testing.B) location {
		srv := versitygw(b)
		bucket := srv.newBucket(b)
		meta := srv.etcdURL("bench" + randHex(6))
		return location{open: func() (logStore, error) {
			return hashiraft.Open(context.Background(), srv.bucketURL(bucket, "raft"), meta, hashiraft.Options{})
		}}
	}},
	{"raftwal", func(b *testing.B) location {
		dir := b.TempDir()
		return location{open: func() (logStore, error) {
			// raft-wal v0.4.0's Close leaves its meta DB (bolt, flocked)
			// open, so a reopen in the same process would block: own it.
			md := &metadb.BoltMetaDB{}
			w, err := raftwal.Open(dir, raftwal.WithMetaStore(md))
			if err != nil {
				md.Close()
				return nil, err
			}
			return walStore{w, md}, nil
		}}
	}},
	{"boltdb", func(b *testing.B) location {
		p := filepath.Join(b.TempDir(), "raft.db")
		return location{open: func() (logStore, error) { return raftboltdb.NewBoltStore(p) }}
	}},
}

type walStore struct {
	*raftwal.WAL
	md *metadb.BoltMetaDB
}

func (s walStore) Close() error {
	return errors.Join(s.WAL.Close(), s.md.Close())
}

func openStore(b *testing.B, loc location) logStore {
	b.Helper()
	s, err := loc.open()
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func makeLogs(first uint64, n, size int) []*raft.Log {
	out := make([]*raft.Log, n)
	for k := range out {
		data := make([]byte, size)
		_, _ = rand.Read(data) // incompressible
		out[k] = &raft.Log{Index: first + uint64(k), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	}
	return out
}

// fill stores entries 1..n of size bytes, 64 per call.
func fill(b *testing.B, s logStore, n, size int) {
	b.Helper()
	for i := 1; i <= n; i += 64 {
		if err := s.StoreLogs(makeLogs(uint64(i), min(64, n-i+1), size)); err != nil {
			b.Fatal(err)
		}
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-us")
}

func sizeName(size int) string {
	if size%1024 == 0 {
		return fmt.Sprintf("%dKiB", size/1024)
	}
	return fmt.Sprintf("%dB", size)
}

func BenchmarkStoreLogs(b *testing.B) {
	for _, sk := range storeKinds {
		for _, n := range []int{1, 64} {
			for _, size := range []int{128, 4096} {
				b.Run(fmt.Sprintf("%s/%dx%s", sk.name, n, sizeName(size)), func(b *testing.B) {
					s := openStore(b, sk.newLocation(b))
					defer s.Close()
					batch := makeLogs(1, n, size)
					next := uint64(1)
					lat := make([]time.Duration, 0, b.N)
					b.SetBytes(int64(n * size))
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						for k, l := range batch {
							l.Index = next + uint64(k)
						}
						t0 := time.Now()
						if err := s.StoreLogs(batch); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t0))
						next += uint64(n)
					}
					b.StopTimer()
					b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
					reportLatency(b, lat)
				})
			}
		}
	}
}

func BenchmarkGetLogRecent(b *testing.B) {
	const total, recent = 10240, 1024
	for _, sk := range storeKinds {
		b.Run(sk.name, func(b *testing.B) {
			s := openStore(b, sk.newLocation(b))
			defer s.Close()
			fill(b, s, total, 128)
			var l raft.Log
			b.ReportAllocs()
			b.ResetTimer()
			x := uint64(0)
			for range b.N {
				x += 7919 // prime: walks all of the window
				idx := total - recent + 1 + x%recent
				if err := s.GetLog(idx, &l); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkScanCold(b *testing.B) {
	const total = 8192
	for _, sk := range storeKinds {
		b.Run(sk.name, func(b *testing.B) {
			loc := sk.newLocation(b)
			s := openStore(b, loc)
			fill(b, s, total, 128)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			var opening time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				t0 := time.Now()
				s := openStore(b, loc) // a restarted node: empty caches
				opening += time.Since(t0)
				b.StartTimer()
				var l raft.Log
				for i := uint64(1); i <= total; i++ {
					if err := s.GetLog(i, &l); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(opening.Microseconds())/float64(b.N), "open-us")
		})
	}
}

// ---- versitygw + embedded etcd, shared by the whole run ----

type vgwServer struct {
	endpoint, access, secret string
	etcdAddr                 string
	err                      error
}

var (
	vgwOnce sync.Once
	vgw     vgwServer
	stopAll []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range slices.Backward(stopAll) {
		f()
	}
	os.Exit(code)
}

func versitygwBinary() (string, error) {
	if p := os.Getenv("WOODPECKER_VERSITYGW"); p != "" {
		return p, nil
	}
	p, err := filepath.Abs(filepath.Join("..", ".cache", "bin", "versitygw"))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%v (run `make` in the main module, or set WOODPECKER_VERSITYGW)", err)
	}
	return p, nil
}

// versitygw starts (once per run) versitygw and an embedded etcd, or skips b.
func versitygw(b *testing.B) *vgwServer {
	vgwOnce.Do(func() { vgw.err = vgw.start() })
	if vgw.err != nil {
		b.Skipf("versitygw+etcd unavailable: %v", vgw.err)
	}
	return &vgw
}

func (s *vgwServer) start() error {
	bin, err := versitygwBinary()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-vgw-")
	if err != nil {
		return err
	}
	stopAll = append(stopAll, func() { os.RemoveAll(dir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	s.endpoint, s.access, s.secret = addr, "benchaccess", "benchsecret"+randHex(8)
	cmd := exec.Command(bin, "--port", addr, "--access", s.access, "--secret", s.secret, "--quiet", "posix", filepath.Join(dir, "s3"))
	if err := os.Mkdir(filepath.Join(dir, "s3"), 0o755); err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	stopAll = append(stopAll, func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusForbidden {
				break
			}
			return fmt.Errorf("versitygw GET / answered %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw not ready: %v\n%s", err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Embedded etcd, tuned as the main module's tests tune it (no fsync).
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = filepath.Join(dir, "etcd")
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{local}
	cfg.AdvertiseClientUrls = []url.URL{local}
	cfg.ListenPeerUrls = []url.URL{local}
	cfg.AdvertisePeerUrls = []url.URL{local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.UnsafeNoFsync = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("embedded etcd: %w", err)
	}
	stopAll = append(stopAll, e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(20 * time.Second):
		return errors.New("embedded etcd not ready after 20s")
	}
	s.etcdAddr = e.Clients[0].Addr().String()
	return nil
}

func (s *vgwServer) newBucket(b *testing.B) string {
	name := "wp-" + randHex(8)
	c, err := minio.New(s.endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s.access, s.secret, ""),
		BucketLookup: minio.BucketLookupPath,
		Region:       "us-east-1",
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		b.Fatal(err)
	}
	return name
}

func (s *vgwServer) bucketURL(bucket, prefix string) string {
	q := url.Values{}
	q.Set("endpoint", s.endpoint)
	q.Set("region", "us-east-1")
	q.Set("secure", "false")
	q.Set("lookup", "path")
	q.Set("access_key", s.access)
	q.Set("secret_key", s.secret)
	return (&url.URL{Scheme: "s3", Host: bucket, Path: "/" + prefix, RawQuery: q.Encode()}).String()
}

func (s *vgwServer) etcdURL(prefix string) string {
	return (&url.URL{Scheme: "etcd", Host: s.etcdAddr, Path: "/" + prefix}).String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// BenchmarkFloor measures the filesystem primitives under each design, in
// the same run and temp filesystem, so the StoreLogs numbers can be read
// against their floor (233 B per write, the size of one 128 B entry's
// fragment):
//
//   - object: what the file backend does per fragment: create a temp file
//     (O_CREAT|O_EXCL), write, fsync, link() to the final name, fsync the
//     directory, unlink the temp. create-us is the p50 of the create alone.
//   - object-precreated: the same with the temp file created beforehand (off
//     the timed path) and the directory kept open.
//   - append: what raft-wal does: pwrite into a preallocated file + fsync.
func BenchmarkFloor(b *testing.B) {
	data := make([]byte, 233)
	_, _ = rand.Read(data)
	b.Run("object", func(b *testing.B) {
		root := b.TempDir()
		tmp, dst := filepath.Join(root, "tmp"), filepath.Join(root, "dst")
		mkdirs(b, tmp, dst)
		lat, create := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			p := filepath.Join(tmp, fmt.Sprintf("t%d", i))
			t0 := time.Now()
			fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			create = append(create, time.Since(t0))
			must(b, write(fd, data), unix.Fsync(fd), unix.Close(fd),
				unix.Link(p, filepath.Join(dst, fmt.Sprintf("%020d", i))))
			d, err := unix.Open(dst, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			must(b, err, unix.Fsync(d), unix.Close(d), unix.Unlink(p))
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		reportLatency(b, lat)
		slices.Sort(create)
		b.ReportMetric(float64(create[len(create)/2].Nanoseconds())/1e3, "create-us")
	})
	b.Run("object-precreated", func(b *testing.B) {
		root := b.TempDir()
		tmp, dst := filepath.Join(root, "tmp"), filepath.Join(root, "dst")
		mkdirs(b, tmp, dst)
		dfd, err := unix.Open(dst, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		must(b, err)
		defer unix.Close(dfd)
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			p := filepath.Join(tmp, fmt.Sprintf("t%d", i))
			fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
			must(b, err)
			b.StartTimer()
			t0 := time.Now()
			must(b, write(fd, data), unix.Fsync(fd),
				unix.Linkat(unix.AT_FDCWD, p, dfd, fmt.Sprintf("%020d", i), 0), unix.Fsync(dfd))
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			must(b, unix.Close(fd), unix.Unlink(p))
			b.StartTimer()
		}
		b.StopTimer()
		reportLatency(b, lat)
	})
	b.Run("append", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "seg"))
		must(b, err)
		defer f.Close()
		must(b, unix.Fallocate(int(f.Fd()), 0, 0, 64<<20), f.Sync())
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			_, err := f.WriteAt(data, int64(i%(64<<20/len(data)))*int64(len(data)))
			must(b, err, f.Sync())
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		reportLatency(b, lat)
	})
}

func mkdirs(b *testing.B, dirs ...string) {
	for _, d := range dirs {
		must(b, os.Mkdir(d, 0o755))
	}
}

func write(fd int, data []byte) error {
	n, err := unix.Write(fd, data)
	if err == nil && n != len(data) {
		err = fmt.Errorf("short write: %d of %d", n, len(data))
	}
	return err
}

func must(b *testing.B, errs ...error) {
	b.Helper()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}
