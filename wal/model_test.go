package wal_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/woodpecker-wal/woodpecker/meta"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	filestore "github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

var modelSeed = flag.Uint64("seed", 0, "TestConcurrentModel: run only the history with this seed (or set WOODPECKER_MODEL_SEED)")

// TestConcurrentModel runs many seeded histories in which several goroutines
// use one log concurrently — appends from two goroutines on a shared writer,
// truncations, SetMeta, Gets, Meta and Readers in the writer's process and in
// others, GC, takeovers from another process, reopening, DeleteLog and
// CreateLog of the same name — while the bucket fails, answers ambiguously
// and is slow, and checks each recorded history with porcupine against a
// sequential model of the log (model_helpers_test.go).
//
// WOODPECKER_MODEL_HISTORIES sets the number of histories (on file, a
// fifth of it; WOODPECKER_MODEL_FILE_HISTORIES overrides). By default 1,000
// run on mem and 200 on file; make test-long (RAPID_CHECKS=500) runs 20,000
// and 4,000. -seed=N or WOODPECKER_MODEL_SEED=N replays the plan of one
// history (not its timing).
func TestConcurrentModel(t *testing.T) {
	t.Run("mem", func(t *testing.T) { runModel(t, "mem") })
	t.Run("file", func(t *testing.T) { runModel(t, "file") })
}

func modelHistoryCount(env string) int {
	def, long := 1000, 20000
	if env == "file" {
		def, long = 200, 4000
	}
	if testing.Short() {
		def /= 10
	}
	if env == "file" {
		if v := os.Getenv("WOODPECKER_MODEL_FILE_HISTORIES"); v != "" {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	if v := os.Getenv("WOODPECKER_MODEL_HISTORIES"); v != "" {
		n, _ := strconv.Atoi(v)
		if env == "file" {
			n = max(1, n/5)
		}
		return n
	}
	if n, err := strconv.Atoi(os.Getenv("RAPID_CHECKS")); err == nil && n >= 500 { // make test-long
		return long
	}
	return def
}

func modelReplaySeed(t *testing.T) uint64 {
	if *modelSeed != 0 {
		return *modelSeed
	}
	if v := os.Getenv("WOODPECKER_MODEL_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("WOODPECKER_MODEL_SEED=%q: %v", v, err)
		}
		return s
	}
	return 0
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

type modelStats struct {
	histories, ops, acked, failed, takeovers, reopens, recreates, ackProbes, zombieProbes, staleProbes atomic.Int64
	runNanos, checkNanos, slowestCheck                                                                 atomic.Int64
}

func runModel(t *testing.T, env string) {
	if seed := modelReplaySeed(t); seed != 0 {
		t.Logf("%s: replaying seed %d", env, seed)
		var st modelStats
		res := runModelHistory(env, seed, &st)
		reportModel(t, env, res)
		t.Logf("%s: %d operations, %d acknowledged writes, %d failed", env, st.ops.Load(), st.acked.Load(), st.failed.Load())
		return
	}
	count := modelHistoryCount(env)
	base := rand.Uint64()
	t.Logf("%s: %d histories, base seed %d; replay one with -seed=N or WOODPECKER_MODEL_SEED=N", env, count, base)
	par := 4
	if env == "file" {
		par = 2
	}
	start := time.Now()
	var (
		st       modelStats
		mu       sync.Mutex
		failures []*modelResult
		nfail    atomic.Int32
		wg       sync.WaitGroup
	)
	jobs := make(chan uint64)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range jobs {
				if res := runModelHistory(env, seed, &st); res.failed() {
					nfail.Add(1)
					mu.Lock()
					failures = append(failures, res)
					mu.Unlock()
				}
			}
		}()
	}
	for k := 0; k < count && nfail.Load() < 3; k++ {
		jobs <- splitmix(base + uint64(k))
	}
	close(jobs)
	wg.Wait()
	t.Logf("%s: %d histories in %v (running %v, checking %v, the slowest check %v): %d operations, %d acknowledged writes, %d failed; %d takeovers, %d reopens, %d recreations, %d ack-order probes, %d zombie probes, %d stale-record probes",
		env, st.histories.Load(), time.Since(start).Round(time.Millisecond),
		time.Duration(st.runNanos.Load()).Round(time.Millisecond), time.Duration(st.checkNanos.Load()).Round(time.Millisecond),
		time.Duration(st.slowestCheck.Load()).Round(time.Millisecond),
		st.ops.Load(), st.acked.Load(), st.failed.Load(),
		st.takeovers.Load(), st.reopens.Load(), st.recreates.Load(), st.ackProbes.Load(), st.zombieProbes.Load(), st.staleProbes.Load())
	for _, res := range failures {
		reportModel(t, env, res)
	}
}

type modelResult struct {
	seed     uint64
	check    porcupine.CheckResult
	problems []string
	hints    []string
	files    []string
	took     time.Duration
}

func (r *modelResult) failed() bool { return r.check != porcupine.Ok || len(r.problems) > 0 }

