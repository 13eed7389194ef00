package benchharness

// The measurements of woodpecker bench. Every WAL figure has a raw figure
// measured like for like next to it (docs/design.md, "Throughput
// baselines are like for like"): the same object sizes (the mean size of
// the fragments the WAL actually wrote), the same parallelism
// (MaxFlushThreads per log), the same signing mode, the same connections,
// the same run.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/counting"
	"github.com/woodpecker-wal/woodpecker/internal/latency"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

const (
	// benchFlushThreads is wal.Config's default MaxFlushThreads: the
	// parallelism of one log's fragment PUTs, hence of its raw baseline.
	benchFlushThreads = 4
	// benchWindowBytes bounds the payload of one log's outstanding async
	// appends: above MaxFlushThreads x MaxFlushSize (32 MiB), so the
	// pipeline stays full (as in wal's BenchmarkAppendAsync).
	benchWindowBytes = 64 << 20
	// benchMaxOps caps the operations of one timed step.
	benchMaxOps = 10_000_000
)

var (
	rawLatencySizes = []int{1 << 10, 64 << 10, 1 << 20, 8 << 20}
	asyncEntrySizes = []int{128, 1 << 10, 64 << 10}
	asyncLogCounts  = []int{1, 4}
	replayEntrySize = []int{1 << 10, 64 << 10}
)

// steps lists the run's measurements in order.
func (b *bencher) steps() []step {
	var s []step
	add := func(name string, run func(ctx context.Context) (string, error)) {
		s = append(s, step{name: name, run: run})
	}
	g := b.cfg.Steps
	if g["raw"] {
		for _, size := range rawLatencySizes {
			add("raw PUT latency, "+fmtSize(size)+", 1 in flight", func(ctx context.Context) (string, error) {
				return b.rawPutLatency(ctx, size)
			})
		}
		add("raw PUT 8 MiB, 4 in flight", b.rawParPut)
		add("raw GET 8 MiB, 4 in flight", b.rawParGet)
	}
	if g["async"] {
		for _, logs := range asyncLogCounts {
			for _, size := range asyncEntrySizes {
				row := &AsyncRow{Entry: size, Logs: logs}
				b.res.Async = append(b.res.Async, row)
				add(fmt.Sprintf("async append %s x %d log(s), alternating with raw PUT (%d in flight)", fmtSize(size), logs, logs*benchFlushThreads),
					func(ctx context.Context) (string, error) { return b.asyncAppend(ctx, row) })
			}
		}
	}
	if g["sync"] {
		add("sync append 1 KiB paired with raw PUT", b.syncAppend)
	}
	if g["replay"] {
		for _, size := range replayEntrySize {
			row := &ReplayRow{Entry: size}
			b.res.Replay = append(b.res.Replay, row)
			add(fmt.Sprintf("write a sealed %d MiB log of %s entries", b.cfg.ReplayBytes>>20, fmtSize(size)), func(ctx context.Context) (string, error) {
				return b.replayBuild(ctx, row)
			})
			add("  replay it with a Reader (cold client), alternating with raw GETs (1 and 4 in flight)", func(ctx context.Context) (string, error) {
				return b.replay(ctx, row)
			})
		}
	}
	if g["recovery"] {
		rec := &RecoveryResult{Entries: b.cfg.RecoveryEntries, EntrySize: 128, PerFragment: 1000}
		b.res.Recovery = rec
		var crashed *benchLog
		add(fmt.Sprintf("write a log of %d x 128 B entries, then crash", rec.Entries), func(ctx context.Context) (string, error) {
			var err error
			crashed, err = b.recoveryBuild(ctx, rec)
			return rec.buildSummary(), err
		})
		add("  open its writer on a cold client (recovery)", func(ctx context.Context) (string, error) {
			return b.recoveryOpen(ctx, rec, crashed)
		})
	}
	if g["cost"] {
		for _, load := range []string{"idle", "light", "heavy"} {
			row := &CostRow{Load: load}
			b.res.Cost = append(b.res.Cost, row)
			add("PUT rate, "+load+" load", func(ctx context.Context) (string, error) {
				return b.cost(ctx, row)
			})
		}
	}
	return s
}

// --- helpers ---------------------------------------------------------------

func (b *bencher) minSamples() int {
	if b.cfg.Quick {
		return 5
	}
	return 20
}

// name returns a fresh log name or key component.
func (b *bencher) name(kind string) string {
	b.names++
	return fmt.Sprintf("%s_%d", kind, b.names)
}

