// Package cluster starts and supervises kvstore node processes on one
// machine: `kvstore cluster` (make run), `kvstore bench --spawn` and the
// end-to-end tests use it. Each node is a child process of the kvstore
// binary; its storage is a bucket of its own (or whatever URL the caller
// gives), so a node can be killed, restarted, or started from an empty
// local directory at will.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// Options describes a cluster.
type Options struct {
	// Exe is the kvstore binary. Default: this executable.
	Exe string
	// Engine is hashicorp or etcd.
	Engine string
	// Nodes is the number of initial members. Default 3.
	Nodes int
	// Host the nodes listen on. Default 127.0.0.1.
	Host string
	// HTTPPort and RaftPort are node 1's ports; node i uses port+i-1.
	// 0 picks free ports.
	HTTPPort, RaftPort int
	// DataDir holds every node's default bucket (<DataDir>/node-<id>).
	DataDir string
	// Bucket, if set, returns node id's bucket URL instead.
	Bucket func(id uint64) string
	// Meta is the metadata URL shared by the nodes ("" keeps metadata in
	// each bucket).
	Meta string
	// Args are extra flags for every node (e.g. --snapshot-threshold=100).
	Args []string
	// Output returns where node id's stdout and stderr go (appended across
	// restarts). Default: os.Stderr.
	Output func(id uint64) io.Writer
}

// Cluster is a set of node processes.
type Cluster struct {
	opts  Options
	Nodes []*Node
	peers string
}

// Node is one kvstore process; it may be stopped and started again.
type Node struct {
	ID        uint64
	HTTP      string // host:port of the API
	Raft      string // host:port of the Raft transport
	BucketURL string
	c         *Cluster
	out       io.Writer
	extra     []string // e.g. --join

	mu     sync.Mutex
	cmd    *exec.Cmd     // guarded by mu; nil when not running
	exited chan struct{} // guarded by mu; closed when cmd's process exited
	state  *os.ProcessState
}

// New prepares a cluster (choosing ports) without starting anything.
func New(opts Options) (*Cluster, error) {
	if opts.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		opts.Exe = exe
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Output == nil {
		opts.Output = func(uint64) io.Writer { return os.Stderr }
	}
	if opts.DataDir == "" && opts.Bucket == nil {
		return nil, errors.New("cluster: DataDir or Bucket is required")
	}
	if opts.DataDir != "" {
		abs, err := filepath.Abs(opts.DataDir)
		if err != nil {
			return nil, err
		}
		opts.DataDir = abs
	}
	c := &Cluster{opts: opts}
	var peers []string
	for i := range opts.Nodes {
		id := uint64(i + 1)
		n, err := c.newNode(id, opts.HTTPPort, opts.RaftPort, i)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
		peers = append(peers, fmt.Sprintf("%d=%s", id, n.Raft))
	}
	c.peers = strings.Join(peers, ",")
	return c, nil
}

func (c *Cluster) newNode(id uint64, httpPort, raftPort, offset int) (*Node, error) {
	addr := func(base int, what string) (string, error) {
		if base == 0 {
			return FreeAddr(c.opts.Host)
		}
		a := net.JoinHostPort(c.opts.Host, strconv.Itoa(base+offset))
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return "", fmt.Errorf("%s port %d of node %d is in use (another cluster running?): pick other ports", what, base+offset, id)
		}
		ln.Close()
		return a, nil
	}
	h, err := addr(httpPort, "HTTP")
	if err != nil {
		return nil, err
	}
	r, err := addr(raftPort, "Raft")
	if err != nil {
		return nil, err
	}
	n := &Node{ID: id, HTTP: h, Raft: r, c: c, out: c.opts.Output(id)}
	if c.opts.Bucket != nil {
		n.BucketURL = c.opts.Bucket(id)
	} else {
		n.BucketURL = "file://" + filepath.ToSlash(filepath.Join(c.opts.DataDir, "node-"+strconv.FormatUint(id, 10)))
	}
	return n, nil
}

var handedOut struct {
	sync.Mutex
	addrs map[string]bool // guarded by the mutex
}

// FreeAddr returns host:port with a port that was free a moment ago and was
// never returned before in this process: the kernel can hand the same free
// port out twice in a row, and two nodes given one address cannot start.
func FreeAddr(host string) (string, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.addrs == nil {
		handedOut.addrs = make(map[string]bool)
	}
	for {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr, nil
		}
	}
}

// Peers returns the --peers value of the initial members.
func (c *Cluster) Peers() string { return c.peers }

// Node returns node id (1-based), or nil.
func (c *Cluster) Node(id uint64) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// AddNode prepares (without starting) a new node outside the initial
// peers that joins through an existing member.
func (c *Cluster) AddNode(via *Node) (*Node, error) {
	id := uint64(len(c.Nodes) + 1)
	n, err := c.newNode(id, 0, 0, 0)
	if err != nil {
		return nil, err
	}
	n.extra = []string{"--join", via.HTTP}
	c.Nodes = append(c.Nodes, n)
	return n, nil
}