func reportModel(t *testing.T, env string, res *modelResult) {
	if !res.failed() {
		t.Logf("%s: seed %d passed (%v)", env, res.seed, res.took.Round(time.Millisecond))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: history with seed %d failed: porcupine %s", env, res.seed, res.check)
	for _, p := range res.problems {
		fmt.Fprintf(&b, "\n  problem: %s", p)
	}
	for _, h := range res.hints {
		fmt.Fprintf(&b, "\n  hint: %s", h)
	}
	for _, f := range res.files {
		fmt.Fprintf(&b, "\n  wrote %s", f)
	}
	fmt.Fprintf(&b, "\n  replay: go test -race -run 'TestConcurrentModel/%s$' ./wal/ -seed=%d", env, res.seed)
	t.Error(b.String())
}

// modelCfg is one history's plan: engine knobs and fault rates.
type modelCfg struct {
	ops          int // per worker
	maxEntries   int
	flushThreads int
	segFrags     int
	retries      int
	maxInterval  time.Duration
	cacheBytes   int64
	prefetch     int
	gcGrace      time.Duration
	putFail      float64
	putAmb       float64
	readFail     float64
	metaFail     float64
	metaAmb      float64
	jitter       time.Duration
	metaDelay    time.Duration
	metaOnBucket bool
	earlyZombie  bool // recreate the log under its first writer early on
}

func pickModelCfg(rng *rand.Rand, env string) modelCfg {
	pick := func(xs ...int) int { return xs[rng.IntN(len(xs))] }
	c := modelCfg{
		ops:          12 + rng.IntN(28),
		maxEntries:   pick(1, 2, 3, 5, 100000),
		flushThreads: pick(1, 2, 4),
		segFrags:     pick(2, 3, 5, 1000),
		retries:      pick(1, 2, 3),
		maxInterval:  time.Duration(pick(50, 200, 500)) * time.Microsecond,
		cacheBytes:   int64(pick(1, 1<<10, 64<<20)),
		prefetch:     pick(-1, 4),
		gcGrace:      time.Duration(pick(1, 1000, 1e9)),
		earlyZombie:  rng.IntN(3) == 0,
	}
	if rng.IntN(20) == 0 {
		c.ops = 60 + rng.IntN(141)
	}
	if rng.IntN(4) > 0 {
		c.putFail = []float64{0.005, 0.02, 0.05}[rng.IntN(3)]
		c.putAmb = []float64{0.005, 0.02, 0.05}[rng.IntN(3)]
		c.readFail = []float64{0, 0.01, 0.03}[rng.IntN(3)]
	}
	if rng.IntN(3) == 0 {
		c.jitter = time.Duration(pick(100, 300, 1000)) * time.Microsecond
	}
	switch env {
	case "mem":
		c.metaOnBucket = rng.IntN(4) == 0
		c.metaDelay = time.Duration(pick(0, 200, 500)) * time.Microsecond
	case "file":
		c.metaOnBucket = true
		c.ops = 8 + rng.IntN(16)
	}
	if c.metaOnBucket && rng.IntN(2) == 0 {
		c.metaFail, c.metaAmb = 0.01, 0.01
	}
	return c
}

// modelRun is one history: three processes (clients) over shared stores,
// four goroutines, and the record of what they did.
type modelRun struct {
	env   string
	seed  uint64
	cfg   modelCfg
	name  string
	begin time.Time
	ctx   context.Context
	stats *modelStats

	probe    *probeBucket
	fb       *fault.Bucket
	ms       *slowMeta
	faults   atomic.Bool
	quiet    atomic.Int32 // > 0: no injected failures
	failPuts atomic.Bool  // fail every data fragment PUT
	failed   atomic.Int64 // data fragment PUTs failed by failPuts
	hookRng  *rand.Rand   // used under the fault bucket's lock

	procs []*mproc // 0 and 1 host writers, 2 only reads
	logs  *logRing

	mu      sync.Mutex
	recs    []histRec
	writers map[int]*writerRec
	readers map[int]*readerRec
	nextW   int
	nextR   int
	inc     uint64
	probs   []string

	idxMu   sync.Mutex   // appends and truncations are queued under it
	qseq    atomic.Int64 // numbers them in queue order
	adminMu sync.Mutex   // one writer change (open, takeover, reopen, recreation) at a time
	slotMu  sync.Mutex
	cur     *mwriter // the writer the goroutines use; guarded by slotMu
	maxIdx  atomic.Uint64
}

type mproc struct {
	id   int
	c    *wal.Client
	mu   sync.Mutex
	l    *wal.Log // guarded by mu
	host *mwriter // the writer open in this process; guarded by modelRun.adminMu
}

type mwriter struct {
	id   int
	p    *mproc
	l    *wal.Log
	w    *wal.Writer
	refs sync.WaitGroup // operations in progress on it
}

type mworker struct {
	id   int
	r    *modelRun
	rng  *rand.Rand
	n    int
	meta int
}

const (
	modelOpTimeout      = 3 * time.Second
	modelHistoryTimeout = 60 * time.Second
	modelCheckTimeout   = 60 * time.Second // porcupine; running out is a failure
)

// runModelHistory runs and checks the history seed names.
func runModelHistory(env string, seed uint64, stats *modelStats) *modelResult {
	start := time.Now()
	res := &modelResult{seed: seed}
	rng := rand.New(rand.NewPCG(seed, 0))
	r := &modelRun{
		env: env, seed: seed, cfg: pickModelCfg(rng, env), name: "model", stats: stats,
		writers: map[int]*writerRec{}, readers: map[int]*readerRec{},
		hookRng: rand.New(rand.NewPCG(seed, 1)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), modelHistoryTimeout)
	defer cancel()
	r.ctx = ctx
	r.begin = time.Now()
	r.logs = newLogRing(r.begin)
	cleanup, err := r.openStores()
	if err != nil {
		res.problems = append(res.problems, err.Error())
		return res
	}
	defer cleanup()
	r.run()
	stats.runNanos.Add(int64(time.Since(start)))
	res.problems = append(res.problems, r.probs...)
	h := &historyLog{recs: r.recs, writers: r.writers, readers: r.readers}
	res.problems = append(res.problems, h.checkValues()...)
	ops, _ := h.operations()
	stats.histories.Add(1)
	stats.ops.Add(int64(len(r.recs)))
	for _, rec := range r.recs {
		if rec.kind.writerOp() {
			if rec.ok {
				stats.acked.Add(1)
			} else {
				stats.failed.Add(1)
			}
		}
	}
	checkStart := time.Now()
	res.check = porcupine.CheckOperationsTimeout(newLogModel(), ops, modelCheckTimeout)
	took := int64(time.Since(checkStart))
	stats.checkNanos.Add(took)
	for m := stats.slowestCheck.Load(); took > m && !stats.slowestCheck.CompareAndSwap(m, took); m = stats.slowestCheck.Load() {
	}
	if res.failed() {
		res.hints = h.hints()
		res.files = writeModelReport(env, seed, r.cfg, h, ops, r.logs)
	}
	res.took = time.Since(start)
	return res
}

func writeModelReport(env string, seed uint64, cfg modelCfg, h *historyLog, ops []porcupine.Operation, logs *logRing) []string {
	var files []string
	base := fmt.Sprintf("woodpecker-model-%s-%d-", env, seed)
	body := fmt.Sprintf("seed %d on %s\nconfig %+v\n\n%s", seed, env, cfg, h.describe())
	if logs != nil {
		body += "\nthe clients' log (times since the history began):\n" + logs.String()
	}
	if f, err := os.CreateTemp("", base+"*.txt"); err == nil {
		_, err = f.WriteString(body)
		if f.Close() == nil && err == nil {
			files = append(files, f.Name())
		}
	}
	if f, err := os.CreateTemp("", base+"*.html"); err == nil {
		model := newLogModel()
		_, info := porcupine.CheckOperationsVerbose(model, ops, modelCheckTimeout)
		err = porcupine.Visualize(model, info, f)
		if f.Close() == nil && err == nil {
			files = append(files, f.Name())
		}
	}
	return files
}

func (r *modelRun) openStores() (func(), error) {
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	var base objstore.CASBucket
	switch r.env {
	case "mem":
		base = objmem.New()
	case "file":
		dir, err := os.MkdirTemp("", "woodpecker-model-")
		if err != nil {
			return cleanup, err
		}
		closers = append(closers, func() { os.RemoveAll(dir) })
		fbk, err := filestore.New(dir, filestore.Options{})
		if err != nil {
			cleanup()
			return func() {}, err
		}
		closers = append(closers, func() { fbk.Close() })
		base = fbk
	}
	r.probe = newProbeBucket(base)
	r.fb = fault.Wrap(r.probe, r.seed)
	r.fb.SetHook(r.decide)
	var ms meta.Store = metamem.New()
	if r.cfg.metaOnBucket {
		bs, err := metabucket.New(r.fb, "meta")
		if err != nil {
			cleanup()
			return func() {}, err
		}
		ms = bs
	}
	r.ms = &slowMeta{Store: ms, rng: rand.New(rand.NewPCG(r.seed, 2)), p: 0.3, maxDelay: r.cfg.metaDelay}
	for i := range 3 {
		c, err := r.newClient()
		if err != nil {
			cleanup()
			return func() {}, err
		}
		closers = append(closers, func() { c.Close() })
		r.procs = append(r.procs, &mproc{id: i, c: c})
	}
	return cleanup, nil
}

func (r *modelRun) newClient() (*wal.Client, error) {
	cfg := r.cfg
	return wal.Open(context.Background(), wal.Config{
		Logger: slog.New(r.logs.WithAttrs([]slog.Attr{slog.Int("client", len(r.procs))})),
		Bucket: r.fb, Meta: r.ms,
		MaxInterval:         cfg.maxInterval,
		MaxEntries:          cfg.maxEntries,
		MaxFlushThreads:     cfg.flushThreads,
		MaxFlushRetries:     cfg.retries,
		RetryInterval:       200 * time.Microsecond,
		RequestTimeout:      500 * time.Millisecond,
		SegmentMaxFragments: cfg.segFrags,
		CacheBytes:          cfg.cacheBytes,
		Prefetch:            cfg.prefetch,
		GCGrace:             cfg.gcGrace,
		PollInterval:        2 * time.Millisecond,
	})
}

// decide is the fault bucket's hook: the history's failure rates, and the
// ack-order probe's failing PUTs.
func (r *modelRun) decide(op fault.Op, key string) fault.Action {
	if !r.faults.Load() || r.quiet.Load() > 0 {
		return fault.Pass
	}
	if op == fault.OpPutIfAbsent && strings.Contains(key, "/s/") && r.failPuts.Load() {
		r.failed.Add(1)
		return fault.Fail
	}
	x := r.hookRng.Float64()
	if op&fault.OpWrite != 0 {
		f, a := r.cfg.putFail, r.cfg.putAmb
		if strings.HasPrefix(key, "meta/") {
			f, a = r.cfg.metaFail, r.cfg.metaAmb
		}
		switch {
		case x < f:
			return fault.Fail
		case x < f+a:
			return fault.Ambiguous
		}
		return fault.Pass
	}
	if x < r.cfg.readFail {
		return fault.Fail
	}
	return fault.Pass
}

func (r *modelRun) now() int64 { return int64(time.Since(r.begin)) }

func (r *modelRun) add(h histRec) {
	r.mu.Lock()
	r.recs = append(r.recs, h)
	r.mu.Unlock()
}

func (r *modelRun) problem(format string, args ...any) {
	r.mu.Lock()
	r.probs = append(r.probs, fmt.Sprintf("at %v: ", time.Duration(r.now()))+fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// checkErr reports errors no fault injected here can explain.
func (r *modelRun) checkErr(err error, what string) {
	if errors.Is(err, wal.ErrCorrupt) || errors.Is(err, wal.ErrUnsupportedVersion) {
		r.problem("%s: %v", what, err)
	}
}

func (r *modelRun) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, modelOpTimeout)
}

func (r *modelRun) noteIdx(i uint64) {
	for {
		m := r.maxIdx.Load()
		if i <= m || r.maxIdx.CompareAndSwap(m, i) {
			return
		}
	}
}

func (r *modelRun) acquire() *mwriter {
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	if r.cur != nil {
		r.cur.refs.Add(1)
	}
	return r.cur
}

func (r *modelRun) current() *mwriter {
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	return r.cur
}

func (r *modelRun) publish(mw *mwriter) {
	r.slotMu.Lock()
	r.cur = mw
	r.slotMu.Unlock()
}

// logOf returns the process's handle on the log, opening it (a recorded
// OpenLog) when it has none or fresh is set.
func (r *modelRun) logOf(client int, p *mproc, fresh bool) (*wal.Log, error) {
	p.mu.Lock()
	l := p.l
	p.mu.Unlock()
	if l != nil && !fresh {
		return l, nil
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	call := r.now()
	l, err := p.c.OpenLog(ctx, r.name)
	ret := r.now()
	if err != nil && !errors.Is(err, wal.ErrLogNotFound) {
		r.checkErr(err, "OpenLog")
		return nil, err
	}
	r.add(histRec{client: client, kind: mOpenLog, proc: p.id, ok: err == nil, call: call, ret: ret})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	return l, nil
}

// reopenWriter opens a new writer in the process of prev, which failed or
// was fenced and is closed: a conditional takeover, ErrFenced if anyone else
// took the log meanwhile (the goroutines then open a writer afresh).
func reopenWriter(ctx context.Context, l *wal.Log, prev *wal.Writer) (*wal.Writer, error) {
	return l.ReopenWriter(ctx, prev.ID())
}

// openWriter opens a writer in p (a recorded takeover). REQUIRES: adminMu.
func (r *modelRun) openWriter(client int, p *mproc, prev *mwriter) *mwriter {
	if p.host != nil {
		return nil
	}
	l, err := r.logOf(client, p, false)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	r.nextW++
	id := r.nextW
	wr := &writerRec{proc: p.id, closeCall: math.MaxInt64, closeRet: math.MaxInt64}
	r.writers[id] = wr
	r.mu.Unlock()
	ctx, cancel := r.opCtx()
	defer cancel()
	call := r.now()
	var w *wal.Writer
	if prev != nil {
		w, err = reopenWriter(ctx, l, prev.w)
	} else {
		w, err = l.OpenWriter(ctx)
	}
	ret := r.now()
	h := histRec{client: client, kind: mOpenWriter, proc: p.id, writer: id, ok: err == nil, call: call, ret: ret}
	if err == nil {
		// What it found is the log at the takeover: nothing is queued yet.
		f := &recovered{first: w.FirstIndex(), meta: string(w.Meta()["k"])}
		if f.first != 0 {
			f.last = w.LastIndex()
			if b, err := l.Get(ctx, f.last); err == nil {
				f.lastVal = string(b)
			}
		}
		h.found = f
	} else {
		h.err = err.Error()
	}
	r.mu.Lock()
	wr.openCall, wr.openRet, wr.ok = call, ret, err == nil
	if err != nil {
		wr.closeCall, wr.closeRet = ret, ret
	}
	r.recs = append(r.recs, h)
	r.mu.Unlock()
	if err != nil {
		r.checkErr(err, "OpenWriter")
		return nil
	}
	mw := &mwriter{id: id, p: p, l: l, w: w}
	p.host = mw
	return mw
}

// closeWriter closes a writer nobody uses any more. REQUIRES: adminMu.
func (r *modelRun) closeWriter(mw *mwriter) {
	mw.refs.Wait()
	call := r.now()
	err := mw.w.Close()
	ret := r.now()
	r.mu.Lock()
	wr := r.writers[mw.id]
	wr.closeCall, wr.closeRet = call, ret
	if err != nil {
		wr.failed = true
	}
	r.mu.Unlock()
	if err != nil {
		r.checkErr(err, "Close")
	}
	mw.p.host = nil
}

// freeProc returns a process able to host a writer, or nil. REQUIRES: adminMu.
func (r *modelRun) freeProc(rng *rand.Rand) *mproc {
	var free []*mproc
	for _, p := range r.procs[:2] {
		if p.host == nil {
			free = append(free, p)
		}
	}
	if len(free) == 0 {
		return nil
	}
	return free[rng.IntN(len(free))]
}

// reopen replaces mw, which failed or was fenced, by a new writer in its
// process, unless someone replaced it already.
func (r *modelRun) reopen(client int, mw *mwriter) {
	r.adminMu.Lock()
	defer r.adminMu.Unlock()
	if r.current() != mw {
		return
	}
	r.publish(nil)
	r.closeWriter(mw)
	r.stats.reopens.Add(1)
	if nw := r.openWriter(client, mw.p, mw); nw != nil {
		r.publish(nw)
	}
}

func (r *modelRun) run() {
	setup := &mworker{id: 3, r: r, rng: rand.New(rand.NewPCG(r.seed, 10))}
	r.createLog(setup.id, r.procs[0])
	r.adminMu.Lock()
	if mw := r.openWriter(setup.id, r.procs[0], nil); mw != nil {
		r.publish(mw)
	}
	r.adminMu.Unlock()
	r.faults.Store(true)
	r.fb.SetLatency(0, r.cfg.jitter)

	var wg sync.WaitGroup
	for id, loop := range []func(*mworker){(*mworker).appender, (*mworker).truncater, (*mworker).reader, (*mworker).admin} {
		wk := &mworker{id: id, r: r, rng: rand.New(rand.NewPCG(r.seed, 100+uint64(id)))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(wk)
		}()
	}
	wg.Wait()
	if r.ctx.Err() != nil {
		r.problem("the history did not finish within %v", modelHistoryTimeout)
	}
	r.finish()
}

// finish heals the stores, closes every writer and records what a fresh
// process recovers.
func (r *modelRun) finish() {
	r.faults.Store(false)
	r.failPuts.Store(false)
	r.fb.SetLatency(0, 0)
	r.probe.slow.Store(nil)
	r.adminMu.Lock()
	r.publish(nil)
	for _, p := range r.procs {
		if p.host != nil {
			r.closeWriter(p.host)
		}
	}
	r.adminMu.Unlock()

	const client = 4
	c, err := r.newClient()
	if err != nil {
		r.problem("final client: %v", err)
		return
	}
	defer c.Close()
	ctx, cancel := r.opCtx()
	defer cancel()
	fp := &mproc{id: 3, c: c}
	l, err := r.logOf(client, fp, true)
	if errors.Is(err, wal.ErrLogNotFound) {
		call := r.now()
		r.add(histRec{client: client, kind: mFinal, proc: fp.id, final: &finalState{}, call: call, ret: r.now()})
		return
	}
	if err != nil {
		r.problem("final OpenLog: %v", err)
		return
	}
	r.adminMu.Lock()
	defer r.adminMu.Unlock()
	mw := r.openWriter(client, fp, nil)
	if mw == nil {
		r.problem("final OpenWriter failed")
		return
	}
	defer r.closeWriter(mw)
	call := r.now()
	f := &finalState{exists: true, first: mw.w.FirstIndex(), meta: string(mw.w.Meta()["k"])}
	for i := f.first; f.first > 0 && i <= mw.w.LastIndex(); i++ {
		b, err := l.Get(ctx, i)
		if err != nil {
			r.problem("final Get(%d) of [%d, %d]: %v", i, f.first, mw.w.LastIndex(), err)
			return
		}
		f.vals = append(f.vals, string(b))
	}
	if m, err := l.Meta(ctx); err != nil || string(m["k"]) != f.meta {
		r.problem("final Log.Meta = %q, %v; the writer has %q", m["k"], err, f.meta)
	}
	r.add(histRec{client: client, kind: mFinal, proc: fp.id, final: f, call: call, ret: r.now()})
}

// createLog creates the log (a new incarnation), retrying failures.
// REQUIRES: the log does not exist.
func (r *modelRun) createLog(client int, p *mproc) {
	call := r.now()
	if !r.persist("CreateLog", func(ctx context.Context, attempt int) (bool, error) {
		err := p.c.CreateLog(ctx, r.name)
		return err == nil || attempt > 0 && errors.Is(err, wal.ErrLogExists), err
	}) {
		return
	}
	r.mu.Lock()
	r.inc++
	r.recs = append(r.recs, histRec{client: client, kind: mCreateLog, proc: p.id, idx: r.inc, ok: true, call: call, ret: r.now()})
	r.mu.Unlock()
}

// deleteLog deletes the log, resuming failed attempts.
func (r *modelRun) deleteLog(client int, p *mproc) {
	call := r.now()
	if !r.persist("DeleteLog", func(ctx context.Context, _ int) (bool, error) {
		err := p.c.DeleteLog(ctx, r.name)
		return err == nil, err
	}) {
		return
	}
	r.add(histRec{client: client, kind: mDeleteLog, proc: p.id, ok: true, call: call, ret: r.now()})
}

// persist calls op, each attempt with its own operation context, until it
// reports done, with the injected failures paused from the fourth failed
// attempt on; false, with a problem recorded, when it never is.
func (r *modelRun) persist(what string, op func(ctx context.Context, attempt int) (done bool, err error)) bool {
	for attempt := 0; ; attempt++ {
		ctx, cancel := r.opCtx()
		done, err := op(ctx, attempt)
		cancel()
		if done {
			return true
		}
		r.checkErr(err, what)
		if attempt == 3 {
			r.quiet.Add(1)
			defer r.quiet.Add(-1)
		}
		if attempt > 20 || r.ctx.Err() != nil {
			r.problem("%s keeps failing: %v", what, err)
			return false
		}
	}
}

func (wk *mworker) value() string {
	wk.n++
	return fmt.Sprintf("w%d-%d", wk.id, wk.n)
}

func (wk *mworker) metaValue() string {
	wk.meta++
	return fmt.Sprintf("m%d-%d", wk.id, wk.meta)
}

// writer returns the writer to use (a reference the caller releases), opening
// one when there is none, or nil.
func (wk *mworker) writer() *mwriter {
	r := wk.r
	if mw := r.acquire(); mw != nil {
		return mw
	}
	if r.adminMu.TryLock() {
		if r.current() == nil {
			if p := r.freeProc(wk.rng); p != nil {
				if nw := r.openWriter(wk.id, p, nil); nw != nil {
					r.publish(nw)
				}
			}
		}
		r.adminMu.Unlock()
	}
	if mw := r.acquire(); mw != nil {
		return mw
	}
	time.Sleep(100 * time.Microsecond)
	return nil
}

// startIndex picks the first index of an append to an empty log.
func (wk *mworker) startIndex() uint64 {
	hi := wk.r.maxIdx.Load()
	switch x := wk.rng.IntN(10); {
	case x < 4:
		return hi + 1
	case x < 7:
		return 1 + uint64(wk.rng.IntN(10))
	default:
		return max(1, hi-min(hi, uint64(wk.rng.IntN(8))))
	}
}

// nextIndex is the index the next append to w must use. REQUIRES: idxMu.
func (wk *mworker) nextIndex(w *wal.Writer) uint64 {
	if w.FirstIndex() == 0 {
		return wk.startIndex()
	}
	return w.LastIndex() + 1
}

func (wk *mworker) entries(n int) ([]string, [][]byte) {
	vals, ents := make([]string, n), make([][]byte, n)
	for i := range vals {
		vals[i] = wk.value()
		ents[i] = []byte(vals[i])
	}
	return vals, ents
}

// endWrite records the outcome of a writer operation and returns the writer
// if it failed or was fenced (the caller reopens it after releasing it).
func (wk *mworker) endWrite(mw *mwriter, h histRec, err error) *mwriter {
	return wk.endWriteAt(mw, h, err, wk.r.now())
}

// endWriteAt is endWrite for an operation that returned at ret.
func (wk *mworker) endWriteAt(mw *mwriter, h histRec, err error, ret int64) *mwriter {
	r := wk.r
	h.client, h.proc, h.writer, h.ret, h.ok = wk.id, mw.p.id, mw.id, ret, err == nil
	if err != nil {
		h.err = err.Error()
	}
	if errors.Is(err, wal.ErrBadIndex) || errors.Is(err, wal.ErrClosed) {
		return nil // refused before it was queued: nothing happened
	}
	r.add(h)
	if err == nil {
		return nil
	}
	r.checkErr(err, h.kind.String())
	if errors.Is(err, wal.ErrFenced) || errors.Is(err, wal.ErrBroken) {
		return mw
	}
	return nil
}

// writeCtx returns the context of a truncation or SetMeta: usually a normal
// one, sometimes one already cancelled or about to expire (the operation
// stays queued).
func (wk *mworker) writeCtx() (context.Context, context.CancelFunc) {
	switch x := wk.rng.IntN(10); {
	case x < 7:
		return wk.r.opCtx()
	case x < 9:
		ctx, cancel := context.WithCancel(wk.r.ctx)
		cancel()
		return ctx, cancel
	default:
		return context.WithTimeout(wk.r.ctx, time.Duration(wk.rng.IntN(300))*time.Microsecond)
	}
}

// appendOp queues one to three appends under idxMu (or makes one
// synchronous Append) and waits for them outside it.
func (wk *mworker) appendOp(mw *mwriter, sync bool) (bad *mwriter) {
	r := wk.r
	type pending struct {
		h   histRec
		fut *wal.Future
	}
	var ps []pending
	k := 1
	if !sync {
		k = 1 + wk.rng.IntN(2)
	}
	r.idxMu.Lock()
	for range k {
		first := wk.nextIndex(mw.w)
		vals, ents := wk.entries(1 + wk.rng.IntN(3))
		h := histRec{kind: mAppend, idx: first, vals: vals, qseq: r.qseq.Add(1), call: r.now()}
		r.noteIdx(first + uint64(len(vals)) - 1)
		if sync {
			ctx, cancel := r.opCtx()
			err := mw.w.Append(ctx, first, ents)
			cancel()
			bad = wk.endWrite(mw, h, err)
			continue
		}
		ps = append(ps, pending{h, mw.w.AppendAsync(first, ents)})
	}
	r.idxMu.Unlock()
	if len(ps) > 0 && wk.rng.IntN(3) == 0 {
		mw.w.Flush()
	}
	for _, p := range ps {
		ctx, cancel := r.opCtx()
		err := p.fut.Wait(ctx)
		cancel()
		if b := wk.endWrite(mw, p.h, err); b != nil {
			bad = b
		}
	}
	return bad
}

// truncateOp queues a TruncateBack or TruncateFront under idxMu, like the
// appends, and waits for it outside. Truncations that change nothing in the
// writer's view (which counts what is queued) return at once, before what is
// queued ahead of them is applied: they are not recorded.
func (wk *mworker) truncateOp(mw *mwriter, back bool) *mwriter {
	r := wk.r
	w := mw.w
	r.idxMu.Lock()
	locked := true
	defer func() {
		if locked {
			r.idxMu.Unlock()
		}
	}()
	first, last := w.FirstIndex(), w.LastIndex()
	if first == 0 {
		return nil
	}
	kind := mTruncateFront
	var i uint64
	switch x := wk.rng.IntN(20); {
	case back && x == 0:
		i = first - 1 // empties the log
	case back:
		i = last - min(last-first+1, 1+uint64(wk.rng.IntN(4)))
	case x < 2:
		i = last + 1 + uint64(wk.rng.IntN(2)) // empties the log
	default:
		i = first + min(last-first, 1+uint64(wk.rng.IntN(3)))
	}
	if back {
		kind = mTruncateBack
		if i >= last {
			return nil
		}
	} else if i <= first {
		return nil
	}
	queued := func() bool {
		if back {
			return w.FirstIndex() == 0 || w.LastIndex() == i
		}
		return w.FirstIndex() == 0 || w.FirstIndex() == i
	}
	ctx, cancel := wk.writeCtx()
	defer cancel()
	h := histRec{kind: kind, idx: i, qseq: r.qseq.Add(1), call: r.now()}
	done := make(chan error, 1)
	go func() {
		if back {
			done <- w.TruncateBack(ctx, i)
		} else {
			done <- w.TruncateFront(ctx, i)
		}
	}()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-done:
			done <- err
			waiting = false
		default:
			if queued() {
				waiting = false
			} else {
				runtime.Gosched()
			}
		}
	}
	r.idxMu.Unlock()
	locked = false
	return wk.endWrite(mw, h, <-done)
}

