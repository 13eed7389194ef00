package wal_test

// Kill -9 tests of a tiered writer (Config.LocalDir) in a real child
// process: the test binary re-executes itself (TestTierKillHelperProcess,
// selected by an environment variable), the child appends as fast as it can
// and reports every acknowledgement on stdout, and the parent SIGKILLs its
// process group at a random (seeded) time — the way internal/testserver
// kills versitygw — then checks what the next writer finds:
//
//   - restart: a writer on the same LocalDir recovers and uploads every
//     acknowledged entry before OpenWriter returns, and nothing beyond what
//     the child tried to append;
//   - wipe: with LocalDir lost, OpenWriter fails with a *LostTailError whose
//     After is at most the last acknowledgement, everything up to After is
//     in the bucket, and AcceptLostTail(After) opens;
//   - takeover: a writer from another LocalDir takes the log and writes its
//     own entries; the original LocalDir's stale tail is then discarded,
//     never uploaded (Stats().TiersDiscarded == 1).
//
// Flags: -tierkill.n (iterations per scenario), -tierkill.seed (the first
// iteration's seed; iteration k uses seed+k, and each iteration logs its
// seed: rerun one with -tierkill.seed=S -tierkill.n=1).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/wal"
)

var (
	tierKillN    = flag.Int("tierkill.n", 0, "iterations per tier kill scenario (0: the default for the store)")
	tierKillSeed = flag.Int64("tierkill.seed", 0, "seed of the first tier kill iteration (0: from the clock)")
	tierKillSeg  = flag.Int64("tierkill.segsize", 0, "LocalSegmentSize of every tier kill iteration (0: seeded choice of 64 KiB, 256 KiB, 1 MiB, 16 MiB)")
)

const tierKillEnv = "WOODPECKER_TIERKILL_CHILD"

// tkChild is the child's assignment, passed as JSON in tierKillEnv.
type tkChild struct {
	BucketURL, MetaURL string
	LocalDir           string
	Log                string
	Tag                string // payload tag of the entries it appends
	Seed               uint64
	UploadInterval     time.Duration
	LocalSegmentSize   int64
}

// tkPayload is the entry the child appends at index i: a header naming tag
// and i, then seeded filler, 8 bytes to 16 KiB (mostly under 300).
func tkPayload(tag string, seed, i uint64) []byte {
	r := rand.New(rand.NewPCG(seed, i))
	n := 8 + r.IntN(300)
	if r.IntN(50) == 0 {
		n = 1 + r.IntN(16<<10)
	}
	hdr := fmt.Sprintf("%s/%d/", tag, i)
	b := make([]byte, len(hdr), len(hdr)+n)
	copy(b, hdr)
	for len(b) < cap(b) {
		b = append(b, byte(r.Uint32()))
	}
	return b
}

func tkClientConfig(localDir string, upload time.Duration, segSize int64) wal.Config {
	return wal.Config{
		LocalDir: localDir, UploadInterval: upload, LocalSegmentSize: segSize,
		RetryInterval: 5 * time.Millisecond,
	}
}

