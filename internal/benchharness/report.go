package benchharness

// Results of woodpecker bench: the Markdown report and the PNG charts.

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/woodpecker-wal/woodpecker/internal/latency"
)

// Targets the report judges each run against (docs/design.md, "Throughput
// baselines are like for like").
const (
	targetAsyncRatio  = 0.90                   // async append >= 90% of raw PUT bandwidth (64 KiB entries)
	targetSyncDelta   = 500 * time.Microsecond // sync append p50 within 0.5 ms of one PUT
	targetReplayRatio = 0.90                   // replay >= 90% of raw GET bandwidth
)

// RawPutLatency is the latency of PUTs of one object size, one in flight.
type RawPutLatency struct {
	Size int
	Lat  latency.Stats
}

// Throughput is a raw throughput measurement.
type Throughput struct {
	Op       string
	Size     int // object size
	InFlight int
	Ops      int
	Bytes    int64
	Elapsed  time.Duration
	MBps     float64
	Lat      latency.Stats
	CPUCores float64 // process CPU time / elapsed
	Mean     float64 // requests in flight, time-averaged
}

func tputOf(op string, size, inFlight int, r latency.Run) Throughput {
	return Throughput{
		Op: op, Size: size, InFlight: inFlight, Ops: r.Ops, Bytes: r.Bytes, Elapsed: r.Elapsed,
		MBps: float64(r.Bytes) / r.Elapsed.Seconds() / 1e6, Lat: latency.Summarize(r.Samples),
	}
}

// AsyncRow is one async append step, next to its raw PUT baseline.
type AsyncRow struct {
	Entry, Logs   int
	Entries       int64
	Elapsed       time.Duration
	EntriesPerSec float64
	MBps          float64 // entry payload
	Fragments     int64
	FragmentBytes int64      // mean fragment object size
	Raw           Throughput // PUTs of FragmentBytes objects, Logs x MaxFlushThreads in flight
	Ratio         float64    // median of Ratios
	Ratios        []float64  // WAL / raw MB/s of each pair of alternating slices

	CPUCores       float64 // process CPU time / elapsed
	CPUPerEntry    time.Duration
	AllocsPerEntry float64
	PutsInFlight   float64 // fragment PUTs in flight, time-averaged
}

// SyncResult is the sync append step: Appends paired with PUTs.
type SyncResult struct {
	Entry, FragmentBytes int
	WAL, Put, Diff       latency.Stats
	DiffLo, DiffHi       time.Duration // 95% confidence interval of Diff.P50
	Ratio                float64       // WAL.P50 / Put.P50
	DataPutsPerAppend    float64
	MetaOpsPerAppend     float64
	WALSamples           []time.Duration // per Append, sorted (for the CDF chart)
	PutSamples           []time.Duration // per paired PUT, sorted
}

// ReplayRow is one replay step, next to its raw GET baselines.
type ReplayRow struct {
	Entry, Entries, Fragments int
	Payload, ObjectBytes      int64
	Build                     time.Duration
	RawSeq, RawPar            Throughput
	Passes                    int
	Elapsed                   time.Duration
	MBps, EntriesPerSec       float64 // Reader, entry payload
	GetsPerPass, ReadAmp      float64
	ListsPerPass              float64
	FaultsPerMB               float64   // Reader: minor page faults of the process per MB
	RawFaultsPerMB            float64   // raw GETs: minor page faults per MB
	MetaOpsPerPass            float64   // metadata store requests (with bucket metadata, also GETs)
	Ratio                     float64   // median of Ratios
	Ratios                    []float64 // Reader / raw GET (4 in flight) MB/s of each pass
	CPUCores                  float64   // Reader: process CPU time / elapsed
	GetsInFlight              float64   // Reader: fragment GETs in flight, time-averaged
	AllocsPerEntry            float64

	name string
	keys []string
}

// RecoveryResult is the open of a log after a crash.
type RecoveryResult struct {
	Entries, EntrySize, PerFragment int
	Fragments, Segments             int
	Build                           time.Duration
	OpenLog, OpenWriter, Total      time.Duration
	Requests                        string
}

// CostRow is the PUT rate under one load.
type CostRow struct {
	Load, Desc     string
	Appends        int64
	Elapsed        time.Duration
	AppendsPerSec  float64
	PutsPerSec     float64 // every PUT-class request (fragments, fences, bucket metadata)
	DataPutsPerSec float64 // fragment PUTs
	MetaOpsPerSec  float64 // metadata store requests (etcd, or the bucket's records)
	EntriesPerPut  float64
	USDMonth       float64
}