func (wk *mworker) setMetaOp(mw *mwriter) *mwriter {
	r := wk.r
	v := wk.metaValue()
	ctx, cancel := wk.writeCtx()
	defer cancel()
	h := histRec{kind: mSetMeta, val: v, call: r.now()}
	return wk.endWrite(mw, h, mw.w.SetMeta(ctx, map[string][]byte{"k": []byte(v)}))
}

// ackOrderProbe queues, while a fragment is held in flight, an append A, a
// TruncateBack into A with an already cancelled context (it stays queued)
// and an append B at the truncation point whose last index is at or below
// A's: B must not be acknowledged before its own fragment lands. Then it
// either fails every later fragment PUT (B's outcome shows in the recovered
// log) or slows B's fragment and reads B back as soon as it is
// acknowledged.
func (wk *mworker) ackOrderProbe(mw *mwriter) (bad *mwriter) {
	r := wk.r
	r.stats.ackProbes.Add(1)
	failing := wk.rng.IntN(2) == 0
	k := 2 + wk.rng.IntN(4)
	r.idxMu.Lock()
	locked := true
	defer func() {
		if locked {
			r.idxMu.Unlock()
		}
	}()
	g := r.probe.hold()
	held := true
	defer func() {
		if held {
			r.probe.release(g)
		}
	}()
	n := wk.nextIndex(mw.w)
	valsA, entsA := wk.entries(k)
	hA := histRec{kind: mAppend, idx: n, vals: valsA, qseq: r.qseq.Add(1), call: r.now()}
	futA := mw.w.AppendAsync(n, entsA)
	r.noteIdx(n + uint64(k) - 1)
	mw.w.Flush()
	var hB histRec
	var futB *wal.Future
	select {
	case <-g.hits:
		i := n + uint64(wk.rng.IntN(k-1))
		cctx, cancel := context.WithCancel(r.ctx)
		cancel()
		hT := histRec{kind: mTruncateBack, idx: i, qseq: r.qseq.Add(1), call: r.now()}
		if b := wk.endWrite(mw, hT, mw.w.TruncateBack(cctx, i)); b != nil {
			bad = b
		}
		m := 1 + wk.rng.IntN(int(n+uint64(k)-1-i))
		valsB, entsB := wk.entries(m)
		hB = histRec{kind: mAppend, idx: i + 1, vals: valsB, qseq: r.qseq.Add(1), call: r.now()}
		futB = mw.w.AppendAsync(i+1, entsB)
		if failing {
			r.failed.Store(0)
			r.failPuts.Store(true)
		} else {
			r.probe.slow.Store(&slowRule{from: i + 1, delay: 5 * time.Millisecond})
		}
	case <-time.After(20 * time.Millisecond):
	}
	r.idxMu.Unlock()
	locked = false
	r.probe.release(g)
	held = false
	ctx, cancel := r.opCtx()
	defer cancel()
	var errA error
	doneA := make(chan struct{})
	go func() {
		defer close(doneA)
		errA = futA.Wait(ctx)
		hA.ret = r.now()
	}()
	if futB != nil {
		errB := futB.Wait(ctx)
		if b := wk.endWrite(mw, hB, errB); b != nil {
			bad = b
		}
		if errB == nil {
			// Read B back right away, in the writer's process and in another.
			wk.getAt(mw.p, hB.idx)
			wk.getAt(r.procs[2], hB.idx)
		}
	}
	<-doneA
	if b := wk.endWriteAt(mw, hA, errA, hA.ret); b != nil {
		bad = b
	}
	if failing && futB != nil {
		deadline := time.Now().Add(50 * time.Millisecond)
		for r.failed.Load() <= int64(r.cfg.retries) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Microsecond)
		}
		r.failPuts.Store(false)
	}
	r.probe.slow.Store(nil)
	return bad
}

