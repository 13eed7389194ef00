package bench

// Tiered mode (wal.Config.LocalDir): the store "ours-tiered" for the
// LogStore comparison, the interleaved StoreLogs comparison, and the two
// measurements of what tiering buys on the object store side: PUTs per
// second at a steady append rate (BenchmarkTieredPUTRate) and how far the
// bucket lags behind what was acknowledged (BenchmarkTieredUploadLag).

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/internal/latency"
	"github.com/woodpecker-wal/woodpecker/internal/raftbench"
	"github.com/woodpecker-wal/woodpecker/meta"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
	"github.com/woodpecker-wal/woodpecker/wal"
)

var flagTieredDur = flag.Duration("tiered.dur", 10*time.Second,
	"BenchmarkTieredPUTRate and BenchmarkTieredUploadLag: how long appends run (at least 3 upload intervals)")

// tieredDirs makes the two directories of a tiered store on the run's
// temp filesystem (the one raft-wal and boltdb use): "<tmp>/bucket" for
// the file:// bucket (metadata in it) and "<tmp>/local" for LocalDir.
// The names let syscalls.sh tell the local tier's fsyncs from the
// bucket's.
func tieredDirs(b *testing.B) (bucketDir, localDir string) {
	root := b.TempDir()
	return filepath.Join(root, "bucket"), filepath.Join(root, "local")
}

// tieredStore is hashiraft over a wal.Client in tiered mode; Close closes
// both. reg holds the client's metrics (tier commits, backpressure).
type tieredStore struct {
	*hashiraft.Store
	c   *wal.Client
	reg *prometheus.Registry
}

func (s tieredStore) Close() error { return errors.Join(s.Store.Close(), s.c.Close()) }

// openTiered opens hashiraft over a client on file://bucketDir (metadata
// in the bucket) with LocalDir localDir and the tiered defaults
// (UploadInterval 1s, MaxUploadLag 64 MiB / 30s, LocalSegmentSize
// 16 MiB). With wait, it returns once the local tier's spare segment is
// ready: the 16 MiB zero-fill that the first segment starts in the
// background is not timed (later ones, after each roll, are).
func openTiered(bucketDir, localDir string, wait bool) (tieredStore, error) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c, err := wal.OpenURL(ctx, "file://"+bucketDir, "", wal.Config{LocalDir: localDir, Registerer: reg})
	if err != nil {
		return tieredStore{}, err
	}
	s, err := hashiraft.New(ctx, c.LogStore(), "", hashiraft.Options{})
	if err == nil && wait {
		err = waitSpare(filepath.Join(localDir, "wal", hashiraft.DefaultLogName))
	}
	if err != nil {
		if s != nil {
			s.Close()
		}
		c.Close()
		return tieredStore{}, err
	}
	return tieredStore{s, c, reg}, nil
}

// tieredLocation is ours-tiered's storage; wait: see openTiered (the
// StoreLogs benchmarks, which time from the open on, wait; GetLogRecent
// and ScanCold, whose open is not timed or is reported as is, do not).
func tieredLocation(b *testing.B, wait bool) location {
	bucketDir, localDir := tieredDirs(b)
	return location{open: func() (logStore, error) { return openTiered(bucketDir, localDir, wait) }}
}

// waitSpare waits until the local tier in dir has its spare segment (its
// zero-fill, started when the first segment was made, is over).
func waitSpare(dir string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "spare")); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("local tier %s: no spare segment after 2 minutes", dir)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// counter returns the sum of the counter family name in reg.
func counter(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := 0.0
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	return 0
}

// tierCounters reports, for a StoreLogs benchmark on ours-tiered, the
// local group commits and the appends that waited for the uploader
// (MaxUploadLag) per call.
func tierCounters(b *testing.B, reg *prometheus.Registry, run func()) {
	c0 := counter(reg, "woodpecker_wal_tier_commits_total")
	bp0 := counter(reg, "woodpecker_wal_tier_backpressure_total")
	run()
	b.ReportMetric((counter(reg, "woodpecker_wal_tier_commits_total")-c0)/float64(b.N), "commits/op")
	b.ReportMetric((counter(reg, "woodpecker_wal_tier_backpressure_total")-bp0)/float64(b.N), "backpressured/op")
}