// Start starts every node that is not running and waits until all answer
// and a leader is elected.
func (c *Cluster) Start(ctx context.Context) error {
	for _, n := range c.Nodes {
		if !n.Running() {
			if err := n.Start(); err != nil {
				c.Stop(5 * time.Second)
				return err
			}
		}
	}
	for _, n := range c.Nodes {
		if err := n.WaitReady(ctx); err != nil {
			c.Stop(5 * time.Second)
			return err
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		c.Stop(5 * time.Second)
		return err
	}
	return nil
}

// Args returns the command line of the node.
func (n *Node) Args() []string {
	o := n.c.opts
	args := []string{
		"--engine", o.Engine,
		"--id", strconv.FormatUint(n.ID, 10),
		"--http", n.HTTP,
		"--raft", n.Raft,
		"--bucket", n.BucketURL,
	}
	if len(n.extra) == 0 {
		args = append(args, "--peers", n.c.peers)
	}
	if o.Meta != "" {
		args = append(args, "--meta", o.Meta)
	}
	args = append(args, o.Args...)
	return append(args, n.extra...)
}

// Start starts the node's process. It fails if it is running.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("node %d is running", n.ID)
	}
	cmd := exec.Command(n.c.opts.Exe, n.Args()...)
	cmd.Stdout, cmd.Stderr = n.out, n.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node %d: %w", n.ID, err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited = cmd, exited
	go func() {
		cmd.Wait()
		n.mu.Lock()
		n.state = cmd.ProcessState
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Pid returns the process id, 0 when not running.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Exited returns a channel closed when the current process exits (nil when
// not running), and how the last process ended.
func (n *Node) Exited() (<-chan struct{}, *os.ProcessState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil, n.state
	}
	return n.exited, nil
}

// LastExit describes how the last process ended.
func (n *Node) LastExit() *os.ProcessState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

func (n *Node) signal(sig syscall.Signal, timeout time.Duration) error {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("node %d did not exit within %v of %v; killed", n.ID, timeout, sig)
	}
}

// Pause stops the process with SIGSTOP (a long GC pause, a frozen VM);
// Resume continues it.
func (n *Node) Pause() error { return n.sendSignal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (n *Node) Resume() error { return n.sendSignal(syscall.SIGCONT) }

func (n *Node) sendSignal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("node %d is not running", n.ID)
	}
	return n.cmd.Process.Signal(sig)
}

// Kill kills the process with SIGKILL (a crash) and waits for it.
func (n *Node) Kill() error { return n.signal(syscall.SIGKILL, 10*time.Second) }

// Stop asks the process to shut down (SIGTERM) and waits up to timeout
// before killing it.
func (n *Node) Stop(timeout time.Duration) error { return n.signal(syscall.SIGTERM, timeout) }

// Stop stops every node.
func (c *Cluster) Stop(timeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.Stop(timeout)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Status is the part of GET /status the cluster tools use.
type Status struct {
	ID           uint64   `json:"id"`
	State        string   `json:"state"`
	LeaderID     uint64   `json:"leader_id"`
	LeaderHTTP   string   `json:"leader_http"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	FirstIndex   uint64   `json:"log_first_index"`
	LastIndex    uint64   `json:"log_last_index"`
	SnapIndex    uint64   `json:"snapshot_index"`
	Keys         int      `json:"keys"`
	Digest       string   `json:"digest"`
	Voters       []uint64 `json:"voters"`
}

var apiClient = &http.Client{Timeout: 2 * time.Second}

// getJSON decodes the JSON answer of GET path at the node into v.
func (n *Node) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTP+path, nil)
	if err != nil {
		return err
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node %d %s: %s", n.ID, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Status fetches the node's /status.
func (n *Node) Status(ctx context.Context) (Status, error) {
	var s Status
	err := n.getJSON(ctx, "/status", &s)
	return s, err
}

// Dump fetches every key and value the node holds (GET /kv: its local
// state, which may lag the leader's).
func (n *Node) Dump(ctx context.Context) (map[string]string, error) {
	m := map[string]string{}
	return m, n.getJSON(ctx, "/kv", &m)
}

// WaitReady waits until the node answers /status (or its process exits).
func (n *Node) WaitReady(ctx context.Context) error {
	exited, _ := n.Exited()
	for {
		if _, err := n.Status(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d did not come up: %w", n.ID, ctx.Err())
		case <-exited:
			return fmt.Errorf("node %d exited while starting (%v); see its output", n.ID, n.LastExit())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// WaitLeader waits until a running node says it is the leader and the
// other running nodes agree.
func (c *Cluster) WaitLeader(ctx context.Context) (*Node, error) {
	for {
		var leader uint64
		agree := true
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			s, err := n.Status(ctx)
			if err != nil || s.LeaderID == 0 || (leader != 0 && s.LeaderID != leader) {
				agree = false
				break
			}
			leader = s.LeaderID
		}
		if agree && leader != 0 {
			if l := c.Node(leader); l != nil && l.Running() {
				if s, err := l.Status(ctx); err == nil && s.State == "leader" && s.LeaderHTTP != "" {
					return l, nil
				}
			}
		}
		if err := retry.Sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, fmt.Errorf("no leader elected: %w", err)
		}
	}
}
