// Package outagetest drives store writers through outages of the servers
// their stores depend on (versitygw, etcd), records every call, and checks
// that the stores ride the outages out. The adapters' outage tests share it.
package outagetest

import (
	"flag"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

var outageSeed = flag.Uint64("outage.seed", 0, "seed of the outage tests' payloads (0: from the clock)")

const (
	// Downtime is how long each server stays down.
	Downtime = 10 * time.Second
	// CallLimit bounds every call, failing or not: the outage the
	// engine rides out (the WAL's default RetryBudget, 30 s), one more
	// attempt (its default RequestTimeout, 10 s), and slack for a loaded
	// machine. The stores run with their default CallTimeout.
	CallLimit = 30*time.Second + 10*time.Second + 5*time.Second
	// WarmAcks and RecoverAcks are the successful calls each
	// store must make before an outage, and after the restart (counting only
	// calls started after it).
	WarmAcks    = 20
	RecoverAcks = 10
	// Pace is the least time between two calls of a writer, so the
	// log stays small enough to check quickly.
	Pace = 20 * time.Millisecond
	// RetryPause is the pause before a writer retries a failed call.
	RetryPause = 100 * time.Millisecond
)

// Seed returns -outage.seed, or a seed from the clock, and logs it.
func Seed(t *testing.T) uint64 {
	seed := *outageSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -outage.seed=%d)", seed, seed)
	return seed
}

// Server is a test server that can be taken down and brought back.
type Server interface {
	Stop()
	Restart(testing.TB)
}

// Run takes srv down for Downtime while the writers run, brings
// it back, and waits until every writer has made RecoverAcks
// successful calls started after the restart. A writer for which hits is
// false does not use srv: it must keep acknowledging while srv is down. It
// reports whether every writer recovered.
func Run(t *testing.T, what string, srv Server, trs []*Tracker, hits func(*Tracker) bool) bool {
	t.Helper()
	down := time.Now()
	srv.Stop()
	t.Logf("%s stopped (took %v); down for %v", what, time.Since(down).Round(time.Millisecond), Downtime)
	time.Sleep(time.Until(down.Add(Downtime)))
	srv.Restart(t)
	back := time.Now()
	t.Logf("%s restarted after %v down", what, back.Sub(down).Round(time.Millisecond))
	mark := make([]int64, len(trs))
	for k, tr := range trs {
		mark[k] = tr.SeqNow()
	}
	ok := true
	for k, tr := range trs {
		if !tr.WaitAcks(mark[k], RecoverAcks, back.Add(CallLimit)) {
			t.Errorf("%s: no recovery after the %s outage: fewer than %d successful calls since the restart %v ago; failed calls:\n%s",
				tr.Name, what, RecoverAcks, time.Since(back).Round(time.Millisecond), tr.FailureText())
			ok = false
		}
	}
	for _, tr := range trs {
		st := tr.Window(down, back)
		first := "none"
		if st.firstAfter >= 0 {
			first = st.firstAfter.Round(time.Millisecond).String() + " after it"
		}
		t.Logf("%s, %s outage: %d calls acknowledged while down, %d failed calls, longest call %v (%s), first acknowledgement of a call started after the restart: %s",
			tr.Name, what, st.ackedDuring, st.failed, st.longest.Round(time.Millisecond), st.longestOp, first)
		if !hits(tr) && st.ackedDuring == 0 {
			t.Errorf("%s does not use %s but acknowledged nothing while it was down", tr.Name, what)
		}
	}
	return ok
}

// Tracker runs a writer goroutine and records its calls: which succeeded,
// which failed and how, and when.
type Tracker struct {
	Name     string
	UsesEtcd bool // the store's metadata is in etcd
	Log      *slog.Logger

	stopc, giveUp, done chan struct{}
	progress            chan struct{} // signaled (without blocking) on every success
	stopOnce            sync.Once

	mu struct {
		sync.Mutex
		seq      int64      // of the last call started
		oks      []callStat // successful calls, in order
		fails    []callFail // failed calls, in order
		problems []string   // dishonest failures, calls beyond CallLimit
		pendOp   string     // the call given up on when stopped, if any
	}
}

type callStat struct {
	seq        int64
	op         string
	start, end time.Time
}

type callFail struct {
	callStat
	err error
}

func NewTracker(name string, usesEtcd bool, lg *slog.Logger) *Tracker {
	return &Tracker{
		Name: name, UsesEtcd: usesEtcd, Log: lg.With("store", name),
		stopc: make(chan struct{}), giveUp: make(chan struct{}), done: make(chan struct{}),
		progress: make(chan struct{}, 1),
	}
}

// start runs run in a goroutine; run returns when pace or call reports
// false.
func (tr *Tracker) Start(run func()) {
	go func() {
		defer close(tr.done)
		run()
	}()
}

// stop asks the writer to stop once its current call succeeded, and makes
// it give up on a failing call after a while. Idempotent.
func (tr *Tracker) Stop(t *testing.T) {
	tr.stopOnce.Do(func() {
		close(tr.stopc)
		select {
		case <-tr.done:
			return
		case <-time.After(CallLimit):
		}
		close(tr.giveUp)
		<-tr.done
		t.Errorf("%s: the writer's last call did not succeed within %v of the stop request", tr.Name, CallLimit)
	})
}

