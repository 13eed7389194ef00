package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/bench"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
)

// TestBenchReport measures writes/s and write latency of a 3-node cluster
// for each engine on each storage — a local directory, versitygw with the
// metadata in the bucket, versitygw with metadata in etcd — with the
// kvstore bench load generator. It is opt-in (it takes a while and its
// numbers mean little on a busy machine):
//
//	KVSTORE_BENCH=1 go test -run TestBenchReport -v ./examples/kvstore
//
// KVSTORE_BENCH_DURATION (default 10s) and KVSTORE_BENCH_CLIENTS (default
// 16) tune the load.
func TestBenchReport(t *testing.T) {
	if os.Getenv("KVSTORE_BENCH") == "" {
		t.Skip("set KVSTORE_BENCH=1 to run the kvstore benchmark")
	}
	dur := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("KVSTORE_BENCH_DURATION")); err == nil {
		dur = d
	}
	clients := 16
	if n, err := strconv.Atoi(os.Getenv("KVSTORE_BENCH_CLIENTS")); err == nil {
		clients = n
	}
	s3 := testserver.Versitygw(t)
	etcd := etcdserver.Start(t)
	bucket := s3.NewBucket(t)
	type storage struct {
		name   string
		bucket func(engine string, id uint64) string
		meta   func(engine string) string
	}
	storages := []storage{
		{"file", nil, nil},
		{"versitygw", func(e string, id uint64) string { return s3.URL(bucket, fmt.Sprintf("b_%s/node%d", e, id)) }, nil},
		{"versitygw+etcd",
			func(e string, id uint64) string { return s3.URL(bucket, fmt.Sprintf("e_%s/node%d", e, id)) },
			func(e string) string { return etcd.URL("kvbench_" + e) }},
	}
	var report []string
	for _, st := range storages {
		for _, engine := range engines {
			t.Run(st.name+"/"+engine, func(t *testing.T) {
				opts := []clusterOpt{withNodeArgs("--snapshot-threshold", "10000", "--log-level", "warn")}
				if st.bucket != nil {
					opts = append(opts, withBuckets(func(id uint64) string { return st.bucket(engine, id) }))
				}
				if st.meta != nil {
					opts = append(opts, withMeta(st.meta(engine)))
				}
				tc := startCluster(t, engine, opts...)
				ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
				defer cancel()
				var addrs []string
				for _, n := range tc.Nodes {
					addrs = append(addrs, n.HTTP)
				}
				res, err := bench.Run(ctx, bench.Options{Addrs: addrs, Clients: clients, Duration: dur, Warmup: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				line := fmt.Sprintf("%-15s %-9s %7.0f writes/s  p50 %6.2fms  p99 %7.2fms  (%d writes, %d errors)",
					st.name, engine, res.PerSecond, float64(res.P50)/1e6, float64(res.P99)/1e6, res.Writes, res.Errors)
				t.Log(line)
				report = append(report, line)
			})
		}
	}
	for _, l := range report {
		t.Log(l)
	}
}
