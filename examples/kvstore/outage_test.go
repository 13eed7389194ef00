package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/outagetest"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
)

// The outages last outagetest.Downtime each, and -outage.seed
// (outagetest.Seed) replays a run's values and node choices, as in the
// adapters' outage tests.
const (
	// outageWorkers is the number of concurrent clients writing.
	outageWorkers = 4
	// outageWarmAcks and outageRecoverAcks are the writes that must be
	// acknowledged before an outage, and after the restart (counting only
	// attempts started after it).
	outageWarmAcks    = 50
	outageRecoverAcks = 20
	// outageRecoverWithin bounds the wait for outageRecoverAcks after a
	// restart: the nodes' storage calls (CallTimeout) and the WAL's retries
	// (RetryBudget, 30 s) both end well within it.
	outageRecoverWithin = 45 * time.Second
)

// TestClusterRidesOutServerOutages: a 3-node cluster of each engine, every
// node's state in versitygw and its metadata in etcd, takes client writes
// through a 10 s outage of versitygw (killed, then restarted on the same
// port and directory) and then a 10 s outage of etcd (closed, then
// restarted on the same data). Writes may fail while a server is down (the
// clients retry them); afterwards writes succeed again, no node process
// exited or was restarted, and every acknowledged write is on every node.
// The engines run in parallel, each with servers of its own.
func TestClusterRidesOutServerOutages(t *testing.T) {
	seed := outagetest.Seed(t)
	for i, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			clusterOutages(t, engine, seed+uint64(i))
		})
	}
}

func clusterOutages(t *testing.T, engine string, seed uint64) {
	s3, etcd := testserver.Versitygw(t), etcdserver.Start(t)
	bucket := s3.NewBucket(t)
	tc := startCluster(t, engine,
		withBuckets(func(id uint64) string { return s3.URL(bucket, fmt.Sprintf("node%d", id)) }),
		withMeta(etcd.URL("kv_outage")))
	pids := map[uint64]int{}
	for _, n := range tc.Nodes {
		pids[n.ID] = n.Pid()
	}

	w := newOutageWriter(tc, seed)
	w.start(outageWorkers)
	t.Cleanup(w.stop)
	if ok, why := w.waitAcks(time.Time{}, outageWarmAcks, time.Now().Add(30*time.Second)); !ok {
		t.Fatalf("fewer than %d writes acknowledged before any outage, %s; last error: %v", outageWarmAcks, why, w.lastErr())
	}

	phases := []struct {
		what string
		srv  outagetest.Server
	}{
		{"versitygw", s3},
		{"etcd", etcd},
	}
	recovered := true
	for _, p := range phases {
		down := time.Now()
		p.srv.Stop()
		t.Logf("%s stopped (took %v); down for %v", p.what, time.Since(down).Round(time.Millisecond), outagetest.Downtime)
		time.Sleep(time.Until(down.Add(outagetest.Downtime)))
		p.srv.Restart(t)
		back := time.Now()
		t.Logf("%s restarted after %v down", p.what, back.Sub(down).Round(time.Millisecond))
		ok, why := w.waitAcks(back, outageRecoverAcks, back.Add(outageRecoverWithin))
		st := w.window(down, back)
		t.Logf("%s outage: %d writes acknowledged while down, %d failed attempts, longest acknowledged attempt %v, first acknowledgement of an attempt started after the restart: %s",
			p.what, st.ackedDuring, st.failedAttempts, st.longest.Round(time.Millisecond), sinceText(st.firstAfter))
		checkNodesAlive(t, tc, pids, "after the "+p.what+" outage")
		if !ok {
			t.Errorf("writes did not recover after the %s restart: fewer than %d acknowledged, %s; last error: %v",
				p.what, outageRecoverAcks, why, w.lastErr())
			recovered = false
			break
		}
	}
	w.stop()
	acked, unknown := w.result()
	t.Logf("%d writes acknowledged, %d given up with an unknown outcome at the end, %d failed attempts in all",
		len(acked), len(unknown), w.failedAttempts())
	checkNodesAlive(t, tc, pids, "at the end")
	if !recovered {
		return
	}

	// Every acknowledged write is on every node (local reads) ...
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if diff := tc.waitHolds(ctx, acked, unknown); diff != "" {
		t.Errorf("acknowledged writes missing after the outages: %s", diff)
	}
	// ... and readable linearizably through the leader.
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rng := rand.New(rand.NewPCG(seed, 2))
	l := tc.leader(ctx)
	for range 20 {
		k := keys[rng.IntN(len(keys))]
		v, found, err := get(ctx, l.HTTP, k, true)
		if err != nil || !found || v != acked[k] {
			t.Errorf("linearizable read of %s at the leader (node %d): %q, found %v, %v; want %q", k, l.ID, v, found, err, acked[k])
		}
	}
}

// checkNodesAlive fails the test for every node whose process exited or
// was replaced since the start.
func checkNodesAlive(t *testing.T, tc *testCluster, pids map[uint64]int, when string) {
	t.Helper()
	for _, n := range tc.Nodes {
		if pid := n.Pid(); pid != pids[n.ID] {
			t.Errorf("%s: node %d: process %d exited (%v); now pid %d", when, n.ID, pids[n.ID], n.LastExit(), pid)
		}
	}
}

