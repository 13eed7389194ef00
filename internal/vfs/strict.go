package vfs

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrCrashed is what every operation returns while a Strict filesystem's
// power is off (after PowerCut, until Restart), and what operations on a
// file opened before a crash return ever after.
var ErrCrashed = errors.New("vfs: simulated power cut")

// Op names an operation of a Strict filesystem, for its hook and FailNext.
type Op int

// The operations. Every method of FS and File is one, except File.Name.
const (
	OpOpen       Op = iota // FS.OpenFile
	OpMkdir                // FS.Mkdir
	OpMkdirAll             // FS.MkdirAll
	OpReadDir              // FS.ReadDir and FS.ReadDirEntries
	OpRemove               // FS.Remove
	OpRename               // FS.Rename
	OpLink                 // FS.Link
	OpStat                 // FS.Stat
	OpLstat                // FS.Lstat
	OpSyncDir              // FS.SyncDir
	OpLock                 // FS.Lock
	OpRead                 // File.Read
	OpReadAt               // File.ReadAt
	OpWrite                // File.Write
	OpWriteAt              // File.WriteAt
	OpSync                 // File.Sync
	OpSyncAll              // File.SyncAll
	OpTruncate             // File.Truncate
	OpFileStat             // File.Stat
	OpClose                // File.Close, and Close of FS.Lock's closer
	OpGetXattr             // File.GetXattr
	OpSetXattr             // File.SetXattr
	OpFileLock             // File.Lock
	OpFileUnlock           // File.Unlock
	numOps
)

var opNames = [numOps]string{
	"open", "mkdir", "mkdirall", "readdir", "remove", "rename", "link", "stat", "lstat", "syncdir", "lock",
	"read", "readat", "write", "writeat", "sync", "syncall", "truncate", "fstat", "close",
	"getxattr", "setxattr", "flock", "funlock",
}

func (op Op) String() string {
	if op >= 0 && op < numOps {
		return opNames[op]
	}
	return fmt.Sprintf("Op(%d)", int(op))
}

// Strict is an in-memory filesystem that, at a simulated power cut, loses
// what the durability rules of the package documentation do not make
// durable (in the manner of pebble's strict MemFS). It implements FS and is
// safe for concurrent use.
//
// What survives a crash:
//   - A file's content is its content at its last Sync (or SyncAll), plus,
//     after Crash with a random source, each write or truncation made since,
//     independently, in the order they were made: kept whole, dropped, or
//     torn (only a prefix of the write survives, cut at a random byte or at
//     a 512-byte sector boundary), a lost write that extended the file
//     sometimes leaving zeros in its place (the size reached the disk, the
//     data did not). CrashClean keeps none of them.
//   - Extended attributes likewise: those of the last SyncAll, plus (Crash
//     with a random source) each later SetXattr kept or not.
//   - A directory's entries are those of its last SyncDir, plus (Crash with a
//     random source) each later create, remove, rename or link of an entry
//     in it, independently kept or reverted: created files disappear,
//     removed ones come back, renames undo. A rename between two
//     directories is one decision, until either directory is synced.
//     CrashClean reverts them all. A directory whose own entry is lost
//     takes everything in it along.
//
// With a random source, the chance that an un-synced operation survives is
// drawn anew at each crash, so some crashes keep nearly everything and
// others nearly nothing. The same history and the same source give the same
// crash.
//
// After a crash every file opened before it is invalid (its operations
// return ErrCrashed), every lock is released, and the filesystem is usable
// again. Crash and CrashClean cut the power between operations; to cut it in
// the middle of the caller's work, PowerCut (from a hook, say) or
// PowerCutAfter (at the n-th operation) cut it and make every operation fail
// with ErrCrashed, so that the code still running changes nothing, until
// Restart. SetHook and FailNext inject failures.
//
// Paths are cleaned and taken from the root: "a/b" is "/a/b". Symbolic links
// do not exist; Lstat is Stat. Modification times are zero. Sync of an open
// directory is SyncDir; SyncDir of a file is its SyncAll.
type Strict struct {
	ops atomic.Int64 // operations begun

	mu      sync.Mutex
	cond    *sync.Cond // lock waiters, on mu
	root    *node
	gen     uint64 // incremented at each power cut; files carry theirs
	nextID  uint64
	off     bool // the power is cut (until Restart)
	noXattr bool
	hook    func(op Op, name string) error
	fails   []injected
	cutAt   int64 // cut at this operation number; 0: not armed
	cutRng  *rand.Rand
}

