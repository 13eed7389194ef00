package file_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/woodpecker-wal/woodpecker/internal/vfs"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
)

var (
	seedFlag    = flag.Uint64("seed", 0, "seed of TestFilePowerLoss (0: draw one); also $WOODPECKER_SEED")
	crashesFlag = flag.Int("crashes", 0, "power cuts TestFilePowerLoss simulates (0: 3000, 300 with -short)")
)

// plRoot is the bucket's root on the simulated filesystem.
const plRoot = "/data/bucket"

// plKeys are the keys the test writes: at the root and in directories
// (created and removed as keys come and go), none a prefix of another.
var plKeys = []string{"k0", "k1", "d/k2", "d/k3", "d/e/k4", "f/g/h/k5"}

// plState is what a key holds: nothing, or a body with its ETag ("" when
// any ETag will do: the body of a write in flight at the crash, whose ETag
// nobody learned).
type plState struct {
	present bool
	body    []byte
	etag    string
}

func (s plState) String() string {
	if !s.present {
		return "absent"
	}
	return fmt.Sprintf("%d bytes %q... etag %q", len(s.body), s.body[:min(len(s.body), 8)], s.etag)
}

// plSession is one simulated machine: a Strict filesystem, a bucket on it
// reopened after each power cut by a new process, and the model of what
// each key may hold.
type plSession struct {
	t       *testing.T
	ctx     context.Context
	id      string // seed and session, for messages
	rng     *rand.Rand
	fs      *vfs.Strict
	xattrs  bool
	pid     int
	nameRng *rand.Rand // the bucket's randomness (temporary names, ETags)
	// cands holds, per key, the states it may be in: one, except after a
	// crash, until the next open checks which one it is.
	cands    map[string][]plState
	inFlight map[string]string // the operation in flight on a key at the cut
	writes   int               // bodies written, to make each one unique
	where    string

	stats plStats
}

type plStats struct {
	crashes, inOpen int // power cuts, those while opening
	ackedAtCut      int // operations that returned success although the power was cut under them
	// after the cuts, objects checked exactly (acknowledged bodies and
	// ETags), keys checked absent, and per operation in flight at a cut
	// whether it happened
	objects, absent int
	happened, not   map[string]int
}

func (a *plStats) add(b plStats) {
	a.crashes += b.crashes
	a.inOpen += b.inOpen
	a.ackedAtCut += b.ackedAtCut
	a.objects += b.objects
	a.absent += b.absent
	for op, n := range b.happened {
		a.happened[op] += n
	}
	for op, n := range b.not {
		a.not[op] += n
	}
}

// TestFilePowerLoss cuts the power of a simulated machine (vfs.Strict) at
// random points, in the middle of the bucket's operations (the n-th
// filesystem operation does not happen), over random sequences of
// PutIfAbsent, Put, PutIfMatch, Delete, reads and reopens, and, after each
// cut, reopens the bucket and checks: it opens, the temporary files of the
// dead process are swept, every acknowledged write is there with its bytes
// and ETag, a write in flight at the cut either happened in full or not at
// all, no other file appeared, and the ETags work for conditional updates.
// A cut also lands, now and then, in the reopen (its sweep) itself.
func TestFilePowerLoss(t *testing.T) {
	seed := *seedFlag
	if v := os.Getenv("WOODPECKER_SEED"); seed == 0 && v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("WOODPECKER_SEED=%q: %v", v, err)
		}
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (reproduce with -seed=%d or WOODPECKER_SEED=%d)", seed, seed, seed)
	crashes := *crashesFlag
	if crashes <= 0 {
		crashes = 3000
		if testing.Short() {
			crashes = 300
		}
	}
	const perSession = 60
	total := plStats{happened: map[string]int{}, not: map[string]int{}}
	for i := 0; total.crashes < crashes; i++ {
		s := &plSession{
			t:        t,
			ctx:      context.Background(),
			id:       fmt.Sprintf("seed %d session %d", seed, i),
			rng:      rand.New(rand.NewPCG(seed, uint64(i))),
			nameRng:  rand.New(rand.NewPCG(seed, uint64(i)|1<<62)),
			fs:       vfs.NewStrict(),
			xattrs:   true,
			pid:      1000,
			cands:    map[string][]plState{},
			inFlight: map[string]string{},
			stats:    plStats{happened: map[string]int{}, not: map[string]int{}},
		}
		if s.rng.IntN(6) == 0 {
			s.xattrs = false // ETags are MD5s
			s.fs.SetXattrs(false)
		}
		for _, k := range plKeys {
			s.cands[k] = []plState{{}}
		}
		s.run(min(perSession, crashes-total.crashes))
		total.add(s.stats)
	}
	t.Logf("%d power cuts (%d while opening); after them %d objects checked exactly and %d keys absent as they should be; "+
		"%d operations returned success although the power was cut under them; writes in flight at a cut that happened %v, that did not %v",
		total.crashes, total.inOpen, total.objects, total.absent, total.ackedAtCut, total.happened, total.not)
}

