// Package benchharness is the engine of the woodpecker bench command: it
// measures the WAL next to the raw limit of the object store under it, in
// one run against one backend (docs/design.md, "Throughput baselines are
// like for like"), and writes the report (Markdown, JSON and PNG charts).
// The report judges three targets: asynchronous appends of 64 KiB entries
// at >= 90% of raw PUT bandwidth, a synchronous append's p50 within 0.5 ms
// of one PUT, and replay at >= 90% of raw GET bandwidth (see report.go).
//
// cmd/woodpecker's bench command is a thin CLI over Run: it turns its flags
// into a Config.
package benchharness

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

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// Config is everything a run needs. DefaultConfig fills in the sizes and
// times of a full or a quick run.
type Config struct {
	Backend         Backend
	Quick           bool            // a smoke run: recorded in the report
	StepTime        time.Duration   // measuring time of each throughput/latency step
	CostTime        time.Duration   // measuring time of each cost (PUT rate) step
	RecoveryEntries int             // entries in the log recovered after a crash (>= 1000)
	ReplayBytes     int64           // payload bytes of each replayed log (>= 1 MiB)
	Steps           map[string]bool // the StepGroups to run; ParseSteps makes it
	Out             string          // directory for results.md, results.json and the charts; "": none
	CPUProfile      string          // file for a CPU profile of the whole run; "": none
	ProfileDir      string          // directory for a CPU profile of every step; "": none
	Command         string          // the command line, for the report (default: os.Args)
	Stdout, Stderr  io.Writer       // the Markdown report; progress lines
}

// DefaultConfig returns the configuration of a full run (about 2.5
// minutes), or of a quick smoke run (about 15 s), of every step group.
func DefaultConfig(quick bool) Config {
	cfg := Config{
		Quick: quick, StepTime: 4 * time.Second, CostTime: 5 * time.Second,
		RecoveryEntries: 1_000_000, ReplayBytes: 256 << 20,
		Steps: make(map[string]bool), Stdout: io.Discard, Stderr: io.Discard,
	}
	if quick {
		cfg.StepTime, cfg.CostTime = 300*time.Millisecond, 600*time.Millisecond
		cfg.RecoveryEntries, cfg.ReplayBytes = 50_000, 4<<20
	}
	for _, g := range StepGroups {
		cfg.Steps[g] = true
	}
	return cfg
}

func (cfg Config) validate() error {
	switch {
	case cfg.StepTime <= 0 || cfg.CostTime <= 0:
		return errors.New("bench: --step-time and --cost-time must be positive")
	case cfg.RecoveryEntries < 1000:
		return errors.New("bench: --recovery-entries must be at least 1000")
	case cfg.ReplayBytes < 1<<20:
		return errors.New("bench: --replay-mib must be at least 1")
	case len(cfg.Steps) == 0:
		return errors.New("bench: --steps selects nothing")
	case cfg.Stdout == nil || cfg.Stderr == nil:
		return errors.New("bench: no Stdout or Stderr")
	}
	return nil
}

// StepGroups are the parts of a run, in order; Config.Steps selects some.
var StepGroups = []string{"raw", "async", "sync", "replay", "recovery", "cost"}

// ParseSteps parses a comma-separated list of StepGroups.
func ParseSteps(s string) (map[string]bool, error) {
	m := make(map[string]bool)
	for g := range strings.SplitSeq(s, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		known := false
		for _, k := range StepGroups {
			known = known || k == g
		}
		if !known {
			return nil, fmt.Errorf("bench: unknown step group %q (known: %s)", g, strings.Join(StepGroups, ","))
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
	cfg  Config
	env  *benchEnv
	st   *stores         // the measured connections (latency + counting)
	base objstore.Bucket // the same bucket without latency or counting: setup and cleanup
	run  string          // run id: lower-case hex
	// walPrefix is the WAL's Config.Prefix; rawPrefix holds raw-baseline
	// objects. Both are deleted at the end.
	walPrefix, rawPrefix string
	names                int
	prog                 *progress
	res                  *Results
}

// Run measures the backend cfg names, step by step, printing progress on
// cfg.Stderr and the Markdown report on cfg.Stdout (and writing it to
// cfg.Out). Everything it wrote to the backend is deleted at the end.
func Run(ctx context.Context, cfg Config) (err error) {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.Command == "" {
		cfg.Command = strings.TrimSpace(filepath.Base(os.Args[0]) + " " + strings.Join(os.Args[1:], " "))
	}
	prog := &progress{w: cfg.Stderr, start: time.Now()}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
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
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return err
		}
	}
	prog.logf("setting up the backend")
	env, err := newBenchEnv(ctx, cfg.Backend, prog.logf)
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
		res:  newResults(cfg, env),
	}
	st.bucket.SetDataPrefix(b.walPrefix + "/")
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
	fmt.Fprint(cfg.Stdout, md)
	if cfg.Out != "" {
		if err := b.res.write(cfg.Out, md); err != nil {
			return err
		}
		prog.logf("wrote %s", filepath.Join(cfg.Out, "results.md"))
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
	if b.cfg.ProfileDir != "" {
		f, err := os.Create(filepath.Join(b.cfg.ProfileDir, fmt.Sprintf("%02d-%s.pprof", p.n, slug(s.name))))
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
	b.res.RSS = append(b.res.RSS, RSSRow{Step: s.name, PeakBytes: hwm, Reset: rssReset})
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

// write stores the report, the JSON results and the charts in dir.
func (r *Results) write(dir, md string) error {
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