type injected struct {
	op  Op
	err error
}

// node is a file or a directory (an inode).
type node struct {
	id   uint64
	dir  bool
	perm os.FileMode

	// A file.
	data    []byte   // current content
	synced  []byte   // durable content
	shared  bool     // data's backing array begins with synced's bytes (copy on write)
	pending []fileOp // writes and truncations since the last sync
	xattrs  map[string][]byte
	syncedX map[string][]byte
	pendX   []xattrOp

	// A directory.
	ents    map[string]*node // current entries
	durable map[string]*node // entries as of the last SyncDir
	changes []dirChange      // entry changes since the last SyncDir

	lockOwner *strictFile // nil: unlocked
}

type fileOp struct {
	trunc bool
	off   int64 // write offset, or the size truncated to
	data  []byte
}

type xattrOp struct {
	name  string
	value []byte
}

// dirOp is one directory operation; a rename between directories is one
// dirOp with a change in each, so a crash keeps both or neither.
type dirOp struct{}

type dirChange struct {
	op   *dirOp
	name string
	to   *node // nil: removed
}

// NewStrict returns an empty Strict filesystem: just the root directory,
// durable.
func NewStrict() *Strict {
	s := &Strict{}
	s.cond = sync.NewCond(&s.mu)
	s.root = s.newNode(true, 0o755)
	return s
}

func (s *Strict) newNode(dir bool, perm os.FileMode) *node {
	s.nextID++
	n := &node{id: s.nextID, dir: dir, perm: perm & os.ModePerm}
	if dir {
		n.ents = map[string]*node{}
		n.durable = map[string]*node{}
	}
	return n
}

// SetHook installs h (nil removes it), called at the start of every
// operation with the path it names (a file's name for a File method),
// without the filesystem's lock held: it may call the Strict's methods,
// PowerCut for one. When it returns an error the operation fails with it and
// has no effect.
func (s *Strict) SetHook(h func(op Op, name string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

// FailNext makes the next operation op fail with err, without effect.
// Calls queue up: FailNext(OpSync, e1); FailNext(OpSync, e2) fails the next
// two Syncs.
func (s *Strict) FailNext(op Op, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, injected{op, err})
}

// SetXattrs sets whether the filesystem has extended attributes (it has by
// default). Without, GetXattr and SetXattr fail with ENOTSUP.
func (s *Strict) SetXattrs(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noXattr = !enabled
}

// Ops returns the number of operations begun so far (failed ones included).
func (s *Strict) Ops() int64 { return s.ops.Load() }

// Crash simulates a power cut and a reboot at this instant: the state
// becomes one a power cut could leave (see Strict), chosen with rng; a nil
// rng is CrashClean. The filesystem is usable again when Crash returns.
func (s *Strict) Crash(rng *rand.Rand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutLocked(rng)
	s.off = false
}

// CrashClean is Crash that loses everything not synced: files revert to
// their content at their last Sync, directories to their entries at their
// last SyncDir.
func (s *Strict) CrashClean() { s.Crash(nil) }

// PowerCut cuts the power: the state that survives is chosen now (as by
// Crash(rng)), and every operation fails with ErrCrashed until Restart, so
// that code still running, which in a real crash would be dead, changes
// nothing. A cut while the power is off does nothing.
func (s *Strict) PowerCut(rng *rand.Rand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.off {
		s.cutLocked(rng)
	}
}

// PowerCutAfter arms a power cut: the n-th operation from now (n >= 1)
// does not happen; instead the power is cut as by PowerCut(rng), and that
// operation and every later one fail with ErrCrashed until Restart. n <= 0
// disarms, and so does any crash or cut.
func (s *Strict) PowerCutAfter(n int64, rng *rand.Rand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.cutAt, s.cutRng = 0, nil
		return
	}
	s.cutAt, s.cutRng = s.ops.Load()+n, rng
}