// staleRecordProbe holds back the record read of an OpenLog in the writer's
// process until a TruncateBack and an append at the truncation point have
// completed, then reads the appended entries there: the stale record the
// OpenLog read must not replace the writer's.
func (wk *mworker) staleRecordProbe(mw *mwriter) (bad *mwriter) {
	r := wk.r
	w := mw.w
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	first, last := w.FirstIndex(), w.LastIndex()
	if first == 0 || last < first+2 {
		return nil
	}
	r.stats.staleProbes.Add(1)
	hold := r.ms.holdNext("wal/logs/" + r.name)
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		_, _ = r.logOf(wk.id, mw.p, true)
	}()
	select {
	case <-hold.read:
	case <-time.After(20 * time.Millisecond):
		r.ms.hold.CompareAndSwap(hold, nil)
		close(hold.release)
		<-opened
		return nil
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	i := last - 1 - uint64(wk.rng.IntN(int(min(last-first-1, 3))))
	if b := wk.endWrite(mw, histRec{kind: mTruncateBack, idx: i, qseq: r.qseq.Add(1), call: r.now()}, w.TruncateBack(ctx, i)); b != nil {
		bad = b
	}
	vals, ents := wk.entries(1 + wk.rng.IntN(3))
	h := histRec{kind: mAppend, idx: i + 1, vals: vals, qseq: r.qseq.Add(1), call: r.now()}
	r.noteIdx(i + uint64(len(vals)))
	err := w.Append(ctx, i+1, ents)
	if b := wk.endWrite(mw, h, err); b != nil {
		bad = b
	}
	close(hold.release)
	<-opened
	if err == nil {
		for k := range vals {
			wk.getAt(mw.p, i+1+uint64(k))
		}
	}
	return bad
}