// storeLogsCall returns one StoreLogs call of n entries of size bytes on s,
// the way raftbench.StoreLogs makes them (same batch, next indexes).
func storeLogsCall(s raft.LogStore, n, size int) func() error {
	batch := raftbench.Logs(1, n, size)
	next := uint64(1)
	return func() error {
		for k, l := range batch {
			l.Index = next + uint64(k)
		}
		next += uint64(n)
		return s.StoreLogs(batch)
	}
}

// BenchmarkStoreLogsInterleaved compares StoreLogs latency of ours-tiered,
// raftwal, boltdb and ours-file in one benchmark per shape, in interleaved
// rounds (interleave): "<store>-p50-µs", "<store>-p99-µs" (medians of 7
// rounds) and "<store>/raftwal-p50-x" (median of the per-round ratios).
// floor-fdatasync is the floor of ours-tiered's group commit
// (floorFdatasync) in the same rounds.
func BenchmarkStoreLogsInterleaved(b *testing.B) {
	kinds := map[string]storeKind{}
	for _, sk := range storeKinds {
		kinds[sk.name] = sk
	}
	for _, shape := range []struct{ n, size int }{{1, 128}, {64, 128}, {64, 4096}} {
		b.Run(fmt.Sprintf("%dx%s", shape.n, sizeName(shape.size)), func(b *testing.B) {
			var cs []contender
			for _, name := range []string{"ours-tiered", "raftwal", "boltdb", "ours-file"} {
				sk := kinds[name]
				cs = append(cs, contender{name: name, start: func(b *testing.B) (func() error, func() error) {
					loc := sk.newLocation(b)
					if name == "ours-tiered" {
						loc = tieredLocation(b, true)
					}
					s := openStore(b, loc)
					return storeLogsCall(s, shape.n, shape.size), s.Close
				}})
			}
			rec := shape.n*(shape.size+32) + 64 // about the local record of one call
			cs = append(cs, contender{name: "floor-fdatasync", start: func(b *testing.B) (func() error, func() error) {
				return floorFdatasync(b, rec)
			}})
			b.SetBytes(int64(shape.n * shape.size)) // per call of each store
			interleave(b, "raftwal", cs)
		})
	}
}

// floorFdatasync is the floor of a tiered group commit: one pwrite of
// rec bytes at the next offset of a zero-filled (written, not sparse)
// 64 MiB file, as the local tier's segments are, and one fdatasync, in the
// caller's goroutine.
func floorFdatasync(b *testing.B, rec int) (func() error, func() error) {
	const size = 64 << 20
	f, err := os.Create(filepath.Join(b.TempDir(), "seg"))
	if err != nil {
		b.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, rec)
	_, _ = rand.Read(data)
	off := int64(0)
	return func() error {
		if off+int64(rec) > size {
			off = 0
		}
		if _, err := f.WriteAt(data, off); err != nil {
			return err
		}
		off += int64(rec)
		return unix.Fdatasync(int(f.Fd()))
	}, f.Close
}

// ---- counting the object store's PUT-class requests ----

// putCounts are PUT-class requests: to the bucket (fragments, blobs) and
// to the metadata store (record creates and compare-and-swaps; with the
// metadata kept in an S3 bucket each is one conditional PUT).
type putCounts struct {
	putIfAbsent, put, putIfMatch atomic.Int64 // bucket
	metaCreate, metaUpdate       atomic.Int64 // meta.Store
	putBytes                     atomic.Int64
}

func (c *putCounts) snapshot() (bucket, meta int64) {
	return c.putIfAbsent.Load() + c.put.Load() + c.putIfMatch.Load(), c.metaCreate.Load() + c.metaUpdate.Load()
}

// countingBucket counts a bucket's PUT-class requests.
type countingBucket struct {
	objstore.Bucket
	n *putCounts
}

func (b countingBucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	b.n.putIfAbsent.Add(1)
	b.n.putBytes.Add(int64(len(data)))
	return b.Bucket.PutIfAbsent(ctx, key, data)
}

func (b countingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	b.n.put.Add(1)
	b.n.putBytes.Add(max(size, 0))
	return b.Bucket.Put(ctx, key, r, size)
}

func (b countingBucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	b.n.putIfMatch.Add(1)
	b.n.putBytes.Add(int64(len(data)))
	return b.Bucket.(objstore.CASBucket).PutIfMatch(ctx, key, data, etag)
}