// PoweredOff reports whether the power is cut (PowerCut or an armed cut
// happened, and Restart has not been called since).
func (s *Strict) PoweredOff() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.off
}

// Restart turns the power back on after a cut: operations work again, on the
// state the cut left. Files opened before the cut stay invalid. Without a
// cut it does nothing.
func (s *Strict) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.off = false
}

// begin counts an operation, fires an armed cut, and runs the hook and any
// injected failure. The caller then takes s.mu and checks s.off.
func (s *Strict) begin(op Op, name string) error {
	n := s.ops.Add(1)
	s.mu.Lock()
	if s.cutAt > 0 && n >= s.cutAt && !s.off {
		s.cutLocked(s.cutRng)
	}
	hook := s.hook
	var ferr error
	for i, f := range s.fails {
		if f.op == op {
			ferr = f.err
			s.fails = slices.Delete(s.fails, i, i+1)
			break
		}
	}
	s.mu.Unlock()
	if hook != nil {
		if err := hook(op, name); err != nil {
			return &os.PathError{Op: op.String(), Path: name, Err: err}
		}
	}
	if ferr != nil {
		return &os.PathError{Op: op.String(), Path: name, Err: ferr}
	}
	return nil
}

// cutLocked replaces the state with one a power cut could leave, and
// disarms PowerCutAfter.
func (s *Strict) cutLocked(rng *rand.Rand) {
	s.off = true
	s.gen++
	s.cutAt, s.cutRng = 0, nil
	// Every node reachable by any name, current, durable or pending.
	seen := map[*node]bool{}
	var all []*node
	var visit func(n *node)
	visit = func(n *node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		all = append(all, n)
		if !n.dir {
			return
		}
		for _, c := range n.ents {
			visit(c)
		}
		for _, c := range n.durable {
			visit(c)
		}
		for _, ch := range n.changes {
			visit(ch.to)
		}
	}
	visit(s.root)
	// In creation order, so that a seeded rng gives the same crash for the
	// same history whatever the names.
	slices.SortFunc(all, func(a, b *node) int { return cmp.Compare(a.id, b.id) })
	c := crasher{rng: rng}
	if rng != nil {
		c.pKeep = rng.Float64()
	}
	for _, n := range all {
		if !n.dir {
			c.file(n)
		}
	}
	decided := map[*dirOp]bool{}
	for _, n := range all {
		if n.dir {
			c.dir(n, decided)
		}
		n.lockOwner = nil
	}
	s.cond.Broadcast()
}

type crasher struct {
	rng   *rand.Rand // nil: keep nothing pending
	pKeep float64    // probability of keeping a pending operation
}

func (c crasher) keep() bool { return c.rng != nil && c.rng.Float64() < c.pKeep }