// rawKey names raw-baseline objects like fragments (same depth and digit
// padding), so path-based backends do the same directory work.
func (b *bencher) rawKey(name string, i int) string {
	return fmt.Sprintf("%s/%s/1/s/%020d/%020d", b.rawPrefix, name, 1, i)
}

func benchData(size int) []byte {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)}).Read(data)
	return data
}

// purge deletes every object under prefix through the uncounted bucket
// without emulated latency.
func (b *bencher) purge(ctx context.Context, prefix string) error {
	var keys []string
	if err := objstore.ListAll(ctx, b.base, prefix, 0, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		return err
	}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				if err := b.base.Delete(ctx, keys[i]); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// cleanup removes everything the run wrote.
func (b *bencher) cleanup(ctx context.Context) error {
	errs := []error{b.purge(ctx, b.walPrefix+"/"), b.purge(ctx, b.rawPrefix+"/")}
	if b.st.bucketMeta {
		errs = append(errs, b.purge(ctx, "meta/"+b.walPrefix+"/"))
	} else {
		recs, err := b.st.meta.Store.List(ctx, b.walPrefix+"/")
		errs = append(errs, err)
		for _, r := range recs {
			errs = append(errs, b.st.meta.Store.Delete(ctx, r.Key, r.Version))
		}
	}
	return errors.Join(errs...)
}

// client opens a WAL client over the measured stores, without a GC
// janitor unless cfg asks for one: the requests counted are the workload's.
func (b *bencher) client(ctx context.Context, cfg wal.Config) (*wal.Client, error) {
	cfg.Bucket, cfg.Meta, cfg.Prefix = b.st.bucket, b.st.meta, b.walPrefix
	if cfg.GCInterval == 0 {
		cfg.GCInterval = -1
	}
	return wal.Open(ctx, cfg)
}

// newLog creates a log and opens its writer.
func (b *bencher) newLog(ctx context.Context, c *wal.Client, kind string) (string, *wal.Log, *wal.Writer, error) {
	name := b.name(kind)
	if err := c.CreateLog(ctx, name); err != nil {
		return "", nil, nil, err
	}
	l, err := c.OpenLog(ctx, name)
	if err != nil {
		return "", nil, nil, err
	}
	w, err := l.OpenWriter(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	return name, l, w, nil
}

// benchLog is a new log with its writer, on a client of its own.
type benchLog struct {
	c    *wal.Client
	name string
	l    *wal.Log
	w    *wal.Writer
}

// openLog opens a client over the measured stores, creates a log on it and
// opens its writer.
func (b *bencher) openLog(ctx context.Context, cfg wal.Config, kind string) (*benchLog, error) {
	c, err := b.client(ctx, cfg)
	if err != nil {
		return nil, err
	}
	name, l, w, err := b.newLog(ctx, c, kind)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &benchLog{c: c, name: name, l: l, w: w}, nil
}

// close closes the writer (if still open) and the client.
func (lg *benchLog) close() {
	lg.w.Close()
	lg.c.Close()
}

func (b *bencher) logData(name string) string { return b.walPrefix + "/" + name + "/" }

// probe is a point to measure CPU, allocations and requests from.
type probe struct {
	u usage
	r counting.Counts
}

func (b *bencher) probe() probe { return probe{readUsage(), b.st.bucket.Snapshot()} }

// since returns the CPU cores used, the allocations made and the request
// counts since p.
func (b *bencher) since(p probe) (cores float64, allocs uint64, req counting.Counts, putsInFlight, getsInFlight float64) {
	u, r := readUsage(), b.st.bucket.Snapshot()
	return u.cores(p.u), u.allocs - p.u.allocs, r.Sub(p.r), r.PutsInFlight(p.r), r.GetsInFlight(p.r)
}

// measure runs op on workers goroutines for d (and at least minOps calls),
// or, with d == 0, exactly minOps calls; latency.Measure times each call.
func measure(ctx context.Context, workers int, d time.Duration, minOps int,
	op func(ctx context.Context, i int) (int64, error)) (latency.Run, error) {
	plan := latency.Plan{Workers: workers, Ops: benchMaxOps, For: d, MinOps: minOps}
	if d == 0 {
		plan.Ops = minOps
	}
	return latency.Measure(ctx, plan, func(ctx context.Context, _, i int) (int64, error) { return op(ctx, i) })
}

// --- raw limit -------------------------------------------------------------

func (b *bencher) rawPutLatency(ctx context.Context, size int) (string, error) {
	data := benchData(size)
	name := b.name("lat")
	rs, err := measure(ctx, 1, b.cfg.StepTime, b.minSamples(), func(ctx context.Context, i int) (int64, error) {
		_, err := b.st.bucket.PutIfAbsent(ctx, b.rawKey(name, i), data)
		return int64(size), err
	})
	if err != nil {
		return "", err
	}
	row := RawPutLatency{Size: size, Lat: latency.Summarize(rs.Samples)}
	b.res.RawPut = append(b.res.RawPut, row)
	if err := b.purge(ctx, b.rawPrefix+"/"+name+"/"); err != nil {
		return "", err
	}
	return fmt.Sprintf("p50 %s, p99 %s (%d PUTs)", fmtDur(row.Lat.P50), fmtDur(row.Lat.P99), row.Lat.N), nil
}

// parKeys are the 8 MiB objects of rawParPut, read back by rawParGet.
func (b *bencher) rawParPut(ctx context.Context) (string, error) {
	const size = 8 << 20
	data := benchData(size)
	name := b.name("par")
	b.res.parName = name
	pr := b.probe()
	rs, err := measure(ctx, benchFlushThreads, b.cfg.StepTime, 2*benchFlushThreads, func(ctx context.Context, i int) (int64, error) {
		_, err := b.st.bucket.PutIfAbsent(ctx, b.rawKey(name, i), data)
		return size, err
	})
	if err != nil {
		return "", err
	}
	b.res.parKeys = rs.Ops
	b.res.RawPutPar = tputOf("PUT", size, benchFlushThreads, rs)
	b.res.RawPutPar.CPUCores, _, _, b.res.RawPutPar.Mean, _ = b.since(pr)
	return fmt.Sprintf("%.0f MB/s (%d PUTs, p50 %s)", b.res.RawPutPar.MBps, rs.Ops, fmtDur(b.res.RawPutPar.Lat.P50)), nil
}

func (b *bencher) rawParGet(ctx context.Context) (string, error) {
	const size = 8 << 20
	name, n := b.res.parName, b.res.parKeys
	if n == 0 { // rawParPut did not run
		name, n = b.name("par"), 2*benchFlushThreads
		data := benchData(size)
		for i := range n {
			if _, err := b.base.PutIfAbsent(ctx, b.rawKey(name, i), data); err != nil {
				return "", err
			}
		}
	}
	pr := b.probe()
	rs, err := measure(ctx, benchFlushThreads, b.cfg.StepTime, n, func(ctx context.Context, i int) (int64, error) {
		data, _, err := objstore.ReadAll(ctx, b.st.bucket, b.rawKey(name, i%n))
		if err == nil && len(data) != size {
			err = fmt.Errorf("read %d bytes, want %d", len(data), size)
		}
		return int64(len(data)), err
	})
	if err != nil {
		return "", err
	}
	b.res.RawGetPar = tputOf("GET", size, benchFlushThreads, rs)
	b.res.RawGetPar.CPUCores, _, _, _, b.res.RawGetPar.Mean = b.since(pr)
	if err := b.purge(ctx, b.rawPrefix+"/"+name+"/"); err != nil {
		return "", err
	}
	return fmt.Sprintf("%.0f MB/s (%d GETs over %d objects)", b.res.RawGetPar.MBps, rs.Ops, n), nil
}

// rawPutRun measures PutIfAbsent of fresh size-byte objects, workers in
// flight, for d.
func (b *bencher) rawPutRun(ctx context.Context, size, workers int, d time.Duration) (Throughput, error) {
	data := benchData(size)
	name := b.name("base")
	pr := b.probe()
	rs, err := measure(ctx, workers, d, 2*workers, func(ctx context.Context, i int) (int64, error) {
		_, err := b.st.bucket.PutIfAbsent(ctx, b.rawKey(name, i), data)
		return int64(size), err
	})
	if err != nil {
		return Throughput{}, err
	}
	t := tputOf("PUT", size, workers, rs)
	t.CPUCores, _, _, t.Mean, _ = b.since(pr)
	return t, b.purge(ctx, b.rawPrefix+"/"+name+"/")
}

// --- WAL: async appends ----------------------------------------------------

// asyncRounds is how many times an async step alternates between the WAL
// and its raw baseline, so both see the same machine load (this box is
// shared and its load drifts by more than the differences measured).
const asyncRounds = 3

// asyncAppend alternates, asyncRounds times, a WAL slice — one
// AppendAsync of one entry per call on each of row.Logs logs (one client,
// one goroutine per log), a bounded window of outstanding futures, Sync at
// the end — with a raw slice: PutIfAbsent of objects of the mean fragment
// size the WAL wrote so far, with as many in flight as the WAL may have
// (MaxFlushThreads per log). Each slice lasts the step time divided by the
// rounds, so the WAL and the raw baseline each run for the step time.
func (b *bencher) asyncAppend(ctx context.Context, row *AsyncRow) (string, error) {
	c, err := b.client(ctx, wal.Config{})
	if err != nil {
		return "", err
	}
	defer c.Close()
	data := benchData(row.Entry)
	var names []string
	var writers []*wal.Writer
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	for range row.Logs {
		name, _, w, err := b.newLog(ctx, c, "async")
		if err != nil {
			return "", err
		}
		names, writers = append(names, name), append(writers, w)
	}
	slice := b.cfg.StepTime / asyncRounds
	var (
		walTime, walCPU  time.Duration
		allocs           uint64
		putSecs          float64
		fragBytes, frags int64
		raw              []Throughput
	)
	for range asyncRounds {
		pr := b.probe()
		start := time.Now()
		deadline := start.Add(slice)
		var total atomic.Int64
		errs := make([]error, len(writers))
		var wg sync.WaitGroup
		for k, w := range writers {
			wg.Go(func() {
				n, err := appendFor(ctx, w, data, deadline)
				total.Add(int64(n))
				errs[k] = err
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if err := errors.Join(errs...); err != nil {
			return "", err
		}
		cores, al, req, puts, _ := b.since(pr)
		row.Entries += total.Load()
		walTime += elapsed
		walCPU += time.Duration(cores * float64(elapsed))
		allocs += al
		putSecs += puts * elapsed.Seconds()
		frags += req.DataPuts
		fragBytes += req.DataPutBytes
		if frags == 0 {
			return "", errors.New("the async run wrote no fragments")
		}
		t, err := b.rawPutRun(ctx, int(fragBytes/frags), row.Logs*benchFlushThreads, slice)
		if err != nil {
			return "", err
		}
		raw = append(raw, t)
		walMBps := float64(total.Load()) * float64(row.Entry) / elapsed.Seconds() / 1e6
		row.Ratios = append(row.Ratios, walMBps/t.MBps)
	}
	row.Elapsed = walTime
	row.EntriesPerSec = float64(row.Entries) / walTime.Seconds()
	row.MBps = row.EntriesPerSec * float64(row.Entry) / 1e6
	row.Fragments, row.FragmentBytes = frags, fragBytes/frags
	row.CPUCores = walCPU.Seconds() / walTime.Seconds()
	row.CPUPerEntry = walCPU / time.Duration(max(row.Entries, 1))
	row.AllocsPerEntry = float64(allocs) / float64(max(row.Entries, 1))
	row.PutsInFlight = putSecs / walTime.Seconds()
	row.Raw = mergeTput(raw)
	row.Ratio = median(row.Ratios)
	for _, w := range writers {
		if err := w.Close(); err != nil {
			return "", err
		}
	}
	writers = nil
	for _, n := range names {
		if err := b.purge(ctx, b.logData(n)); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("WAL %.0f entries/s, %.1f MB/s, %d fragments of %s, %.1f PUTs in flight, %.2f cores, %.1f allocs/entry; "+
		"raw %.1f MB/s, %.1f in flight, %.2f cores -> %.0f%% (median of %s)",
		row.EntriesPerSec, row.MBps, row.Fragments, fmtSize(int(row.FragmentBytes)), row.PutsInFlight, row.CPUCores, row.AllocsPerEntry,
		row.Raw.MBps, row.Raw.Mean, row.Raw.CPUCores, 100*row.Ratio, pctList(row.Ratios)), nil
}

// median returns the median of vs (the mean of the middle two for an even
// count).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func pctList(vs []float64) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("%.0f%%", 100*v))
	}
	return strings.Join(parts, ", ")
}

// mergeTput combines raw slices into one row (sizes may differ slightly:
// each slice uses the mean fragment size so far).
func mergeTput(ts []Throughput) Throughput {
	m := ts[len(ts)-1]
	m.Ops, m.Bytes, m.Elapsed, m.Lat = 0, 0, 0, latency.Stats{}
	var cpu, flight float64
	for _, t := range ts {
		m.Ops += t.Ops
		m.Bytes += t.Bytes
		m.Elapsed += t.Elapsed
		cpu += t.CPUCores * t.Elapsed.Seconds()
		flight += t.Mean * t.Elapsed.Seconds()
	}
	m.Size = int(m.Bytes / int64(max(m.Ops, 1)))
	m.MBps = float64(m.Bytes) / m.Elapsed.Seconds() / 1e6
	m.CPUCores = cpu / m.Elapsed.Seconds()
	m.Mean = flight / m.Elapsed.Seconds()
	return m
}

// appendFor appends one entry per AppendAsync until the deadline, keeping
// at most benchWindowBytes of payload outstanding, then Syncs and checks
// that every append is durable. It returns the number of entries.
func appendFor(ctx context.Context, w *wal.Writer, data []byte, deadline time.Time) (int, error) {
	window := make([]*wal.Future, max(1, benchWindowBytes/len(data)))
	first := w.LastIndex() + 1
	n := 0
	for {
		if n%64 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			break
		}
		slot := &window[n%len(window)]
		if *slot != nil {
			if err := (*slot).Wait(ctx); err != nil {
				return n, err
			}
		}
		*slot = w.AppendAsync(first+uint64(n), [][]byte{data})
		n++
	}
	// Acks are in order and a failure fails every pending future, so a nil
	// Sync means every append is durable; check anyway.
	if err := w.Sync(ctx); err != nil {
		return n, err
	}
	for _, f := range window {
		if f != nil {
			if err := f.Err(); err != nil {
				return n, err
			}
		}
	}
	if got, want := w.DurableIndex(), first+uint64(n)-1; got != want {
		return n, fmt.Errorf("durable index %d after Sync, want %d", got, want)
	}
	return n, nil
}

// --- WAL: sync appends -----------------------------------------------------

// syncAppend alternates one synchronous Append of one 1 KiB entry with one
// PutIfAbsent of the fragment that entry becomes (same bytes, same size),
// so both see the same disk and server conditions (the "paired" variant of
// wal's BenchmarkAppendSync).
func (b *bencher) syncAppend(ctx context.Context) (string, error) {
	const size = 1 << 10
	data := benchData(size)
	frag, err := codec.AppendFragment(nil, codec.Header{
		Kind: codec.KindData, LogID: 1, Segment: 1, Epoch: 1, Nonce: 1, FirstIndex: 1, Count: 1,
	}, [][]byte{data})
	if err != nil {
		return "", err
	}
	lg, err := b.openLog(ctx, wal.Config{}, "sync")
	if err != nil {
		return "", err
	}
	defer lg.close()
	name, w := lg.name, lg.w
	raw := b.name("sync")
	var put, app, diff []time.Duration
	before := b.st.bucket.Snapshot()
	start := time.Now()
	for i := 0; i < benchMaxOps; i++ {
		if i >= b.minSamples() && time.Since(start) > 2*b.cfg.StepTime {
			break
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		var dp, da time.Duration
		for k := range 2 {
			t := time.Now()
			if (i+k)%2 == 0 {
				if _, err := b.st.bucket.PutIfAbsent(ctx, b.rawKey(raw, i), frag); err != nil {
					return "", err
				}
				dp = time.Since(t)
			} else {
				if err := w.Append(ctx, uint64(i)+1, [][]byte{data}); err != nil {
					return "", err
				}
				da = time.Since(t)
			}
		}
		put, app, diff = append(put, dp), append(app, da), append(diff, da-dp)
	}
	req := b.st.bucket.Snapshot().Sub(before)
	r := &SyncResult{Entry: size, FragmentBytes: len(frag), Put: latency.Summarize(put), WAL: latency.Summarize(app), Diff: latency.Summarize(diff)}
	r.DiffLo, r.DiffHi = latency.MedianCI(diff)
	r.PutSamples, r.WALSamples = put, app
	r.DataPutsPerAppend = float64(req.DataPuts) / float64(len(app))
	r.MetaOpsPerAppend = float64(req.MetaOps) / float64(len(app))
	r.Ratio = float64(r.WAL.P50) / float64(r.Put.P50)
	b.res.Sync = r
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := errors.Join(b.purge(ctx, b.logData(name)), b.purge(ctx, b.rawPrefix+"/"+raw+"/")); err != nil {
		return "", err
	}
	return fmt.Sprintf("append p50 %s p99 %s; PUT p50 %s p99 %s; paired diff p50 %s (%d pairs)",
		fmtDur(r.WAL.P50), fmtDur(r.WAL.P99), fmtDur(r.Put.P50), fmtDur(r.Put.P99), fmtDur(r.Diff.P50), len(app)), nil
}

// --- WAL: replay -----------------------------------------------------------

// replayBuild writes a log with pipelined async appends (default Config,
// so the fragments are the sizes the engine produces) and seals it by
// opening and closing a second writer.
func (b *bencher) replayBuild(ctx context.Context, row *ReplayRow) (string, error) {
	lg, err := b.openLog(ctx, wal.Config{}, "replay")
	if err != nil {
		return "", err
	}
	defer lg.close()
	name, l, w := lg.name, lg.l, lg.w
	row.name = name
	row.Entries = int(b.cfg.ReplayBytes / int64(row.Entry))
	data := benchData(row.Entry)
	batch := make([][]byte, max(1, 64<<10/row.Entry))
	for i := range batch {
		batch[i] = data
	}
	start := time.Now()
	for i := 0; i < row.Entries; i += len(batch) {
		w.AppendAsync(uint64(i)+1, batch[:min(len(batch), row.Entries-i)])
	}
	if err := w.Sync(ctx); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	row.Build = time.Since(start)
	w2, err := l.OpenWriter(ctx)
	if err != nil {
		return "", err
	}
	if err := w2.Close(); err != nil {
		return "", err
	}
	row.keys = nil
	row.ObjectBytes = 0
	if err := objstore.ListAll(ctx, b.base, b.logData(name), 0, func(o objstore.ObjectInfo) error {
		if o.Size > codec.FixedHeaderSize { // skip fence fragments
			row.keys = append(row.keys, o.Key)
			row.ObjectBytes += o.Size
		}
		return nil
	}); err != nil {
		return "", err
	}
	row.Payload = int64(row.Entries) * int64(row.Entry)
	row.Fragments = len(row.keys)
	if row.ObjectBytes < row.Payload {
		return "", fmt.Errorf("log %s: %d bytes in %d fragments, want at least %d", name, row.ObjectBytes, row.Fragments, row.Payload)
	}
	return fmt.Sprintf("%d entries in %d fragments (%s each)", row.Entries, row.Fragments,
		fmtSize(int(row.ObjectBytes/int64(row.Fragments)))), nil
}

// replay alternates, pass by pass for three step times, a sequential GET of
// the log's fragment objects in key order with one and with four
// (Config.Prefetch) in flight, and a Reader reading the log front to back
// on a fresh client (cold cache), so all three see the same machine load.
func (b *bencher) replay(ctx context.Context, row *ReplayRow) (string, error) {
	keys := row.keys
	size := int(row.ObjectBytes / int64(len(keys)))
	get := func(ctx context.Context, i int) (int64, error) {
		data, _, err := objstore.ReadAll(ctx, b.st.bucket, keys[i%len(keys)])
		return int64(len(data)), err
	}
	var (
		seq, par       []Throughput
		readerTime     time.Duration
		readerCPU      time.Duration
		allocs         uint64
		getSecs        float64
		gets, getBytes int64
		lists, metaOps int64

		readerFaults, rawFaults int64 // minor page faults
	)
	start := time.Now()
	for row.Passes == 0 || time.Since(start) < 3*b.cfg.StepTime {
		for _, inFlight := range []int{1, benchFlushThreads} {
			pr := b.probe()
			rs, err := measure(ctx, inFlight, 0, len(keys), get)
			if err != nil {
				return "", err
			}
			t := tputOf("GET", size, inFlight, rs)
			t.CPUCores, _, _, _, t.Mean = b.since(pr)
			rawFaults += readUsage().faults - pr.u.faults
			if inFlight == 1 {
				seq = append(seq, t)
			} else {
				par = append(par, t)
			}
		}
		pr := b.probe()
		t0 := time.Now()
		if err := b.replayOnce(ctx, row); err != nil {
			return "", err
		}
		el := time.Since(t0)
		cores, al, req, _, g := b.since(pr)
		readerFaults += readUsage().faults - pr.u.faults
		readerTime += el
		row.Ratios = append(row.Ratios, float64(row.Payload)/el.Seconds()/1e6/par[len(par)-1].MBps)
		readerCPU += time.Duration(cores * float64(el))
		allocs += al
		getSecs += g * el.Seconds()
		gets += req.DataGets
		getBytes += req.DataGetBytes
		lists += req.List
		metaOps += req.MetaOps
		row.Passes++
	}
	row.RawSeq, row.RawPar = mergeTput(seq), mergeTput(par)
	row.Elapsed = readerTime
	passes := float64(row.Passes)
	row.MBps = float64(row.Payload) * passes / readerTime.Seconds() / 1e6
	row.EntriesPerSec = float64(row.Entries) * passes / readerTime.Seconds()
	row.CPUCores = readerCPU.Seconds() / readerTime.Seconds()
	row.GetsInFlight = getSecs / readerTime.Seconds()
	row.AllocsPerEntry = float64(allocs) / (passes * float64(row.Entries))
	row.GetsPerPass = float64(gets) / passes
	row.FaultsPerMB = float64(readerFaults) / (float64(row.Payload) * passes / 1e6)
	var rawBytes int64
	for _, t := range append(slices.Clone(seq), par...) {
		rawBytes += t.Bytes
	}
	row.RawFaultsPerMB = float64(rawFaults) / (float64(rawBytes) / 1e6)
	row.ListsPerPass = float64(lists) / passes
	row.MetaOpsPerPass = float64(metaOps) / passes
	row.ReadAmp = float64(getBytes) / passes / float64(row.ObjectBytes)
	row.Ratio = median(row.Ratios)
	if err := b.purge(ctx, b.logData(row.name)); err != nil {
		return "", err
	}
	return fmt.Sprintf("Reader %.0f MB/s (%.1f GETs in flight, %.2f cores, %.0f page faults/MB, %.1f fragment GETs, %.1f LISTs, %.1f metadata ops per pass); raw GET %.0f MB/s (1 in flight, %.2f cores), "+
		"%.0f MB/s (4 in flight, %.2f cores; %.0f page faults/MB) -> %.0f%% (median of %d passes)",
		row.MBps, row.GetsInFlight, row.CPUCores, row.FaultsPerMB, row.GetsPerPass, row.ListsPerPass, row.MetaOpsPerPass, row.RawSeq.MBps, row.RawSeq.CPUCores,
		row.RawPar.MBps, row.RawPar.CPUCores, row.RawFaultsPerMB, 100*row.Ratio, row.Passes), nil
}

func (b *bencher) replayOnce(ctx context.Context, row *ReplayRow) error {
	c, err := b.client(ctx, wal.Config{})
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := c.OpenLog(ctx, row.name)
	if err != nil {
		return err
	}
	r, err := l.NewReader(ctx, wal.Earliest)
	if err != nil {
		return err
	}
	defer r.Close()
	for want := uint64(1); want <= uint64(row.Entries); want++ {
		i, e, err := r.Next(ctx)
		if err != nil {
			return err
		}
		if i != want || len(e) != row.Entry {
			return fmt.Errorf("Next = %d (%d bytes), want %d (%d bytes)", i, len(e), want, row.Entry)
		}
	}
	return nil
}

// --- WAL: recovery ---------------------------------------------------------

// recoveryBuild writes rec.Entries entries of 128 bytes, rec.PerFragment
// per fragment (Config.MaxEntries), and leaves the writer open: the crash.
func (b *bencher) recoveryBuild(ctx context.Context, rec *RecoveryResult) (*benchLog, error) {
	lg, err := b.openLog(ctx, wal.Config{MaxEntries: rec.PerFragment}, "recovery")
	if err != nil {
		return nil, err
	}
	w := lg.w
	data := benchData(rec.EntrySize)
	batch := make([][]byte, rec.PerFragment)
	for i := range batch {
		batch[i] = data
	}
	before := b.st.bucket.Snapshot()
	start := time.Now()
	window := make([]*wal.Future, 256)
	for k, i := 0, 0; i < rec.Entries; k, i = k+1, i+len(batch) {
		slot := &window[k%len(window)]
		if *slot != nil {
			if err := (*slot).Wait(ctx); err != nil {
				lg.close()
				return nil, err
			}
		}
		*slot = w.AppendAsync(uint64(i)+1, batch[:min(len(batch), rec.Entries-i)])
	}
	if err := w.Sync(ctx); err != nil {
		lg.close()
		return nil, err
	}
	rec.Build = time.Since(start)
	req := b.st.bucket.Snapshot().Sub(before)
	rec.Fragments = int(req.DataPuts)
	rec.Segments = (rec.Fragments + 9999) / 10000 // Config.SegmentMaxFragments default
	// The crash: the writer is abandoned without Close (its process would be
	// gone; here it just never writes again).
	return lg, nil
}

func (r *RecoveryResult) buildSummary() string {
	return fmt.Sprintf("%d fragments in %s", r.Fragments, fmtDur(r.Build))
}

// recoveryOpen opens the crashed log's writer from a cold client on new
// connections, timing OpenLog and OpenWriter (which fences the old writer's
// open segment, finds its last entry and seals it).
func (b *bencher) recoveryOpen(ctx context.Context, rec *RecoveryResult, crashed *benchLog) (string, error) {
	if crashed == nil {
		return "", errors.New("the log was not built")
	}
	defer func() {
		crashed.close() // the writer is fenced: nothing left to flush
	}()
	st, err := b.env.open(ctx)
	if err != nil {
		return "", err
	}
	defer st.close()
	c, err := wal.Open(ctx, wal.Config{Bucket: st.bucket, Meta: st.meta, Prefix: b.walPrefix, GCInterval: -1})
	if err != nil {
		return "", err
	}
	defer c.Close()
	before := st.bucket.Snapshot()
	t0 := time.Now()
	l, err := c.OpenLog(ctx, crashed.name)
	if err != nil {
		return "", err
	}
	t1 := time.Now()
	w, err := l.OpenWriter(ctx)
	if err != nil {
		return "", err
	}
	t2 := time.Now()
	req := st.bucket.Snapshot().Sub(before)
	defer w.Close()
	if got := w.LastIndex(); got != uint64(rec.Entries) {
		return "", fmt.Errorf("recovered last index %d, want %d", got, rec.Entries)
	}
	rec.OpenLog, rec.OpenWriter, rec.Total = t1.Sub(t0), t2.Sub(t1), t2.Sub(t0)
	rec.Requests = fmt.Sprintf("%d LIST, %d GET, %d HEAD, %d PUT, %d meta ops", req.List, req.Get, req.Head, req.Puts(), req.MetaOps)
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := b.purge(ctx, b.logData(crashed.name)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s (OpenLog %s + OpenWriter %s; %s)", fmtDur(rec.Total), fmtDur(rec.OpenLog), fmtDur(rec.OpenWriter), rec.Requests), nil
}

// --- cost ------------------------------------------------------------------

// cost measures the PUT rate the default Config produces with 1 KiB entries:
// idle is one synchronous Append every 100 ms; light is 1,000 AppendAsync
// per second, paced; heavy is AppendAsync as fast as the WAL takes them.
func (b *bencher) cost(ctx context.Context, row *CostRow) (string, error) {
	const size = 1 << 10
	data := benchData(size)
	lg, err := b.openLog(ctx, wal.Config{}, "cost")
	if err != nil {
		return "", err
	}
	defer lg.close()
	name, w := lg.name, lg.w
	d := b.cfg.CostTime
	before := b.st.bucket.Snapshot()
	start := time.Now()
	var n int
	switch row.Load {
	case "idle":
		row.Desc = "1 sync Append of 1 KiB every 100 ms"
		for ; time.Since(start) < d; n++ {
			if err := w.Append(ctx, uint64(n)+1, [][]byte{data}); err != nil {
				return "", err
			}
			if err := sleepUntil(ctx, start.Add(time.Duration(n+1)*100*time.Millisecond)); err != nil {
				return "", err
			}
		}
	case "light":
		row.Desc = "1,000 AppendAsync of 1 KiB per second, paced"
		for time.Since(start) < d {
			due := int(time.Since(start).Seconds() * 1000)
			for ; n < due; n++ {
				w.AppendAsync(uint64(n)+1, [][]byte{data})
			}
			if err := sleepUntil(ctx, time.Now().Add(time.Millisecond)); err != nil {
				return "", err
			}
		}
		if err := w.Sync(ctx); err != nil {
			return "", err
		}
	case "heavy":
		row.Desc = "AppendAsync of 1 KiB as fast as it goes"
		if n, err = appendFor(ctx, w, data, start.Add(d)); err != nil {
			return "", err
		}
	}
	elapsed := time.Since(start)
	req := b.st.bucket.Snapshot().Sub(before)
	row.Appends = int64(n)
	row.Elapsed = elapsed
	row.AppendsPerSec = float64(n) / elapsed.Seconds()
	row.PutsPerSec = float64(req.Puts()) / elapsed.Seconds()
	row.DataPutsPerSec = float64(req.DataPuts) / elapsed.Seconds()
	row.MetaOpsPerSec = float64(req.MetaOps) / elapsed.Seconds()
	if req.DataPuts > 0 {
		row.EntriesPerPut = float64(n) / float64(req.DataPuts)
	}
	row.USDMonth = row.PutsPerSec * s3MonthSeconds * s3PutUSD
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := b.purge(ctx, b.logData(name)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%.0f appends/s -> %.1f PUT/s ($%.0f/month at S3 Standard)", row.AppendsPerSec, row.PutsPerSec, row.USDMonth), nil
}

// S3 Standard PUT pricing: $0.005 per 1,000 requests; a 30-day month.
const (
	s3PutUSD       = 0.005 / 1000
	s3MonthSeconds = 30 * 24 * 3600
)

// sleepUntil waits until t, or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error { return retry.Sleep(ctx, time.Until(t)) }