func (wk *mworker) pickProc() *mproc {
	r := wk.r
	if mw := r.current(); mw != nil && wk.rng.IntN(2) == 0 {
		return mw.p
	}
	return r.procs[wk.rng.IntN(len(r.procs))]
}

func (wk *mworker) pickIndex() uint64 {
	hi := wk.r.maxIdx.Load()
	switch x := wk.rng.IntN(10); {
	case hi == 0:
		return 1
	case x < 7:
		return hi - uint64(wk.rng.IntN(int(min(hi, 8))))
	case x < 9:
		return 1 + uint64(wk.rng.IntN(int(hi)))
	default:
		return hi + 1 + uint64(wk.rng.IntN(2))
	}
}

func readResult(err error) (readRes, bool) {
	switch {
	case err == nil:
		return resValue, true
	case errors.Is(err, wal.ErrTruncated), errors.Is(err, wal.ErrOutOfRange):
		return resAbsent, true
	case errors.Is(err, wal.ErrLogNotFound):
		return resNoLog, true
	}
	return 0, false
}

func (wk *mworker) getAt(p *mproc, i uint64) {
	wk.readIn(p, histRec{kind: mGet, idx: i}, "Get", func(ctx context.Context, l *wal.Log) (string, error) {
		b, err := l.Get(ctx, i)
		return string(b), err
	})
}