// RSSRow is one step's peak RSS.
type RSSRow struct {
	Step      string
	PeakBytes int64
	Reset     bool // the peak was reset before the step
}

// Results are a run's measurements: what results.json holds, and what the
// report and the charts are made of.
type Results struct {
	Date       string
	Command    string
	GoVersion  string
	OS         string
	CPU        string
	NumCPU     int
	GOMAXPROCS int
	MemTotal   int64
	LoadStart  string // /proc/loadavg (1, 5, 15 min) when the run started
	LoadEnd    string
	Kind       string
	Backend    string
	Meta       string
	Signing    string
	Latency    string
	Quick      bool
	StepTime   time.Duration
	CostTime   time.Duration
	Elapsed    time.Duration

	RawPut    []RawPutLatency
	RawPutPar Throughput
	RawGetPar Throughput
	Async     []*AsyncRow
	Sync      *SyncResult
	Replay    []*ReplayRow
	Recovery  *RecoveryResult
	Cost      []*CostRow
	RSS       []RSSRow
	PeakRSS   int64

	parName string
	parKeys int
}

func newResults(cfg Config, env *benchEnv) *Results {
	r := &Results{
		Date:       time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Command:    cfg.Command,
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH + " " + kernelRelease(),
		CPU:        cpuModel(),
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		MemTotal:   memTotal(),
		LoadStart:  loadAvg(),
		Kind:       env.kind,
		Backend:    env.desc,
		Meta:       env.metaDesc,
		Signing:    env.signing,
		Latency:    "none",
		Quick:      cfg.Quick,
		StepTime:   cfg.StepTime,
		CostTime:   cfg.CostTime,
	}
	if env.latency > 0 || env.jitter > 0 {
		if env.jitter > 0 {
			r.Latency = fmt.Sprintf("%v-%v per request (uniform)", env.latency, env.latency+env.jitter)
		} else {
			r.Latency = fmt.Sprintf("%v per request", env.latency)
		}
	}
	return r
}

func peakOf(rows []RSSRow) int64 {
	var m int64
	for _, r := range rows {
		m = max(m, r.PeakBytes)
	}
	return m
}

// --- formatting ------------------------------------------------------------

func fmtSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
}

