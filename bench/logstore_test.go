package bench

// Comparison of hashicorp/raft LogStores, measured in the same run:
//
//   - ours-file: woodpecker's adapters/hashiraft on file:// (a temp dir,
//     metadata in the bucket): every object is created with fsync + link +
//     directory fsync.
//   - ours-tiered: the same in tiered mode (wal.Config.LocalDir, defaults
//     otherwise): StoreLogs returns once its entries are written and
//     fdatasynced to a local segment (one group commit); they are uploaded
//     to the file:// bucket in the background every UploadInterval (1s).
//     Bucket and LocalDir are both in the temp dir (tiered_test.go).
//   - ours-vgw: the same on a versitygw child process (S3 over loopback,
//     signed payloads; versitygw itself does not fsync) with metadata in an
//     embedded etcd (no fsync), both started once per run by the main
//     module's internal/testserver, as its tests start them (the binary is
//     $WOODPECKER_VERSITYGW, else ../.cache/bin/versitygw, built if missing).
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
//     them (raftbench.StoreLogs, the loop adapters/hashiraft's benchmark
//     runs). Reports per-call p50/p99 latency (µs), entries/s and payload
//     MB/s.
//   - GetLogRecent/<store>: random GetLog over the most recent 1024 of 10240
//     entries of 128 B (what replication and apply read).
//   - ScanCold/<store>: GetLog front to back over 8192 entries of 128 B
//     (written 64 per call) on a freshly reopened store, as NewRaft's startup
//     does (raftbench.ScanCold); the reopen is not timed (reported as
//     open-µs). "Cold" means the
//     store's own caches are empty; the OS page cache is warm for everyone.
//   - Floor/*: the filesystem primitives under each design (see
//     BenchmarkFloor), to read the StoreLogs numbers against.
//   - StoreLogsInterleaved/<n>x<size>: ours-tiered, raftwal, boltdb and
//     ours-file in one benchmark, taking turns in 7 short rounds; p50/p99
//     are medians over the rounds (interleave_test.go, tiered_test.go).
//   - Save/<shape>: etcd raft's Save, etcdraft in tiered mode against
//     etcd's own WAL + MemoryStorage, interleaved (etcd_test.go).
//   - TieredPUTRate, TieredUploadLag: PUTs per second and upload lag of a
//     tiered writer at a fixed append rate (tiered_test.go).
//
// Run: cd bench && go test -run '^$' -bench . -benchtime 2s
// Syscall and fsync counts per StoreLogs: ./syscalls.sh (needs strace).

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"golang.org/x/sys/unix"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/internal/latency"
	"github.com/woodpecker-wal/woodpecker/internal/raftbench"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
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
	{"ours-tiered", func(b *testing.B) location { return tieredLocation(b, false) }},
	{"ours-vgw", func(b *testing.B) location {
		s3, etcd := versitygw(b)
		bucket, meta := s3.URL(s3.NewBucket(b), "raft"), etcd.URL(etcd.NewPrefix())
		return location{open: func() (logStore, error) {
			return hashiraft.Open(context.Background(), bucket, meta, hashiraft.Options{})
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
					loc := sk.newLocation(b)
					if sk.name == "ours-tiered" {
						loc = tieredLocation(b, true) // see openTiered
					}
					s := openStore(b, loc)
					defer s.Close()
					if ts, ok := s.(tieredStore); ok {
						tierCounters(b, ts.reg, func() { raftbench.StoreLogs(b, s, n, size) })
						return
					}
					raftbench.StoreLogs(b, s, n, size)
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
			raftbench.Fill(b, s, total, 128)
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
			raftbench.Fill(b, s, total, 128)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			raftbench.ScanCold(b, total, func() (raft.LogStore, func() error, error) {
				s, err := loc.open() // a restarted node: empty caches
				if err != nil {
					return nil, nil, err
				}
				return s, s.Close, nil
			})
		})
	}
}

// ---- versitygw + embedded etcd, shared by the whole run ----

// servers starts them on first use (internal/testserver, as the main
// module's tests do) and TestMain stops them after the last benchmark.
var (
	owner   *testserver.ProgramTB
	servers *testserver.Servers
	etcdSrv *etcdserver.Shared
)

func TestMain(m *testing.M) {
	var err error
	if owner, err = testserver.NewProgramTB("bench", false, log.Printf); err != nil {
		log.Fatal(err)
	}
	servers = testserver.NewServers(owner)
	etcdSrv = etcdserver.NewShared(owner)
	code := m.Run()
	owner.Close()
	os.Exit(code)
}

// versitygw returns the run's versitygw and embedded etcd, starting them
// first; it fails b if they cannot start.
func versitygw(b *testing.B) (*testserver.S3Server, *etcdserver.Server) {
	var (
		s3   *testserver.S3Server
		etcd *etcdserver.Server
	)
	if err := owner.Run(func() { s3, etcd = servers.Versitygw(), etcdSrv.Get() }); err != nil {
		b.Fatalf("versitygw + etcd: %v", err)
	}
	return s3, etcd
}

// BenchmarkFloor measures the filesystem primitives under each design, in
// the same run and temp filesystem, so the StoreLogs numbers can be read
// against their floor (233 B per write, the size of one 128 B entry's
// fragment):
//
//   - object: what the file backend does per fragment: create a temp file
//     (O_CREAT|O_EXCL), write, fsync, link() to the final name, fsync the
//     directory, unlink the temp. create-p50-µs is the p50 of the create
//     alone.
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
		latency.Report(b, "", lat)
		latency.Report(b, "create-", create)
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
		latency.Report(b, "", lat)
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
		latency.Report(b, "", lat)
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