// countingMeta counts a metadata store's writes.
type countingMeta struct {
	meta.Store
	n *putCounts
}

func (m countingMeta) Create(ctx context.Context, key string, value []byte) (meta.Version, error) {
	m.n.metaCreate.Add(1)
	return m.Store.Create(ctx, key, value)
}

func (m countingMeta) Update(ctx context.Context, key string, value []byte, ver meta.Version) (meta.Version, error) {
	m.n.metaUpdate.Add(1)
	return m.Store.Update(ctx, key, value, ver)
}

// countedWriter opens a wal writer of a new log, tiered or not, on a file
// bucket in a temp dir whose PUT-class requests are counted in n: the
// fragments' bucket is wrapped, and so is the metadata store (kept in the
// same directory through the unwrapped bucket, so that a record update is
// counted once, as a metadata write). A tiered writer is returned once its
// local tier's spare segment is ready.
func countedWriter(b *testing.B, n *putCounts, cfg wal.Config, tiered bool) (*wal.Client, *wal.Writer) {
	ctx := context.Background()
	bucketDir, localDir := tieredDirs(b)
	fb, err := file.New(bucketDir, file.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fb.Close() })
	m, err := metabucket.New(fb, metabucket.DefaultPrefix)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Bucket, cfg.Meta = countingBucket{fb, n}, countingMeta{m, n}
	if tiered {
		cfg.LocalDir = localDir
	}
	c, err := wal.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.CreateLog(ctx, "log"); err != nil {
		b.Fatal(err)
	}
	l, err := c.OpenLog(ctx, "log")
	if err != nil {
		b.Fatal(err)
	}
	w, err := l.OpenWriter(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	if tiered {
		if err := waitSpare(filepath.Join(localDir, "wal", "log")); err != nil {
			b.Fatal(err)
		}
	}
	return c, w
}