// outageWriter writes fresh keys through random running nodes with several
// clients, retrying each write until it is acknowledged (or the writer is
// stopped), and records every attempt.
type outageWriter struct {
	tc     *testCluster
	next   atomic.Int64
	ctx    context.Context // ends when the writer is asked to stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	prog   chan struct{} // signaled (without blocking) on every acknowledgement

	mu struct {
		sync.Mutex
		rng     *rand.Rand
		acked   map[string]string
		unknown map[string]string // given up on at the stop
		oks     []attempt         // acknowledged attempts
		fails   []attempt         // failed attempts
		lastErr error
	}
}

type attempt struct{ start, end time.Time }

func newOutageWriter(tc *testCluster, seed uint64) *outageWriter {
	w := &outageWriter{tc: tc, prog: make(chan struct{}, 1)}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.mu.rng = rand.New(rand.NewPCG(seed, 1))
	w.mu.acked, w.mu.unknown = map[string]string{}, map[string]string{}
	return w
}

func (w *outageWriter) start(workers int) {
	for range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for w.writeOne() {
			}
		}()
	}
}

// stop stops the writers and waits for them. Idempotent.
func (w *outageWriter) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *outageWriter) stopping() bool { return w.ctx.Err() != nil }

// value returns a fresh value for key i.
func (w *outageWriter) value(i int64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("v%06d-%08x", i, w.mu.rng.Uint32())
}

// pick returns a random running node's HTTP address, "" if none runs.
func (w *outageWriter) pick() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tc.pick(w.mu.rng)
}

// writeOne writes the next key until it is acknowledged; false when the
// writer was stopped.
func (w *outageWriter) writeOne() bool {
	if w.stopping() {
		return false
	}
	i := w.next.Add(1)
	key := fmt.Sprintf("outage-%06d", i)
	value := w.value(i)
	for {
		addr := w.pick()
		a := attempt{start: time.Now()}
		var err error
		if addr == "" {
			err = errors.New("no node running")
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = put(ctx, addr, key, value)
			cancel()
		}
		a.end = time.Now()
		w.mu.Lock()
		if err == nil {
			w.mu.acked[key] = value
			w.mu.oks = append(w.mu.oks, a)
		} else {
			w.mu.fails = append(w.mu.fails, a)
			w.mu.lastErr = fmt.Errorf("%s at %s: %w", key, a.end.Format("15:04:05.000"), err)
		}
		w.mu.Unlock()
		if err == nil {
			select {
			case w.prog <- struct{}{}:
			default:
			}
			return true
		}
		if w.stopping() {
			w.mu.Lock()
			w.mu.unknown[key] = value
			w.mu.Unlock()
			return false
		}
		retry.Sleep(w.ctx, 20*time.Millisecond)
	}
}

// acksSince counts the acknowledged attempts that started at or after from.
func (w *outageWriter) acksSince(from time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.mu.oks {
		if !a.start.Before(from) {
			n++
		}
	}
	return n
}

// waitAcks waits until n attempts started at or after from were
// acknowledged (true), or the deadline passes, or fewer than a majority of
// the nodes still run, when no write can succeed (false, and why).
func (w *outageWriter) waitAcks(from time.Time, n int, deadline time.Time) (bool, string) {
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	alive := time.NewTicker(100 * time.Millisecond)
	defer alive.Stop()
	for w.acksSince(from) < n {
		select {
		case <-w.prog:
		case <-alive.C:
			if r := len(w.tc.running()); r <= len(w.tc.Nodes)/2 {
				return w.acksSince(from) >= n, fmt.Sprintf("only %d of %d nodes running", r, len(w.tc.Nodes))
			}
		case <-timeout.C:
			return w.acksSince(from) >= n, fmt.Sprintf("none for %v", time.Since(from).Round(time.Millisecond))
		}
	}
	return true, ""
}

// sinceText formats a duration of kvWindow, -1 meaning none.
func sinceText(d time.Duration) string {
	if d < 0 {
		return "none"
	}
	return d.Round(time.Millisecond).String() + " after it"
}

type kvWindow struct {
	ackedDuring, failedAttempts int
	longest                     time.Duration // of an acknowledged attempt ending after down
	firstAfter                  time.Duration // from back to the first acknowledgement of an attempt started after it; -1: none
}

func (w *outageWriter) window(down, back time.Time) kvWindow {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := kvWindow{firstAfter: -1}
	for _, a := range w.mu.oks {
		if a.end.Before(down) {
			continue
		}
		if a.end.Before(back) {
			st.ackedDuring++
		}
		st.longest = max(st.longest, a.end.Sub(a.start))
		if !a.start.Before(back) && (st.firstAfter < 0 || a.end.Sub(back) < st.firstAfter) {
			st.firstAfter = a.end.Sub(back)
		}
	}
	for _, a := range w.mu.fails {
		if !a.end.Before(down) {
			st.failedAttempts++
		}
	}
	return st
}

func (w *outageWriter) lastErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.lastErr
}

func (w *outageWriter) failedAttempts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mu.fails)
}

// result returns copies of the acknowledged writes and of those given up
// on.
func (w *outageWriter) result() (acked, unknown map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	acked, unknown = make(map[string]string, len(w.mu.acked)), make(map[string]string, len(w.mu.unknown))
	for k, v := range w.mu.acked {
		acked[k] = v
	}
	for k, v := range w.mu.unknown {
		unknown[k] = v
	}
	return acked, unknown
}
