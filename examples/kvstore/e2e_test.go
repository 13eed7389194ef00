package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/cluster"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
)

// Each end-to-end test runs real kvstore processes (see harness_test.go).
// Nodes take a snapshot every 200 entries, so the logs are compacted and
// restarted nodes restore snapshots during the tests.

// TestLeaderCrash: 1,000 keys through random nodes; the leader is killed
// with SIGKILL half-way, writes go on, it is restarted, and all three nodes
// converge to the same data.
func TestLeaderCrash(t *testing.T) {
	for i, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			leaderCrash(t, engine, 1000, uint64(time.Now().UnixNano())+uint64(i))
		})
	}
}

func leaderCrash(t *testing.T, engine string, keys int, seed uint64, opts ...clusterOpt) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tc := startCluster(t, engine, opts...)
	w := newWriter(tc, seed)
	start := time.Now()
	w.writeRange(ctx, 0, keys/2, 8)
	t.Logf("%d keys written in %v", keys/2, time.Since(start).Round(time.Millisecond))

	old := tc.leader(ctx)
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader node %d (SIGKILL)", old.ID)
	start = time.Now()
	w.writeRange(ctx, keys/2, keys, 8)
	t.Logf("%d more keys written without node %d in %v", keys-keys/2, old.ID, time.Since(start).Round(time.Millisecond))
	nl := tc.leader(ctx)
	if nl.ID == old.ID {
		t.Fatalf("node %d is dead but leads", old.ID)
	}

	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	if err := old.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	tc.waitConverged(ctx, w.expected())
	t.Logf("node %d restarted; all nodes converged on %d keys in %v", old.ID, keys, time.Since(start).Round(time.Millisecond))

	for _, n := range tc.Nodes {
		// hashicorp/raft checks the threshold every 1-2s: give it time.
		s, err := n.Status(ctx)
		for err == nil && s.SnapIndex == 0 && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			s, err = n.Status(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node %d: %s term %d commit %d applied %d log [%d, %d] snapshot %d keys %d digest %s",
			n.ID, s.State, s.Term, s.CommitIndex, s.AppliedIndex, s.FirstIndex, s.LastIndex, s.SnapIndex, s.Keys, s.Digest)
		if s.SnapIndex == 0 {
			t.Errorf("node %d took no snapshot after %d writes (threshold 200)", n.ID, keys)
		}
	}
}

// TestDiskLoss: a node is stopped and everything local to it except its
// bucket is deleted; it comes back from the bucket with identical data.
// Then the whole cluster is stopped, every node's local directory deleted,
// and the cluster restarted: all state comes from the buckets.
func TestDiskLoss(t *testing.T) {
	for i, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			root := t.TempDir()
			local := func(id uint64) string { return filepath.Join(root, "local", fmt.Sprintf("node-%d", id)) }
			// The buckets live apart from the nodes' local directories; the
			// local directory is the node's working directory and holds
			// whatever it keeps on disk outside the bucket (kvstore keeps
			// nothing there: this test is what guarantees it).
			tc := startCluster(t, engine, withBuckets(func(id uint64) string {
				os.MkdirAll(local(id), 0o755)
				return "file://" + filepath.Join(root, "buckets", fmt.Sprintf("node-%d", id))
			}))
			w := newWriter(tc, uint64(time.Now().UnixNano())+uint64(i))
			w.writeRange(ctx, 0, 300, 8)

			victim := tc.leader(ctx) // the hardest one to lose
			if err := victim.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(local(victim.ID)); err != nil {
				t.Fatal(err)
			}
			t.Logf("stopped node %d and deleted %s", victim.ID, local(victim.ID))
			w.writeRange(ctx, 300, 500, 8)
			os.MkdirAll(local(victim.ID), 0o755)
			if err := victim.Start(); err != nil {
				t.Fatal(err)
			}
			tc.waitConverged(ctx, w.expected())
			t.Logf("node %d is back with identical data", victim.ID)

			// Every node at once: nothing but the buckets survives.
			if err := tc.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.Nodes {
				if err := os.RemoveAll(local(n.ID)); err != nil {
					t.Fatal(err)
				}
				os.MkdirAll(local(n.ID), 0o755)
			}
			if err := tc.Start(ctx); err != nil {
				t.Fatal(err)
			}
			tc.waitConverged(ctx, w.expected())
			t.Logf("whole cluster restarted from its buckets with identical data")
		})
	}
}