func (s *plSession) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s, %s: %s", s.id, s.where, fmt.Sprintf(format, args...))
}

// open opens the bucket as a new process (the previous ones are dead).
func (s *plSession) open() (*file.Bucket, error) {
	s.pid++
	pid := s.pid
	opts := file.WithTestHooks(file.Options{FS: s.fs}, pid,
		func(p int) bool { return p == pid },
		s.nameRng.Uint64)
	return file.New(plRoot, opts)
}

// cutRng is the random source of a power cut: nil (everything not synced
// is lost) now and then, else torn writes and half-kept directories.
func (s *plSession) cutRng() *rand.Rand {
	if s.rng.IntN(5) == 0 {
		return nil
	}
	return s.rng
}

func (s *plSession) run(crashes int) {
	for epoch := 0; s.stats.crashes < crashes; epoch++ {
		s.where = fmt.Sprintf("epoch %d", epoch)
		inOpen := s.rng.IntN(4) == 0
		if inOpen {
			// Cut the power while the bucket opens (and sweeps).
			s.fs.PowerCutAfter(1+s.rng.Int64N(12), s.cutRng())
		}
		b, err := s.open()
		if s.fs.PoweredOff() {
			s.stats.crashes++
			s.stats.inOpen++
			if b != nil {
				b.Close()
			}
			s.fs.Restart()
			continue
		}
		s.fs.PowerCutAfter(0, nil)
		if err != nil {
			s.fatalf("open after a power cut: %v", err)
		}
		s.check(b)
		if s.rng.IntN(2) == 0 {
			s.casAfterCrash(b)
		}
		s.armCut()
		for step := 0; !s.fs.PoweredOff(); step++ {
			s.where = fmt.Sprintf("epoch %d step %d", epoch, step)
			if s.rng.IntN(40) == 0 {
				// A clean restart of the process.
				b.Close()
				if b, err = s.open(); err != nil {
					if s.fs.PoweredOff() {
						break
					}
					s.fatalf("reopen: %v", err)
				}
				continue
			}
			s.step(b)
		}
		if b != nil {
			b.Close()
		}
		s.fs.SetHook(nil)
		s.fs.PowerCutAfter(0, nil)
		s.stats.crashes++
		s.fs.Restart()
	}
}

// cutOps are the operations a cut may be aimed at: where durability is
// decided (the directory fsync twice as often).
var cutOps = []vfs.Op{vfs.OpSyncDir, vfs.OpSyncDir, vfs.OpSyncAll, vfs.OpLink, vfs.OpRename, vfs.OpRemove, vfs.OpMkdir, vfs.OpWrite, vfs.OpSetXattr}

// armCut arms the next power cut: at the n-th filesystem operation from
// now, or at the n-th operation of one kind (with, as a fallback, the
// 400th operation).
func (s *plSession) armCut() {
	if s.rng.IntN(2) == 0 {
		s.fs.PowerCutAfter(1+s.rng.Int64N(150), s.cutRng())
		return
	}
	s.fs.PowerCutAfter(400, s.cutRng())
	target := cutOps[s.rng.IntN(len(cutOps))]
	n := 1 + s.rng.IntN(6)
	rng := s.cutRng()
	s.fs.SetHook(func(op vfs.Op, name string) error {
		if op == target {
			if n--; n == 0 {
				s.fs.PowerCut(rng)
			}
		}
		return nil
	})
}