// TestTierKillHelperProcess is the child: it does nothing unless
// tierKillEnv is set. It opens a tiered writer of the log, prints "ready
// <next index>", then appends batches forever, printing "try <last>" before
// each batch is submitted and "ack <last>" once it is acknowledged, until it
// is killed.
func TestTierKillHelperProcess(t *testing.T) {
	spec := os.Getenv(tierKillEnv)
	if spec == "" {
		return
	}
	var a tkChild
	if err := json.Unmarshal([]byte(spec), &a); err != nil {
		tkDie("bad assignment: %v", err)
	}
	go func() { // never outlive a parent that forgot us
		time.Sleep(2 * time.Minute)
		tkDie("not killed after 2 minutes")
	}()
	ctx := context.Background()
	c, err := wal.OpenURL(ctx, a.BucketURL, a.MetaURL, tkClientConfig(a.LocalDir, a.UploadInterval, a.LocalSegmentSize))
	if err != nil {
		tkDie("open client: %v", err)
	}
	l, err := c.OpenLog(ctx, a.Log)
	if err != nil {
		tkDie("open log: %v", err)
	}
	w, err := l.OpenWriter(ctx)
	if err != nil {
		tkDie("open writer: %v", err)
	}
	next := w.DurableIndex() + 1
	if last, err := l.LastIndex(ctx); err != nil || last+1 != next {
		tkDie("LastIndex = %d, %v; DurableIndex = %d", last, err, next-1)
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		line := fmt.Appendf(nil, format+"\n", args...)
		outMu.Lock()
		defer outMu.Unlock()
		if _, err := os.Stdout.Write(line); err != nil {
			os.Exit(4)
		}
	}
	say("ready %d", next)

	type pending struct {
		fut  *wal.Future
		last uint64
	}
	acks := make(chan pending, 128)
	go func() {
		for p := range acks {
			if err := p.fut.Wait(ctx); err != nil {
				tkDie("async append up to %d: %v", p.last, err)
			}
			say("ack %d", p.last)
		}
	}()
	r := rand.New(rand.NewPCG(a.Seed, 0xc41d))
	for {
		n := 1 + r.IntN(8)
		if r.IntN(10) == 0 {
			n = 1 + r.IntN(200)
		}
		es := make([][]byte, n)
		for k := range es {
			es[k] = tkPayload(a.Tag, a.Seed, next+uint64(k))
		}
		last := next + uint64(n) - 1
		say("try %d", last)
		if r.IntN(4) == 0 {
			if err := w.Append(ctx, next, es); err != nil {
				tkDie("append %d..%d: %v", next, last, err)
			}
			say("ack %d", last)
		} else {
			acks <- pending{w.AppendAsync(next, es), last}
		}
		next = last + 1
	}
}

func tkDie(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "err "+format+"\n", args...)
	fmt.Fprintf(os.Stderr, "tierkill child: "+format+"\n", args...)
	os.Exit(3)
}

// tkRun is one child run as the parent saw it.
type tkRun struct {
	ready     bool
	first     uint64 // the first index the child appended (from "ready")
	maxTry    uint64 // highest index of a batch it submitted (0: none)
	maxAck    uint64 // highest index it reported acknowledged (0: none)
	lines     int
	childErr  string
	stderr    string
	killedAt  time.Duration
	waitState string
}

// tkOut parses the child's stdout as it arrives.
type tkOut struct {
	mu    sync.Mutex
	run   tkRun
	part  []byte
	ready chan struct{}
	bad   string
}

func (o *tkOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.part = append(o.part, p...)
	for {
		k := bytes.IndexByte(o.part, '\n')
		if k < 0 {
			break
		}
		line := string(o.part[:k])
		o.part = o.part[k+1:]
		o.line(line)
	}
	return len(p), nil
}

func (o *tkOut) line(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	num := func() uint64 {
		v, err := strconv.ParseUint(arg, 10, 64)
		if err != nil && o.bad == "" {
			o.bad = fmt.Sprintf("unparsable line %q", line)
		}
		return v
	}
	switch verb {
	case "ready":
		o.run.ready, o.run.first = true, num()
		close(o.ready)
	case "try":
		if v := num(); v > o.run.maxTry {
			o.run.maxTry = v
		} else if o.bad == "" {
			o.bad = fmt.Sprintf("try %d after try %d", v, o.run.maxTry)
		}
	case "ack":
		if v := num(); v > o.run.maxAck {
			o.run.maxAck = v
		}
	case "err":
		o.run.childErr = arg
	default:
		// The testing package's own output (there should be none).
	}
	o.run.lines++
}

