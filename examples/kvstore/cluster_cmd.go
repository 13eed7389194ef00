package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/cluster"
	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/node"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

type clusterFlags struct {
	engine            string
	nodes             int
	dataDir           string
	httpPort          int
	raftPort          int
	bucketTemplate    string
	meta              string
	snapshotThreshold uint64
	electionTimeout   time.Duration
	restart           bool
	fresh             bool
	logLevel          string
	raftLogLevel      string
}

func clusterCmd() *cobra.Command {
	var f clusterFlags
	cmd := command("cluster", "Run a local cluster of kvstore nodes (what `make run` does)",
		`Starts --nodes kvstore processes on 127.0.0.1, node i on HTTP port
--http-port+i-1 and Raft port --raft-port+i-1, each with its own bucket
directory under <data-dir>/<engine>/ (kept between runs: the cluster comes
back with its data). A node that dies (try kill -9 <pid>) is restarted after a
second and recovers from its bucket. Ctrl-C stops every node.`,
		func(ctx context.Context) error { return runCluster(ctx, f) })
	fl := cmd.Flags()
	fl.StringVar(&f.engine, "engine", envOr("ENGINE", node.EngineHashicorp), "Raft engine: hashicorp or etcd (the default comes from $ENGINE when set)")
	fl.IntVar(&f.nodes, "nodes", 3, "number of nodes")
	fl.StringVar(&f.dataDir, "data-dir", "kvstore-data", "where the nodes' bucket directories live (<data-dir>/<engine>/node-<id>)")
	fl.IntVar(&f.httpPort, "http-port", 8001, "HTTP port of node 1 (node i uses port+i-1)")
	fl.IntVar(&f.raftPort, "raft-port", 7001, "Raft port of node 1 (node i uses port+i-1)")
	fl.StringVar(&f.bucketTemplate, "bucket-template", "", "bucket URL for every node, {id} replaced by the node id (default: directories under --data-dir)")
	fl.StringVar(&f.meta, "meta", "", "metadata URL shared by the nodes, e.g. etcd://127.0.0.1:2379/kv (default: in each bucket)")
	fl.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 1000, "entries between snapshots")
	fl.DurationVar(&f.electionTimeout, "election-timeout", time.Second, "Raft election timeout")
	fl.BoolVar(&f.restart, "restart", true, "restart a node that exits")
	fl.BoolVar(&f.fresh, "fresh", false, "delete <data-dir>/<engine> first (start an empty cluster)")
	fl.StringVar(&f.logLevel, "log-level", "info", "nodes' log level")
	fl.StringVar(&f.raftLogLevel, "raft-log-level", "warn", "Raft libraries' log level")
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func runCluster(ctx context.Context, f clusterFlags) error {
	if err := checkEngine(f.engine); err != nil {
		return err
	}
	if f.nodes < 1 || f.nodes > 9 {
		return fmt.Errorf("--nodes %d: want 1 to 9", f.nodes)
	}
	dir, err := filepath.Abs(filepath.Join(f.dataDir, f.engine))
	if err != nil {
		return err
	}
	if f.fresh {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	opts := clusterOptions(f, dir)
	out := &prefixer{w: os.Stdout}
	opts.Output = func(id uint64) io.Writer { return out.forNode(id) }
	c, err := startLocal(ctx, opts)
	if err != nil {
		return err
	}
	leader, _ := c.WaitLeader(ctx)
	var b strings.Builder
	where := dir
	if f.bucketTemplate != "" {
		where = f.bucketTemplate
	}
	fmt.Fprintf(&b, "\nkvstore cluster: %d %s nodes on 127.0.0.1, state in %s\n", f.nodes, f.engine, where)
	for _, n := range c.Nodes {
		role := ""
		if leader != nil && n.ID == leader.ID {
			role = "  (leader)"
		}
		fmt.Fprintf(&b, "  node %d  http://%s  raft %s  pid %d%s\n", n.ID, n.HTTP, n.Raft, n.Pid(), role)
	}
	n1, n2 := c.Nodes[0].HTTP, c.Nodes[len(c.Nodes)-1].HTTP
	fmt.Fprintf(&b, "\nTry:\n")
	fmt.Fprintf(&b, "  curl -L -X PUT %s/kv/hello -d world        # followers redirect writes to the leader\n", n1)
	fmt.Fprintf(&b, "  curl %s/kv/hello                           # local read on any node\n", n2)
	fmt.Fprintf(&b, "  curl -L '%s/kv/hello?linearizable=true'    # read through the leader\n", n2)
	fmt.Fprintf(&b, "  curl %s/status\n", n1)
	fmt.Fprintf(&b, "Kill a node with kill -9 <pid>: it is restarted and recovers from its bucket.\nCtrl-C stops all nodes.\n\n")
	out.printf("%s", b.String())

	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			supervise(ctx, n, f.restart, out)
		}()
	}
	<-ctx.Done()
	out.printf("\nstopping %d nodes...\n", len(c.Nodes))
	err = c.Stop(15 * time.Second)
	wg.Wait()
	out.printf("stopped; the data stays in %s (run again to continue, --fresh to start over)\n", where)
	return err
}

// startLocal starts the cluster opts describes and waits, up to a minute,
// until every node answers and a leader is elected.
func startLocal(ctx context.Context, opts cluster.Options) (*cluster.Cluster, error) {
	c, err := cluster.New(opts)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		return nil, err
	}
	return c, nil
}

func clusterOptions(f clusterFlags, dir string) cluster.Options {
	opts := cluster.Options{
		Engine: f.engine, Nodes: f.nodes, HTTPPort: f.httpPort, RaftPort: f.raftPort,
		DataDir: dir, Meta: f.meta,
		Args: []string{
			"--snapshot-threshold", strconv.FormatUint(f.snapshotThreshold, 10),
			"--election-timeout", f.electionTimeout.String(),
			"--log-level", f.logLevel,
			"--raft-log-level", f.raftLogLevel,
		},
	}
	if f.bucketTemplate != "" {
		tmpl := f.bucketTemplate
		opts.Bucket = func(id uint64) string {
			return strings.ReplaceAll(tmpl, "{id}", strconv.FormatUint(id, 10))
		}
	}
	return opts
}

// supervise restarts n whenever its process exits, until ctx is done.
func supervise(ctx context.Context, n *cluster.Node, restart bool, out *prefixer) {
	for {
		exited, _ := n.Exited()
		if exited == nil {
			return
		}
		select {
		case <-exited:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return
		}
		if !restart {
			out.printf("node %d exited (%v)\n", n.ID, n.LastExit())
			return
		}
		if st := n.LastExit(); st != nil && st.ExitCode() == exitFenced {
			out.printf("node %d was fenced: another process holds its log; not restarting it (that would take the log back)\n", n.ID)
			return
		}
		out.printf("node %d exited (%v); restarting it in 1s: it recovers from its bucket\n", n.ID, n.LastExit())
		if retry.Sleep(ctx, time.Second) != nil {
			return
		}
		if err := n.Start(); err != nil {
			out.printf("restart node %d: %v\n", n.ID, err)
			return
		}
		out.printf("node %d restarted, pid %d\n", n.ID, n.Pid())
	}
}

// prefixer writes whole lines to w, each prefixed with the node it came
// from.
type prefixer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func (p *prefixer) forNode(id uint64) io.Writer {
	return &lineWriter{p: p, prefix: fmt.Sprintf("node%d | ", id)}
}

type lineWriter struct {
	p      *prefixer
	prefix string
	buf    []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		l.p.printf("%s%s\n", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}