func (c crasher) file(n *node) {
	buf := slices.Clone(n.synced)
	for _, op := range n.pending {
		if op.trunc {
			if c.keep() {
				buf = truncate(buf, op.off)
			}
			continue
		}
		if c.keep() {
			buf = writeAt(buf, op.data, op.off)
			continue
		}
		if c.rng == nil {
			continue
		}
		// Lost, in part or in full.
		k := 0
		switch c.rng.IntN(4) {
		case 2: // torn at a byte
			if len(op.data) > 0 {
				k = c.rng.IntN(len(op.data))
			}
		case 3: // torn at a sector boundary
			first := (op.off + 511) / 512 * 512
			last := op.off + int64(len(op.data)) - 1
			if first <= last {
				k = int(first + 512*c.rng.Int64N((last-first)/512+1) - op.off)
			}
		}
		buf = writeAt(buf, op.data[:k], op.off)
		if end := op.off + int64(len(op.data)); c.rng.IntN(2) == 0 && int64(len(buf)) < end {
			buf = truncate(buf, end) // the size made it, the data did not
		}
	}
	n.data, n.synced, n.shared, n.pending = buf, buf, true, nil

	x := maps.Clone(n.syncedX)
	for _, op := range n.pendX {
		if c.keep() {
			if x == nil {
				x = map[string][]byte{}
			}
			x[op.name] = op.value
		}
	}
	n.xattrs, n.syncedX, n.pendX = x, maps.Clone(x), nil
}

func (c crasher) dir(n *node, decided map[*dirOp]bool) {
	for _, ch := range n.changes {
		keep, ok := decided[ch.op]
		if !ok {
			keep = c.keep()
			decided[ch.op] = keep
		}
		if keep {
			setEntry(n.durable, ch.name, ch.to)
		}
	}
	n.changes = nil
	n.ents = maps.Clone(n.durable)
}

func setEntry(m map[string]*node, name string, to *node) {
	if to == nil {
		delete(m, name)
	} else {
		m[name] = to
	}
}

// writeAt writes p at off into buf, zero-filling any gap, and returns buf.
// buf must not share its array with anything that must stay unchanged.
func writeAt(buf, p []byte, off int64) []byte {
	if int64(len(buf)) < off {
		buf = append(buf, make([]byte, off-int64(len(buf)))...)
	}
	m := copy(buf[off:], p)
	return append(buf, p[m:]...)
}

// truncate sets buf's length to size, zero-filling when it grows.
func truncate(buf []byte, size int64) []byte {
	if size <= int64(len(buf)) {
		return buf[:size]
	}
	return append(buf, make([]byte, size-int64(len(buf)))...)
}

// unshare makes n.data safe to change from byte from on.
func (n *node) unshare(from int64) {
	if n.shared && from < int64(len(n.synced)) {
		n.data = slices.Clone(n.data)
		n.shared = false
	}
}

func (n *node) write(p []byte, off int64) {
	n.unshare(min(off, int64(len(n.data))))
	n.data = writeAt(n.data, p, off)
	n.pending = append(n.pending, fileOp{off: off, data: slices.Clone(p)})
}

func (n *node) truncate(size int64) {
	if size > int64(len(n.data)) {
		n.unshare(int64(len(n.data)))
	}
	n.data = truncate(n.data, size)
	n.pending = append(n.pending, fileOp{trunc: true, off: size})
}

func (n *node) syncFile(all bool) {
	n.synced, n.shared, n.pending = n.data, true, nil
	if all {
		n.syncedX, n.pendX = maps.Clone(n.xattrs), nil
	}
}

func (n *node) syncDir() {
	for _, ch := range n.changes {
		setEntry(n.durable, ch.name, ch.to)
	}
	n.changes = nil
}

func (s *Strict) addEntry(dir *node, name string, to *node, op *dirOp) {
	dir.ents[name] = to
	dir.changes = append(dir.changes, dirChange{op: op, name: name, to: to})
}

func (s *Strict) removeEntry(dir *node, name string, op *dirOp) {
	delete(dir.ents, name)
	dir.changes = append(dir.changes, dirChange{op: op, name: name})
}

func splitPath(name string) []string {
	c := filepath.Clean("/" + name)
	if c == "/" {
		return nil
	}
	return strings.Split(c[1:], "/")
}

// lookup resolves name: its parent directory (nil for the root), its last
// component, and its node (nil if there is none). It fails when a parent is
// missing (ENOENT) or not a directory (ENOTDIR).
func (s *Strict) lookup(name string) (parent *node, base string, n *node, err error) {
	comps := splitPath(name)
	if len(comps) == 0 {
		return nil, "", s.root, nil
	}
	d := s.root
	for _, c := range comps[:len(comps)-1] {
		next, ok := d.ents[c]
		if !ok {
			return nil, "", nil, syscall.ENOENT
		}
		if !next.dir {
			return nil, "", nil, syscall.ENOTDIR
		}
		d = next
	}
	base = comps[len(comps)-1]
	return d, base, d.ents[base], nil
}

