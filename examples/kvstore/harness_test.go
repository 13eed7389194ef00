package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/cluster"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// kvstoreBin is the kvstore binary every end-to-end test runs, built once
// (without -race, to spare the CPU) by TestMain.
var (
	kvstoreBin string
	buildTime  time.Duration
)

func TestBuild(t *testing.T) { t.Logf("built %s in %v", kvstoreBin, buildTime.Round(time.Millisecond)) }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvstore-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kvstoreBin = filepath.Join(dir, "kvstore")
	start := time.Now()
	build := exec.Command("go", "build", "-o", kvstoreBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build kvstore: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	buildTime = time.Since(start)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var engines = []string{"hashicorp", "etcd"}

// testCluster is a cluster of kvstore processes whose output goes to one
// log file per node, printed (tail) when the test fails.
type testCluster struct {
	*cluster.Cluster
	t    *testing.T
	dir  string
	logs map[uint64]string
}

type clusterOpt func(*cluster.Options)

func withBuckets(f func(id uint64) string) clusterOpt {
	return func(o *cluster.Options) { o.Bucket = f }
}

func withMeta(u string) clusterOpt { return func(o *cluster.Options) { o.Meta = u } }

// withNodeArgs replaces the nodes' default flags (snapshots, timeouts, log
// levels) with args.
func withNodeArgs(args ...string) clusterOpt { return func(o *cluster.Options) { o.Args = args } }

// startCluster starts 3 nodes of engine (file buckets under a temp dir by
// default) and waits for a leader.
func startCluster(t *testing.T, engine string, opts ...clusterOpt) *testCluster {
	t.Helper()
	dir := t.TempDir()
	tc := &testCluster{t: t, dir: dir, logs: map[uint64]string{}}
	o := cluster.Options{
		Exe: kvstoreBin, Engine: engine, Nodes: 3,
		DataDir: filepath.Join(dir, "buckets"),
		Args: []string{
			"--snapshot-threshold", "200",
			"--election-timeout", "500ms",
			"--request-timeout", "3s",
			"--log-level", "info",
			"--raft-log-level", "warn",
		},
	}
	for _, opt := range opts {
		opt(&o)
	}
	o.Output = func(id uint64) io.Writer { return tc.logFile(id) }
	c, err := cluster.New(o)
	if err != nil {
		t.Fatal(err)
	}
	tc.Cluster = c
	t.Cleanup(func() {
		c.Stop(10 * time.Second)
		if t.Failed() {
			tc.dumpLogs()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tc.dumpLogs()
		t.Fatal(err)
	}
	return tc
}

func (tc *testCluster) logFile(id uint64) io.Writer {
	p := filepath.Join(tc.dir, fmt.Sprintf("node-%d.log", id))
	tc.logs[id] = p
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { f.Close() })
	return f
}

func (tc *testCluster) dumpLogs() {
	for id := uint64(1); id <= uint64(len(tc.logs)); id++ {
		b, _ := os.ReadFile(tc.logs[id])
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		tc.t.Logf("--- node %d log (last %d lines) ---\n%s", id, len(lines), strings.Join(lines, "\n"))
	}
}

func (tc *testCluster) leader(ctx context.Context) *cluster.Node {
	tc.t.Helper()
	l, err := tc.WaitLeader(ctx)
	if err != nil {
		tc.t.Fatal(err)
	}
	return l
}

func (tc *testCluster) running() []*cluster.Node {
	var out []*cluster.Node
	for _, n := range tc.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// waitConverged waits until every running node holds exactly want.
func (tc *testCluster) waitConverged(ctx context.Context, want map[string]string) {
	tc.t.Helper()
	if diff := tc.waitHolds(ctx, want, nil); diff != "" {
		tc.t.Fatalf("nodes did not converge: %s", diff)
	}
}

// waitHolds waits until every running node holds every key of acked with
// its value, and no key outside acked and unknown (writes given up on,
// which may or may not have been applied, with their values). It returns
// the last difference when the context ends first, "" on success.
func (tc *testCluster) waitHolds(ctx context.Context, acked, unknown map[string]string) string {
	for {
		diff := ""
		for _, n := range tc.running() {
			got, err := n.Dump(ctx)
			if err != nil {
				diff = fmt.Sprintf("node %d: %v", n.ID, err)
				break
			}
			if d := holdsDiff(got, acked, unknown); d != "" {
				diff = fmt.Sprintf("node %d: %s", n.ID, d)
				break
			}
		}
		if diff == "" || retry.Sleep(ctx, 200*time.Millisecond) != nil {
			return diff
		}
	}
}

func holdsDiff(got, acked, unknown map[string]string) string {
	var missing, wrong, extra int
	var example string
	note := func(s string) {
		if example == "" {
			example = s
		}
	}
	for k, v := range acked {
		switch g, ok := got[k]; {
		case !ok:
			missing++
			note("missing " + k)
		case g != v:
			wrong++
			note(fmt.Sprintf("%s = %q, want %q", k, g, v))
		}
	}
	for k, g := range got {
		if _, ok := acked[k]; ok {
			continue
		}
		if v, ok := unknown[k]; !ok || g != v {
			extra++
			note(fmt.Sprintf("unexpected %s = %q", k, g))
		}
	}
	if missing+wrong+extra == 0 {
		return ""
	}
	return fmt.Sprintf("%d keys: %d missing, %d wrong, %d unexpected (e.g. %s)", len(got), missing, wrong, extra, example)
}
