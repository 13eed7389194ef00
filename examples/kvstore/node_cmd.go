package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/node"
	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/server"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/wal"
)

type nodeFlags struct {
	engine            string
	id                uint64
	httpAddr          string
	raftAddr          string
	peers             string
	join              string
	dataDir           string
	bucket            string
	meta              string
	snapshotThreshold uint64
	electionTimeout   time.Duration
	requestTimeout    time.Duration
	openTimeout       time.Duration
	logLevel          string
	raftLogLevel      string
}

func nodeCmd() *cobra.Command {
	var f nodeFlags
	cmd := command("kvstore", "A replicated key-value store whose Raft nodes keep their state in a bucket",
		`Runs one kvstore node. Every node of a cluster gets the same --peers list
(id=raft-address pairs); a node whose storage is empty and whose id is in the
list bootstraps the cluster with it. A node not in the list starts empty and
asks --join (any member's HTTP address) to add it.

HTTP API (writes and linearizable reads are redirected to the leader with 307):
  PUT    /kv/<key>   (body = value)     GET /kv/<key>[?linearizable=true]
  DELETE /kv/<key>                      GET /kv         (all keys, local)
  POST   /join   {"id":4,"raft":"127.0.0.1:7004","http":"127.0.0.1:8004"}
  POST   /remove {"id":4}               GET /status
Reads are local (possibly a little stale) unless linearizable=true.`,
		func(ctx context.Context) error { return runNode(ctx, f) })
	cmd.Example = `  kvstore --id 1 --http 127.0.0.1:8001 --raft 127.0.0.1:7001 \
      --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
  kvstore --engine etcd --id 1 --bucket 's3://kv/n1?endpoint=127.0.0.1:9000&access_key=…&secret_key=…' \
      --meta etcd://127.0.0.1:2379/kv ...`
	fl := cmd.Flags()
	fl.StringVar(&f.engine, "engine", node.EngineHashicorp, "Raft engine: hashicorp or etcd")
	fl.Uint64Var(&f.id, "id", 1, "this node's id (a positive integer, unique in the cluster)")
	fl.StringVar(&f.httpAddr, "http", "127.0.0.1:8001", "HTTP API listen address, published to the cluster (host:port; port 0 picks one)")
	fl.StringVar(&f.raftAddr, "raft", "127.0.0.1:7001", "Raft transport listen and advertised address (host:port)")
	fl.StringVar(&f.peers, "peers", "", "initial members as id=raft-address pairs, comma separated (default: this node alone)")
	fl.StringVar(&f.join, "join", "", "HTTP address of a member to ask to add this node (for a node not in --peers)")
	fl.StringVar(&f.dataDir, "data-dir", "kvstore-data", "directory of the default bucket: file://<data-dir>/node-<id>")
	fl.StringVar(&f.bucket, "bucket", "", "bucket URL: file:///abs/dir or s3://bucket/prefix?endpoint=host:port&… (default file://<data-dir>/node-<id>)")
	fl.StringVar(&f.meta, "meta", "", "metadata URL: etcd://host:port/prefix (default: metadata kept in the bucket)")
	fl.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 1000, "take a snapshot after this many applied entries and compact the log (keeping half as many)")
	fl.DurationVar(&f.electionTimeout, "election-timeout", time.Second, "Raft election timeout (heartbeats are 10x more frequent for etcd raft)")
	fl.DurationVar(&f.requestTimeout, "request-timeout", 5*time.Second, "how long a write or linearizable read may wait for Raft")
	fl.DurationVar(&f.openTimeout, "open-timeout", 30*time.Second, "how long opening the storage may take before giving up")
	fl.StringVar(&f.logLevel, "log-level", "info", "kvstore's log level: debug, info, warn, error")
	fl.StringVar(&f.raftLogLevel, "raft-log-level", "warn", "the Raft library's log level: debug, info, warn, error, off")
	return cmd
}

func parseLevel(flag, s string) (slog.Level, error) {
	if strings.EqualFold(s, "off") {
		return slog.LevelError + 100, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--%s %q: want debug, info, warn, error or off", flag, s)
	}
	return l, nil
}