// enter runs begin and takes s.mu; the caller unlocks it when err is nil.
func (s *Strict) enter(op Op, name string) error {
	if err := s.begin(op, name); err != nil {
		return err
	}
	s.mu.Lock()
	if s.off {
		s.mu.Unlock()
		return &os.PathError{Op: op.String(), Path: name, Err: ErrCrashed}
	}
	return nil
}

// OpenFile implements FS.
func (s *Strict) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err := s.enter(OpOpen, name); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	fail := func(err error) (File, error) { return nil, &os.PathError{Op: "open", Path: name, Err: err} }
	parent, base, n, err := s.lookup(name)
	if err != nil {
		return fail(err)
	}
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	f := &strictFile{s: s, name: name, gen: s.gen, flag: flag,
		read: acc == os.O_RDONLY || acc == os.O_RDWR, write: acc == os.O_WRONLY || acc == os.O_RDWR}
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return fail(syscall.ENOENT)
	case n == nil:
		n = s.newNode(false, perm)
		s.addEntry(parent, base, n, &dirOp{})
	case flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return fail(syscall.EEXIST)
	case n.dir && (f.write || flag&(os.O_CREATE|os.O_TRUNC) != 0):
		return fail(syscall.EISDIR)
	case flag&os.O_TRUNC != 0 && len(n.data) > 0: // as Linux, also read-only
		n.truncate(0)
	}
	f.n = n
	return f, nil
}

