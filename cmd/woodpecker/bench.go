package main

// woodpecker bench: the WAL measured next to the raw limit of the object
// store under it, in one run against one backend. The measurements and the
// report are internal/benchharness's; this is its command line.

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/woodpecker-wal/woodpecker/internal/benchharness"
)

func benchCmd() *cobra.Command {
	var (
		cfg      benchharness.Config
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
			run := benchharness.DefaultConfig(cfg.Quick)
			run.Backend, run.Out, run.CPUProfile, run.ProfileDir = cfg.Backend, cfg.Out, cfg.CPUProfile, cfg.ProfileDir
			run.Stdout, run.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			run.Command = "woodpecker " + strings.Join(os.Args[1:], " ")
			changed := cmd.Flags().Changed
			if changed("step-time") {
				run.StepTime = stepTime
			}
			if changed("cost-time") {
				run.CostTime = costTime
			}
			if changed("recovery-entries") {
				run.RecoveryEntries = recoveryEntries
			}
			if changed("replay-mib") {
				run.ReplayBytes = int64(replayMiB) << 20
			}
			var err error
			if run.Steps, err = benchharness.ParseSteps(steps); err != nil {
				return err
			}
			return benchharness.Run(cmd.Context(), run)
		},
	}
	full, quick := benchharness.DefaultConfig(false), benchharness.DefaultConfig(true)
	f := c.Flags()
	f.StringVar(&cfg.Backend.BucketURL, "bucket", "", "bucket URL to measure (default: a temporary file:// directory)")
	f.StringVar(&cfg.Backend.MetaURL, "meta", "", "metadata store URL (default: records in the bucket)")
	f.StringVar(&cfg.Backend.Server, "server", "", `start a server to measure: "versitygw" (with an embedded etcd)`)
	f.StringVar(&cfg.Backend.Latency, "latency", "", "emulated latency per request: 5ms, or a uniform range 20ms-60ms")
	f.BoolVar(&cfg.Backend.DisableSha256, "disable-sha256", false, "with --server: send UNSIGNED-PAYLOAD instead of hashing bodies")
	f.StringVar(&cfg.Backend.Versitygw, "versitygw", "", "versitygw binary (default $WOODPECKER_VERSITYGW, else .cache/bin/versitygw, built if missing)")
	f.BoolVar(&cfg.Backend.Keep, "keep", false, "keep the temporary directories")
	f.BoolVar(&cfg.Quick, "quick", false, "smoke run (~30 s): short steps, small logs")
	f.DurationVar(&stepTime, "step-time", full.StepTime, fmt.Sprintf("measuring time of each throughput and latency step (--quick: %v)", quick.StepTime))
	f.DurationVar(&costTime, "cost-time", full.CostTime, fmt.Sprintf("measuring time of each PUT-rate step (--quick: %v)", quick.CostTime))
	f.IntVar(&recoveryEntries, "recovery-entries", full.RecoveryEntries, fmt.Sprintf("entries in the log recovered after a crash (--quick: %d)", quick.RecoveryEntries))
	f.IntVar(&replayMiB, "replay-mib", int(full.ReplayBytes>>20), fmt.Sprintf("payload MiB of each replayed log (--quick: %d)", quick.ReplayBytes>>20))
	f.StringVar(&steps, "steps", strings.Join(benchharness.StepGroups, ","), "comma-separated parts to run: "+strings.Join(benchharness.StepGroups, ","))
	f.StringVar(&cfg.Out, "out", "", "directory for results.md, results.json and the PNG charts")
	f.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	f.StringVar(&cfg.ProfileDir, "profile-dir", "", "write a CPU profile of every step to this directory")
	return c
}
