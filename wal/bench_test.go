package wal_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/counting"
	"github.com/woodpecker-wal/woodpecker/internal/latency"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	"github.com/woodpecker-wal/woodpecker/objstore"
	filestore "github.com/woodpecker-wal/woodpecker/objstore/file"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// The engine measured next to the raw object store underneath it, in one run
// against the same servers, so the ratios are like for like (docs/design.md,
// "Throughput baselines are like for like": same object sizes, same
// parallelism, same signing mode):
//
//   - RawPut/<backend>/<size>/{seq,par4}: PutIfAbsent of fresh keys, one at a
//     time (1KiB, 64KiB: single-PUT latency) or exactly MaxFlushThreads (4)
//     in flight (1MiB, 4MiB, 8MiB: the fragment sizes async appends produce;
//     MaxBytes is 4 MiB and MaxFlushSize 8 MiB by default). The baseline.
//   - AppendAsync/<backend>/<size>: one entry per AppendAsync call, a bounded
//     window of outstanding futures, Sync at the end; default Config. Reports
//     entries/s and the fragments actually produced (B/PUT, entries/PUT).
//   - AppendSync/<backend>/<size>/{put,append,paired}: latency of one
//     synchronous Append of one entry, next to one PutIfAbsent of the
//     fragment it becomes (header + entry), so "within 0.5 ms of one PUT"
//     reads off p50/p99. put and append run one after the other; paired
//     alternates them op by op (same disk and server conditions) and also
//     reports the percentiles of the per-op difference. Read paired on a
//     noisy machine: fsync latency here drifts 0.4-1.3 ms between runs.
//   - Replay/<backend>/<size>/{rawget,reader}: a sealed log read front to
//     back by a Reader of a fresh Client (cold cache), next to a sequential
//     GET of the same fragment objects.
//
// Backends: file (filestore.New: fsync on every write; metadata in the
// same directory through metabucket.Store) and versitygw (child process,
// signed payloads as in production, no fsync; metadata in an embedded etcd).
// Allocation counts include everything in the test process: the writer's
// goroutines and, for versitygw, the embedded etcd server.
//
// Run: go test -run '^$' -bench . -benchtime 2s ./wal/ (-benchtime 1x is a
// quick smoke run).

// benchFlushThreads is the default Config.MaxFlushThreads, the parallelism
// of the raw PUT baseline.
const benchFlushThreads = 4

// benchWindowBytes bounds the payload of outstanding AppendAsync calls: well
// above MaxFlushThreads x MaxFlushSize (32 MiB), so the pipeline stays full.
const benchWindowBytes = 64 << 20

var benchEntrySizes = []struct {
	name string
	size int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

// benchEnv is one backend: a bucket and a metadata store over it.
type benchEnv struct {
	name   string
	bucket func(b *testing.B) objstore.Bucket
	meta   func(b *testing.B, bk objstore.Bucket) meta.Store
}

// benchEnvs lists the backends. The servers start on first use and live as
// long as top (one set per top-level benchmark), so `-bench X/file` starts
// none.
func benchEnvs(top *testing.B) []benchEnv {
	srv := testserver.NewServers(top)
	etcdSrv := etcdserver.NewShared(top)
	return []benchEnv{
		{
			name: "file",
			bucket: func(b *testing.B) objstore.Bucket {
				fb, err := filestore.New(b.TempDir(), filestore.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { fb.Close() })
				return fb
			},
			meta: func(b *testing.B, bk objstore.Bucket) meta.Store {
				m, err := metabucket.New(bk, "meta")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { m.Close() })
				return m
			},
		},
		{
			name:   "versitygw",
			bucket: func(b *testing.B) objstore.Bucket { return srv.Versitygw().OpenBucket(b, "") },
			meta:   func(b *testing.B, _ objstore.Bucket) meta.Store { return etcdSrv.Get().OpenMeta(b) },
		},
	}
}

var benchSeq atomic.Int64