// body returns a new body: unique but for empty ones, of sizes crossing
// sector and page boundaries.
func (s *plSession) body() []byte {
	s.writes++
	if s.rng.IntN(20) == 0 {
		return []byte{}
	}
	n := s.rng.IntN(1200)
	if s.rng.IntN(4) == 0 {
		n = s.rng.IntN(10000)
	}
	b := fmt.Appendf(nil, "w%07d:", s.writes)
	for range n {
		b = append(b, byte('a'+s.rng.IntN(26)))
	}
	return b
}

// cur is the state of key, known exactly between crashes.
func (s *plSession) cur(key string) plState {
	c := s.cands[key]
	if len(c) != 1 {
		s.fatalf("key %q has %d candidate states outside a crash", key, len(c))
	}
	return c[0]
}

// chunky reads in small pieces, so a Put makes many writes (and a cut may
// land between them).
type chunky struct {
	r   *bytes.Reader
	max int
	rng *rand.Rand
}

func (c *chunky) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), 1+c.rng.IntN(c.max))])
}

// step runs one random operation and updates the model: exactly, when it
// returned; with both outcomes, when the power was cut under it.
func (s *plSession) step(b *file.Bucket) {
	key := plKeys[s.rng.IntN(len(plKeys))]
	pre := s.cur(key)
	var (
		op    string
		info  objstore.ObjectInfo
		err   error
		post  []plState // the states the operation may leave, when it succeeds
		ok    bool      // whether, from the model, the operation must succeed
		want  error     // else the error it must fail with
		write = true    // it may change the key
	)
	switch r := s.rng.IntN(20); {
	case r < 5:
		op = "put-if-absent"
		body := s.body()
		info, err = b.PutIfAbsent(s.ctx, key, body)
		post = []plState{{true, body, info.ETag}}
		ok, want = !pre.present, objstore.ErrExists
	case r < 9:
		op = "put"
		body := s.body()
		var rd io.Reader = bytes.NewReader(body)
		if s.rng.IntN(2) == 0 {
			rd = &chunky{r: bytes.NewReader(body), max: 700, rng: s.rng}
		}
		size := int64(len(body))
		if s.rng.IntN(3) == 0 {
			size = -1
		}
		info, err = b.Put(s.ctx, key, rd, size)
		post = []plState{{true, body, info.ETag}}
		ok = true
	case r < 13:
		op = "put-if-match"
		body := s.body()
		etag := pre.etag
		if !pre.present || s.rng.IntN(5) == 0 {
			etag = strings.Repeat("0", 32)
		}
		info, err = b.PutIfMatch(s.ctx, key, body, etag)
		post = []plState{{true, body, info.ETag}}
		ok, want = pre.present && etag == pre.etag, objstore.ErrPrecondition
	case r < 16:
		op = "delete"
		err = b.Delete(s.ctx, key)
		post = []plState{{}}
		ok = true
	case r < 18:
		op = "get"
		var data []byte
		data, info, err = objstore.ReadAll(s.ctx, b, key)
		if err == nil && !s.fs.PoweredOff() && (!pre.present || !bytes.Equal(data, pre.body) || info.ETag != pre.etag) {
			s.fatalf("get %q = %d bytes etag %q, want %v", key, len(data), info.ETag, pre)
		}
		post, write = []plState{pre}, false
		ok, want = pre.present, objstore.ErrNotFound
	default:
		op = "list"
		var list []objstore.ObjectInfo
		list, err = b.List(s.ctx, objstore.ListOptions{})
		if err == nil && !s.fs.PoweredOff() {
			s.checkList(list)
		}
		post, write = []plState{pre}, false
		ok = true
	}
	if s.fs.PoweredOff() {
		if !write {
			return
		}
		if err == nil { // acknowledged: it must have happened
			s.cands[key] = post
			s.stats.ackedAtCut++
			return
		}
		// In flight: it happened, or not. An ETag nobody learned can be
		// anything; a conditional write that would have failed cannot
		// have happened.
		if ok {
			for i := range post {
				post[i].etag = ""
			}
			s.cands[key] = append([]plState{pre}, post...)
			s.inFlight[key] = op
		}
		return
	}
	switch {
	case ok && err != nil:
		s.fatalf("%s %q (model: %v) = %v, want success", op, key, pre, err)
	case !ok && !errors.Is(err, want):
		s.fatalf("%s %q (model: %v) = %v, want %v", op, key, pre, err, want)
	case !ok:
		return // failed as it should, changing nothing
	}
	if op == "put-if-absent" || op == "put" || op == "put-if-match" {
		s.checkInfo(op, key, info, post[0].body)
	}
	s.cands[key] = post
}

