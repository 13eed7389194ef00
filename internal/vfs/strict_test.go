package vfs_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/woodpecker-wal/woodpecker/internal/vfs"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the randomized tests (0: draw one); also $WOODPECKER_SEED")

// baseSeed returns the seed of a randomized test, and logs it.
func baseSeed(t *testing.T) uint64 {
	t.Helper()
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
	return seed
}

func rngFor(seed uint64, i int) *rand.Rand { return rand.New(rand.NewPCG(seed, uint64(i))) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, fs vfs.FS, name string, data string) vfs.File {
	t.Helper()
	f, err := fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	must(t, err)
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeSynced creates name with data, fsyncs it and its directory.
func writeSynced(t *testing.T, fs vfs.FS, name, data string) {
	t.Helper()
	f := create(t, fs, name, data)
	must(t, f.SyncAll())
	must(t, f.Close())
	must(t, fs.SyncDir(filepath.Dir(name)))
}

func readFile(fs vfs.FS, name string) (string, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

// content returns name's content, or "<absent>".
func content(t *testing.T, fs vfs.FS, name string) string {
	t.Helper()
	s, err := readFile(fs, name)
	if errors.Is(err, os.ErrNotExist) {
		return "<absent>"
	}
	must(t, err)
	return s
}

// dump lists every path under dir with its content (directories end in /).
func dump(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	var out []string
	names, err := fs.ReadDir(dir)
	must(t, err)
	for _, n := range names {
		p := filepath.Join(dir, n)
		st, err := fs.Lstat(p)
		must(t, err)
		if st.IsDir() {
			out = append(out, p+"/")
			out = append(out, dump(t, fs, p)...)
			continue
		}
		out = append(out, p+"="+content(t, fs, p))
	}
	return out
}

func TestStrictBasics(t *testing.T) {
	s := vfs.NewStrict()
	must(t, s.MkdirAll("/d/e", 0o755))
	f := create(t, s, "/d/e/f", "hello")
	if _, err := f.Write([]byte(" world")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if n, err := f.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
		t.Fatalf("ReadAt = %d %v %q", n, err, buf)
	}
	if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d %v", n, err)
	}
	if _, err := f.WriteAt([]byte("J"), 6); err != nil {
		t.Fatal(err)
	}
	must(t, f.Truncate(9))
	st, err := f.Stat()
	if err != nil || st.Size() != 9 || st.IsDir() || st.Name() != "f" {
		t.Fatalf("Stat = %v %v", st, err)
	}
	must(t, f.Close())
	if got := content(t, s, "d/e/f"); got != "hello Jor" { // relative names are from the root
		t.Fatalf("content %q", got)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	// Append, and WriteAt refused in append mode.
	a, err := s.OpenFile("/d/e/f", os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	if _, err := a.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteAt([]byte("!"), 0); err == nil {
		t.Fatal("WriteAt in append mode succeeded")
	}
	if _, err := a.Read(buf); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("Read of a write-only file = %v", err)
	}
	must(t, a.Close())
	if got := content(t, s, "/d/e/f"); got != "hello Jor!" {
		t.Fatalf("content %q", got)
	}
	errno := func(err error, want syscall.Errno) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("got %v, want %v", err, want)
		}
	}
	_, err = s.OpenFile("/d/e/f", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	errno(err, syscall.EEXIST)
	_, err = s.OpenFile("/d/nope/f", os.O_RDWR|os.O_CREATE, 0o644)
	errno(err, syscall.ENOENT)
	_, err = s.OpenFile("/d/e/f/g", os.O_RDONLY, 0)
	errno(err, syscall.ENOTDIR)
	_, err = s.OpenFile("/d", os.O_RDWR, 0)
	errno(err, syscall.EISDIR)
	errno(s.Remove("/d"), syscall.ENOTEMPTY)
	errno(s.Mkdir("/d", 0o755), syscall.EEXIST)
	errno(s.MkdirAll("/d/e/f/g", 0o755), syscall.ENOTDIR)
	errno(s.Link("/d/e", "/d/l"), syscall.EPERM)
	errno(s.Link("/d/e/f", "/d/e/f"), syscall.EEXIST)
	errno(s.Rename("/d/e/f", "/d"), syscall.EEXIST)
	errno(s.Rename("/d", "/d/e/x"), syscall.EINVAL)
	_, err = s.ReadDir("/d/e/f")
	errno(err, syscall.ENOTDIR)
	if !errors.Is(s.Remove("/nope"), os.ErrNotExist) {
		t.Error("Remove of a missing file: not ErrNotExist")
	}
	// Links share the file; rename replaces; ReadDir sorts.
	must(t, s.Link("/d/e/f", "/d/b"))
	must(t, s.Rename("/d/b", "/d/a"))
	writeSynced(t, s, "/d/c", "c")
	must(t, s.Rename("/d/c", "/d/a")) // replaces a (the link) with c
	if names, err := s.ReadDir("/d"); err != nil || !slices.Equal(names, []string{"a", "e"}) {
		t.Fatalf("ReadDir = %v %v", names, err)
	}
	if got := content(t, s, "/d/a"); got != "c" {
		t.Fatalf("content of /d/a %q", got)
	}
	st, err = s.Stat("/d")
	if err != nil || !st.IsDir() || st.Mode()&os.ModePerm != 0o755 {
		t.Fatalf("Stat(/d) = %v %v", st, err)
	}
}

// TestStrictCrashClean: CrashClean keeps exactly what the durability rules
// make durable.
func TestStrictCrashClean(t *testing.T) {
	s := vfs.NewStrict()
	must(t, s.MkdirAll("/d", 0o755))
	must(t, s.SyncDir("/"))
	writeSynced(t, s, "/d/synced", "hello")
	writeSynced(t, s, "/d/removed", "removed")
	writeSynced(t, s, "/d/r1", "renamed")
	writeSynced(t, s, "/d/r3", "renamed-synced")
	writeSynced(t, s, "/d/l1", "linked")
	writeSynced(t, s, "/d/cow", "AAAA")
	writeSynced(t, s, "/d/cow2", "AAAA")
	writeSynced(t, s, "/d/trunc", "123456")
	writeSynced(t, s, "/d/trunc2", "123456")
	writeSynced(t, s, "/d/xattr", "x")
	writeSynced(t, s, "/d/xattr2", "x")

	f, err := s.OpenFile("/d/synced", os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, _ = f.Write([]byte(" world")) // not synced
	old := f

	must(t, s.Rename("/d/r3", "/d/r4"))
	must(t, s.SyncDir("/d"))
	must(t, s.Remove("/d/removed"))
	must(t, s.Rename("/d/r1", "/d/r2"))
	must(t, s.Link("/d/l1", "/d/l2"))
	nf := create(t, s, "/d/new", "new") // synced data, entry not synced
	must(t, nf.Sync())
	must(t, nf.Close())
	must(t, s.Mkdir("/d/sub", 0o755))
	writeSynced(t, s, "/d/sub/f", "in an unsynced directory")

	c, err := s.OpenFile("/d/cow", os.O_RDWR, 0)
	must(t, err)
	_, _ = c.WriteAt([]byte("BB"), 1)
	must(t, c.Close())
	c, err = s.OpenFile("/d/cow2", os.O_RDWR, 0)
	must(t, err)
	must(t, c.Truncate(1))
	_, _ = c.WriteAt([]byte("ZZZ"), 1)
	must(t, c.Close())

	tr, err := s.OpenFile("/d/trunc", os.O_RDWR, 0)
	must(t, err)
	must(t, tr.Truncate(2))
	must(t, tr.Sync())
	must(t, tr.Close())
	tr, err = s.OpenFile("/d/trunc2", os.O_RDWR, 0)
	must(t, err)
	must(t, tr.Truncate(2))
	must(t, tr.Close())

	x, err := s.OpenFile("/d/xattr", os.O_RDWR, 0)
	must(t, err)
	must(t, x.SetXattr("user.a", []byte("v")))
	must(t, x.Sync()) // fdatasync: not the xattr
	must(t, x.Close())
	x, err = s.OpenFile("/d/xattr2", os.O_RDWR, 0)
	must(t, err)
	must(t, x.SetXattr("user.a", []byte("v")))
	must(t, x.SyncAll())
	must(t, x.Close())

	before := s.Ops()
	s.CrashClean()
	if s.Ops() != before {
		t.Errorf("Crash counted as an operation")
	}

	want := []string{
		"/d/",
		"/d/cow=AAAA",
		"/d/cow2=AAAA",
		"/d/l1=linked",
		"/d/r1=renamed",
		"/d/r4=renamed-synced",
		"/d/removed=removed",
		"/d/synced=hello",
		"/d/trunc=12",
		"/d/trunc2=123456",
		"/d/xattr=x",
		"/d/xattr2=x",
	}
	if got := dump(t, s, "/"); !slices.Equal(got, want) {
		t.Fatalf("after CrashClean:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for name, want := range map[string]error{"/d/xattr": syscall.ENODATA, "/d/xattr2": nil} {
		f, err := s.OpenFile(name, os.O_RDONLY, 0)
		must(t, err)
		v, err := f.GetXattr("user.a")
		if !errors.Is(err, want) || (err == nil && string(v) != "v") {
			t.Errorf("%s: GetXattr = %q %v, want %v", name, v, err, want)
		}
		f.Close()
	}
	if _, err := old.Read(make([]byte, 1)); !errors.Is(err, vfs.ErrCrashed) {
		t.Errorf("Read of a file opened before the crash = %v", err)
	}
	if _, err := old.Write([]byte("x")); !errors.Is(err, vfs.ErrCrashed) {
		t.Errorf("Write of a file opened before the crash = %v", err)
	}
	if err := old.Close(); !errors.Is(err, vfs.ErrCrashed) {
		t.Errorf("Close of a file opened before the crash = %v", err)
	}
	// Usable again.
	writeSynced(t, s, "/d/after", "after")
	s.CrashClean()
	if got := content(t, s, "/d/after"); got != "after" {
		t.Fatalf("a file synced after the crash: %q", got)
	}
}

// TestStrictCrashTornWrites: with a random source, un-synced writes are
// kept, dropped, torn at a byte or a sector, or leave zeros, each
// independently; the synced content always survives.
func TestStrictCrashTornWrites(t *testing.T) {
	seed := baseSeed(t)
	seen := map[string]int{}
	for i := range 400 {
		rng := rngFor(seed, i)
		s := vfs.NewStrict()
		synced := randBytes(rng, rng.IntN(1500))
		writeSynced(t, s, "/f", string(synced))
		f, err := s.OpenFile("/f", os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		var writes [][]byte
		full := slices.Clone(synced)
		bounds := map[int]bool{len(synced): true}
		for range 1 + rng.IntN(4) {
			w := randBytes(rng, 1+rng.IntN(2000))
			writes = append(writes, w)
			_, _ = f.Write(w)
			full = append(full, w...)
			bounds[len(full)] = true
		}
		s.Crash(rng)
		got := []byte(content(t, s, "/f"))
		fail := func(why string) {
			t.Fatalf("seed %d case %d: %s: synced %d bytes, writes %d, got %d bytes", seed, i, why, len(synced), len(writes), len(got))
		}
		if len(got) < len(synced) || !bytes.Equal(got[:len(synced)], synced) {
			fail("the synced content was lost")
		}
		if len(got) > len(full) {
			fail("longer than everything written")
		}
		zeros := false
		for j := len(synced); j < len(got); j++ {
			switch got[j] {
			case full[j]:
			case 0:
				zeros = true
			default:
				fail(fmt.Sprintf("byte %d neither written nor zero", j))
			}
		}
		switch {
		case len(got) == len(synced):
			seen["all lost"]++
		case bytes.Equal(got, full):
			seen["all kept"]++
		case zeros:
			seen["zeros"]++
		case !bounds[len(got)] && len(got)%512 == 0:
			seen["torn at a sector"]++
		case !bounds[len(got)]:
			seen["torn at a byte"]++
		default:
			seen["some kept"]++
		}
	}
	t.Logf("outcomes: %v", seen)
	for _, k := range []string{"all lost", "all kept", "zeros", "torn at a sector", "torn at a byte", "some kept"} {
		if seen[k] == 0 {
			t.Errorf("no crash was %q (outcomes %v)", k, seen)
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(1 + rng.IntN(255)) // never 0, to tell zero fill apart
	}
	return b
}

// TestStrictCrashOverwrites: a random history of writes, truncations and
// syncs on one file, against a model of its synced content: CrashClean
// gives exactly that, Crash something that begins where they agree.
func TestStrictCrashOverwrites(t *testing.T) {
	seed := baseSeed(t)
	for i := range 300 {
		rng := rngFor(seed, i)
		s := vfs.NewStrict()
		f := create(t, s, "/f", "")
		must(t, f.Sync())
		must(t, s.SyncDir("/"))
		var cur, synced []byte
		for range 1 + rng.IntN(30) {
			switch rng.IntN(5) {
			case 0, 1:
				off := rng.IntN(3000)
				w := randBytes(rng, rng.IntN(1200))
				_, _ = f.WriteAt(w, int64(off))
				if len(w) == 0 {
					break // as os.File: no system call, nothing changes
				}
				if len(cur) < off {
					cur = append(cur, make([]byte, off-len(cur))...)
				}
				m := copy(cur[off:], w)
				cur = append(cur, w[m:]...)
			case 2:
				n := rng.IntN(3500)
				must(t, f.Truncate(int64(n)))
				if n <= len(cur) {
					cur = cur[:n]
				} else {
					cur = append(cur, make([]byte, n-len(cur))...)
				}
			case 3:
				must(t, f.Sync())
				synced = slices.Clone(cur)
			case 4:
				got, err := readFile(s, "/f")
				must(t, err)
				if got != string(cur) {
					t.Fatalf("seed %d case %d: read %d bytes, want %d", seed, i, len(got), len(cur))
				}
			}
		}
		if rng.IntN(2) == 0 {
			s.CrashClean()
			if got := content(t, s, "/f"); got != string(synced) {
				t.Fatalf("seed %d case %d: after CrashClean %d bytes, synced %d", seed, i, len(got), len(synced))
			}
		} else {
			s.Crash(rng)
			got := content(t, s, "/f")
			if len(got) > max(len(synced), 4200) {
				t.Fatalf("seed %d case %d: %d bytes after Crash", seed, i, len(got))
			}
		}
	}
}

// TestStrictCrashEntries: un-synced directory operations are each kept or
// reverted; synced ones always stay; a rename between directories is
// atomic until one of them is synced.
func TestStrictCrashEntries(t *testing.T) {
	seed := baseSeed(t)
	var kept, lost, renKept, renUndone int
	for i := range 200 {
		rng := rngFor(seed, i)
		s := vfs.NewStrict()
		for _, d := range []string{"/a", "/b", "/c"} {
			must(t, s.Mkdir(d, 0o755))
		}
		must(t, s.SyncDir("/"))
		writeSynced(t, s, "/a/x", "x")
		writeSynced(t, s, "/c/durable", "d")
		for j := range 8 {
			f := create(t, s, fmt.Sprintf("/c/f%d", j), "f")
			must(t, f.Sync())
			must(t, f.Close())
		}
		must(t, s.Rename("/a/x", "/b/x"))
		s.Crash(rng)
		if got := content(t, s, "/c/durable"); got != "d" {
			t.Fatalf("seed %d case %d: a synced entry: %q", seed, i, got)
		}
		for j := range 8 {
			switch got := content(t, s, fmt.Sprintf("/c/f%d", j)); got {
			case "f":
				kept++
			case "<absent>":
				lost++
			default:
				t.Fatalf("seed %d case %d: f%d = %q", seed, i, j, got)
			}
		}
		switch ax, bx := content(t, s, "/a/x"), content(t, s, "/b/x"); {
		case ax == "x" && bx == "<absent>":
			renUndone++
		case ax == "<absent>" && bx == "x":
			renKept++
		default:
			t.Fatalf("seed %d case %d: rename not atomic: /a/x %q, /b/x %q", seed, i, ax, bx)
		}
	}
	t.Logf("entries kept %d lost %d; renames kept %d undone %d", kept, lost, renKept, renUndone)
	if kept == 0 || lost == 0 || renKept == 0 || renUndone == 0 {
		t.Errorf("an outcome never happened: entries kept %d lost %d; renames kept %d undone %d", kept, lost, renKept, renUndone)
	}

	// Once the destination is synced, the file is there for good.
	for i := range 50 {
		rng := rngFor(seed, 1000+i)
		s := vfs.NewStrict()
		must(t, s.Mkdir("/a", 0o755))
		must(t, s.Mkdir("/b", 0o755))
		must(t, s.SyncDir("/"))
		writeSynced(t, s, "/a/x", "x")
		must(t, s.Rename("/a/x", "/b/x"))
		must(t, s.SyncDir("/b"))
		s.Crash(rng)
		if got := content(t, s, "/b/x"); got != "x" {
			t.Fatalf("seed %d case %d: a rename into a synced directory lost: %q", seed, i, got)
		}
	}
}

// TestStrictCrashDeterministic: the same history and seed give the same
// crash.
func TestStrictCrashDeterministic(t *testing.T) {
	seed := baseSeed(t)
	history := func(s *vfs.Strict) {
		rng := rngFor(seed, -1)
		must(t, s.MkdirAll("/d", 0o755))
		for j := range 40 {
			name := fmt.Sprintf("/d/f%d", rng.IntN(10))
			f, err := s.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
			must(t, err)
			_, _ = f.WriteAt(randBytes(rng, rng.IntN(2000)), int64(rng.IntN(1000)))
			if rng.IntN(3) == 0 {
				must(t, f.Sync())
			}
			must(t, f.Close())
			switch rng.IntN(6) {
			case 0:
				must(t, s.SyncDir("/d"))
			case 1:
				_ = s.Remove(name)
			case 2:
				_ = s.Rename(name, fmt.Sprintf("/d/r%d", j))
			}
		}
	}
	a, b := vfs.NewStrict(), vfs.NewStrict()
	history(a)
	history(b)
	a.Crash(rngFor(seed, 7))
	b.Crash(rngFor(seed, 7))
	if da, db := dump(t, a, "/"), dump(t, b, "/"); !slices.Equal(da, db) {
		t.Fatalf("same history, same seed, different crashes:\n%v\n%v", da, db)
	}
}

func TestStrictPowerCut(t *testing.T) {
	s := vfs.NewStrict()
	writeSynced(t, s, "/durable", "d")
	s.PowerCutAfter(3, nil)
	f, err := s.OpenFile("/f", os.O_RDWR|os.O_CREATE, 0o644) // 1
	must(t, err)
	if _, err := f.Write([]byte("x")); err != nil { // 2
		t.Fatal(err)
	}
	if s.PoweredOff() {
		t.Fatal("powered off early")
	}
	if err := f.Sync(); !errors.Is(err, vfs.ErrCrashed) { // 3: cut instead
		t.Fatalf("the cut operation returned %v", err)
	}
	if !s.PoweredOff() {
		t.Fatal("not powered off")
	}
	if _, err := s.Stat("/durable"); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("Stat with the power off = %v", err)
	}
	if err := s.Remove("/durable"); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("Remove with the power off = %v", err)
	}
	s.Restart()
	if got := dump(t, s, "/"); !slices.Equal(got, []string{"/durable=d"}) {
		t.Fatalf("after the cut: %v", got)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("a file from before the cut: %v", err)
	}

	// A hook can cut the power in the middle of a sequence.
	n := 0
	s.SetHook(func(op vfs.Op, name string) error {
		if op == vfs.OpLink {
			s.PowerCut(nil)
		}
		n++
		return nil
	})
	f = create(t, s, "/tmp", "data")
	must(t, f.Sync())
	if err := s.Link("/tmp", "/final"); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("Link = %v", err)
	}
	s.SetHook(nil)
	s.Restart()
	if got := dump(t, s, "/"); !slices.Equal(got, []string{"/durable=d"}) {
		t.Fatalf("after the cut: %v", got)
	}
	if n != 4 {
		t.Errorf("hook saw %d operations, want 4", n)
	}
}

func TestStrictFailNext(t *testing.T) {
	s := vfs.NewStrict()
	boom := errors.New("boom")
	f := create(t, s, "/f", "a")
	must(t, f.Sync())
	must(t, s.SyncDir("/"))
	s.FailNext(vfs.OpWrite, boom)
	s.FailNext(vfs.OpSync, boom)
	if _, err := f.Write([]byte("b")); !errors.Is(err, boom) {
		t.Fatalf("Write = %v", err)
	}
	if _, err := f.Write([]byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync = %v", err)
	}
	if got := content(t, s, "/f"); got != "ac" {
		t.Fatalf("content %q", got)
	}
	s.CrashClean() // the failed Sync made nothing durable
	if got := content(t, s, "/f"); got != "a" {
		t.Fatalf("after the crash %q", got)
	}
	s.SetHook(func(op vfs.Op, name string) error {
		if op == vfs.OpRename && name == "/f" {
			return boom
		}
		return nil
	})
	if err := s.Rename("/f", "/g"); !errors.Is(err, boom) {
		t.Fatalf("Rename = %v", err)
	}
	if got := dump(t, s, "/"); !slices.Equal(got, []string{"/f=a"}) {
		t.Fatalf("a failed rename changed things: %v", got)
	}
}

func TestStrictLocks(t *testing.T) {
	s := vfs.NewStrict()
	l, err := s.Lock("/lock")
	must(t, err)
	if _, err := s.Lock("/lock"); !errors.Is(err, vfs.ErrLocked) {
		t.Fatalf("second Lock = %v", err)
	}
	must(t, l.Close())
	l, err = s.Lock("/lock")
	must(t, err)
	s.CrashClean() // releases it, and the lock file was never synced
	if err := l.Close(); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("Close of a lock from before the crash = %v", err)
	}
	l, err = s.Lock("/lock")
	must(t, err)

	// File.Lock blocks while another open file holds the lock.
	a, err := s.OpenFile("/lock", os.O_RDWR, 0)
	must(t, err)
	entered := make(chan struct{})
	s.SetHook(func(op vfs.Op, name string) error {
		if op == vfs.OpFileLock {
			close(entered)
		}
		return nil
	})
	acquired := make(chan error)
	go func() { acquired <- a.Lock() }()
	<-entered
	s.SetHook(nil)
	select {
	case err := <-acquired:
		t.Fatalf("Lock returned %v while another holder had the lock", err)
	default:
	}
	must(t, l.Close())
	must(t, <-acquired)
	must(t, a.Lock()) // again through the same file: a no-op
	if _, err := s.Lock("/lock"); !errors.Is(err, vfs.ErrLocked) {
		t.Fatalf("FS.Lock while a File holds it = %v", err)
	}
	// A crash wakes a waiter, with an error.
	b, err := s.OpenFile("/lock", os.O_RDWR, 0)
	must(t, err)
	entered = make(chan struct{})
	s.SetHook(func(op vfs.Op, name string) error {
		if op == vfs.OpFileLock {
			close(entered)
		}
		return nil
	})
	go func() { acquired <- b.Lock() }()
	<-entered
	s.SetHook(nil)
	s.CrashClean()
	if err := <-acquired; !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("a waiter at a crash got %v", err)
	}
	must(t, s.MkdirAll("/", 0))
	l, err = s.Lock("/lock")
	must(t, err)
	must(t, l.Close())
}