// tkSpawn starts the child with assignment a, kills it with SIGKILL (its
// whole process group) delay after it reported ready (or, with early,
// delay after it started, ready or not), and returns what it reported.
func tkSpawn(t *testing.T, a tkChild, delay time.Duration, early bool) tkRun {
	t.Helper()
	spec, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestTierKillHelperProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), tierKillEnv+"="+string(spec))
	out := &tkOut{ready: make(chan struct{})}
	var stderr testserver.SyncBuffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	var timer <-chan time.Time
	if early {
		timer = time.After(delay)
	} else {
		select {
		case <-out.ready:
			timer = time.After(delay)
		case <-exited:
		case <-time.After(60 * time.Second):
			kill()
			t.Fatalf("child not ready after 60s; stderr:\n%s", stderr.String())
		}
	}
	var killedAt time.Duration
	select {
	case <-exited:
	case <-timer:
		killedAt = time.Since(start)
		kill()
	}
	out.mu.Lock()
	run := out.run
	bad := out.bad
	out.mu.Unlock()
	run.stderr, run.killedAt = stderr.String(), killedAt
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		run.waitState = fmt.Sprintf("signaled=%v signal=%v exit=%d (%v)", ws.Signaled(), ws.Signal(), ws.ExitStatus(), waitErr)
	}
	if killedAt == 0 || run.childErr != "" || bad != "" {
		// Go on: what the next writer finds is checked all the same.
		t.Errorf("seed %d: child exited before it was killed (%s): err %q, protocol %q; stderr:\n%s", a.Seed, run.waitState, run.childErr, bad, run.stderr)
	}
	return run
}

// tkStores names the stores of one scenario by URL (child and parent open
// them alike).
type tkStores struct{ bucketURL, metaURL string }

type tkEnv struct {
	name          string
	stores        func(t *testing.T) tkStores
	n, shortN     int
	maxKillDelay  time.Duration
	describeStore string
}

func (e tkEnv) iterations(t *testing.T) int {
	switch {
	case *tierKillN > 0:
		return *tierKillN
	case testing.Short():
		return e.shortN
	}
	return e.n
}

func tkBaseSeed(t *testing.T) uint64 {
	if *tierKillSeed != 0 {
		return uint64(*tierKillSeed)
	}
	return uint64(time.Now().UnixNano() % 1_000_000_000)
}

// tkParams are one iteration's seeded choices.
type tkParams struct {
	seed    uint64
	upload  time.Duration
	segSize int64
	delay   time.Duration
	early   bool
	r       *rand.Rand
}

func tkParamsFor(seed uint64, maxDelay time.Duration, earlyOK bool) tkParams {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	p := tkParams{seed: seed, r: r}
	p.upload = time.Duration(50+r.IntN(451)) * time.Millisecond
	p.segSize = []int64{64 << 10, 256 << 10, 1 << 20, 16 << 20}[r.IntN(4)]
	if *tierKillSeg > 0 {
		p.segSize = *tierKillSeg
	}
	p.delay = time.Duration(r.Int64N(int64(maxDelay)))
	if earlyOK && r.IntN(8) == 0 {
		p.early = true
		p.delay = time.Duration(r.Int64N(int64(300 * time.Millisecond)))
	}
	return p
}

func (p tkParams) String() string {
	return fmt.Sprintf("seed=%d upload=%v segment=%d kill=%v early=%v", p.seed, p.upload, p.segSize, p.delay, p.early)
}