// checkInfo checks what a write returned.
func (s *plSession) checkInfo(op, key string, info objstore.ObjectInfo, body []byte) {
	s.t.Helper()
	if info.Key != key || info.Size != int64(len(body)) || len(info.ETag) != 32 {
		s.fatalf("%s %q returned %+v for %d bytes", op, key, info, len(body))
	}
	if !s.xattrs {
		if sum := md5.Sum(body); info.ETag != hex.EncodeToString(sum[:]) {
			s.fatalf("%s %q: ETag %q without xattrs, not the body's MD5", op, key, info.ETag)
		}
	}
}

// check runs after an open following a power cut: the temporary files are
// gone, each key is in one of its possible states (which becomes the
// model's), the listing agrees, and no other file exists.
func (s *plSession) check(b *file.Bucket) {
	tmp, err := s.fs.ReadDir(filepath.Join(plRoot, ".woodpecker-tmp"))
	if err != nil || !slices.Equal(tmp, []string{"lock"}) {
		s.fatalf("temporary directory after the reopen: %v %v, want just the lock file", tmp, err)
	}
	for _, key := range plKeys {
		data, info, err := objstore.ReadAll(s.ctx, b, key)
		var got plState
		switch {
		case errors.Is(err, objstore.ErrNotFound):
		case err != nil:
			s.fatalf("read %q after a power cut: %v", key, err)
		default:
			got = plState{true, data, info.ETag}
			if info.Size != int64(len(data)) || len(info.ETag) != 32 {
				s.fatalf("read %q after a power cut: info %+v for %d bytes", key, info, len(data))
			}
			if hinfo, err := b.Head(s.ctx, key); err != nil || hinfo != info {
				s.fatalf("head %q after a power cut = %+v, %v; get said %+v", key, hinfo, err, info)
			}
		}
		match := -1
		for i, c := range s.cands[key] {
			if c.present == got.present && bytes.Equal(c.body, got.body) && (c.etag == got.etag || c.etag == "") {
				match = i
				break // the first: the state before an operation in flight, when the bodies are equal
			}
		}
		if match < 0 {
			var diffs []string
			for _, c := range s.cands[key] {
				if c.present && got.present {
					i := 0
					for i < min(len(c.body), len(got.body)) && c.body[i] == got.body[i] {
						i++
					}
					diffs = append(diffs, fmt.Sprintf("differs from %v at byte %d", c, i))
				}
			}
			s.fatalf("after a power cut %q is %v; it may only be one of %v (%s)", key, got, s.cands[key], strings.Join(diffs, "; "))
		}
		switch {
		case len(s.cands[key]) > 1 && match == 0:
			s.stats.not[s.inFlight[key]]++
		case len(s.cands[key]) > 1:
			s.stats.happened[s.inFlight[key]]++
		case got.present:
			s.stats.objects++
		default:
			s.stats.absent++
		}
		delete(s.inFlight, key)
		if len(s.cands[key]) > 1 && got.present && s.cands[key][match].etag == "" {
			if !s.xattrs {
				if sum := md5.Sum(got.body); got.etag != hex.EncodeToString(sum[:]) {
					s.fatalf("%q: ETag %q without xattrs, not the body's MD5", key, got.etag)
				}
			}
		}
		s.cands[key] = []plState{got}
	}
	list, err := b.List(s.ctx, objstore.ListOptions{})
	if err != nil {
		s.fatalf("list after a power cut: %v", err)
	}
	s.checkList(list)
	// No file but the objects and the temporary directory's.
	var walk func(dir string)
	walk = func(dir string) {
		names, err := s.fs.ReadDir(dir)
		if err != nil {
			s.fatalf("readdir %s: %v", dir, err)
		}
		for _, n := range names {
			p := filepath.Join(dir, n)
			st, err := s.fs.Stat(p)
			if err != nil {
				s.fatalf("stat %s: %v", p, err)
			}
			rel, _ := filepath.Rel(plRoot, p)
			switch {
			case rel == ".woodpecker-tmp":
			case st.IsDir():
				walk(p)
			case !s.cur(rel).present:
				s.fatalf("after a power cut, a file %s that is no object", p)
			}
		}
	}
	walk(plRoot)
}

