package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/bench"
	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/node"
)

func benchCmd() *cobra.Command {
	var (
		o       bench.Options
		addrs   string
		asJSON  bool
		spawn   bool
		cf      clusterFlags
		showLog bool
	)
	cmd := command("bench", "Load generator: writes/s and write latency of a cluster",
		`Runs --clients concurrent writers PUTting --value-size values to random keys
at the leader for --duration (after --warmup), and reports writes/s and the
p50/p90/p99/max latency of acknowledged writes.

Either point it at a running cluster (--addr), or let it start a throwaway
3-node cluster for the run (--spawn, with --engine and storage flags).`,
		func(ctx context.Context) error {
			if spawn {
				if err := checkEngine(cf.engine); err != nil {
					return err
				}
				dir := cf.dataDir
				if dir == "" && cf.bucketTemplate == "" {
					tmp, err := os.MkdirTemp("", "kvstore-bench-")
					if err != nil {
						return err
					}
					defer os.RemoveAll(tmp)
					dir = tmp
				}
				opts := clusterOptions(cf, dir)
				opts.HTTPPort, opts.RaftPort = 0, 0
				if !showLog {
					opts.Output = func(uint64) io.Writer { return io.Discard }
				}
				c, err := startLocal(ctx, opts)
				if err != nil {
					return err
				}
				defer c.Stop(10 * time.Second)
				for _, n := range c.Nodes {
					o.Addrs = append(o.Addrs, n.HTTP)
				}
				fmt.Fprintf(os.Stderr, "bench: started %d %s nodes (%s)\n", len(c.Nodes), cf.engine, c.Nodes[0].BucketURL)
			} else {
				for _, a := range strings.Split(addrs, ",") {
					if a = strings.TrimSpace(a); a != "" {
						o.Addrs = append(o.Addrs, strings.TrimPrefix(a, "http://"))
					}
				}
			}
			res, err := bench.Run(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Println(res)
			return nil
		})
	cmd.Example = `  kvstore bench --addr 127.0.0.1:8001
  kvstore bench --spawn --engine etcd
  kvstore bench --spawn --engine hashicorp --bucket-template 's3://kv/node{id}?endpoint=127.0.0.1:9000&access_key=…&secret_key=…'`
	fl := cmd.Flags()
	fl.StringVar(&addrs, "addr", "127.0.0.1:8001", "HTTP address(es) of cluster members, comma separated")
	fl.IntVar(&o.Clients, "clients", 16, "concurrent writers")
	fl.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration")
	fl.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured warm-up before it")
	fl.IntVar(&o.ValueSize, "value-size", 128, "bytes per value")
	fl.IntVar(&o.Keys, "keys", 100000, "number of distinct keys")
	fl.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fl.BoolVar(&spawn, "spawn", false, "start a throwaway 3-node cluster for the run")
	fl.BoolVar(&showLog, "show-log", false, "with --spawn: show the nodes' output")
	fl.StringVar(&cf.engine, "engine", node.EngineHashicorp, "with --spawn: Raft engine")
	fl.IntVar(&cf.nodes, "nodes", 3, "with --spawn: number of nodes")
	fl.StringVar(&cf.dataDir, "data-dir", "", "with --spawn: bucket directories (default: a temporary directory)")
	fl.StringVar(&cf.bucketTemplate, "bucket-template", "", "with --spawn: bucket URL per node, {id} replaced by the node id")
	fl.StringVar(&cf.meta, "meta", "", "with --spawn: metadata URL shared by the nodes")
	fl.Uint64Var(&cf.snapshotThreshold, "snapshot-threshold", 10000, "with --spawn: entries between snapshots")
	fl.DurationVar(&cf.electionTimeout, "election-timeout", time.Second, "with --spawn: Raft election timeout")
	cf.logLevel, cf.raftLogLevel = "warn", "warn"
	return cmd
}