// nodeConfig checks the flags and turns them into a node.Config.
func nodeConfig(f nodeFlags) (node.Config, error) {
	var cfg node.Config
	if err := checkEngine(f.engine); err != nil {
		return cfg, err
	}
	if f.id == 0 {
		return cfg, errors.New("--id must be a positive integer")
	}
	for name, addr := range map[string]string{"http": f.httpAddr, "raft": f.raftAddr} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return cfg, fmt.Errorf("--%s %q: want host:port", name, addr)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return cfg, fmt.Errorf("--%s %q: give the address other nodes reach this one at (e.g. 127.0.0.1:%s), not a wildcard", name, addr, port)
		}
		if name == "raft" && port == "0" {
			return cfg, fmt.Errorf("--raft %q: the Raft port must be fixed: the other nodes' --peers name it", addr)
		}
	}
	peers, err := node.ParsePeers(f.peers)
	if err != nil {
		return cfg, fmt.Errorf("--peers: %w", err)
	}
	if addr, ok := peers[f.id]; ok && addr != f.raftAddr {
		return cfg, fmt.Errorf("--peers says node %d is at %s but --raft is %s", f.id, addr, f.raftAddr)
	}
	if f.join != "" {
		if _, ok := peers[f.id]; ok {
			return cfg, fmt.Errorf("--join is for a node outside the initial --peers; node %d is in --peers", f.id)
		}
	} else if len(peers) == 0 {
		peers[f.id] = f.raftAddr // a one-node cluster
	} else if _, ok := peers[f.id]; !ok {
		return cfg, fmt.Errorf("node %d is not in --peers; give --join <member HTTP address> to add it to the running cluster", f.id)
	}
	if f.snapshotThreshold < 2 {
		return cfg, fmt.Errorf("--snapshot-threshold %d: want at least 2", f.snapshotThreshold)
	}
	if f.electionTimeout < 10*time.Millisecond {
		return cfg, fmt.Errorf("--election-timeout %v: want at least 10ms", f.electionTimeout)
	}
	bucket := f.bucket
	if bucket == "" {
		dir, err := filepath.Abs(filepath.Join(f.dataDir, "node-"+strconv.FormatUint(f.id, 10)))
		if err != nil {
			return cfg, fmt.Errorf("--data-dir: %w", err)
		}
		bucket = "file://" + filepath.ToSlash(dir)
	}
	cfg = node.Config{
		Engine: f.engine, ID: f.id, RaftAddr: f.raftAddr, HTTPAddr: f.httpAddr, Peers: peers,
		BucketURL: bucket, MetaURL: f.meta, SnapshotThreshold: f.snapshotThreshold,
		ElectionTimeout: f.electionTimeout,
	}
	return cfg, nil
}

func runNode(ctx context.Context, f nodeFlags) error {
	cfg, err := nodeConfig(f)
	if err != nil {
		return err
	}
	level, err := parseLevel("log-level", f.logLevel)
	if err != nil {
		return err
	}
	raftLevel, err := parseLevel("raft-log-level", f.raftLogLevel)
	if err != nil {
		return err
	}
	lg := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("node", f.id)
	cfg.Logger, cfg.RaftLog, cfg.RaftLogLevel = lg, os.Stderr, raftLevel

	// Listen first: a busy port is reported before the storage is touched,
	// and port 0 resolves to the address published to the cluster.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	defer ln.Close()
	cfg.HTTPAddr = ln.Addr().String()

	octx, cancel := context.WithTimeout(ctx, f.openTimeout)
	e, err := node.Start(octx, cfg)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted while starting: %w", err)
		}
		return err
	}
	srv := &http.Server{Handler: server.New(e, f.requestTimeout, lg), ReadHeaderTimeout: 10 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	lg.Info("ready", "engine", cfg.Engine, "http", cfg.HTTPAddr, "raft", cfg.RaftAddr,
		"peers", f.peers, "bucket", e.Status().Bucket)

	if f.join != "" {
		go joinCluster(ctx, e, f.join, cfg, lg)
	}

	var runErr error
	select {
	case <-ctx.Done():
		lg.Info("shutting down")
	case <-e.Done():
		runErr = fmt.Errorf("node stopped: %w", e.Err())
		if errors.Is(runErr, wal.ErrFenced) {
			// Another process owns the log: stop at once, without waiting
			// for requests or handing anything over (the exit code tells
			// the supervisor not to restart this node).
			return runErr
		}
	case err := <-srvErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(sctx)
	scancel()
	if err := e.Close(); err != nil {
		lg.Warn("close", "err", err)
	}
	if runErr == nil {
		lg.Info("stopped")
	}
	return runErr
}

// joinCluster asks the member at addr to add this node, until it is a
// voter (it may already be one after a restart).
func joinCluster(ctx context.Context, e node.Engine, addr string, cfg node.Config, lg *slog.Logger) {
	body := fmt.Sprintf(`{"id":%d,"raft":%q,"http":%q}`, cfg.ID, cfg.RaftAddr, cfg.HTTPAddr)
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + "/join"
	cli := &http.Client{Timeout: 10 * time.Second}
	for attempt := 0; ; attempt++ {
		if slices.Contains(e.Status().Voters, cfg.ID) {
			lg.Info("member of the cluster", "voters", e.Status().Voters)
			return
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := cli.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				lg.Info("joined the cluster", "via", addr)
				return
			}
			err = fmt.Errorf("%s answered %s", addr, resp.Status)
		}
		if attempt%10 == 0 {
			lg.Warn("join: retrying", "err", err)
		}
		if retry.Sleep(ctx, 500*time.Millisecond) != nil {
			return
		}
	}
}