// checkList compares a listing with the model.
func (s *plSession) checkList(list []objstore.ObjectInfo) {
	s.t.Helper()
	var want []objstore.ObjectInfo
	for _, k := range slices.Sorted(slices.Values(plKeys)) {
		if c := s.cur(k); c.present {
			want = append(want, objstore.ObjectInfo{Key: k, Size: int64(len(c.body)), ETag: c.etag})
		}
	}
	if !slices.Equal(list, want) {
		s.fatalf("list = %+v, want %+v", list, want)
	}
}

// casAfterCrash updates a present key with its ETag, which must still be
// its version after the power cut.
func (s *plSession) casAfterCrash(b *file.Bucket) {
	var present []string
	for _, k := range plKeys {
		if s.cur(k).present {
			present = append(present, k)
		}
	}
	if len(present) == 0 {
		return
	}
	key := present[s.rng.IntN(len(present))]
	body := s.body()
	info, err := b.PutIfMatch(s.ctx, key, body, s.cur(key).etag)
	if err != nil {
		s.fatalf("put-if-match %q with its ETag after a power cut: %v", key, err)
	}
	s.checkInfo("put-if-match", key, info, body)
	s.cands[key] = []plState{{true, body, info.ETag}}
}

// TestFilePowerLossSharedDirectory: two writes into a directory that
// neither found: the second, finding the directory the first has just made
// but whose entry the first has not fsynced yet, must not be acknowledged
// before that entry is durable.
func TestFilePowerLossSharedDirectory(t *testing.T) {
	ctx := context.Background()
	s := vfs.NewStrict()
	b, err := file.New(plRoot, file.Options{FS: s})
	if err != nil {
		t.Fatal(err)
	}
	blocked, release := make(chan struct{}), make(chan struct{})
	var syncs atomic.Int32
	s.SetHook(func(op vfs.Op, name string) error {
		if op == vfs.OpSyncDir && name == plRoot && syncs.Add(1) == 1 {
			close(blocked) // the first write, after its mkdir: wait
			<-release
		}
		return nil
	})
	first := make(chan error)
	go func() {
		_, err := b.PutIfAbsent(ctx, "d/k2", []byte("first"))
		first <- err
	}()
	<-blocked
	if _, err := b.PutIfAbsent(ctx, "d/k3", []byte("second")); err != nil {
		t.Fatal(err)
	}
	s.PowerCut(nil) // everything not synced is lost
	close(release)
	if err := <-first; err == nil {
		t.Fatal("the first write succeeded across a power cut")
	}
	s.SetHook(nil)
	s.Restart()
	b.Close()
	if b, err = file.New(plRoot, file.Options{FS: s}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if data, _, err := objstore.ReadAll(ctx, b, "d/k3"); err != nil || string(data) != "second" {
		t.Fatalf("the acknowledged write after the power cut: %q, %v", data, err)
	}
}
