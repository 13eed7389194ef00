package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/woodpecker-wal/woodpecker/internal/latency"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/objstore"
	filestore "github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// The raw limits of each backend, which the WAL's throughput and latency are
// later compared with (like for like: same object sizes, same parallelism,
// same signing mode, same run). Sub-benchmarks are named
// backend/size/mode, e.g. Put/s3-versitygw/8MiB/par4:
//
//   - backends: mem, file (fsync on every write), s3-versitygw (child
//     process, posix backend without fsync), s3-gofakes3 (in process, in
//     memory, DisableContentSha256; the versitygw config signs payloads).
//   - sizes: 4KiB, 64KiB, 1MiB, 8MiB.
//   - modes: seq (one operation at a time) and par4 (exactly 4 in flight,
//     like maxFlushThreads=4; independent of GOMAXPROCS, unlike
//     b.SetParallelism).
//
// Besides ns/op and MB/s they report the p50 and p99 latency of single
// operations in µs. Run with: go test -run '^$' -bench . ./objstore/

var s3BenchSizes = []struct {
	name string
	size int
}{
	{"4KiB", 4 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"8MiB", 8 << 20},
}

// s3BenchKeys is the number of keys each worker cycles through, bounding the
// memory and disk a long run uses.
const s3BenchKeys = 16

type s3BenchBackend struct {
	name string
	open func(b *testing.B) objstore.Bucket
}

// s3BenchBackends lists the backends (closed on b's cleanup); the S3
// servers start on first use and live as long as top (one server per
// top-level benchmark).
func s3BenchBackends(top *testing.B) []s3BenchBackend {
	srv := testserver.NewServers(top)
	return []s3BenchBackend{
		{"mem", func(*testing.B) objstore.Bucket { return objmem.New() }},
		{"file", func(b *testing.B) objstore.Bucket {
			fb, err := filestore.New(b.TempDir(), filestore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { fb.Close() })
			return fb
		}},
		{"s3-versitygw", func(b *testing.B) objstore.Bucket { return srv.Versitygw().OpenBucket(b, "bench") }},
		{"s3-gofakes3", func(b *testing.B) objstore.Bucket { return srv.FakeS3().OpenBucket(b, "bench") }},
	}
}

func BenchmarkPut(b *testing.B) {
	s3BenchEach(b, func(b *testing.B, bk objstore.Bucket, data []byte, workers int) {
		ctx := context.Background()
		s3BenchRun(b, workers, len(data), func(w, i int) error {
			key := fmt.Sprintf("put/w%d/%020d", w, i%s3BenchKeys)
			_, err := bk.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
			return err
		})
	})
}

func BenchmarkGet(b *testing.B) {
	s3BenchEach(b, func(b *testing.B, bk objstore.Bucket, data []byte, workers int) {
		ctx := context.Background()
		prefix := fmt.Sprintf("get/%d", len(data))
		for i := range s3BenchKeys {
			key := fmt.Sprintf("%s/%020d", prefix, i)
			if _, err := bk.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
				b.Fatal(err)
			}
		}
		s3BenchRun(b, workers, len(data), func(w, i int) error {
			key := fmt.Sprintf("%s/%020d", prefix, (w+i)%s3BenchKeys)
			rc, _, err := bk.Get(ctx, key, 0, -1)
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err == nil && n != int64(len(data)) {
				err = fmt.Errorf("read %d bytes, want %d", n, len(data))
			}
			return err
		})
	})
}

// s3BenchEach runs fn for every backend, size and mode, one bucket per
// backend.
func s3BenchEach(b *testing.B, fn func(b *testing.B, bk objstore.Bucket, data []byte, workers int)) {
	for _, be := range s3BenchBackends(b) {
		b.Run(be.name, func(b *testing.B) {
			bk := be.open(b)
			for _, sz := range s3BenchSizes {
				data := make([]byte, sz.size)
				rand.NewChaCha8([32]byte{byte(sz.size)}).Read(data)
				b.Run(sz.name, func(b *testing.B) {
					b.Run("seq", func(b *testing.B) { fn(b, bk, data, 1) })
					b.Run("par4", func(b *testing.B) { fn(b, bk, data, 4) })
				})
			}
		})
	}
}

// s3BenchRun runs b.N calls of op(worker, i) on workers goroutines, and
// reports throughput, allocations and per-operation latency percentiles.
func s3BenchRun(b *testing.B, workers, size int, op func(worker, i int) error) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	latency.Bench(b, workers, op)
}