func fmtDur(d time.Duration) string {
	ms := float64(d) / 1e6
	switch {
	case d < 0:
		return "-" + fmtDur(-d)
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}

func fmtMBps(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtCount formats n with thousands separators.
func fmtCount(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// pctStr formats a ratio as a whole percentage, or with one decimal within
// half a percent of a target (0.9), so "90%" never reads as a miss.
func pctStr(r float64) string {
	if d := 100*r - 90; d > -0.5 && d < 0.5 {
		return fmt.Sprintf("%.1f%%", 100*r)
	}
	return fmt.Sprintf("%.0f%%", 100*r)
}

func passMiss(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// --- Markdown --------------------------------------------------------------

func (r *Results) markdown() string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	// table writes a table's header row and the separator under it.
	table := func(cols ...string) { p("| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols))) }
	p("# woodpecker bench: %s\n\n", r.title())
	p("- Date: %s; the run took %s%s.\n", r.Date, r.Elapsed.Round(time.Second), map[bool]string{true: " (--quick)", false: ""}[r.Quick])
	p("- Machine: %d CPUs (%s), GOMAXPROCS %d, %s RAM, %s, %s. Load average (1/5/15 min) %s at the start, %s at the end.\n",
		r.NumCPU, r.CPU, r.GOMAXPROCS, fmtBytes(r.MemTotal), r.OS, r.GoVersion, r.LoadStart, r.LoadEnd)
	p("- Bucket: %s. Metadata: %s.\n", r.Backend, r.Meta)
	if r.Signing != "" {
		p("- S3 payload signing: %s (the same for the raw baselines and the WAL).\n", r.Signing)
	}
	p("- Emulated latency: %s.\n", r.Latency)
	p("- Command: `%s`\n", r.Command)
	p("- MB = 10^6 bytes. Each timed step runs %s (cost steps %s). Ratios are WAL / raw, measured like for like:\n", r.StepTime, r.CostTime)
	p("  the same object size (the mean size of the fragments the WAL wrote), as many requests in flight as the\n")
	p("  WAL may have (MaxFlushThreads = 4 per log), the same connections and signing, in the same run.\n\n")

	if len(r.RawPut) > 0 || r.RawPutPar.Ops > 0 {
		p("## Raw limit of the object store\n\n")
		table("Request", "Object", "In flight", "p50", "p99", "MB/s", "Requests")
		for _, row := range r.RawPut {
			mbps := float64(row.Size) / row.Lat.Mean.Seconds() / 1e6
			p("| PUT (If-None-Match) | %s | 1 | %s | %s | %s | %d |\n", fmtSize(row.Size), fmtDur(row.Lat.P50), fmtDur(row.Lat.P99), fmtMBps(mbps), row.Lat.N)
		}
		for _, t := range []Throughput{r.RawPutPar, r.RawGetPar} {
			if t.Ops == 0 {
				continue
			}
			op := "PUT (If-None-Match)"
			if t.Op == "GET" {
				op = "GET"
			}
			p("| %s | %s | %d | %s | %s | **%s** | %d |\n", op, fmtSize(t.Size), t.InFlight, fmtDur(t.Lat.P50), fmtDur(t.Lat.P99), fmtMBps(t.MBps), t.Ops)
		}
		p("\n")
	}

	if async := ran(r.Async); len(async) > 0 {
		p("## Async append throughput\n\n")
		p("One entry per `AppendAsync` call, up to 64 MiB of payload outstanding per log, `Sync` at the end of each slice\n")
		p("(included); default `wal.Config`; with 4 logs, one client and one goroutine per log. The WAL and its raw baseline\n")
		p("alternate (%d slices each), so both see the same machine load; WAL / raw is the median of the per-slice ratios\n", asyncRounds)
		p("(robust to one stalled slice; the MB/s columns are totals). MB/s counts entry payload; the raw baseline PUTs\n")
		p("objects of the WAL's mean fragment size (its header and 8 B per entry included) with MaxFlushThreads (4) per log\n")
		p("in flight. \"In flight\" is the time-averaged number of PUTs under way; CPU is the whole process (all goroutines,\n")
		p("and the embedded etcd with `--server`), in cores.\n\n")
		table("Entry", "Logs", "entries/s", "MB/s", "Fragments (mean size)", "Raw PUT MB/s", "WAL / raw", "PUTs in flight WAL / raw",
			"CPU cores WAL / raw", "CPU per entry", "allocs per entry", "Target")
		for _, a := range async {
			target := "reported"
			if a.Entry >= 64<<10 {
				target = fmt.Sprintf(">= 90%%: %s", passMiss(a.Ratio >= targetAsyncRatio))
			}
			p("| %s | %d | %s | %s | %d (%s) | %s | **%s** | %.1f / %.1f | %.2f / %.2f | %.2f µs | %.1f | %s |\n", fmtSize(a.Entry), a.Logs,
				fmtCount(a.EntriesPerSec), fmtMBps(a.MBps), a.Fragments, fmtSize(int(a.FragmentBytes)), fmtMBps(a.Raw.MBps), pctStr(a.Ratio),
				a.PutsInFlight, a.Raw.Mean, a.CPUCores, a.Raw.CPUCores, float64(a.CPUPerEntry)/1e3, a.AllocsPerEntry, target)
		}
		p("\n")
	}

	if s := r.Sync; s != nil {
		p("## Sync append latency\n\n")
		p("One synchronous `Append` of one %s entry at a time, alternating with one PUT of the fragment that entry\n", fmtSize(s.Entry))
		p("becomes (%s, the same bytes), so both see the same conditions; the difference is taken pair by pair.\n\n", fmtSize(s.FragmentBytes))
		table("", "p50", "p99", "mean", "samples")
		for _, row := range []struct {
			label string
			st    latency.Stats
		}{{"WAL `Append`", s.WAL}, {"raw PUT of the same fragment", s.Put}, {"paired difference (Append - PUT)", s.Diff}} {
			p("| %s | %s | %s | %s | %d |\n", row.label, fmtDur(row.st.P50), fmtDur(row.st.P99), fmtDur(row.st.Mean), row.st.N)
		}
		p("\n")
		p("p50 ratio WAL / PUT: **%.2f**; p50 difference %s; median of the paired differences **%s** (95%% confidence\n", s.Ratio,
			fmtDur(s.WAL.P50-s.Put.P50), fmtDur(s.Diff.P50))
		p("interval %s to %s) — target within 0.5 ms of one PUT: %s. ", fmtDur(s.DiffLo), fmtDur(s.DiffHi), s.verdict())
		p("Requests per Append: %.2f fragment PUTs, %.2f metadata operations.\n\n", s.DataPutsPerAppend, s.MetaOpsPerAppend)
	}

	if replay := ran(r.Replay); len(replay) > 0 {
		p("## Replay of a sealed log\n\n")
		p("A `Reader` from the first entry on a fresh client (cold cache; Prefetch 4), alternating pass by pass with GETs of\n")
		p("the same fragment objects in key order (1 and 4 in flight). MB/s: entry payload for the Reader, object bytes for\n")
		p("the raw GETs; WAL / raw is the median of the per-pass ratios.\n\n")
		table("Entry", "Log", "Fragments", "Reader MB/s", "entries/s", "Raw GET MB/s, 1 / 4 in flight", "WAL / raw (4)", "GETs in flight Reader / raw",
			"CPU cores Reader / raw (4)", "page faults per MB Reader / raw", "per pass: fragment GETs, LISTs, metadata ops", "Target")
		for _, rp := range replay {
			p("| %s | %s | %d (%s) | %s | %s | %s / %s | **%s** | %.1f / %.1f | %.2f / %.2f | %.0f / %.0f | %.1f, %.1f, %.1f | >= 90%%: %s |\n", fmtSize(rp.Entry), fmtBytes(rp.Payload), rp.Fragments,
				fmtSize(int(rp.ObjectBytes/int64(max(rp.Fragments, 1)))), fmtMBps(rp.MBps), fmtCount(rp.EntriesPerSec), fmtMBps(rp.RawSeq.MBps),
				fmtMBps(rp.RawPar.MBps), pctStr(rp.Ratio), rp.GetsInFlight, rp.RawPar.Mean, rp.CPUCores, rp.RawPar.CPUCores, rp.FaultsPerMB, rp.RawFaultsPerMB, rp.GetsPerPass,
				rp.ListsPerPass, rp.MetaOpsPerPass, passMiss(rp.Ratio >= targetReplayRatio))
		}
		p("\n")
	}

	if rc := r.Recovery; rc != nil && rc.Total > 0 {
		p("## Open / recovery after a crash\n\n")
		p("A log of %s entries of %d B (%d per fragment) is written, its writer abandoned without `Close` (the crash),\n", fmtCount(float64(rc.Entries)), rc.EntrySize, rc.PerFragment)
		p("and a new client on new connections (cold) opens it: `OpenLog` + `OpenWriter`, which takes a new epoch, LISTs the\n")
		p("open segment, writes a fence, reads the tail fragment and seals the segment.\n\n")
		table("Entries", "Fragments", "Segments", "OpenLog", "OpenWriter", "Total", "Requests")
		p("| %s | %d | %d | %s | %s | **%s** | %s |\n\n", fmtCount(float64(rc.Entries)), rc.Fragments, rc.Segments, fmtDur(rc.OpenLog), fmtDur(rc.OpenWriter), fmtDur(rc.Total), rc.Requests)
	}

	if cost := ran(r.Cost); len(cost) > 0 {
		p("## Cost: PUT rate of the default configuration (docs/design.md, decision 13)\n\n")
		p("PUT/s counts every PUT-class request to the bucket (fragments, fences and, with metadata in the bucket, its\n")
		p("records); $/month at S3 Standard's $0.005 per 1,000 PUTs, 30 days, per log.\n\n")
		table("Load", "Workload", "appends/s", "PUT/s", "fragment PUT/s", "entries per fragment", "metadata ops/s", "$/month")
		for _, c := range cost {
			p("| %s | %s | %s | %.1f | %.1f | %.1f | %.2f | **$%s** |\n", c.Load, c.Desc, fmtCount(c.AppendsPerSec), c.PutsPerSec, c.DataPutsPerSec,
				c.EntriesPerPut, c.MetaOpsPerSec, fmtCount(c.USDMonth))
		}
		p("\n")
	}

	if len(r.RSS) > 0 {
		p("## Peak RSS\n\n")
		reset := len(r.RSS) > 0 && r.RSS[0].Reset
		if reset {
			p("VmHWM of the bench process, reset before each step (`/proc/self/clear_refs`), so each row is that step's own peak.\n")
		} else {
			p("VmHWM of the bench process (cumulative: the peak could not be reset between steps).\n")
		}
		p("It includes the benchmark's own buffers (up to 64 MiB of outstanding payload per log) and, with `--server`,\n")
		p("the embedded etcd; versitygw runs in its own process.\n\n")
		table("Step", "Peak RSS")
		for _, row := range r.RSS {
			p("| %s | %s |\n", strings.TrimSpace(row.Step), fmtBytes(row.PeakBytes))
		}
		p("| **whole run** | **%s** |\n\n", fmtBytes(r.PeakRSS))
	}

	p("## Targets\n\n")
	any := false
	for _, a := range ran(r.Async) {
		if a.Entry >= 64<<10 {
			any = true
			p("- Async append of %s entries, %d log(s): %s of raw PUT bandwidth (target >= 90%%): %s.\n", fmtSize(a.Entry), a.Logs, pctStr(a.Ratio), passMiss(a.Ratio >= targetAsyncRatio))
		}
	}
	if s := r.Sync; s != nil {
		any = true
		p("- Sync append p50 %s vs one PUT %s; paired median difference %s (95%% CI %s to %s; target <= 0.5 ms): %s.\n",
			fmtDur(s.WAL.P50), fmtDur(s.Put.P50), fmtDur(s.Diff.P50), fmtDur(s.DiffLo), fmtDur(s.DiffHi), s.verdict())
	}
	for _, rp := range ran(r.Replay) {
		any = true
		p("- Replay of %s entries: %s of raw GET bandwidth with 4 in flight (target >= 90%%): %s.\n", fmtSize(rp.Entry), pctStr(rp.Ratio), passMiss(rp.Ratio >= targetReplayRatio))
	}
	if !any {
		p("No targeted step ran.\n")
	}
	p("\n## LogStore comparison: pending\n\n")
	p("hashicorp `LogStore` StoreLogs/GetLog, ours vs raft-wal v0.4.0 vs raft-boltdb/v2 v2.3.0 (with raft v1.8.0), needs\n")
	p("a separate Go module (docs/design.md, \"Comparison stores for benchmarks\") and the adapters/hashiraft LogStore; it is\n")
	p("not part of this command yet.\n")
	return sb.String()
}

// verdict judges the sync target on the paired median difference: met when
// its 95% confidence interval lies at or below 0.5 ms, missed when above,
// unresolved when it straddles 0.5 ms (latency jitter too wide for the
// number of samples).
func (s *SyncResult) verdict() string {
	switch {
	case s.DiffHi <= targetSyncDelta:
		return "**met**"
	case s.DiffLo > targetSyncDelta:
		return "**missed**"
	case s.Diff.P50 <= targetSyncDelta:
		return "**met at the median, not resolved** (the confidence interval straddles 0.5 ms)"
	default:
		return "**not resolved** (the confidence interval straddles 0.5 ms)"
	}
}

// ran returns the rows of the steps that ran (selected by --steps).
func ran[R interface{ ran() bool }](rows []R) []R {
	return slices.DeleteFunc(slices.Clone(rows), func(r R) bool { return !r.ran() })
}

func (a *AsyncRow) ran() bool  { return a.Entries > 0 }
func (r *ReplayRow) ran() bool { return r.Passes > 0 }
func (c *CostRow) ran() bool   { return c.Elapsed > 0 }

func (r *Results) title() string {
	t := r.Kind
	if r.Latency != "none" {
		t += ", latency " + strings.TrimSuffix(strings.TrimSuffix(r.Latency, " (uniform)"), " per request")
	}
	return t
}

// --- charts ----------------------------------------------------------------

// charts writes throughput.png and latency_cdf.png (when the steps ran).
func (r *Results) charts(dir string) error {
	if err := r.throughputChart(filepath.Join(dir, "throughput.png")); err != nil {
		return fmt.Errorf("bench: throughput chart: %w", err)
	}
	if err := r.latencyChart(filepath.Join(dir, "latency_cdf.png")); err != nil {
		return fmt.Errorf("bench: latency chart: %w", err)
	}
	return nil
}

// throughputChart: async append MB/s per entry size, ours next to the raw
// PUT bandwidth for the same object size and parallelism, 1 and 4 logs.
func (r *Results) throughputChart(path string) error {
	rows := slices.DeleteFunc(ran(r.Async), func(a *AsyncRow) bool { return a.Raw.Ops == 0 })
	if len(rows) == 0 {
		return nil
	}
	type series struct {
		label string
		logs  int
		raw   bool
	}
	var ss []series
	for _, logs := range asyncLogCounts {
		ss = append(ss,
			series{fmt.Sprintf("woodpecker, %d log(s)", logs), logs, false},
			series{fmt.Sprintf("raw PUT, same size, %d in flight", logs*benchFlushThreads), logs, true})
	}
	p := plot.New()
	p.Title.Text = "Async append throughput vs raw PUT: " + r.title()
	p.Y.Label.Text = "MB/s (10^6 B/s)"
	p.X.Label.Text = "entry size (labels: WAL / raw)"
	p.Legend.Top = true
	p.Legend.Left = true
	w := vg.Points(20)
	// WAL and its raw baseline in one hue, dark and light.
	colors := []color.Color{
		color.RGBA{R: 31, G: 90, B: 160, A: 255}, color.RGBA{R: 150, G: 190, B: 230, A: 255},
		color.RGBA{R: 200, G: 90, B: 20, A: 255}, color.RGBA{R: 245, G: 190, B: 140, A: 255},
	}
	var names []string
	for _, size := range asyncEntrySizes {
		names = append(names, fmtSize(size))
	}
	for k, s := range ss {
		vals := make(plotter.Values, len(asyncEntrySizes))
		var labels plotter.XYLabels
		for i, size := range asyncEntrySizes {
			for _, a := range rows {
				if a.Entry == size && a.Logs == s.logs {
					vals[i] = a.MBps
					if s.raw {
						vals[i] = a.Raw.MBps
					} else {
						labels.XYs = append(labels.XYs, plotter.XY{X: float64(i), Y: a.MBps})
						labels.Labels = append(labels.Labels, pctStr(a.Ratio))
					}
				}
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = colors[k%len(colors)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(k)-float64(len(ss)-1)/2) * w
		p.Add(bars)
		p.Legend.Add(s.label, bars)
		if len(labels.XYs) > 0 {
			l, err := plotter.NewLabels(labels)
			if err != nil {
				return err
			}
			l.Offset = vg.Point{X: bars.Offset - w/2, Y: vg.Points(2)}
			for i := range l.TextStyle {
				l.TextStyle[i].Font.Size = vg.Points(8)
			}
			p.Add(l)
		}
	}
	p.NominalX(names...)
	p.Y.Min = 0
	ymax := 0.0
	for _, a := range rows {
		ymax = max(ymax, a.MBps, a.Raw.MBps)
	}
	p.Y.Max = ymax * 1.45
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}

// latencyChart: CDF of sync Append latency and of the paired raw PUTs.
func (r *Results) latencyChart(path string) error {
	s := r.Sync
	if s == nil || len(s.WALSamples) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Sync append latency (%s entry) vs raw PUT of the same fragment: %s", fmtSize(s.Entry), r.title())
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of requests"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = logTicks{}
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.YOffs = vg.Points(10)
	p.Y.Min, p.Y.Max = 0, 1
	for k, set := range []struct {
		label   string
		samples []time.Duration
		st      latency.Stats
	}{
		{"woodpecker Append", s.WALSamples, s.WAL},
		{"raw PUT", s.PutSamples, s.Put},
	} {
		lat := slices.Clone(set.samples)
		slices.Sort(lat)
		xys := make(plotter.XYs, len(lat))
		for i, d := range lat {
			xys[i] = plotter.XY{X: max(float64(d)/1e6, 1e-3), Y: float64(i+1) / float64(len(lat))}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		line.Color = []color.Color{color.RGBA{R: 31, G: 90, B: 160, A: 255}, color.RGBA{R: 200, G: 90, B: 20, A: 255}}[k]
		line.Width = vg.Points(1.5)
		if k == 1 {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("%s (p50 %s, p99 %s)", set.label, fmtDur(set.st.P50), fmtDur(set.st.P99)), line)
	}
	for _, q := range []float64{0.5, 0.99} {
		h, err := plotter.NewLine(plotter.XYs{{X: 1e-3, Y: q}, {X: 1e6, Y: q}})
		if err != nil {
			return err
		}
		h.Color = color.Gray{Y: 180}
		h.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
		p.Add(h)
	}
	hi := max(slices.Max(s.WALSamples), slices.Max(s.PutSamples))
	p.X.Min = max(float64(slices.Min(append(slices.Clone(s.WALSamples), s.PutSamples...)))/1e6*0.8, 1e-3)
	p.X.Max = float64(hi) / 1e6 * 1.2
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}

// logTicks puts ticks at the integer multiples of the powers of ten inside
// the range and labels 1, 2 and 5 times them (all of them when the range is
// narrow, such as 25-110 ms, so it still gets labels).
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for p := math.Pow(10, math.Floor(math.Log10(lo))); p <= hi; p *= 10 {
		for m := 1.0; m < 10; m++ {
			v := m * p
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 || hi/lo < 8 {
				t.Label = strconv.FormatFloat(v, 'g', 3, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