// pace calls f(k) for k = 0, 1, ... at rate calls per second from start
// (open loop: a late call is made at once, and the ones after it keep
// their schedule) until d has passed; it returns the number of calls.
func pace(rate float64, d time.Duration, f func(k int) error) (int, error) {
	start := time.Now()
	period := time.Duration(float64(time.Second) / rate)
	k := 0
	for {
		due := start.Add(time.Duration(k) * period)
		if due.Sub(start) >= d {
			return k, nil
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		if err := f(k); err != nil {
			return k, err
		}
		k++
	}
}

// uploadSampler reads a tiered writer's UploadedIndex every 2 ms and
// records, for each index up to max, the first sample that saw it
// uploaded.
type uploadSampler struct {
	uploaded []time.Time // by index
	last     atomic.Uint64
	stop     chan struct{}
	done     chan struct{}
}

func sampleUploads(w *wal.Writer, max int) *uploadSampler {
	s := &uploadSampler{uploaded: make([]time.Time, max+1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		seen := uint64(0)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			now := time.Now()
			for up := min(w.UploadedIndex(), uint64(max)); seen < up; {
				seen++
				s.uploaded[seen] = now
			}
			if l := s.last.Load(); l > 0 && seen >= l {
				return
			}
		}
	}()
	return s
}

// finish waits (without forcing an upload) until the sampler saw index
// last uploaded, for at most timeout.
func (s *uploadSampler) finish(last uint64, timeout time.Duration) {
	s.last.Store(last)
	select {
	case <-s.done:
	case <-time.After(timeout):
		close(s.stop)
		<-s.done
	}
}

// lags returns, sorted, how long after acked[i] each index i in [from,
// to] was seen uploaded, and how many were never seen.
func (s *uploadSampler) lags(acked []time.Time, from, to int) (lags []time.Duration, missing int) {
	for i := from; i <= to; i++ {
		if s.uploaded[i].IsZero() {
			missing++
			continue
		}
		lags = append(lags, max(0, s.uploaded[i].Sub(acked[i])))
	}
	slices.Sort(lags)
	return lags, missing
}

// reportLag reports the upload lag's quantiles against the interval.
func reportLag(b *testing.B, lags []time.Duration, missing int, iv time.Duration) {
	p99 := latency.Percentile(lags, 0.99)
	b.ReportMetric(latency.Percentile(lags, 0.50).Seconds(), "lag-p50-s")
	b.ReportMetric(p99.Seconds(), "lag-p99-s")
	b.ReportMetric(latency.Percentile(lags, 1).Seconds(), "lag-max-s")
	b.ReportMetric(p99.Seconds()/iv.Seconds(), "lag-p99/interval")
	if missing > 0 {
		b.Errorf("%d of %d entries not seen uploaded within 3 intervals + 10s of the end", missing, missing+len(lags))
	}
	if p99 > 2*iv {
		b.Logf("lag p99 %v is above the target 2 x UploadInterval = %v", p99, 2*iv)
	}
}

// BenchmarkTieredPUTRate appends one 128 B entry 1,000 times a second to
// a tiered writer for -tiered.dur (at least 3 upload intervals), a
// synchronous Append each (as a Raft leader storing one entry per call
// would), and reports the PUT-class requests per second made meanwhile,
// fragments and metadata: "puts/s" (= "data-puts/s" + "meta-puts/s")
// against "target-puts/s" = 1/UploadInterval + 1, the local group
// commits per second, and the upload lag (as BenchmarkTieredUploadLag
// measures it) at this low rate, where the UploadInterval timer alone
// starts uploads. "objsync" is the same rate on an object-synchronous
// writer (no LocalDir), with AppendAsync (acknowledgements waited for in
// order by another goroutine) so that appends arriving within MaxInterval
// (2 ms) share a fragment: every acknowledgement there is a PUT.
func BenchmarkTieredPUTRate(b *testing.B) {
	for _, iv := range []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 0} {
		name := "interval=" + iv.String()
		if iv == 0 {
			name = "objsync"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var n putCounts
			reg := prometheus.NewRegistry()
			_, w := countedWriter(b, &n, wal.Config{UploadInterval: iv, Registerer: reg}, iv > 0)
			entry := make([]byte, 128)
			_, _ = rand.Read(entry)
			if err := w.Append(ctx, 1, [][]byte{entry}); err != nil {
				b.Fatal(err)
			}
			if err := w.SyncUploaded(ctx); err != nil { // the log's first segment is made
				b.Fatal(err)
			}
			d := max(*flagTieredDur, 3*iv)
			next := uint64(2)
			lat := make([]time.Duration, 0, int(d.Seconds()*1000)+1)
			total := int(d.Seconds()*1000) + 2
			acked := make([]time.Time, total+1) // by index, tiered only
			var sampler *uploadSampler
			if iv > 0 {
				sampler = sampleUploads(w, total)
			}
			type issued struct {
				f  *wal.Future
				at time.Time
			}
			futs := make(chan issued, 1<<16)
			var waiter sync.WaitGroup
			var werr error
			if iv == 0 {
				waiter.Go(func() {
					for f := range futs {
						if err := f.f.Wait(ctx); err != nil && werr == nil {
							werr = err
						}
						lat = append(lat, time.Since(f.at))
					}
				})
			}
			b.ResetTimer()
			c0 := counter(reg, "woodpecker_wal_tier_commits_total")
			bu0, me0 := n.snapshot()
			t0 := time.Now()
			calls, err := pace(1000, d, func(int) error {
				defer func() { next++ }()
				if iv == 0 {
					t := time.Now()
					futs <- issued{w.AppendAsync(next, [][]byte{entry}), t}
					return nil
				}
				t := time.Now()
				err := w.Append(ctx, next, [][]byte{entry})
				at := time.Now()
				if next <= uint64(total) {
					acked[next] = at
				}
				lat = append(lat, at.Sub(t))
				return err
			})
			close(futs)
			waiter.Wait()
			el := time.Since(t0)
			bu1, me1 := n.snapshot()
			b.StopTimer()
			if err := errors.Join(err, werr); err != nil {
				b.Fatal(err)
			}
			sec := el.Seconds()
			puts := float64(bu1-bu0+me1-me0) / sec
			b.ReportMetric(float64(calls)/sec, "appends/s")
			b.ReportMetric(puts, "puts/s")
			b.ReportMetric(float64(bu1-bu0)/sec, "data-puts/s")
			b.ReportMetric(float64(me1-me0)/sec, "meta-puts/s")
			latency.Report(b, "ack-", lat)
			if iv == 0 {
				return
			}
			b.ReportMetric((counter(reg, "woodpecker_wal_tier_commits_total")-c0)/sec, "commits/s")
			sampler.finish(next-1, 3*iv+10*time.Second)
			lags, missing := sampler.lags(acked, 2, int(min(next-1, uint64(total))))
			reportLag(b, lags, missing, iv)
			want := 1/iv.Seconds() + 1
			b.ReportMetric(want, "target-puts/s")
			if puts > want {
				b.Logf("interval %v: %.2f PUT/s, above the target %.2f by %.0f%%", iv, puts, want, 100*(puts/want-1))
			}
		})
	}
}