// TestStrictConcurrent exercises the locking under -race: writers on their
// own files while crashes happen.
func TestStrictConcurrent(t *testing.T) {
	s := vfs.NewStrict()
	must(t, s.MkdirAll("/d", 0o755))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprintf("/d/g%d-%d", g, i%5)
				f, err := s.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					continue // the directory may have been lost in a crash
				}
				_, _ = f.Write([]byte("data"))
				_ = f.Sync()
				_ = s.SyncDir("/d")
				_ = f.Close()
				_, _ = s.ReadDir("/d")
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			s.Crash(rng)
			_ = s.MkdirAll("/d", 0o755)
		}
	})
	wg.Wait()
}

func TestCounting(t *testing.T) {
	for name, fs := range map[string]vfs.FS{"strict": vfs.NewStrict(), "os": vfs.OS} {
		t.Run(name, func(t *testing.T) {
			dir := "/"
			if name == "os" {
				dir = t.TempDir()
			}
			c := vfs.Counting(fs)
			f, err := c.OpenFile(filepath.Join(dir, "f"), os.O_RDWR|os.O_CREATE, 0o644)
			must(t, err)
			_, _ = f.Write([]byte("abc"))
			_, _ = f.WriteAt([]byte("de"), 3)
			must(t, f.Sync())
			before := c.Counts()
			must(t, f.Sync())
			must(t, f.SyncAll())
			must(t, c.SyncDir(dir))
			must(t, f.Close())
			want := vfs.Counts{Syncs: 2, SyncAlls: 1, SyncDirs: 1, Writes: 2, BytesWritten: 5}
			if got := c.Counts(); got != want {
				t.Fatalf("Counts = %+v, want %+v", got, want)
			}
			if d := c.Counts().Sub(before); d != (vfs.Counts{Syncs: 1, SyncAlls: 1, SyncDirs: 1}) {
				t.Fatalf("Sub = %+v", d)
			}
			if c.Syncs() != 2 || c.SyncAlls() != 1 || c.SyncDirs() != 1 || c.Writes() != 2 || c.BytesWritten() != 5 {
				t.Fatalf("counters %d %d %d %d %d", c.Syncs(), c.SyncAlls(), c.SyncDirs(), c.Writes(), c.BytesWritten())
			}
			c.Reset()
			if c.Counts() != (vfs.Counts{}) {
				t.Fatalf("after Reset: %+v", c.Counts())
			}
			if got := content(t, c, filepath.Join(dir, "f")); got != "abcde" {
				t.Fatalf("content %q", got)
			}
		})
	}
}