// benchName returns a fresh name for a log or a key prefix.
func benchName(kind string) string { return fmt.Sprintf("%s_%d", kind, benchSeq.Add(1)) }

func benchData(size int) []byte {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)}).Read(data)
	return data
}

func benchClient(b *testing.B, bk objstore.Bucket, m meta.Store) *wal.Client {
	b.Helper()
	c, err := wal.Open(context.Background(), wal.Config{Bucket: bk, Meta: m})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// benchWriter creates log name and opens its writer.
func benchWriter(b *testing.B, c *wal.Client, name string) (*wal.Log, *wal.Writer) {
	b.Helper()
	ctx := context.Background()
	if err := c.CreateLog(ctx, name); err != nil {
		b.Fatal(err)
	}
	l, err := c.OpenLog(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	w, err := l.OpenWriter(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return l, w
}

// rawKey names raw objects like fragments (same depth and digit padding),
// so path-based backends do the same directory work.
func rawKey(prefix string, i int) string {
	return fmt.Sprintf("raw/%s/s/%020d/%020d", prefix, 1, i)
}

// BenchmarkRawPut is the baseline: PutIfAbsent of fresh keys, as the writer
// does for fragments.
func BenchmarkRawPut(b *testing.B) {
	cases := []struct {
		name          string
		size, workers int
	}{
		{"1KiB/seq", 1 << 10, 1},
		{"64KiB/seq", 64 << 10, 1},
		{"1MiB/par4", 1 << 20, benchFlushThreads},
		{"4MiB/par4", 4 << 20, benchFlushThreads},
		{"8MiB/par4", 8 << 20, benchFlushThreads},
	}
	for _, env := range benchEnvs(b) {
		b.Run(env.name, func(b *testing.B) {
			bk := env.bucket(b)
			for _, tc := range cases {
				data := benchData(tc.size)
				b.Run(tc.name, func(b *testing.B) {
					ctx := context.Background()
					prefix := benchName("p")
					b.SetBytes(int64(tc.size))
					b.ReportAllocs()
					latency.Bench(b, tc.workers, func(_, i int) error {
						_, err := bk.PutIfAbsent(ctx, rawKey(prefix, i), data)
						return err
					})
					if tc.size >= 1<<20 { // bound the disk a long run uses
						for i := range b.N {
							if err := bk.Delete(ctx, rawKey(prefix, i)); err != nil {
								b.Fatal(err)
							}
						}
					}
				})
			}
		})
	}
}

// BenchmarkAppendAsync measures pipelined asynchronous appends of one entry
// per call with the default Config.
func BenchmarkAppendAsync(b *testing.B) {
	for _, env := range benchEnvs(b) {
		b.Run(env.name, func(b *testing.B) {
			bk := env.bucket(b)
			m := env.meta(b, bk)
			for _, sz := range benchEntrySizes {
				data := benchData(sz.size)
				b.Run(sz.name, func(b *testing.B) {
					ctx := context.Background()
					cb := counting.NewBucket(bk)
					c := benchClient(b, cb, m)
					defer c.Close()
					name := benchName("async")
					_, w := benchWriter(b, c, name)
					window := make([]*wal.Future, max(1, benchWindowBytes/sz.size))
					before := cb.Snapshot()
					b.SetBytes(int64(sz.size))
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						slot := &window[i%len(window)]
						if *slot != nil {
							if err := (*slot).Wait(ctx); err != nil {
								b.Fatal(err)
							}
						}
						*slot = w.AppendAsync(uint64(i)+1, [][]byte{data})
					}
					// Sync waits for the last append; acks are in order and
					// a failure fails every pending future, so nil here
					// means every append is durable.
					if err := w.Sync(ctx); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					for _, f := range window {
						if f != nil {
							if err := f.Err(); err != nil {
								b.Fatal(err)
							}
						}
					}
					if got := w.DurableIndex(); got != uint64(b.N) {
						b.Fatalf("durable index %d after Sync, want %d", got, b.N)
					}
					req := cb.Snapshot().Sub(before)
					puts := max(req.PutIfAbsent, 1)
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
					b.ReportMetric(float64(req.PutBytes)/float64(puts), "B/PUT")
					b.ReportMetric(float64(b.N)/float64(puts), "entries/PUT")
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
					if err := c.DeleteLog(ctx, name); err != nil {
						b.Fatal(err)
					}
				})
			}
		})
	}
}

// BenchmarkAppendSync measures one synchronous Append of one entry at a
// time, next to one PutIfAbsent of the fragment that entry becomes.
func BenchmarkAppendSync(b *testing.B) {
	for _, env := range benchEnvs(b) {
		b.Run(env.name, func(b *testing.B) {
			bk := env.bucket(b)
			m := counting.NewMeta(env.meta(b, bk))
			for _, sz := range benchEntrySizes {
				data := benchData(sz.size)
				b.Run(sz.name, func(b *testing.B) {
					ctx := context.Background()
					frag, err := codec.AppendFragment(nil, codec.Header{
						Kind: codec.KindData, LogID: 1, Segment: 1, Epoch: 1, Nonce: 1, FirstIndex: 1, Count: 1,
					}, [][]byte{data})
					if err != nil {
						b.Fatal(err)
					}
					b.Run("put", func(b *testing.B) {
						prefix := benchName("s")
						b.SetBytes(int64(len(frag)))
						b.ReportAllocs()
						latency.Bench(b, 1, func(_, i int) error {
							_, err := bk.PutIfAbsent(ctx, rawKey(prefix, i), frag)
							return err
						})
						b.ReportMetric(float64(len(frag)), "B/PUT")
					})

					cb := counting.NewBucket(bk)
					cb.CountMeta(m)
					c := benchClient(b, cb, m)
					defer c.Close()
					name := benchName("sync")
					_, w := benchWriter(b, c, name)
					defer w.Close()
					next := uint64(1)
					b.Run("append", func(b *testing.B) {
						before := cb.Snapshot()
						b.SetBytes(int64(sz.size))
						b.ReportAllocs()
						latency.Bench(b, 1, func(int, int) error {
							err := w.Append(ctx, next, [][]byte{data})
							next++
							return err
						})
						req := cb.Snapshot().Sub(before)
						b.ReportMetric(float64(req.PutIfAbsent)/float64(b.N), "PUTs/op")
						b.ReportMetric(float64(req.PutBytes)/float64(max(req.PutIfAbsent, 1)), "B/PUT")
						b.ReportMetric(float64(req.MetaOps)/float64(b.N), "meta-ops/op")
					})

					// The two above run one after the other, and a loaded
					// disk or server drifts by more than 0.5 ms between
					// them. Here each op is one PUT and one Append, in
					// alternating order, so both see the same conditions;
					// it reports both percentiles and those of the paired
					// difference (append - put).
					b.Run("paired", func(b *testing.B) {
						prefix := benchName("s")
						put := make([]time.Duration, 0, b.N)
						app := make([]time.Duration, 0, b.N)
						diff := make([]time.Duration, 0, b.N)
						b.ReportAllocs()
						b.ResetTimer()
						for i := range b.N {
							var dp, da time.Duration
							for k := range 2 {
								start := time.Now()
								if (i+k)%2 == 0 {
									if _, err := bk.PutIfAbsent(ctx, rawKey(prefix, i), frag); err != nil {
										b.Fatal(err)
									}
									dp = time.Since(start)
								} else {
									if err := w.Append(ctx, next, [][]byte{data}); err != nil {
										b.Fatal(err)
									}
									next++
									da = time.Since(start)
								}
							}
							put, app, diff = append(put, dp), append(app, da), append(diff, da-dp)
						}
						b.StopTimer()
						latency.Report(b, "put-", put)
						latency.Report(b, "append-", app)
						latency.Report(b, "diff-", diff)
					})
				})
			}
		})
	}
}

// BenchmarkReplay reads a sealed log front to back with a Reader of a fresh
// Client (cold fragment cache), next to a sequential GET of the same
// fragment objects.
func BenchmarkReplay(b *testing.B) {
	logs := []struct {
		name       string
		size, n    int // entry size and count
		batchPerOp int // entries per AppendAsync while building the log
	}{
		{"1KiB", 1 << 10, 8 << 10, 64}, // 8 MiB
		{"64KiB", 64 << 10, 512, 4},    // 32 MiB
	}
	for _, env := range benchEnvs(b) {
		b.Run(env.name, func(b *testing.B) {
			bk := env.bucket(b)
			m := env.meta(b, bk)
			for _, lg := range logs {
				b.Run(lg.name, func(b *testing.B) {
					ctx := context.Background()
					name := benchName("replay")
					payload := int64(lg.size) * int64(lg.n)
					keys, objBytes := benchSealedLog(b, bk, m, name, lg.size, lg.n, lg.batchPerOp)

					b.Run("rawget", func(b *testing.B) {
						b.SetBytes(objBytes)
						b.ReportAllocs()
						b.ResetTimer()
						for range b.N {
							for _, k := range keys {
								if _, _, err := objstore.ReadAll(ctx, bk, k); err != nil {
									b.Fatal(err)
								}
							}
						}
						b.StopTimer()
						b.ReportMetric(float64(len(keys)), "GETs/op")
						b.ReportMetric(float64(objBytes)/float64(len(keys)), "B/GET")
					})

					b.Run("reader", func(b *testing.B) {
						cb := counting.NewBucket(bk)
						b.SetBytes(payload)
						b.ReportAllocs()
						b.ResetTimer()
						for range b.N {
							c := benchClient(b, cb, m) // cold cache every time
							l, err := c.OpenLog(ctx, name)
							if err != nil {
								b.Fatal(err)
							}
							r, err := l.NewReader(ctx, wal.Earliest)
							if err != nil {
								b.Fatal(err)
							}
							for want := uint64(1); want <= uint64(lg.n); want++ {
								i, e, err := r.Next(ctx)
								if err != nil {
									b.Fatal(err)
								}
								if i != want || len(e) != lg.size {
									b.Fatalf("Next = %d (%d bytes), want %d (%d bytes)", i, len(e), want, lg.size)
								}
							}
							r.Close()
							c.Close()
						}
						b.StopTimer()
						req := cb.Snapshot()
						b.ReportMetric(float64(req.Get)/float64(b.N), "GETs/op")
						b.ReportMetric(float64(req.GetBytes)/float64(b.N)/float64(objBytes), "read-amp")
						b.ReportMetric(float64(req.List+req.Head)/float64(b.N), "LIST+HEAD/op")
					})
				})
			}
		})
	}
}

// benchSealedLog writes n entries of size bytes to a new log with pipelined
// async appends (default Config, so the fragments are the sizes the engine
// produces), seals it by opening and closing a second writer, and returns
// the data fragments' keys in log order and their total size.
func benchSealedLog(b *testing.B, bk objstore.Bucket, m meta.Store, name string, size, n, batch int) ([]string, int64) {
	b.Helper()
	ctx := context.Background()
	c := benchClient(b, bk, m)
	defer c.Close()
	l, w := benchWriter(b, c, name)
	data := benchData(size)
	batchEntries := make([][]byte, batch)
	for i := range batchEntries {
		batchEntries[i] = data
	}
	for i := 0; i < n; i += batch {
		w.AppendAsync(uint64(i)+1, batchEntries[:min(batch, n-i)])
	}
	if err := w.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	w2, err := l.OpenWriter(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := w2.Close(); err != nil {
		b.Fatal(err)
	}
	var keys []string
	var total int64
	if err := objstore.ListAll(ctx, bk, "wal/"+name+"/", 0, func(o objstore.ObjectInfo) error {
		if o.Size > codec.FixedHeaderSize { // skip the fence fragment
			keys = append(keys, o.Key)
			total += o.Size
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if total < int64(size)*int64(n) {
		b.Fatalf("log %s: %d bytes in %d fragments, want at least %d", name, total, len(keys), size*n)
	}
	return keys, total
}
