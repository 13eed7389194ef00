package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/kv"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// freeAddr returns a free local TCP address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startOne starts a one-node cluster of engine on a bucket in dir.
func startOne(t *testing.T, engine, dir string, raft string, peers map[uint64]string) Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := Start(ctx, Config{
		Engine: engine, ID: 1, RaftAddr: raft, HTTPAddr: "127.0.0.1:1",
		Peers: peers, BucketURL: "file://" + dir, ElectionTimeout: 300 * time.Millisecond,
		SnapshotThreshold: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// waitLeader waits until e leads and serves a linearizable read.
func waitLeader(t *testing.T, e Engine) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if e.Status().State == "leader" {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := e.LinearizableRead(ctx)
			cancel()
			if err == nil {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader: %+v", e.Status())
}

// Every Propose / LinearizableRead in flight when Close is called returns
// (none hangs, even without a deadline), and no waiter is left behind.
func TestCloseSettlesEveryWaiter(t *testing.T) {
	for _, engine := range []string{EngineEtcd, EngineHashicorp} {
		t.Run(engine, func(t *testing.T) {
			for round := range 3 {
				dir := filepath.Join(t.TempDir(), "b")
				addr := freeAddr(t)
				e := startOne(t, engine, dir, addr, map[uint64]string{1: addr})
				waitLeader(t, e)
				var wg sync.WaitGroup
				stop := make(chan struct{})
				var mu sync.Mutex
				errs := map[string]int{}
				for w := range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							var err error
							if (w+i)%2 == 0 {
								_, err = e.Propose(context.Background(), kv.Command{Op: kv.OpPut, Key: fmt.Sprintf("k%d-%d", w, i), Value: "v"})
							} else {
								err = e.LinearizableRead(context.Background())
							}
							if err != nil {
								mu.Lock()
								errs[err.Error()]++
								mu.Unlock()
								if errors.Is(err, ErrStopped) {
									return
								}
							}
						}
					}()
				}
				time.Sleep(time.Duration(100+100*round) * time.Millisecond)
				closed := make(chan error, 1)
				go func() { closed <- e.Close() }()
				select {
				case err := <-closed:
					if err != nil {
						t.Logf("close: %v", err)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("Close hangs")
				}
				close(stop)
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					buf := make([]byte, 1<<20)
					t.Fatalf("a Propose or LinearizableRead hangs after Close:\n%s", buf[:runtime.Stack(buf, true)])
				}
				if n, ok := e.(*etcdNode); ok {
					n.props.mu.Lock()
					np := len(n.props.m)
					n.props.mu.Unlock()
					n.reads.mu.Lock()
					nr := len(n.reads.m)
					n.reads.mu.Unlock()
					if np+nr != 0 {
						t.Fatalf("waiters left: %d proposals, %d reads", np, nr)
					}
				}
				t.Logf("round %d errors: %v", round, errs)
			}
		})
	}
}

// A term write that finds the log taken over reports the fence and never
// returns to raft (which would panic on the error): the raft goroutine
// waits until the node stops and then ends.
func TestFencedTermWriteNeverReturnsToRaft(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	process := func() *wal.Client { // a client of its own, as another process has
		c, err := wal.Open(ctx, wal.Config{Bucket: b, Meta: m, GCInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	zombie, err := hashiraft.New(ctx, process().LogStore(), "raft", hashiraft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	owner, err := hashiraft.New(ctx, process().LogStore(), "raft", hashiraft.Options{}) // takes the log over
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()

	nodeCtx, stop := context.WithCancel(ctx)
	fenced := make(chan error, 1)
	f := &fencedStore{Store: zombie, lg: slog.New(slog.DiscardHandler), ctx: nodeCtx,
		onFenced: func(err error) { fenced <- err }}
	f.riding.Store(true)
	returned, ended := make(chan error, 1), make(chan struct{})
	go func() { // as raft's goroutine storing a new term
		defer close(ended)
		returned <- f.SetUint64([]byte("CurrentTerm"), 7)
	}()
	select {
	case err := <-fenced:
		if !errors.Is(err, wal.ErrFenced) {
			t.Fatalf("onFenced(%v), want ErrFenced", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the fence was not reported")
	}
	select {
	case err := <-returned:
		t.Fatalf("SetUint64 on a fenced store returned %v to raft", err)
	case <-time.After(100 * time.Millisecond):
	}
	stop()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the parked goroutine did not end when the node stopped")
	}
	select {
	case err := <-returned:
		t.Fatalf("SetUint64 returned %v to raft after the node stopped", err)
	default:
	}
}