// TestStrictMatchesOS runs the same random operations on vfs.OS (in a
// temporary directory) and on a Strict, and compares every result: the
// errors (their errno), what was read, and the trees.
func TestStrictMatchesOS(t *testing.T) {
	seed := baseSeed(t)
	root := t.TempDir()
	probe, err := vfs.OS.OpenFile(filepath.Join(root, "probe"), os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	xattrs := probe.SetXattr("user.probe", []byte("1")) == nil
	probe.Close()
	must(t, os.Remove(filepath.Join(root, "probe")))
	names := []string{"a", "b", "d", "d/e", "d/f", "d/g", "d/g/h", "a/x"}
	for i := range 20 {
		rng := rngFor(seed, i)
		dir := filepath.Join(root, strconv.Itoa(i))
		must(t, os.Mkdir(dir, 0o755))
		s := vfs.NewStrict()
		s.SetXattrs(xattrs)
		sdir := "/r"
		must(t, s.Mkdir(sdir, 0o755))
		type pair struct{ o, s vfs.File }
		var files []pair
		for step := range 300 {
			name := names[rng.IntN(len(names))]
			other := names[rng.IntN(len(names))]
			op := rng.IntN(16)
			var desc string
			var eo, es error
			var ro, rs string
			switch {
			case op == 0 || (op < 6 && len(files) == 0):
				flag := []int{os.O_RDONLY, os.O_WRONLY, os.O_RDWR}[rng.IntN(3)]
				for _, fl := range []int{os.O_CREATE, os.O_EXCL, os.O_TRUNC, os.O_APPEND} {
					if rng.IntN(3) == 0 {
						flag |= fl
					}
				}
				desc = fmt.Sprintf("OpenFile(%s, %#x)", name, flag)
				fo, err1 := vfs.OS.OpenFile(filepath.Join(dir, name), flag, 0o644)
				fs, err2 := s.OpenFile(filepath.Join(sdir, name), flag, 0o644)
				eo, es = err1, err2
				if err1 == nil && err2 == nil {
					files = append(files, pair{fo, fs})
				} else {
					if fo != nil {
						fo.Close()
					}
					if fs != nil {
						fs.Close()
					}
				}
			case op < 6:
				k := rng.IntN(len(files))
				f := files[k]
				switch op {
				case 1:
					w := randBytes(rng, rng.IntN(100))
					desc = fmt.Sprintf("Write(%d)", len(w))
					var n1, n2 int
					n1, eo = f.o.Write(w)
					n2, es = f.s.Write(w)
					ro, rs = strconv.Itoa(n1), strconv.Itoa(n2)
				case 2:
					w := randBytes(rng, rng.IntN(100))
					off := int64(rng.IntN(300))
					desc = fmt.Sprintf("WriteAt(%d, %d)", len(w), off)
					var n1, n2 int
					n1, eo = f.o.WriteAt(w, off)
					n2, es = f.s.WriteAt(w, off)
					ro, rs = strconv.Itoa(n1), strconv.Itoa(n2)
				case 3:
					b1, b2 := make([]byte, rng.IntN(100)), make([]byte, 0)
					b2 = make([]byte, len(b1))
					var n1, n2 int
					if rng.IntN(2) == 0 {
						desc = "Read"
						n1, eo = f.o.Read(b1)
						n2, es = f.s.Read(b2)
					} else {
						off := int64(rng.IntN(300))
						desc = fmt.Sprintf("ReadAt(%d)", off)
						n1, eo = f.o.ReadAt(b1, off)
						n2, es = f.s.ReadAt(b2, off)
					}
					ro, rs = fmt.Sprint(n1, b1[:n1]), fmt.Sprint(n2, b2[:n2])
				case 4:
					size := int64(rng.IntN(300))
					desc = fmt.Sprintf("Truncate(%d)", size)
					eo, es = f.o.Truncate(size), f.s.Truncate(size)
				case 5:
					switch rng.IntN(4) {
					case 0:
						desc = "Close"
						eo, es = f.o.Close(), f.s.Close()
						files = slices.Delete(files, k, k+1)
					case 1:
						desc = "Stat"
						var s1, s2 os.FileInfo
						s1, eo = f.o.Stat()
						s2, es = f.s.Stat()
						ro, rs = infoString(s1), infoString(s2)
					case 2:
						desc = "SetXattr"
						eo, es = f.o.SetXattr("user.k", []byte(name)), f.s.SetXattr("user.k", []byte(name))
					case 3:
						desc = "GetXattr"
						var v1, v2 []byte
						v1, eo = f.o.GetXattr("user.k")
						v2, es = f.s.GetXattr("user.k")
						ro, rs = string(v1), string(v2)
					}
				}
			case op == 6:
				desc = "Mkdir(" + name + ")"
				eo, es = vfs.OS.Mkdir(filepath.Join(dir, name), 0o755), s.Mkdir(filepath.Join(sdir, name), 0o755)
			case op == 7:
				desc = "MkdirAll(" + name + ")"
				eo, es = vfs.OS.MkdirAll(filepath.Join(dir, name), 0o755), s.MkdirAll(filepath.Join(sdir, name), 0o755)
			case op == 8 || op == 9:
				desc = "Remove(" + name + ")"
				eo, es = vfs.OS.Remove(filepath.Join(dir, name)), s.Remove(filepath.Join(sdir, name))
			case op == 10 || op == 11:
				desc = "Rename(" + name + ", " + other + ")"
				eo, es = vfs.OS.Rename(filepath.Join(dir, name), filepath.Join(dir, other)), s.Rename(filepath.Join(sdir, name), filepath.Join(sdir, other))
			case op == 12:
				desc = "Link(" + name + ", " + other + ")"
				eo, es = vfs.OS.Link(filepath.Join(dir, name), filepath.Join(dir, other)), s.Link(filepath.Join(sdir, name), filepath.Join(sdir, other))
			case op == 13:
				desc = "ReadDir(" + name + ")"
				var n1, n2 []string
				n1, eo = vfs.OS.ReadDir(filepath.Join(dir, name))
				n2, es = s.ReadDir(filepath.Join(sdir, name))
				ro, rs = fmt.Sprint(n1), fmt.Sprint(n2)
				if eo == nil && es == nil {
					e1, err1 := vfs.OS.ReadDirEntries(filepath.Join(dir, name))
					e2, err2 := s.ReadDirEntries(filepath.Join(sdir, name))
					eo, es = err1, err2
					ro, rs = entriesString(e1), entriesString(e2)
				}
			case op == 14:
				desc = "Stat(" + name + ")"
				var s1, s2 os.FileInfo
				s1, eo = vfs.OS.Lstat(filepath.Join(dir, name))
				s2, es = s.Lstat(filepath.Join(sdir, name))
				ro, rs = infoString(s1), infoString(s2)
			case op == 15:
				desc = "SyncDir(" + name + ")"
				eo, es = vfs.OS.SyncDir(filepath.Join(dir, name)), s.SyncDir(filepath.Join(sdir, name))
			}
			if errClass(eo) != errClass(es) || ro != rs {
				t.Fatalf("seed %d case %d step %d: %s: os %v %q, strict %v %q", seed, i, step, desc, eo, ro, es, rs)
			}
		}
		for _, f := range files {
			f.o.Close()
			f.s.Close()
		}
		if o, st := dump(t, vfs.OS, dir), dump(t, s, sdir); !slices.Equal(relTo(o, dir), relTo(st, sdir)) {
			t.Fatalf("seed %d case %d: trees differ:\n%v\n%v", seed, i, relTo(o, dir), relTo(st, sdir))
		}
	}
}

func entriesString(es []iofs.DirEntry) string {
	var b strings.Builder
	for _, e := range es {
		fi, err := e.Info()
		fmt.Fprintf(&b, "%s %v %v %s %v;", e.Name(), e.IsDir(), e.Type(), infoString(fi), err)
	}
	return b.String()
}

func infoString(fi os.FileInfo) string {
	if fi == nil {
		return "<nil>"
	}
	size := fi.Size()
	if fi.IsDir() {
		size = 0
	}
	return fmt.Sprintf("%s %d %v", fi.Name(), size, fi.IsDir())
}

// errClass is an error's errno, or "error" for another error.
func errClass(err error) string {
	if err == nil {
		return "nil"
	}
	if err == io.EOF {
		return "EOF"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		if e == syscall.EOPNOTSUPP {
			e = syscall.ENOTSUP
		}
		return e.Error()
	}
	return "error"
}

func relTo(paths []string, dir string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = strings.TrimPrefix(p, dir)
	}
	return out
}