// MkdirAll implements FS.
func (s *Strict) MkdirAll(dir string, perm os.FileMode) error {
	if err := s.enter(OpMkdirAll, dir); err != nil {
		return err
	}
	defer s.mu.Unlock()
	d := s.root
	for _, c := range splitPath(dir) {
		n := d.ents[c]
		if n == nil {
			n = s.newNode(true, perm)
			s.addEntry(d, c, n, &dirOp{})
		} else if !n.dir {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		d = n
	}
	return nil
}

// Mkdir implements FS.
func (s *Strict) Mkdir(dir string, perm os.FileMode) error {
	if err := s.enter(OpMkdir, dir); err != nil {
		return err
	}
	defer s.mu.Unlock()
	parent, base, n, err := s.lookup(dir)
	switch {
	case err != nil:
	case n != nil:
		err = syscall.EEXIST
	default:
		s.addEntry(parent, base, s.newNode(true, perm), &dirOp{})
		return nil
	}
	return &os.PathError{Op: "mkdir", Path: dir, Err: err}
}

// ReadDir implements FS.
func (s *Strict) ReadDir(dir string) ([]string, error) {
	if err := s.enter(OpReadDir, dir); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	_, _, n, err := s.lookup(dir)
	switch {
	case err != nil:
	case n == nil:
		err = syscall.ENOENT
	case !n.dir:
		err = syscall.ENOTDIR
	default:
		return slices.Sorted(maps.Keys(n.ents)), nil
	}
	return nil, &os.PathError{Op: "open", Path: dir, Err: err}
}

// ReadDirEntries implements FS. An entry's Info is as of the call.
func (s *Strict) ReadDirEntries(dir string) ([]fs.DirEntry, error) {
	if err := s.enter(OpReadDir, dir); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	_, _, n, err := s.lookup(dir)
	switch {
	case err != nil:
	case n == nil:
		err = syscall.ENOENT
	case !n.dir:
		err = syscall.ENOTDIR
	default:
		names := slices.Sorted(maps.Keys(n.ents))
		out := make([]fs.DirEntry, len(names))
		for i, name := range names {
			out[i] = fs.FileInfoToDirEntry(n.ents[name].info(name))
		}
		return out, nil
	}
	return nil, &os.PathError{Op: "open", Path: dir, Err: err}
}

// Remove implements FS.
func (s *Strict) Remove(name string) error {
	if err := s.enter(OpRemove, name); err != nil {
		return err
	}
	defer s.mu.Unlock()
	parent, base, n, err := s.lookup(name)
	switch {
	case err != nil:
	case n == nil:
		err = syscall.ENOENT
	case parent == nil:
		err = syscall.EBUSY
	case n.dir && len(n.ents) > 0:
		err = syscall.ENOTEMPTY
	default:
		s.removeEntry(parent, base, &dirOp{})
		return nil
	}
	return &os.PathError{Op: "remove", Path: name, Err: err}
}

// Rename implements FS, like os.Rename: it replaces a file, not a
// directory.
func (s *Strict) Rename(oldname, newname string) error {
	if err := s.enter(OpRename, oldname); err != nil {
		return err
	}
	defer s.mu.Unlock()
	err := s.rename(oldname, newname)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}

func (s *Strict) rename(oldname, newname string) error {
	// As rename(2): both parents are resolved before the names in them.
	op, ob, on, err := s.lookup(oldname)
	if err != nil {
		return err
	}
	np, nb, nn, err := s.lookup(newname)
	switch {
	case err != nil:
		return err
	case on == nil:
		return syscall.ENOENT
	case op == nil || np == nil:
		return syscall.EBUSY
	case nn != nil && nn.dir:
		return syscall.EEXIST // as os.Rename
	case nn == on:
		return nil // the same file: rename(2) does nothing
	}
	if on.dir { // not into itself
		d := s.root
		for _, c := range splitPath(newname) {
			if d == on {
				return syscall.EINVAL
			}
			if d = d.ents[c]; d == nil {
				break
			}
		}
		if nn != nil {
			return syscall.ENOTDIR
		}
	}
	o := &dirOp{}
	s.removeEntry(op, ob, o)
	s.addEntry(np, nb, on, o)
	return nil
}

// Link implements FS.
func (s *Strict) Link(oldname, newname string) error {
	if err := s.enter(OpLink, oldname); err != nil {
		return err
	}
	defer s.mu.Unlock()
	err := func() error {
		_, _, on, err := s.lookup(oldname)
		if err != nil {
			return err
		}
		if on == nil {
			return syscall.ENOENT
		}
		np, nb, nn, err := s.lookup(newname)
		switch {
		case err != nil:
			return err
		case nn != nil:
			return syscall.EEXIST
		case on.dir:
			return syscall.EPERM
		}
		s.addEntry(np, nb, on, &dirOp{})
		return nil
	}()
	if err != nil {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// Stat implements FS.
func (s *Strict) Stat(name string) (os.FileInfo, error) { return s.stat(OpStat, name) }

// Lstat implements FS; there are no symbolic links, so it is Stat.
func (s *Strict) Lstat(name string) (os.FileInfo, error) { return s.stat(OpLstat, name) }

func (s *Strict) stat(op Op, name string) (os.FileInfo, error) {
	if err := s.enter(op, name); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	_, _, n, err := s.lookup(name)
	if err == nil && n == nil {
		err = syscall.ENOENT
	}
	if err != nil {
		return nil, &os.PathError{Op: op.String(), Path: name, Err: err}
	}
	return n.info(name), nil
}

// SyncDir implements FS. Of a file, it is SyncAll.
func (s *Strict) SyncDir(dir string) error {
	if err := s.enter(OpSyncDir, dir); err != nil {
		return err
	}
	defer s.mu.Unlock()
	_, _, n, err := s.lookup(dir)
	switch {
	case err != nil:
	case n == nil:
		err = syscall.ENOENT
	case n.dir:
		n.syncDir()
		return nil
	default:
		n.syncFile(true)
		return nil
	}
	return &os.PathError{Op: "open", Path: dir, Err: err}
}

// Lock implements FS. The returned closer is a File whose lock is held.
func (s *Strict) Lock(name string) (io.Closer, error) {
	if err := s.enter(OpLock, name); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	parent, base, n, err := s.lookup(name)
	switch {
	case err != nil:
	case n == nil:
		n = s.newNode(false, 0o644)
		s.addEntry(parent, base, n, &dirOp{})
	case n.dir:
		err = syscall.EISDIR
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if n.lockOwner != nil {
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	f := &strictFile{s: s, n: n, name: name, gen: s.gen, flag: os.O_RDWR, read: true, write: true}
	n.lockOwner = f
	return f, nil
}

func (n *node) info(name string) os.FileInfo {
	fi := strictInfo{name: filepath.Base(filepath.Clean("/" + name)), mode: n.perm}
	if n.dir {
		fi.mode |= os.ModeDir
	} else {
		fi.size = int64(len(n.data))
	}
	return fi
}

type strictInfo struct {
	name string
	size int64
	mode os.FileMode
}

func (fi strictInfo) Name() string       { return fi.name }
func (fi strictInfo) Size() int64        { return fi.size }
func (fi strictInfo) Mode() os.FileMode  { return fi.mode }
func (fi strictInfo) ModTime() time.Time { return time.Time{} }
func (fi strictInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi strictInfo) Sys() any           { return nil }

// strictFile is an open file of a Strict.
type strictFile struct {
	s           *Strict
	n           *node
	name        string
	gen         uint64
	flag        int
	read, write bool
	off         int64 // guarded by s.mu
	closed      bool  // guarded by s.mu
}

// enter begins op on f; on success s.mu is held and the caller unlocks it.
func (f *strictFile) enter(op Op) error {
	if err := f.s.enter(op, f.name); err != nil {
		return err
	}
	if err := f.usable(op); err != nil {
		f.s.mu.Unlock()
		return err
	}
	return nil
}

// usable fails when f is closed or from before a crash; s.mu is held.
func (f *strictFile) usable(op Op) error {
	switch {
	case f.gen != f.s.gen:
		return &os.PathError{Op: op.String(), Path: f.name, Err: ErrCrashed}
	case f.closed:
		return &os.PathError{Op: op.String(), Path: f.name, Err: os.ErrClosed}
	}
	return nil
}

func (f *strictFile) Name() string { return f.name }

func (f *strictFile) Read(p []byte) (int, error) {
	if err := f.enter(OpRead); err != nil {
		return 0, err
	}
	defer f.s.mu.Unlock()
	n, err := f.readAt(p, f.off, "read")
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *strictFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.enter(OpReadAt); err != nil {
		return 0, err
	}
	defer f.s.mu.Unlock()
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: f.name, Err: errors.New("negative offset")}
	}
	n, err := f.readAt(p, off, "read")
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

func (f *strictFile) readAt(p []byte, off int64, op string) (int, error) {
	switch {
	case len(p) == 0:
		return 0, nil // as os.File, without a system call
	case f.n.dir:
		return 0, &os.PathError{Op: op, Path: f.name, Err: syscall.EISDIR}
	case !f.read:
		return 0, &os.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	case off >= int64(len(f.n.data)):
		return 0, io.EOF
	}
	return copy(p, f.n.data[off:]), nil
}

func (f *strictFile) Write(p []byte) (int, error) {
	if err := f.enter(OpWrite); err != nil {
		return 0, err
	}
	defer f.s.mu.Unlock()
	if err := f.writable("write"); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.flag&os.O_APPEND != 0 {
		f.off = int64(len(f.n.data))
	}
	f.n.write(p, f.off)
	f.off += int64(len(p))
	return len(p), nil
}

func (f *strictFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.enter(OpWriteAt); err != nil {
		return 0, err
	}
	defer f.s.mu.Unlock()
	switch {
	case f.flag&os.O_APPEND != 0:
		return 0, errors.New("os: invalid use of WriteAt on file opened with O_APPEND")
	case off < 0:
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: errors.New("negative offset")}
	}
	if len(p) == 0 {
		return 0, nil // as os.File, without a system call
	}
	if err := f.writable("write"); err != nil {
		return 0, err
	}
	f.n.write(p, off)
	return len(p), nil
}

func (f *strictFile) writable(op string) error {
	if !f.write {
		return &os.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

func (f *strictFile) Sync() error { return f.sync(OpSync, false) }

func (f *strictFile) SyncAll() error { return f.sync(OpSyncAll, true) }

func (f *strictFile) sync(op Op, all bool) error {
	if err := f.enter(op); err != nil {
		return err
	}
	defer f.s.mu.Unlock()
	if f.n.dir {
		f.n.syncDir()
	} else {
		f.n.syncFile(all)
	}
	return nil
}

func (f *strictFile) Truncate(size int64) error {
	if err := f.enter(OpTruncate); err != nil {
		return err
	}
	defer f.s.mu.Unlock()
	if !f.write || size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	f.n.truncate(size)
	return nil
}

func (f *strictFile) Stat() (os.FileInfo, error) {
	if err := f.enter(OpFileStat); err != nil {
		return nil, err
	}
	defer f.s.mu.Unlock()
	return f.n.info(f.name), nil
}

func (f *strictFile) Close() error {
	if err := f.s.begin(OpClose, f.name); err != nil {
		return err
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if err := f.usable(OpClose); err != nil {
		f.closed = true
		return err
	}
	f.closed = true
	if f.s.off {
		return &os.PathError{Op: "close", Path: f.name, Err: ErrCrashed}
	}
	f.unlock()
	return nil
}

func (f *strictFile) GetXattr(attr string) ([]byte, error) {
	if err := f.enter(OpGetXattr); err != nil {
		return nil, err
	}
	defer f.s.mu.Unlock()
	if f.s.noXattr {
		return nil, &os.PathError{Op: "getxattr", Path: f.name, Err: syscall.ENOTSUP}
	}
	v, ok := f.n.xattrs[attr]
	if !ok {
		return nil, &os.PathError{Op: "getxattr", Path: f.name, Err: syscall.ENODATA}
	}
	return slices.Clone(v), nil
}

func (f *strictFile) SetXattr(attr string, value []byte) error {
	if err := f.enter(OpSetXattr); err != nil {
		return err
	}
	defer f.s.mu.Unlock()
	if f.s.noXattr {
		return &os.PathError{Op: "setxattr", Path: f.name, Err: syscall.ENOTSUP}
	}
	if f.n.xattrs == nil {
		f.n.xattrs = map[string][]byte{}
	}
	v := slices.Clone(value)
	if v == nil {
		v = []byte{}
	}
	f.n.xattrs[attr] = v
	f.n.pendX = append(f.n.pendX, xattrOp{name: attr, value: v})
	return nil
}

func (f *strictFile) Lock() error {
	if err := f.enter(OpFileLock); err != nil {
		return err
	}
	defer f.s.mu.Unlock()
	for f.n.lockOwner != nil && f.n.lockOwner != f {
		f.s.cond.Wait()
		if f.s.off {
			return &os.PathError{Op: "flock", Path: f.name, Err: ErrCrashed}
		}
		if err := f.usable(OpFileLock); err != nil {
			return err
		}
	}
	f.n.lockOwner = f
	return nil
}

func (f *strictFile) Unlock() error {
	if err := f.enter(OpFileUnlock); err != nil {
		return err
	}
	defer f.s.mu.Unlock()
	f.unlock()
	return nil
}

// unlock releases f's lock if it holds it; s.mu is held.
func (f *strictFile) unlock() {
	if f.n.lockOwner == f {
		f.n.lockOwner = nil
		f.s.cond.Broadcast()
	}
}

var (
	_ FS   = (*Strict)(nil)
	_ File = (*strictFile)(nil)
)
