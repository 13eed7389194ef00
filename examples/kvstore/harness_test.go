package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/cluster"
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

// ---- HTTP client ----

var httpClient = &http.Client{
	Timeout:   3 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 32},
}

// errDefinite marks a write the cluster refused without doing it.
var errDefinite = errors.New("refused")

func put(ctx context.Context, addr, key, value string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/kv/"+key, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The node (or the leader it redirected to) is down: the
			// request never reached it.
			return fmt.Errorf("%w: %v", errDefinite, err)
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct{ Code string }
	json.Unmarshal(body, &e)
	err = fmt.Errorf("PUT %s at %s: %s: %s", key, addr, resp.Status, bytes.TrimSpace(body))
	if e.Code == "not_leader" || e.Code == "no_leader" || e.Code == "stopped" {
		err = fmt.Errorf("%w: %v", errDefinite, err)
	}
	return err
}

// get reads key; found is false for 404.
func get(ctx context.Context, addr, key string, linearizable bool) (value string, found bool, err error) {
	u := "http://" + addr + "/kv/" + key
	if linearizable {
		u += "?linearizable=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return string(body), true, nil
	case http.StatusNotFound:
		return "", false, nil
	default:
		return "", false, fmt.Errorf("GET %s at %s: %s: %s", key, addr, resp.Status, bytes.TrimSpace(body))
	}
}

func dump(ctx context.Context, addr string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/kv", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]string{}
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// writer writes keys through random running nodes, retrying each until it
// is acknowledged, and remembers what it wrote.
type writer struct {
	tc  *testCluster
	mu  sync.Mutex
	rng *rand.Rand
	exp map[string]string
}

func newWriter(tc *testCluster, seed uint64) *writer {
	tc.t.Logf("writer seed %d", seed)
	return &writer{tc: tc, rng: rand.New(rand.NewPCG(seed, 1)), exp: map[string]string{}}
}

func (w *writer) pick() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	nodes := w.tc.running()
	if len(nodes) == 0 {
		return ""
	}
	return nodes[w.rng.IntN(len(nodes))].HTTP
}

// writeRange writes keys [from, to) with `workers` concurrent clients.
func (w *writer) writeRange(ctx context.Context, from, to, workers int) {
	t := w.tc.t
	t.Helper()
	keys := make(chan int)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				k, v := fmt.Sprintf("key-%05d", i), fmt.Sprintf("value-%05d", i)
				if err := w.putRetry(ctx, k, v); err != nil {
					errc <- err
					return
				}
				w.mu.Lock()
				w.exp[k] = v
				w.mu.Unlock()
			}
		}()
	}
	for i := from; i < to; i++ {
		select {
		case keys <- i:
		case err := <-errc:
			close(keys)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(keys)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

func (w *writer) putRetry(ctx context.Context, k, v string) error {
	var last error
	for ctx.Err() == nil {
		addr := w.pick()
		if addr == "" {
			return errors.New("no node running")
		}
		if last = put(ctx, addr, k, v); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("write %s: %v (last error: %v)", k, ctx.Err(), last)
}

func (w *writer) expected() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]string, len(w.exp))
	for k, v := range w.exp {
		m[k] = v
	}
	return m
}

// waitConverged waits until every running node holds exactly want.
func (tc *testCluster) waitConverged(ctx context.Context, want map[string]string) {
	tc.t.Helper()
	var diff string
	for {
		diff = ""
		for _, n := range tc.running() {
			got, err := dump(ctx, n.HTTP)
			if err != nil {
				diff = fmt.Sprintf("node %d: %v", n.ID, err)
				break
			}
			if d := mapDiff(got, want); d != "" {
				diff = fmt.Sprintf("node %d: %s", n.ID, d)
				break
			}
		}
		if diff == "" {
			return
		}
		select {
		case <-ctx.Done():
			tc.t.Fatalf("nodes did not converge: %s", diff)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func mapDiff(got, want map[string]string) string {
	var missing, wrong, extra int
	var example string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
			if example == "" {
				example = "missing " + k
			}
		case g != v:
			wrong++
			if example == "" {
				example = fmt.Sprintf("%s = %q, want %q", k, g, v)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra++
			if example == "" {
				example = "unexpected " + k
			}
		}
	}
	if missing+wrong+extra == 0 {
		return ""
	}
	return fmt.Sprintf("%d keys: %d missing, %d wrong, %d unexpected (e.g. %s)", len(got), missing, wrong, extra, example)
}

// logContains reports whether node id's log has a line containing s.
func (tc *testCluster) logContains(id uint64, s string) bool {
	f, err := os.Open(tc.logs[id])
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}