// call runs fn until it succeeds (true) or the writer gives up (false, when
// stopped during failures). After a failure, honest returns what is wrong
// with it, beyond what call checks itself (its duration).
func (tr *Tracker) Call(op string, fn func() error, honest func(err error) []string) bool {
	for {
		tr.mu.Lock()
		tr.mu.seq++
		seq := tr.mu.seq
		tr.mu.Unlock()
		start := time.Now()
		err := fn()
		end := time.Now()
		st := callStat{seq: seq, op: op, start: start, end: end}
		if err == nil {
			tr.mu.Lock()
			tr.mu.oks = append(tr.mu.oks, st)
			if d := end.Sub(start); d > CallLimit {
				tr.mu.problems = append(tr.mu.problems, fmt.Sprintf("%s succeeded but took %v, beyond %v", op, d.Round(time.Millisecond), CallLimit))
			}
			tr.mu.Unlock()
			select {
			case tr.progress <- struct{}{}:
			default:
			}
			return true
		}
		var problems []string
		if d := end.Sub(start); d > CallLimit {
			problems = append(problems, fmt.Sprintf("%s failed after %v, beyond the engine's retry budget and one more attempt (%v with slack)",
				op, d.Round(time.Millisecond), CallLimit))
		}
		problems = append(problems, honest(err)...)
		tr.Log.Warn("outage test: call failed", "op", op, "took", end.Sub(start).Round(time.Millisecond), "err", err)
		tr.mu.Lock()
		tr.mu.fails = append(tr.mu.fails, callFail{callStat: st, err: err})
		tr.mu.problems = append(tr.mu.problems, problems...)
		tr.mu.Unlock()
		select {
		case <-tr.giveUp:
			tr.mu.Lock()
			tr.mu.pendOp = op
			tr.mu.Unlock()
			return false
		case <-time.After(RetryPause):
		}
	}
}

// pace waits for the next tick, or reports false when the writer is asked
// to stop.
func (tr *Tracker) Pace(tick *time.Ticker) bool {
	select {
	case <-tr.stopc:
		return false
	case <-tick.C:
		return true
	}
}

func (tr *Tracker) SeqNow() int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.mu.seq
}

// acksAfter counts the successful calls with a sequence number above mark.
func (tr *Tracker) AcksAfter(mark int64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	oks := tr.mu.oks
	return len(oks) - sort.Search(len(oks), func(k int) bool { return oks[k].seq > mark })
}

// waitAcks waits until the writer has n successful calls with a sequence
// number above mark, or the deadline passes.
func (tr *Tracker) WaitAcks(mark int64, n int, deadline time.Time) bool {
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	for tr.AcksAfter(mark) < n {
		select {
		case <-tr.progress:
		case <-tr.done:
			return tr.AcksAfter(mark) >= n
		case <-timeout.C:
			return tr.AcksAfter(mark) >= n
		}
	}
	return true
}

type WindowStats struct {
	ackedDuring, failed int
	longest             time.Duration
	longestOp           string
	firstAfter          time.Duration // from back to the first success of a call started after it; -1: none
}

// window describes the calls around an outage from down to back.
func (tr *Tracker) Window(down, back time.Time) WindowStats {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	st := WindowStats{firstAfter: -1}
	consider := func(c callStat) {
		if c.end.Before(down) {
			return
		}
		if d := c.end.Sub(c.start); d > st.longest {
			st.longest, st.longestOp = d, c.op
		}
	}
	for _, c := range tr.mu.oks {
		consider(c)
		if !c.end.Before(down) && c.end.Before(back) {
			st.ackedDuring++
		}
		if st.firstAfter < 0 && !c.start.Before(back) {
			st.firstAfter = c.end.Sub(back)
		}
	}
	for _, f := range tr.mu.fails {
		consider(f.callStat)
		if !f.end.Before(down) {
			st.failed++
		}
	}
	return st
}

func (tr *Tracker) FailureText() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	fails := tr.mu.fails
	if len(fails) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for k, f := range fails {
		if k >= 5 && k < len(fails)-5 {
			if k == 5 {
				fmt.Fprintf(&b, "  ... %d more ...\n", len(fails)-10)
			}
			continue
		}
		fmt.Fprintf(&b, "  %s at %s, after %v: %v\n", f.op, f.start.Format("15:04:05.000"),
			f.end.Sub(f.start).Round(time.Millisecond), f.err)
	}
	return b.String()
}

// report fails the test for every failed call (the outages are shorter
// than the engine's retry budget: each call should have ridden them out)
// and for every dishonest failure or call beyond CallLimit.
func (tr *Tracker) Report(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	nOK, nFail, problems, pendOp := len(tr.mu.oks), len(tr.mu.fails), tr.mu.problems, tr.mu.pendOp
	tr.mu.Unlock()
	t.Logf("%s: %d calls acknowledged, %d failed", tr.Name, nOK, nFail)
	if nFail > 0 {
		t.Errorf("%s: %d calls failed during outages shorter than the engine's retry budget:\n%s",
			tr.Name, nFail, tr.FailureText())
	}
	for _, p := range problems {
		t.Errorf("%s: %s", tr.Name, p)
	}
	if pendOp != "" {
		t.Logf("%s: the writer gave up on %s: its outcome is unknown", tr.Name, pendOp)
	}
}

// Logger sends the stores' records to t.Log until the test ends.
func Logger(t *testing.T) *slog.Logger {
	lw := &lockedTestWriter{t: t}
	t.Cleanup(lw.close)
	return slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// lockedTestWriter writes to t.Log, and drops output once the test is over
// (background goroutines may still log then).
type lockedTestWriter struct {
	t      *testing.T
	mu     sync.Mutex
	closed bool
}

func (w *lockedTestWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *lockedTestWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
