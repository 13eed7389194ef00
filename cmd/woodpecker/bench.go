package main

// woodpecker bench: the WAL measured next to the raw limit of the object
// store under it, in one run against one backend (docs/design.md,
// "Throughput baselines are like for like"). The report judges three
// targets: asynchronous appends of 64 KiB entries at >= 90% of raw PUT
// bandwidth, a synchronous append's p50 within 0.5 ms of one PUT, and
// replay at >= 90% of raw GET bandwidth (see bench_report.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// benchConfig is everything a run needs besides the backend.
type benchConfig struct {
	backend         benchBackendOptions
	quick           bool
	stepTime        time.Duration // measuring time of each throughput/latency step
	costTime        time.Duration // measuring time of each cost (PUT rate) step
	recoveryEntries int
	replayBytes     int64
	groups          map[string]bool
	out             string
	cpuprofile      string
	profileDir      string
	stdout, stderr  io.Writer
}

// benchGroups are the parts of a run, in order; --steps selects some.
var benchGroups = []string{"raw", "async", "sync", "replay", "recovery", "cost"}

func benchCmd() *cobra.Command {
	var (
		cfg      benchConfig
		steps    string
		stepTime time.Duration
		costTime time.Duration

		recoveryEntries, replayMiB int
	)
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure the WAL against the raw limit of its object store, in one run",
		Long: `bench measures, against one backend and in one run, the raw limit of the object
store (PUT latency per size, parallel PUT and GET bandwidth) and the WAL on top
of it: async append throughput for 128 B, 1 KiB and 64 KiB entries with 1 and 4
logs, sync append latency, replay of a sealed log, open/recovery of a log with
1M entries after a crash, the PUT rate (and S3 Standard cost) under idle, light
and heavy load, and peak RSS. Every WAL figure is shown as a ratio to the raw
figure measured like for like: same object size, same parallelism, same
signing, same run.

It prints progress on stderr and a Markdown report on stdout; with --out DIR it
also writes DIR/results.md, DIR/results.json and PNG charts.

Backends:
  (default)                 a temporary file:// directory (fsync on every write)
  --bucket URL [--meta URL] any bucket URL (file://, s3://...); metadata in the
                            bucket unless --meta names a store (etcd://...)
  --server versitygw        starts versitygw and an embedded etcd (like the tests)
  --latency 20ms-60ms       adds an emulated per-request latency (uniform in the
                            range): ~S3 Standard; --latency 5ms: ~S3 Express`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.stdout, cfg.stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			changed := cmd.Flags().Changed
			cfg.stepTime, cfg.costTime = 4*time.Second, 5*time.Second
			cfg.recoveryEntries, cfg.replayBytes = 1_000_000, 256<<20
			if cfg.quick {
				cfg.stepTime, cfg.costTime = 300*time.Millisecond, 600*time.Millisecond
				cfg.recoveryEntries, cfg.replayBytes = 50_000, 4<<20
			}
			if changed("step-time") {
				cfg.stepTime = stepTime
			}
			if changed("cost-time") {
				cfg.costTime = costTime
			}
			if changed("recovery-entries") {
				cfg.recoveryEntries = recoveryEntries
			}
			if changed("replay-mib") {
				cfg.replayBytes = int64(replayMiB) << 20
			}
			switch {
			case cfg.stepTime <= 0 || cfg.costTime <= 0:
				return errors.New("bench: --step-time and --cost-time must be positive")
			case cfg.recoveryEntries < 1000:
				return errors.New("bench: --recovery-entries must be at least 1000")
			case cfg.replayBytes < 1<<20:
				return errors.New("bench: --replay-mib must be at least 1")
			}
			groups, err := parseGroups(steps)
			if err != nil {
				return err
			}
			cfg.groups = groups
			return runBench(cmd.Context(), cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.backend.bucketURL, "bucket", "", "bucket URL to measure (default: a temporary file:// directory)")
	f.StringVar(&cfg.backend.metaURL, "meta", "", "metadata store URL (default: records in the bucket)")
	f.StringVar(&cfg.backend.server, "server", "", `start a server to measure: "versitygw" (with an embedded etcd)`)
	f.StringVar(&cfg.backend.latency, "latency", "", "emulated latency per request: 5ms, or a uniform range 20ms-60ms")
	f.BoolVar(&cfg.backend.disableSha256, "disable-sha256", false, "with --server: send UNSIGNED-PAYLOAD instead of hashing bodies")
	f.StringVar(&cfg.backend.versitygw, "versitygw", "", "versitygw binary (default $WOODPECKER_VERSITYGW, else .cache/bin/versitygw, built if missing)")
	f.BoolVar(&cfg.backend.keep, "keep", false, "keep the temporary directories")
	f.BoolVar(&cfg.quick, "quick", false, "smoke run (~30 s): short steps, small logs")
	f.DurationVar(&stepTime, "step-time", 4*time.Second, "measuring time of each throughput and latency step (--quick: 300ms)")
	f.DurationVar(&costTime, "cost-time", 5*time.Second, "measuring time of each PUT-rate step (--quick: 600ms)")
	f.IntVar(&recoveryEntries, "recovery-entries", 1_000_000, "entries in the log recovered after a crash (--quick: 50000)")
	f.IntVar(&replayMiB, "replay-mib", 256, "payload MiB of each replayed log (--quick: 4)")
	f.StringVar(&steps, "steps", strings.Join(benchGroups, ","), "comma-separated parts to run: "+strings.Join(benchGroups, ","))
	f.StringVar(&cfg.out, "out", "", "directory for results.md, results.json and the PNG charts")
	f.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	f.StringVar(&cfg.profileDir, "profile-dir", "", "write a CPU profile of every step to this directory")
	return c
}