// TestXattrs: the same on the OS (where the filesystem has user xattrs) and
// on a Strict, values longer than the OS implementation's first buffer
// included.
func TestXattrs(t *testing.T) {
	for name, fs := range map[string]vfs.FS{"strict": vfs.NewStrict(), "os": vfs.OS} {
		t.Run(name, func(t *testing.T) {
			dir := "/"
			if name == "os" {
				dir = t.TempDir()
			}
			f := create(t, fs, filepath.Join(dir, "f"), "x")
			defer f.Close()
			if err := f.SetXattr("user.probe", []byte("1")); errors.Is(err, syscall.ENOTSUP) {
				t.Skip("no user xattrs here")
			}
			if _, err := f.GetXattr("user.missing"); !errors.Is(err, syscall.ENODATA) {
				t.Fatalf("GetXattr of a missing attribute = %v", err)
			}
			long := bytes.Repeat([]byte("v"), 300)
			for _, v := range [][]byte{[]byte("short"), long, {}, []byte("again")} {
				must(t, f.SetXattr("user.k", v))
				got, err := f.GetXattr("user.k")
				if err != nil || !bytes.Equal(got, v) {
					t.Fatalf("GetXattr = %q %v, want %q", got, err, v)
				}
			}
		})
	}
	s := vfs.NewStrict()
	s.SetXattrs(false)
	f := create(t, s, "/f", "")
	if err := f.SetXattr("user.k", nil); !errors.Is(err, syscall.ENOTSUP) {
		t.Fatalf("SetXattr without xattrs = %v", err)
	}
	if _, err := f.GetXattr("user.k"); !errors.Is(err, syscall.ENOTSUP) {
		t.Fatalf("GetXattr without xattrs = %v", err)
	}
}

// TestStrictCutDisarms: a cut by other means disarms PowerCutAfter.
func TestStrictCutDisarms(t *testing.T) {
	s := vfs.NewStrict()
	s.PowerCutAfter(5, nil)
	s.PowerCut(nil)
	s.Restart()
	for range 10 {
		if _, err := s.Stat("/"); err != nil {
			t.Fatalf("an armed cut survived a cut: %v", err)
		}
	}
	s.PowerCutAfter(2, nil)
	s.CrashClean()
	for range 10 {
		if _, err := s.Stat("/"); err != nil {
			t.Fatalf("an armed cut survived a crash: %v", err)
		}
	}
}