func tkOpenClient(t *testing.T, s tkStores, localDir string, segSize int64) *wal.Client {
	t.Helper()
	c, err := wal.OpenURL(context.Background(), s.bucketURL, s.metaURL, tkClientConfig(localDir, 20*time.Millisecond, segSize))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tkCheckRange reads first..last through l with a reader and compares each
// entry with the payload of tag and seed.
func tkCheckRange(t *testing.T, l *wal.Log, tag string, seed, first, last uint64, what string) {
	t.Helper()
	if last < first {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := l.NewReader(ctx, first)
	if err != nil {
		t.Fatalf("%s: NewReader(%d): %v", what, first, err)
	}
	defer r.Close()
	for i := first; i <= last; i++ {
		idx, got, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("%s: reading %d (range %d..%d): %v", what, i, first, last, err)
		}
		if idx != i {
			t.Fatalf("%s: reader returned index %d, want %d", what, idx, i)
		}
		if want := tkPayload(tag, seed, i); !bytes.Equal(got, want) {
			t.Fatalf("%s: entry %d: got %d bytes %q..., want %d bytes %q...", what, i, len(got), tkHead(got), len(want), tkHead(want))
		}
	}
}

func tkHead(b []byte) string {
	if len(b) > 24 {
		b = b[:24]
	}
	return string(b)
}

func tkBounds(t *testing.T, l *wal.Log, what string) (first, last uint64) {
	t.Helper()
	ctx := context.Background()
	first, err := l.FirstIndex(ctx)
	if err != nil {
		t.Fatalf("%s: FirstIndex: %v", what, err)
	}
	last, err = l.LastIndex(ctx)
	if err != nil {
		t.Fatalf("%s: LastIndex: %v", what, err)
	}
	return first, last
}

func tkLogRun(t *testing.T, k int, p tkParams, run tkRun) {
	t.Logf("iteration %d: %v: ready=%v first=%d maxAck=%d maxTry=%d lines=%d killed after %v (%s)",
		k, p, run.ready, run.first, run.maxAck, run.maxTry, run.lines, run.killedAt.Round(time.Millisecond), run.waitState)
}

func runTierKill(t *testing.T, env tkEnv) {
	t.Run("restart", func(t *testing.T) { tkRestart(t, env) })
	t.Run("wipe", func(t *testing.T) { tkWipe(t, env) })
	t.Run("takeover", func(t *testing.T) { tkTakeover(t, env) })
}

// tkGen is the range one child generation appended, with its tag.
type tkGen struct {
	tag         string
	seed        uint64
	first, last uint64
}

// tkRestart: one log, one LocalDir; each iteration a child continues the
// log, is killed, and the parent recovers it on the same LocalDir, checks
// it, and closes cleanly.
func tkRestart(t *testing.T, env tkEnv) {
	ctx := context.Background()
	s := env.stores(t)
	base := tkBaseSeed(t)
	n := env.iterations(t)
	t.Logf("%s: %d iterations from seed %d (rerun: -tierkill.seed=%d -tierkill.n=%d)", env.describeStore, n, base, base, n)
	localDir := filepath.Join(t.TempDir(), "local")
	setup := tkOpenClient(t, s, "", 0)
	if err := setup.CreateLog(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	var gens []tkGen
	for k := range n {
		p := tkParamsFor(base+uint64(k), env.maxKillDelay, true)
		tag := fmt.Sprintf("g%d", k)
		run := tkSpawn(t, tkChild{
			BucketURL: s.bucketURL, MetaURL: s.metaURL, LocalDir: localDir, Log: "k", Tag: tag,
			Seed: p.seed, UploadInterval: p.upload, LocalSegmentSize: p.segSize,
		}, p.delay, p.early)
		tkLogRun(t, k, p, run)
		prevLast := uint64(0)
		if len(gens) > 0 {
			prevLast = gens[len(gens)-1].last
		}
		if run.ready && run.first != prevLast+1 {
			t.Fatalf("iteration %d (seed %d): child started at %d, want %d", k, p.seed, run.first, prevLast+1)
		}

		c := tkOpenClient(t, s, localDir, p.segSize)
		l, err := c.OpenLog(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		w, err := l.OpenWriter(ctx)
		if err != nil {
			t.Fatalf("iteration %d (seed %d): OpenWriter on the same LocalDir after kill -9: %v", k, p.seed, err)
		}
		openTook := time.Since(start)
		what := fmt.Sprintf("iteration %d (seed %d)", k, p.seed)
		durable, uploaded := w.DurableIndex(), wal.UploadedIndex(w)
		_, last := tkBounds(t, l, what+", writer's process")
		if durable != last || uploaded != last {
			t.Errorf("%s: after recovery DurableIndex %d, UploadedIndex %d, LastIndex %d: want all equal", what, durable, uploaded, last)
		}
		if last < run.maxAck {
			t.Errorf("%s: LOST ACKNOWLEDGED ENTRIES: the child reported %d acknowledged; the recovered log ends at %d", what, run.maxAck, last)
		}
		hi := max(run.maxTry, prevLast)
		if last > hi {
			t.Errorf("%s: the recovered log ends at %d, beyond anything the child appended (last tried %d, previous end %d)", what, last, run.maxTry, prevLast)
		}
		if last < prevLast {
			t.Errorf("%s: the recovered log ends at %d, below the previous generation's end %d", what, last, prevLast)
		}
		if _, ok := w.LostTail(); ok {
			t.Errorf("%s: a lost-tail marker after recovery on the same LocalDir", what)
		}
		// What a process without the local tier sees: the bucket.
		plain := tkOpenClient(t, s, "", 0)
		pl, err := plain.OpenLog(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		pfirst, plast := tkBounds(t, pl, what+", bucket")
		if plast != last || (last > 0 && pfirst != 1) {
			t.Errorf("%s: the bucket holds %d..%d; the writer says ..%d (OpenWriter must upload the local tail before it returns)", what, pfirst, plast, last)
		}
		if t.Failed() {
			t.FailNow()
		}
		g := tkGen{tag: tag, seed: p.seed, first: prevLast + 1, last: last}
		tkCheckRange(t, pl, g.tag, g.seed, g.first, g.last, what+", bucket")
		// Spot checks of the earlier generations.
		for range 20 {
			if len(gens) == 0 {
				break
			}
			og := gens[p.r.IntN(len(gens))]
			if og.last < og.first {
				continue
			}
			i := og.first + p.r.Uint64N(og.last-og.first+1)
			tkCheckRange(t, l, og.tag, og.seed, i, i, what+", earlier generation "+og.tag)
		}
		gens = append(gens, g)
		t.Logf("iteration %d: recovered %d..%d in %v (acknowledged up to %d)", k, g.first, g.last, openTook.Round(time.Millisecond), run.maxAck)
		if err := w.Close(); err != nil {
			t.Fatalf("%s: Close after recovery: %v", what, err)
		}
		c.Close()
		plain.Close()
		if t.Failed() {
			t.FailNow()
		}
	}
}

// tkWipe: each iteration a fresh log and LocalDir; after the kill the
// LocalDir is removed (disk loss).
func tkWipe(t *testing.T, env tkEnv) {
	ctx := context.Background()
	s := env.stores(t)
	base := tkBaseSeed(t)
	n := env.iterations(t)
	t.Logf("%s: %d iterations from seed %d (rerun: -tierkill.seed=%d -tierkill.n=%d)", env.describeStore, n, base, base, n)
	root := t.TempDir()
	setup := tkOpenClient(t, s, "", 0)
	for k := range n {
		p := tkParamsFor(base+uint64(k), env.maxKillDelay, false)
		name := fmt.Sprintf("w%d", k)
		what := fmt.Sprintf("iteration %d (seed %d)", k, p.seed)
		if err := setup.CreateLog(ctx, name); err != nil {
			t.Fatal(err)
		}
		localDir := filepath.Join(root, name)
		run := tkSpawn(t, tkChild{
			BucketURL: s.bucketURL, MetaURL: s.metaURL, LocalDir: localDir, Log: name, Tag: "w",
			Seed: p.seed, UploadInterval: p.upload, LocalSegmentSize: p.segSize,
		}, p.delay, false)
		tkLogRun(t, k, p, run)
		if err := os.RemoveAll(localDir); err != nil {
			t.Fatal(err)
		}

		c := tkOpenClient(t, s, localDir, p.segSize)
		l, err := c.OpenLog(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = l.OpenWriter(ctx)
		var lt *wal.LostTailError
		if !errors.As(err, &lt) || !errors.Is(err, wal.ErrLostTail) {
			t.Fatalf("%s: OpenWriter after the LocalDir was wiped: %v; want a *wal.LostTailError", what, err)
		}
		after := lt.After
		if after > run.maxAck {
			t.Errorf("%s: LostTailError.After = %d, above the last acknowledged index %d (last tried %d)", what, after, run.maxAck, run.maxTry)
		}
		plain := tkOpenClient(t, s, "", 0)
		pl, err := plain.OpenLog(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		_, plast := tkBounds(t, pl, what+", bucket")
		if plast != after {
			t.Errorf("%s: the bucket ends at %d; LostTailError.After = %d (the last uploaded index)", what, plast, after)
		}
		if t.Failed() {
			t.FailNow()
		}
		tkCheckRange(t, pl, "w", p.seed, 1, after, what+", bucket")

		w, err := l.OpenWriter(ctx, wal.AcceptLostTail(after))
		if err != nil {
			t.Fatalf("%s: OpenWriter(AcceptLostTail(%d)): %v", what, after, err)
		}
		if got, ok := w.LostTail(); !ok || got != after {
			t.Errorf("%s: Writer.LostTail = %d, %v; want %d, true", what, got, ok, after)
		}
		if _, last := tkBounds(t, l, what+", new writer"); last != after {
			t.Errorf("%s: the new writer's log ends at %d, want %d", what, last, after)
		}
		if err := w.Append(ctx, after+1, entriesOf("new", after+1, 3)); err != nil {
			t.Fatalf("%s: append after AcceptLostTail: %v", what, err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("%s: Close: %v", what, err)
		}
		pl2, err := plain.OpenLog(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, last := tkBounds(t, pl2, what+", bucket after close"); last != after+3 {
			t.Errorf("%s: after the new writer closed the bucket ends at %d, want %d", what, last, after+3)
		}
		wantEntriesOf(t, pl2, "new", after+1, after+3)
		t.Logf("iteration %d: lost tail after %d (acknowledged up to %d, tried up to %d)", k, after, run.maxAck, run.maxTry)
		c.Close()
		plain.Close()
		if t.Failed() {
			t.FailNow()
		}
	}
}

// tkTakeover: each iteration a fresh log; after the kill another LocalDir
// takes the log over and writes its own entries; then the original
// LocalDir opens the log again.
func tkTakeover(t *testing.T, env tkEnv) {
	ctx := context.Background()
	s := env.stores(t)
	base := tkBaseSeed(t)
	n := env.iterations(t)
	t.Logf("%s: %d iterations from seed %d (rerun: -tierkill.seed=%d -tierkill.n=%d)", env.describeStore, n, base, base, n)
	root := t.TempDir()
	setup := tkOpenClient(t, s, "", 0)
	for k := range n {
		p := tkParamsFor(base+uint64(k), env.maxKillDelay, false)
		name := fmt.Sprintf("t%d", k)
		what := fmt.Sprintf("iteration %d (seed %d)", k, p.seed)
		if err := setup.CreateLog(ctx, name); err != nil {
			t.Fatal(err)
		}
		dirA, dirB := filepath.Join(root, name+"a"), filepath.Join(root, name+"b")
		run := tkSpawn(t, tkChild{
			BucketURL: s.bucketURL, MetaURL: s.metaURL, LocalDir: dirA, Log: name, Tag: "stale",
			Seed: p.seed, UploadInterval: p.upload, LocalSegmentSize: p.segSize,
		}, p.delay, false)
		tkLogRun(t, k, p, run)

		// The taker, on another machine.
		cb := tkOpenClient(t, s, dirB, p.segSize)
		lb, err := cb.OpenLog(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = lb.OpenWriter(ctx)
		var lt *wal.LostTailError
		if !errors.As(err, &lt) {
			t.Fatalf("%s: takeover from another LocalDir: OpenWriter: %v; want a *wal.LostTailError", what, err)
		}
		after := lt.After
		if after > run.maxAck {
			t.Errorf("%s: LostTailError.After = %d, above the last acknowledged index %d", what, after, run.maxAck)
		}
		wb, err := lb.OpenWriter(ctx, wal.AcceptLostTail(after))
		if err != nil {
			t.Fatalf("%s: taker: OpenWriter(AcceptLostTail(%d)): %v", what, after, err)
		}
		if _, last := tkBounds(t, lb, what+", taker"); last != after {
			t.Fatalf("%s: the taker's log ends at %d, want %d", what, last, after)
		}
		takerSeed := p.seed ^ 0xfeed
		m := uint64(1 + p.r.IntN(300))
		for i := after + 1; i <= after+m; {
			nb := min(uint64(1+p.r.IntN(20)), after+m-i+1)
			es := make([][]byte, nb)
			for j := range es {
				es[j] = tkPayload("taker", takerSeed, i+uint64(j))
			}
			if err := wb.Append(ctx, i, es); err != nil {
				t.Fatalf("%s: taker: append %d: %v", what, i, err)
			}
			i += nb
		}
		if err := wb.Close(); err != nil {
			t.Fatalf("%s: taker: Close: %v", what, err)
		}
		cb.Close()

		// The original machine comes back on its LocalDir.
		cc := tkOpenClient(t, s, dirA, p.segSize)
		lc, err := cc.OpenLog(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		via := "AcceptLostTail at once"
		var wc *wal.Writer
		if p.r.IntN(2) == 0 {
			wc, err = lc.OpenWriter(ctx, wal.AcceptLostTail(after))
		} else {
			via = "plain OpenWriter first"
			wc, err = lc.OpenWriter(ctx)
			if errors.As(err, &lt) {
				if lt.After != after {
					t.Errorf("%s: original LocalDir: LostTailError.After = %d, want %d (the marker the taker accepted)", what, lt.After, after)
				}
				wc, err = lc.OpenWriter(ctx, wal.AcceptLostTail(lt.After))
			}
		}
		if err != nil {
			t.Fatalf("%s: original LocalDir (%s): OpenWriter: %v", what, via, err)
		}
		if got := cc.Stats().TiersDiscarded; got != 1 {
			t.Errorf("%s: original LocalDir (%s): TiersDiscarded = %d, want 1", what, via, got)
		}
		for _, chk := range []struct {
			l    *wal.Log
			what string
		}{{lc, "original LocalDir"}, {tkPlainLog(t, s, name), "bucket"}} {
			w := what + ", " + chk.what
			if _, last := tkBounds(t, chk.l, w); last != after+m {
				t.Errorf("%s: the log ends at %d, want the taker's end %d (stale tail: child tried up to %d)", w, last, after+m, run.maxTry)
				continue
			}
			tkCheckRange(t, chk.l, "stale", p.seed, 1, after, w)
			tkCheckRange(t, chk.l, "taker", takerSeed, after+1, after+m, w)
		}
		if t.Failed() {
			t.FailNow()
		}
		if err := wc.Close(); err != nil {
			t.Fatalf("%s: original LocalDir: Close: %v", what, err)
		}
		t.Logf("iteration %d: taken over after %d (acknowledged up to %d, tried up to %d); taker wrote %d..%d; %s", k, after, run.maxAck, run.maxTry, after+1, after+m, via)
		cc.Close()
		if t.Failed() {
			t.FailNow()
		}
	}
}

func tkPlainLog(t *testing.T, s tkStores, name string) *wal.Log {
	t.Helper()
	l, err := tkOpenClient(t, s, "", 0).OpenLog(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestTierKillFile kills tiered writers on a file:// bucket with the
// metadata in the bucket.
func TestTierKillFile(t *testing.T) {
	runTierKill(t, tkEnv{
		describeStore: "file:// bucket, metadata in the bucket",
		stores: func(t *testing.T) tkStores {
			return tkStores{bucketURL: "file://" + filepath.ToSlash(t.TempDir())}
		},
		n: 8, shortN: 3, maxKillDelay: 400 * time.Millisecond,
	})
}

// TestTierKillVersitygwEtcd kills tiered writers on versitygw with the
// metadata in an embedded etcd.
func TestTierKillVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), etcdserver.Start(t)
	runTierKill(t, tkEnv{
		describeStore: "versitygw, metadata in embedded etcd",
		stores: func(t *testing.T) tkStores {
			return tkStores{bucketURL: s3.URL(s3.NewBucket(t), ""), metaURL: etcd.URL(etcd.NewPrefix())}
		},
		n: 4, shortN: 2, maxKillDelay: 600 * time.Millisecond,
	})
}

// TestTierKillVersitygw kills tiered writers on versitygw with the
// metadata in the bucket (conditional writes).
func TestTierKillVersitygw(t *testing.T) {
	s3 := testserver.Versitygw(t)
	runTierKill(t, tkEnv{
		describeStore: "versitygw, metadata in the bucket",
		stores: func(t *testing.T) tkStores {
			return tkStores{bucketURL: s3.URL(s3.NewBucket(t), "")}
		},
		n: 3, shortN: 2, maxKillDelay: 600 * time.Millisecond,
	})
}

// TestTieredLocalSegmentRoll is the in-process reproduction of what the kill
// tests hit first: a tiered writer whose local segment fills up (here 64
// KiB) rolls to a new one, and the next group commit fails. No crash is
// involved.
func TestTieredLocalSegmentRoll(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := tieredClient(t, b, m, t.TempDir(), func(c *wal.Config) { c.LocalSegmentSize = 64 << 10 })
	l, w := newLog(t, c, "a")
	payload := bytes.Repeat([]byte{'x'}, 1000)
	for i := uint64(1); i <= 200; i++ { // 200 KB: at least two rolls
		if err := w.Append(ctx, i, [][]byte{payload}); err != nil {
			t.Fatalf("append %d (%d KB appended so far, local segments of 64 KiB): %v", i, i-1, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if last, err := l.LastIndex(ctx); err != nil || last != 200 {
		t.Fatalf("LastIndex = %d, %v; want 200", last, err)
	}
}

// TestTieredLocalSegmentRollRecovery: the entries acknowledged up to and
// including the group commit that rolled the local segment survive a crash
// and a recovery on the same LocalDir.
func TestTieredLocalSegmentRollRecovery(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	dir := t.TempDir()
	small := func(c *wal.Config) { c.LocalSegmentSize = 64 << 10 }
	_, w := newLog(t, tieredClient(t, b, m, dir, small), "a")
	payload := bytes.Repeat([]byte{'x'}, 1000)
	var acked uint64
	for i := uint64(1); i <= 200; i++ {
		if err := w.Append(ctx, i, [][]byte{payload}); err != nil {
			t.Logf("append %d failed (the roll bug, TestTieredLocalSegmentRoll): %v", i, err)
			break
		}
		acked = i
	}
	wal.Crash(w)
	l2 := openLog(t, tieredClient(t, b, m, dir, small), "a")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Fatalf("recovery on the same LocalDir after %d acknowledged appends: %v", acked, err)
	}
	defer w2.Close()
	if last, err := l2.LastIndex(ctx); err != nil || last < acked {
		t.Fatalf("after recovery LastIndex = %d, %v; %d were acknowledged", last, err, acked)
	}
	for i := uint64(1); i <= acked; i++ {
		if got, err := l2.Get(ctx, i); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("entry %d after recovery: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestTieredKilledDuringOpen reproduces the state a kill -9 inside
// OpenWriter leaves when it lands after the local tier's identity is
// written and before its first segment's base record is (Tier.start writes
// the identity, then zero-fills and writes the segment): the identity and
// no usable segment. Nothing was acknowledged, so the next writer on this
// LocalDir must open the log as it is.
func TestTieredKilledDuringOpen(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	plain := newClient(t, b, m, nil)
	_, w0 := newLog(t, plain, "a")
	mustAppend(t, w0, 1, entries(1, 10))
	if err := w0.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, w := newLog2(t, tieredClient(t, b, m, dir, nil), "a")
	wal.Crash(w)
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "a", "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no local segment to remove")
	}
	for _, s := range segs { // as if the kill came before the segment was written
		if err := os.Remove(s); err != nil {
			t.Fatal(err)
		}
	}
	l2 := openLog(t, tieredClient(t, b, m, dir, nil), "a")
	w2, err := l2.OpenWriter(ctx)
	if err != nil {
		t.Errorf("OpenWriter on the LocalDir of a writer killed inside OpenWriter: %v", err)
	} else {
		wantEntries(t, l2, 1, 10)
		w2.Close()
	}
	// What the failed recovery left in the stores.
	other := openLog(t, newClient(t, b, m, nil), "a")
	first, ferr := other.FirstIndex(ctx)
	last, lerr := other.LastIndex(ctx)
	t.Logf("afterwards another process sees FirstIndex %d (%v), LastIndex %d (%v)", first, ferr, last, lerr)
	if ferr != nil || lerr != nil || first != 1 || last != 10 {
		t.Errorf("afterwards another process sees FirstIndex %d (%v), LastIndex %d (%v); want 1..10", first, ferr, last, lerr)
	}
	w3, err := openLog(t, tieredClient(t, b, m, t.TempDir(), nil), "a").OpenWriter(ctx)
	t.Logf("a writer from another LocalDir: %v", err)
	if err == nil {
		w3.Close()
	}
}

// newLog2 opens the writer of the existing log name through c.
func newLog2(t testing.TB, c *wal.Client, name string) (*wal.Log, *wal.Writer) {
	t.Helper()
	l := openLog(t, c, name)
	return l, openWriter(t, l)
}