func parseGroups(s string) (map[string]bool, error) {
	m := make(map[string]bool)
	for g := range strings.SplitSeq(s, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		known := false
		for _, k := range benchGroups {
			known = known || k == g
		}
		if !known {
			return nil, fmt.Errorf("bench: unknown step group %q (known: %s)", g, strings.Join(benchGroups, ","))
		}
		m[g] = true
	}
	if len(m) == 0 {
		return nil, errors.New("bench: --steps selects nothing")
	}
	return m, nil
}

// bencher holds one run's state.
type bencher struct {
	cfg  benchConfig
	env  *benchEnv
	st   *stores         // the measured connections (latency + counting)
	base objstore.Bucket // the same bucket without latency or counting: setup and cleanup
	run  string          // run id: lower-case hex
	// walPrefix is the WAL's Config.Prefix; rawPrefix holds raw-baseline
	// objects. Both are deleted at the end.
	walPrefix, rawPrefix string
	names                int
	prog                 *progress
	res                  *benchResults
}

func runBench(ctx context.Context, cfg benchConfig) (err error) {
	prog := &progress{w: cfg.stderr, start: time.Now()}
	cfg.backend.log = func(format string, args ...any) { prog.logf(format, args...) }
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	prog.logf("setting up the backend")
	env, err := newBenchEnv(ctx, cfg.backend)
	if err != nil {
		return err
	}
	defer env.close()
	st, err := env.open(ctx)
	if err != nil {
		return fmt.Errorf("bench: open backend: %w", err)
	}
	defer st.close()
	base, err := env.base(ctx)
	if err != nil {
		return fmt.Errorf("bench: open backend: %w", err)
	}
	defer base.Close()

	run := strconv.FormatInt(time.Now().UnixNano()/1e6, 16)
	b := &bencher{
		cfg: cfg, env: env, st: st, base: base, run: run,
		walPrefix: "bench_" + run, rawPrefix: "bench_" + run + "_raw",
		prog: prog,
		res:  newBenchResults(cfg, env),
	}
	st.bucket.setDataPrefix(b.walPrefix + "/")
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if cerr := b.cleanup(cctx); cerr != nil {
			prog.logf("cleanup: %v", cerr)
		}
	}()

	steps := b.steps()
	prog.total = len(steps)
	prog.logf("backend: %s; metadata: %s; latency: %s; %d steps", env.desc, env.metaDesc, b.res.Latency, len(steps))
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.runStep(ctx, s); err != nil {
			return fmt.Errorf("bench: %s: %w", s.name, err)
		}
	}
	b.res.Elapsed = time.Since(prog.start)
	b.res.LoadEnd = loadAvg()
	b.res.PeakRSS = peakOf(b.res.RSS)

	md := b.res.markdown()
	fmt.Fprint(cfg.stdout, md)
	if cfg.out != "" {
		if err := b.res.write(cfg.out, md); err != nil {
			return err
		}
		prog.logf("wrote %s", filepath.Join(cfg.out, "results.md"))
	}
	return nil
}

// step is one measurement.
type step struct {
	name string
	run  func(ctx context.Context) (string, error) // returns a one-line summary
}

func (b *bencher) runStep(ctx context.Context, s step) error {
	p := b.prog
	p.n++
	p.begin(s.name)
	runtime.GC()
	debug.FreeOSMemory()
	rssReset := resetPeakRSS()
	if b.cfg.profileDir != "" {
		f, err := os.Create(filepath.Join(b.cfg.profileDir, fmt.Sprintf("%02d-%s.pprof", p.n, slug(s.name))))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			// A whole-run --cpuprofile is already running; skip per step.
			f.Close()
		} else {
			defer func() {
				pprof.StopCPUProfile()
				f.Close()
			}()
		}
	}
	start := time.Now()
	summary, err := s.run(ctx)
	if err != nil {
		p.end("FAILED", time.Since(start))
		return err
	}
	hwm := readPeakRSS()
	b.res.RSS = append(b.res.RSS, rssRow{Step: s.name, PeakBytes: hwm, Reset: rssReset})
	p.end(summary, time.Since(start))
	return nil
}

func slug(s string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			sb.WriteRune(r)
		case sb.Len() > 0 && !strings.HasSuffix(sb.String(), "-"):
			sb.WriteByte('-')
		}
	}
	return strings.TrimSuffix(sb.String(), "-")
}

// progress prints one line per step with the elapsed time.
type progress struct {
	w        io.Writer
	start    time.Time
	n, total int
	open     bool // a step line is waiting for its result
}

func (p *progress) stamp() string {
	return fmt.Sprintf("[%7.1fs]", time.Since(p.start).Seconds())
}

func (p *progress) logf(format string, args ...any) {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
	fmt.Fprintf(p.w, "%s %s\n", p.stamp(), fmt.Sprintf(format, args...))
}

func (p *progress) begin(name string) {
	fmt.Fprintf(p.w, "%s %2d/%d %s ...", p.stamp(), p.n, p.total, name)
	p.open = true
}

func (p *progress) end(summary string, took time.Duration) {
	if !p.open {
		fmt.Fprintf(p.w, "%s %2d/%d", p.stamp(), p.n, p.total)
	}
	fmt.Fprintf(p.w, " %s (%.1fs)\n", summary, took.Seconds())
	p.open = false
}

// resetPeakRSS resets the kernel's peak-RSS mark (VmHWM) of this process to
// its current RSS, so each step's peak is its own. It reports whether that
// worked; if not, the peaks are cumulative.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// readPeakRSS returns VmHWM from /proc/self/status in bytes, or 0.
func readPeakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// write stores the report, the JSON results and the charts in dir.
func (r *benchResults) write(dir, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return r.charts(dir)
}