func (wk *mworker) metaOp() {
	wk.readIn(wk.pickProc(), histRec{kind: mMeta}, "Meta", func(ctx context.Context, l *wal.Log) (string, error) {
		m, err := l.Meta(ctx)
		return string(m["k"]), err
	})
}

// readIn makes one read of the log in p (after a fresh OpenLog one time in
// four) and records it as h with its outcome; a read that failed other than
// as the model allows is only checked for errors no fault explains.
func (wk *mworker) readIn(p *mproc, h histRec, what string, read func(context.Context, *wal.Log) (string, error)) {
	r := wk.r
	l, err := r.logOf(wk.id, p, wk.rng.IntN(4) == 0)
	if err != nil {
		return
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	call := r.now()
	val, err := read(ctx, l)
	ret := r.now()
	res, ok := readResult(err)
	if !ok {
		r.checkErr(err, what)
		return
	}
	h.client, h.proc, h.res, h.val, h.call, h.ret = wk.id, p.id, res, val, call, ret
	r.add(h)
}

// readerOp reads a few entries with a Reader, from the first index or a
// recent one.
func (wk *mworker) readerOp() {
	r := wk.r
	p := wk.pickProc()
	l, err := r.logOf(wk.id, p, false)
	if err != nil {
		return
	}
	from := wal.Earliest
	if wk.rng.IntN(4) > 0 {
		from = wk.pickIndex()
	}
	r.mu.Lock()
	r.nextR++
	id := r.nextR
	rr := &readerRec{proc: p.id, start: r.now()}
	r.readers[id] = rr
	r.mu.Unlock()
	ctx, cancel := r.opCtx()
	defer cancel()
	rd, err := l.NewReader(ctx, from)
	if err == nil {
		var prev uint64
		for k := range 1 + wk.rng.IntN(6) {
			nctx, ncancel := context.WithTimeout(ctx, time.Duration(1+wk.rng.IntN(4))*time.Millisecond)
			call := r.now()
			i, e, err := rd.Next(nctx)
			ret := r.now()
			ncancel()
			if err != nil {
				r.checkErr(err, "Reader.Next")
				break
			}
			if k == 0 && from != wal.Earliest && i != from || k > 0 && i != prev+1 {
				r.problem("reader %d from %d in p%d returned entry %d after %d", id, from, p.id, i, prev)
			}
			prev = i
			r.add(histRec{client: wk.id, kind: mGet, proc: p.id, idx: i, res: resValue, val: string(e), reader: id, call: call, ret: ret})
		}
		rd.Close()
	} else {
		r.checkErr(err, "NewReader")
	}
	r.mu.Lock()
	rr.end = r.now()
	r.mu.Unlock()
}

func (wk *mworker) gcOp() {
	r := wk.r
	p := wk.pickProc()
	ctx, cancel := r.opCtx()
	defer cancel()
	call := r.now()
	_, err := p.c.GC(ctx, r.name)
	ret := r.now()
	if err != nil {
		r.checkErr(err, "GC")
	}
	r.add(histRec{client: wk.id, kind: mGC, proc: p.id, call: call, ret: ret})
}

func (wk *mworker) readOp() {
	switch x := wk.rng.IntN(20); {
	case x < 11:
		wk.getAt(wk.pickProc(), wk.pickIndex())
	case x < 14:
		wk.metaOp()
	case x < 17:
		wk.readerOp()
	case x < 18:
		_, _ = wk.r.logOf(wk.id, wk.pickProc(), true)
	default:
		wk.gcOp()
	}
}

func (wk *mworker) after(bad *mwriter) {
	if bad != nil {
		wk.r.reopen(wk.id, bad)
	}
}

// repeat runs op the history's number of operations per worker, or until
// the history's time is up.
func (wk *mworker) repeat(op func()) {
	for range wk.r.cfg.ops {
		if wk.r.ctx.Err() != nil {
			return
		}
		op()
	}
}

// writeOp is a writer operation in a worker's mix, with its weight. It
// runs on the writer it is given and returns that writer if it failed or
// was fenced.
type writeOp struct {
	weight int
	op     func(*mwriter) *mwriter
}

// writeOrRead rolls once out of total: one of ops by their weights, whose
// failed or fenced writer is then reopened, or a read for the rest.
func (wk *mworker) writeOrRead(total int, ops ...writeOp) {
	x := wk.rng.IntN(total)
	for _, o := range ops {
		if x < o.weight {
			wk.after(wk.withWriter(o.op))
			return
		}
		x -= o.weight
	}
	wk.readOp()
}

// withWriter runs op on the writer to use, holding a reference to it while
// op runs, and returns what op returns; without a writer it does nothing.
func (wk *mworker) withWriter(op func(*mwriter) *mwriter) *mwriter {
	mw := wk.writer()
	if mw == nil {
		return nil
	}
	defer mw.refs.Done()
	return op(mw)
}

func (wk *mworker) appender() {
	wk.repeat(func() {
		wk.writeOrRead(20,
			writeOp{14, func(mw *mwriter) *mwriter { return wk.appendOp(mw, false) }},
			writeOp{2, func(mw *mwriter) *mwriter { return wk.appendOp(mw, true) }},
			writeOp{1, wk.setMetaOp})
	})
}

func (wk *mworker) truncater() {
	wk.repeat(func() {
		wk.writeOrRead(50,
			writeOp{18, func(mw *mwriter) *mwriter { return wk.appendOp(mw, false) }},
			writeOp{9, func(mw *mwriter) *mwriter { return wk.truncateOp(mw, true) }},
			writeOp{4, func(mw *mwriter) *mwriter { return wk.truncateOp(mw, false) }},
			writeOp{5, wk.setMetaOp},
			writeOp{4, wk.ackOrderProbe},
			writeOp{2, wk.staleRecordProbe})
	})
}

func (wk *mworker) reader() { wk.repeat(wk.readOp) }

func (wk *mworker) admin() {
	r := wk.r
	recreations := 0
	if r.cfg.earlyZombie {
		time.Sleep(time.Duration(500+wk.rng.IntN(2000)) * time.Microsecond)
		wk.recreate(true)
		recreations++
	}
	for range max(3, r.cfg.ops/3) {
		if r.ctx.Err() != nil {
			return
		}
		switch x := wk.rng.IntN(100); {
		case x < 6 && recreations < 2:
			wk.recreate(true)
			recreations++
		case x < 10 && recreations < 2:
			wk.recreate(false)
			recreations++
		case x < 30:
			wk.takeover()
		case x < 40:
			if mw := r.current(); mw != nil {
				r.reopen(wk.id, mw)
			}
		case x < 55:
			wk.gcOp()
		default:
			wk.readOp()
		}
		time.Sleep(time.Duration(wk.rng.IntN(500)) * time.Microsecond)
	}
}

// takeover opens a writer in a process without one while the current
// writer is in use: the current one becomes a zombie and is closed once its
// operations are done.
func (wk *mworker) takeover() {
	r := wk.r
	r.adminMu.Lock()
	defer r.adminMu.Unlock()
	old := r.current()
	p := r.freeProc(wk.rng)
	if p == nil {
		return
	}
	r.stats.takeovers.Add(1)
	nw := r.openWriter(wk.id, p, nil)
	if nw == nil {
		return
	}
	r.publish(nw)
	if old != nil {
		r.closeWriter(old)
	}
}

// recreate deletes the log and creates it again under the same name, then
// opens its first writer in another process. With zombie set, the old writer
// is idle meanwhile and afterwards tries SetMeta, TruncateBack and an append:
// none may be acknowledged.
func (wk *mworker) recreate(zombie bool) {
	r := wk.r
	r.adminMu.Lock()
	defer r.adminMu.Unlock()
	r.stats.recreates.Add(1)
	old := r.current()
	if zombie && old != nil {
		r.publish(nil)
		old.refs.Wait()
	}
	dp := r.procs[wk.rng.IntN(len(r.procs))]
	r.deleteLog(wk.id, dp)
	r.createLog(wk.id, r.procs[wk.rng.IntN(len(r.procs))])
	r.publish(nil)
	if p := r.freeProc(wk.rng); p != nil {
		if nw := r.openWriter(wk.id, p, nil); nw != nil {
			r.publish(nw)
		}
	}
	if old == nil {
		return
	}
	if zombie {
		r.stats.zombieProbes.Add(1)
		wk.zombieOps(old)
	}
	r.closeWriter(old)
}

func (wk *mworker) zombieOps(old *mwriter) {
	r := wk.r
	ctx, cancel := context.WithTimeout(r.ctx, 300*time.Millisecond)
	defer cancel()
	v := wk.metaValue()
	wk.endWrite(old, histRec{kind: mSetMeta, val: v, call: r.now()}, old.w.SetMeta(ctx, map[string][]byte{"k": []byte(v)}))
	if first, last := old.w.FirstIndex(), old.w.LastIndex(); first > 0 && last > first {
		wk.endWrite(old, histRec{kind: mTruncateBack, idx: last - 1, qseq: r.qseq.Add(1), call: r.now()}, old.w.TruncateBack(ctx, last-1))
	}
	first := wk.nextIndex(old.w)
	vals, ents := wk.entries(1 + wk.rng.IntN(2))
	h := histRec{kind: mAppend, idx: first, vals: vals, qseq: r.qseq.Add(1), call: r.now()}
	wk.endWrite(old, h, old.w.Append(ctx, first, ents))
}