// BenchmarkTieredUploadLag appends 64 KiB entries at 50 MB/s (763
// appends/s, asynchronously: AppendAsync, acknowledgements waited for in
// order by another goroutine) for -tiered.dur with the default
// UploadInterval (1s), sampling UploadedIndex every 2 ms. An entry's lag
// is the time from its acknowledgement (locally durable) until
// UploadedIndex covered it. Reports "lag-p50-s", "lag-p99-s" and
// "lag-max-s" over every entry appended, "lag-p99/interval" (target <= 2),
// the appends' ack latency, the achieved MB/s and the PUT-class requests
// per second.
func BenchmarkTieredUploadLag(b *testing.B) {
	const size, rate = 64 << 10, 50e6 / (64 << 10)
	for _, iv := range []time.Duration{time.Second} {
		b.Run("interval="+iv.String(), func(b *testing.B) {
			ctx := context.Background()
			var n putCounts
			reg := prometheus.NewRegistry()
			d := *flagTieredDur
			total := int(rate*d.Seconds()) + 1
			_, w := countedWriter(b, &n, wal.Config{UploadInterval: iv, Registerer: reg}, true)
			entry := make([]byte, size)
			_, _ = rand.Read(entry)
			acked := make([]time.Time, total+1) // by index
			issued := make([]time.Time, total+1)
			sampler := sampleUploads(w, total)
			futs := make(chan *wal.Future, 1<<16)
			var ackErr error
			var ackDone sync.WaitGroup
			ackLat := make([]time.Duration, 0, total)
			ackDone.Go(func() {
				i := uint64(0)
				for f := range futs {
					i++
					if err := f.Wait(ctx); err != nil && ackErr == nil {
						ackErr = err
					}
					acked[i] = time.Now()
					ackLat = append(ackLat, acked[i].Sub(issued[i]))
				}
			})
			bp0 := counter(reg, "woodpecker_wal_tier_backpressure_total")
			up0 := counter(reg, "woodpecker_wal_tier_uploads_total")
			c0 := counter(reg, "woodpecker_wal_tier_commits_total")
			bu0, me0 := n.snapshot()
			b.ResetTimer()
			t0 := time.Now()
			calls, err := pace(rate, d, func(k int) error {
				i := uint64(k + 1)
				issued[i] = time.Now()
				futs <- w.AppendAsync(i, [][]byte{entry})
				return nil
			})
			close(futs)
			ackDone.Wait()
			el := time.Since(t0)
			bu1, me1 := n.snapshot()
			up1 := counter(reg, "woodpecker_wal_tier_uploads_total")
			c1 := counter(reg, "woodpecker_wal_tier_commits_total")
			sampler.finish(uint64(calls), 3*iv+10*time.Second)
			b.StopTimer()
			if err != nil || ackErr != nil {
				b.Fatal(errors.Join(err, ackErr))
			}
			lags, missing := sampler.lags(acked, 1, calls)
			sec := el.Seconds()
			b.ReportMetric(float64(calls)*size/sec/1e6, "MB/s")
			reportLag(b, lags, missing, iv)
			b.ReportMetric(float64(bu1-bu0+me1-me0)/sec, "puts/s")
			b.ReportMetric(float64(bu1-bu0)/sec, "data-puts/s")
			b.ReportMetric(float64(me1-me0)/sec, "meta-puts/s")
			b.ReportMetric((up1-up0)/sec, "uploads/s")
			b.ReportMetric((c1-c0)/sec, "commits/s")
			b.ReportMetric(counter(reg, "woodpecker_wal_tier_backpressure_total")-bp0, "backpressured")
			latency.Report(b, "ack-", ackLat)
		})
	}
}