// TestMembership: a fourth node joins through a follower (redirected to the
// leader) and catches up, a node is removed, and writes keep working.
func TestMembership(t *testing.T) {
	for i, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tc := startCluster(t, engine)
			w := newWriter(tc, uint64(time.Now().UnixNano())+uint64(i))
			w.writeRange(ctx, 0, 300, 8)

			l := tc.leader(ctx)
			var via *cluster.Node
			for _, n := range tc.Nodes {
				if n.ID != l.ID {
					via = n
					break
				}
			}
			n4, err := tc.AddNode(via)
			if err != nil {
				t.Fatal(err)
			}
			if err := n4.Start(); err != nil {
				t.Fatal(err)
			}
			waitVoters(ctx, t, l, []uint64{1, 2, 3, 4})
			tc.waitConverged(ctx, w.expected())

			// Remove a follower other than the new node, via any node.
			var gone *cluster.Node
			for _, n := range tc.Nodes[:3] {
				if n.ID != l.ID {
					gone = n
					break
				}
			}
			resp, err := httpClient.Post("http://"+n4.HTTP+"/remove", "application/json",
				strings.NewReader(fmt.Sprintf(`{"id": %d}`, gone.ID)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("remove node %d: %s", gone.ID, resp.Status)
			}
			want := slices.DeleteFunc([]uint64{1, 2, 3, 4}, func(id uint64) bool { return id == gone.ID })
			waitVoters(ctx, t, l, want)
			if err := gone.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			w.writeRange(ctx, 300, 400, 4)
			tc.waitConverged(ctx, w.expected())
		})
	}
}

func waitVoters(ctx context.Context, t *testing.T, n *cluster.Node, want []uint64) {
	t.Helper()
	var got []uint64
	for ctx.Err() == nil {
		if s, err := n.Status(ctx); err == nil {
			got = s.Voters
			if slices.Equal(got, want) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("node %d: voters %v, want %v", n.ID, got, want)
}

// TestVersitygwEtcd runs the leader-crash scenario with every node's state
// in a versitygw S3 bucket (one bucket, a prefix per node) and metadata in
// an embedded etcd server: the production shape. 300 keys to fit the test
// budget.
func TestVersitygwEtcd(t *testing.T) {
	s3 := testserver.Versitygw(t)
	etcd := etcdserver.Start(t)
	bucket := s3.NewBucket(t)
	for i, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			leaderCrash(t, engine, 300, uint64(time.Now().UnixNano())+uint64(i),
				withBuckets(func(id uint64) string { return s3.URL(bucket, fmt.Sprintf("%s/node%d", engine, id)) }),
				withMeta(etcd.URL("kv_"+engine)))
		})
	}
}

// TestBadFlagsAndStorage: mistakes are reported clearly and promptly.
func TestBadFlagsAndStorage(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"engine", []string{"--engine", "zab"}, `--engine "zab": want hashicorp or etcd`},
		{"id", []string{"--id", "0"}, "--id must be a positive integer"},
		{"peers", []string{"--peers", "1=127.0.0.1"}, "--peers"},
		{"not in peers", []string{"--id", "4", "--peers", "1=127.0.0.1:7001"}, "node 4 is not in --peers"},
		{"raft mismatch", []string{"--id", "1", "--raft", "127.0.0.1:7009", "--peers", "1=127.0.0.1:7001"}, "--peers says node 1 is at 127.0.0.1:7001 but --raft is 127.0.0.1:7009"},
		{"wildcard", []string{"--http", "0.0.0.0:8001"}, "not a wildcard"},
		{"bucket scheme", []string{"--bucket", "ftp://x/y"}, `unsupported bucket URL scheme "ftp"`},
		{"relative file", []string{"--bucket", "file://relative/dir"}, "file:///abs/dir"},
		{"s3 unreachable", []string{"--bucket", "s3://bkt/p?endpoint=127.0.0.1:1&access_key=kvtestaccess&secret_key=kvtestsecret&timeout=2s&max_retries=1", "--open-timeout", "5s"}, "127.0.0.1:1"},
		{"etcd unreachable", []string{"--meta", "etcd://127.0.0.1:1/kv?dial_timeout=1s", "--open-timeout", "5s"}, "127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			httpAddr, _ := cluster.FreeAddr("127.0.0.1")
			raftAddr, _ := cluster.FreeAddr("127.0.0.1")
			args := []string{"--http", httpAddr, "--raft", raftAddr, "--data-dir", dir}
			if !slices.Contains(c.args, "--raft") && slices.Contains(c.args, "--peers") {
				args = []string{"--http", httpAddr, "--data-dir", dir}
			}
			args = append(args, c.args...)
			start := time.Now()
			out, err := exec.CommandContext(ctx, kvstoreBin, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("kvstore %s: exited 0; output:\n%s", strings.Join(args, " "), out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("kvstore %s: output lacks %q:\n%s", strings.Join(args, " "), c.want, out)
			}
			t.Logf("%v after %v: %s", err, time.Since(start).Round(time.Millisecond), lastLine(out))
		})
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
