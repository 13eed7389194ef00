package file

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/woodpecker-wal/woodpecker/internal/vfs"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// fileTmpDir is the directory under a file bucket's root holding temporary
// files and the lock file. Keys whose first component is this name are
// rejected.
const fileTmpDir = ".woodpecker-tmp"

// fileETagXattr is the extended attribute holding an object's ETag: a random
// 128-bit token drawn for each write (hashing every byte for an MD5 took
// 40% of the CPU of a write-heavy benchmark). When the filesystem lacks user
// xattrs the ETag is the content's MD5, computed when written and when read.
const fileETagXattr = "user.woodpecker.md5"

// Options configures a file bucket.
type Options struct {
	// NoSync skips every fsync. Writes are then not durable across a machine
	// crash; meant only for tests and benchmarks.
	NoSync bool
	// NoCreate opens the bucket without changing the directory, for
	// read-only use: the root must exist (New fails naming it
	// otherwise, with an error wrapping fs.ErrNotExist), nothing is
	// created under it, and leftover temporary files are not swept. Reads
	// work on any directory; writes need the temporary directory and lock
	// file a bucket opened without NoCreate made, and fail without them.
	NoCreate bool
	// Logger receives warnings (swept temp files); nil discards.
	Logger *slog.Logger
	// FS is the filesystem the bucket lives on; nil is the real one,
	// vfs.OS. Tests pass a *vfs.Strict to simulate power cuts.
	FS vfs.FS

	hooks *testHooks // nil but in tests (export_test.go)
}

// testHooks replace, in tests, what a bucket takes from the process: its
// pid (in temporary file names), whether another pid is alive (the sweep),
// and the randomness of temporary file names and ETags.
type testHooks struct {
	pid    int
	alive  func(pid int) bool
	random func() uint64
}

// Bucket stores each object as a file under a root directory, the key
// being its relative path. It implements objstore.CASBucket.
//
// Durability: a write returns after the file (its data and ETag xattr) and
// its directory (and the parent of any directory it created, or found being
// created by another call) are fsynced; New fsyncs the parent of each
// directory it creates, the root's included. PutIfAbsent writes a temporary
// file, fsyncs it, then link(2)s it to the final name, which fails
// atomically if the name exists, so a crash never leaves a torn object under
// a key. Put and PutIfMatch rename(2) a fsynced temporary file over the key.
//
// Concurrency: safe for concurrent use, also by several processes sharing
// the directory: PutIfAbsent relies on link(2), and Put, PutIfMatch and Delete
// serialize on an flock(2)ed lock file.
//
// Keys are paths, so "a" and "a/b" cannot both exist: writing one while the
// other exists fails with an error naming both (not objstore.ErrExists).
type Bucket struct {
	root   string
	tmp    string
	opts   Options
	fs     vfs.FS
	pid    int      // in temporary file names
	lockFD vfs.File // nil when opened with NoCreate on a directory without one: no writes
	xattrs bool     // the filesystem stores user xattrs: ETags are random tokens

	// casMu serializes Put, PutIfMatch and Delete within the process; the
	// flock on lockFD serializes them across processes. Lock order: casMu,
	// then the flock.
	casMu sync.Mutex

	dirMu        sync.Mutex
	unsyncedDirs map[string]int // directories mkdirs is creating, their parent not fsynced yet; guarded by dirMu

	closeMu sync.RWMutex // held for reading by every call, for writing by Close
	closed  bool         // guarded by closeMu
}

var _ objstore.CASBucket = (*Bucket)(nil)

// New opens (creating if needed, unless opts.NoCreate) a file bucket
// rooted at dir, which must be an absolute path. Temporary files left by dead
// processes are removed (unless opts.NoCreate).
func New(dir string, opts Options) (*Bucket, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("objstore: file bucket root %q is not an absolute path", dir)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	root := filepath.Clean(dir)
	b := &Bucket{root: root, tmp: filepath.Join(root, fileTmpDir), opts: opts, fs: opts.FS, pid: os.Getpid()}
	if b.fs == nil {
		b.fs = vfs.OS
	}
	if opts.hooks != nil {
		b.pid = opts.hooks.pid
	}
	if opts.NoCreate {
		return b.openNoCreate()
	}
	if err := b.mkdirAll(root); err != nil {
		return nil, fmt.Errorf("objstore: file bucket root: %w", err)
	}
	if err := b.mkdirAll(b.tmp); err != nil {
		return nil, fmt.Errorf("objstore: file bucket: %w", err)
	}
	lockPath := filepath.Join(b.tmp, "lock")
	lock, err := b.fs.OpenFile(lockPath, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// Created durably, so that a bucket opened for writing once stays
		// writable for NoCreate after a power cut.
		if lock, err = b.fs.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644); err == nil {
			if err = b.syncDir(b.tmp); err != nil {
				lock.Close()
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: file bucket lock: %w", err)
	}
	b.lockFD = lock
	b.xattrs = lock.SetXattr(fileETagXattr, []byte("probe")) == nil
	b.sweep()
	return b, nil
}

// mkdirAll creates dir and its missing parents like os.MkdirAll, and
// fsyncs the parent of each directory it creates: the fsyncs of a write
// cover only the object's own directory, and without these a power cut
// could take the whole bucket (its root's entry in its parent) away.
func (b *Bucket) mkdirAll(dir string) error {
	st, err := b.fs.Stat(dir)
	if err == nil {
		if st.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := b.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := b.fs.Mkdir(dir, 0o755); err != nil {
		// Created meanwhile by another process (which may not have
		// synced its parent yet: this does)?
		if st, serr := b.fs.Lstat(dir); serr != nil || !st.IsDir() {
			return err
		}
	}
	return b.syncDir(parent)
}

// openNoCreate opens an existing root without creating or removing
// anything. It uses the lock file when there is one (read-only when it may
// not be written, as for another user's bucket).
func (b *Bucket) openNoCreate() (*Bucket, error) {
	root := b.root
	st, err := b.fs.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return nil, fmt.Errorf("objstore: file bucket root %s: %w (nocreate: not creating it)", root, err)
	case err != nil:
		return nil, fmt.Errorf("objstore: file bucket root: %w", err)
	case !st.IsDir():
		return nil, fmt.Errorf("objstore: file bucket root %s is not a directory", root)
	}
	lockPath := filepath.Join(b.tmp, "lock")
	lock, err := b.fs.OpenFile(lockPath, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		lock, err = b.fs.OpenFile(lockPath, os.O_RDONLY, 0)
	}
	switch {
	case err == nil:
		b.lockFD = lock
		_, xerr := lock.GetXattr(fileETagXattr)
		b.xattrs = xerr == nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("objstore: file bucket lock: %w", err)
	}
	return b, nil
}

// writable fails when the bucket cannot be written: it was opened with
// NoCreate on a directory without the temporary directory and lock file.
func (b *Bucket) writable(op, key string) error {
	if b.lockFD == nil {
		return fmt.Errorf("objstore: %s %q: file bucket %s was opened with nocreate and has no %s directory, which writes need",
			op, key, b.root, fileTmpDir)
	}
	return nil
}

// sweep removes temporary files whose writing process is gone.
func (b *Bucket) sweep() {
	names, err := b.fs.ReadDir(b.tmp)
	if err != nil {
		return
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "tmp-") {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, "tmp-"), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || (pid != b.pid && !b.alive(pid)) {
			b.opts.Logger.Warn("objstore: removing leftover temporary file", "file", name)
			_ = b.fs.Remove(filepath.Join(b.tmp, name))
		}
	}
}

// alive reports whether process pid may be running.
func (b *Bucket) alive(pid int) bool {
	if b.opts.hooks != nil {
		return b.opts.hooks.alive(pid)
	}
	return syscall.Kill(pid, 0) != syscall.ESRCH
}

// random64 returns a random number, for temporary file names.
func (b *Bucket) random64() uint64 {
	if b.opts.hooks != nil {
		return b.opts.hooks.random()
	}
	return mrand.Uint64()
}

// newETag draws a random 128-bit ETag.
func (b *Bucket) newETag() string {
	var tok [16]byte
	if b.opts.hooks != nil {
		binary.LittleEndian.PutUint64(tok[:8], b.opts.hooks.random())
		binary.LittleEndian.PutUint64(tok[8:], b.opts.hooks.random())
	} else {
		_, _ = rand.Read(tok[:])
	}
	return hex.EncodeToString(tok[:])
}

// Root returns the bucket's root directory.
func (b *Bucket) Root() string { return b.root }

func (b *Bucket) path(key string) (string, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return "", err
	}
	if first, _, _ := strings.Cut(key, "/"); first == fileTmpDir {
		return "", fmt.Errorf("%w %q: first component %q is reserved by the file backend", objstore.ErrInvalidKey, key, fileTmpDir)
	}
	return filepath.Join(b.root, filepath.FromSlash(key)), nil
}

// enter checks ctx and closure and validates key; it returns the path and a
// function to call when the operation is done.
func (b *Bucket) enter(ctx context.Context, key string) (string, func(), error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	b.closeMu.RLock()
	if b.closed {
		b.closeMu.RUnlock()
		return "", nil, objstore.ErrClosed
	}
	p, err := b.path(key)
	if err != nil {
		b.closeMu.RUnlock()
		return "", nil, err
	}
	return p, b.closeMu.RUnlock, nil
}

// Get implements objstore.Bucket.
func (b *Bucket) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	p, done, err := b.enter(ctx, key)
	if err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	defer done()
	if off < 0 {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("objstore: get %q: negative offset %d", key, off)
	}
	f, err := b.fs.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, objstore.ObjectInfo{}, b.mapErr("get", key, err)
	}
	info, err := b.stat(f, key)
	if err != nil {
		f.Close()
		return nil, objstore.ObjectInfo{}, err
	}
	n := info.Size - off
	if length >= 0 && length < n {
		n = length
	}
	n = max(n, 0)
	return &fileReader{SectionReader: io.NewSectionReader(f, min(off, info.Size), n), f: f}, info, nil
}

type fileReader struct {
	*io.SectionReader
	f vfs.File
}

func (r *fileReader) Close() error { return r.f.Close() }

// stat returns the info of an open object file.
func (b *Bucket) stat(f vfs.File, key string) (objstore.ObjectInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return objstore.ObjectInfo{}, b.mapErr("stat", key, err)
	}
	if st.IsDir() {
		return objstore.ObjectInfo{}, fmt.Errorf("head %q: %w (a directory of other keys)", key, objstore.ErrNotFound)
	}
	info := objstore.ObjectInfo{Key: key, Size: st.Size()}
	if v, err := f.GetXattr(fileETagXattr); err == nil && len(v) == 32 {
		info.ETag = string(v)
		return info, nil
	}
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Size())); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: hashing %q: %w", key, err)
	}
	info.ETag = hex.EncodeToString(h.Sum(nil))
	return info, nil
}

// Head implements objstore.Bucket.
func (b *Bucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	p, done, err := b.enter(ctx, key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	defer done()
	f, err := b.fs.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return objstore.ObjectInfo{}, b.mapErr("head", key, err)
	}
	defer f.Close()
	return b.stat(f, key)
}

func (b *Bucket) mapErr(op, key string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s %q: %w", op, key, objstore.ErrNotFound)
	case errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("%s %q: %w (a directory of other keys)", op, key, objstore.ErrNotFound)
	}
	return fmt.Errorf("objstore: %s %q: %w", op, key, err)
}

// createTemp creates a new temporary file, named tmp-<pid>-<random>
// (os.CreateTemp's pattern, with its permissions, 0600).
func (b *Bucket) createTemp() (vfs.File, error) {
	prefix := filepath.Join(b.tmp, "tmp-"+strconv.Itoa(b.pid)+"-")
	for try := 0; ; try++ {
		name := prefix + strconv.FormatUint(uint64(uint32(b.random64())), 10)
		f, err := b.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) && try < 10000 {
			continue
		}
		return f, err
	}
}

// writeTemp writes r to a fsynced temporary file and records its MD5.
func (b *Bucket) writeTemp(r io.Reader, size int64) (name string, info objstore.ObjectInfo, err error) {
	f, err := b.createTemp()
	if err != nil {
		return "", objstore.ObjectInfo{}, err
	}
	name = f.Name()
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			b.fs.Remove(name)
		}
	}()
	var n int64
	if b.xattrs {
		info.ETag = b.newETag()
		if n, err = io.Copy(f, r); err == nil {
			err = f.SetXattr(fileETagXattr, []byte(info.ETag))
		}
	} else {
		h := md5.New()
		n, err = io.Copy(io.MultiWriter(f, h), r)
		info.ETag = hex.EncodeToString(h.Sum(nil))
	}
	if err != nil {
		return "", objstore.ObjectInfo{}, err
	}
	if size >= 0 && n != size {
		return "", objstore.ObjectInfo{}, fmt.Errorf("reader held %d bytes, declared size %d", n, size)
	}
	info.Size = n
	if !b.opts.NoSync {
		// fsync, not fdatasync: the ETag xattr must be durable too.
		if err := f.SyncAll(); err != nil {
			return "", objstore.ObjectInfo{}, err
		}
	}
	return name, info, nil
}

// syncDir fsyncs a directory.
func (b *Bucket) syncDir(dir string) error {
	if b.opts.NoSync {
		return nil
	}
	return b.fs.SyncDir(dir)
}

// mkdirs creates the parent directories of p below the root, fsyncing each
// parent of a directory it created. A directory another call of this
// bucket created and whose parent it has not fsynced yet does not count as
// there: this call fsyncs its parent too, lest its object, acknowledged
// first, be lost with the directory's entry at a power cut.
func (b *Bucket) mkdirs(p string, key string) error {
	dir := filepath.Dir(p)
	if st, err := b.fs.Stat(dir); err == nil && st.IsDir() && !b.unsynced(dir, true) {
		return nil
	}
	rel, _ := filepath.Rel(b.root, dir)
	cur := b.root
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, c)
		b.markUnsynced(next, 1) // before the directory can be seen
		err := b.fs.Mkdir(next, 0o755)
		switch {
		case err == nil:
			err = b.syncDir(cur)
			b.markUnsynced(next, -1)
			if err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			b.markUnsynced(next, -1)
			if st, serr := b.fs.Stat(next); serr == nil && !st.IsDir() {
				conflict, _ := filepath.Rel(b.root, next)
				return fmt.Errorf("objstore: key %q: %q is an object, so it cannot also be a directory of keys", key, filepath.ToSlash(conflict))
			}
			if b.unsynced(next, false) { // created by another call, not synced yet
				if err := b.syncDir(cur); err != nil {
					return err
				}
			}
		default:
			b.markUnsynced(next, -1)
			return err
		}
		cur = next
	}
	return nil
}

// markUnsynced counts a directory being created (delta 1) until its parent
// is fsynced (delta -1).
func (b *Bucket) markUnsynced(dir string, delta int) {
	b.dirMu.Lock()
	defer b.dirMu.Unlock()
	if b.unsyncedDirs == nil {
		b.unsyncedDirs = map[string]int{}
	}
	if b.unsyncedDirs[dir] += delta; b.unsyncedDirs[dir] <= 0 {
		delete(b.unsyncedDirs, dir)
	}
}

// unsynced reports whether dir (or, with parents, one of its parents below
// the root) is being created by a call, its parent not fsynced yet.
func (b *Bucket) unsynced(dir string, parents bool) bool {
	b.dirMu.Lock()
	defer b.dirMu.Unlock()
	if len(b.unsyncedDirs) == 0 {
		return false
	}
	for ; len(dir) > len(b.root); dir = filepath.Dir(dir) {
		if b.unsyncedDirs[dir] > 0 {
			return true
		}
		if !parents {
			break
		}
	}
	return false
}

// PutIfAbsent implements objstore.Bucket.
func (b *Bucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	p, done, err := b.enter(ctx, key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	defer done()
	if err := b.writable("put-if-absent", key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	tmp, info, err := b.writeTemp(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: put-if-absent %q: %w", key, err)
	}
	defer b.fs.Remove(tmp)
	info.Key = key
	// A concurrent Delete may remove an emptied parent directory between
	// mkdirs and link; retry a few times.
	for attempt := 0; ; attempt++ {
		if err := b.mkdirs(p, key); err != nil {
			return objstore.ObjectInfo{}, err
		}
		err = b.fs.Link(tmp, p)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) {
			if st, serr := b.fs.Stat(p); serr == nil && st.IsDir() {
				return objstore.ObjectInfo{}, fmt.Errorf("objstore: put-if-absent %q: the key is a directory of other keys", key)
			}
			return objstore.ObjectInfo{}, fmt.Errorf("put-if-absent %q: %w", key, objstore.ErrExists)
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt >= 3 {
			return objstore.ObjectInfo{}, fmt.Errorf("objstore: put-if-absent %q: %w", key, err)
		}
	}
	if err := b.syncDir(filepath.Dir(p)); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: put-if-absent %q: sync directory: %w", key, err)
	}
	return info, nil
}

// lock takes the bucket's write lock, within and across processes.
func (b *Bucket) lock() (unlock func(), err error) {
	b.casMu.Lock()
	if err := b.lockFD.Lock(); err != nil {
		b.casMu.Unlock()
		return nil, fmt.Errorf("objstore: file bucket lock: %w", err)
	}
	return func() {
		_ = b.lockFD.Unlock()
		b.casMu.Unlock()
	}, nil
}

// replace renames a temporary file over p under the write lock, after check
// (if non-nil) approves the current object.
func (b *Bucket) replace(op, key, p string, r io.Reader, size int64, check func() error) (objstore.ObjectInfo, error) {
	tmp, info, err := b.writeTemp(r, size)
	if err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: %s %q: %w", op, key, err)
	}
	defer b.fs.Remove(tmp)
	info.Key = key
	unlock, err := b.lock()
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	defer unlock()
	if check != nil {
		if err := check(); err != nil {
			return objstore.ObjectInfo{}, err
		}
	}
	if err := b.mkdirs(p, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	if st, err := b.fs.Stat(p); err == nil && st.IsDir() {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: %s %q: the key is a directory of other keys", op, key)
	}
	if err := b.fs.Rename(tmp, p); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: %s %q: %w", op, key, err)
	}
	if err := b.syncDir(filepath.Dir(p)); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: %s %q: sync directory: %w", op, key, err)
	}
	return info, nil
}

// Put implements objstore.Bucket.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	p, done, err := b.enter(ctx, key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	defer done()
	if err := b.writable("put", key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return b.replace("put", key, p, r, size, nil)
}

// PutIfMatch implements objstore.CASBucket.
func (b *Bucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	p, done, err := b.enter(ctx, key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	defer done()
	if err := b.writable("put-if-match", key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return b.replace("put-if-match", key, p, bytes.NewReader(data), int64(len(data)), func() error {
		f, err := b.fs.OpenFile(p, os.O_RDONLY, 0)
		if err != nil {
			if err := b.mapErr("put-if-match", key, err); errors.Is(err, objstore.ErrNotFound) {
				return fmt.Errorf("put-if-match %q: %w (no object)", key, objstore.ErrPrecondition)
			}
			return err
		}
		defer f.Close()
		cur, err := b.stat(f, key)
		if err != nil {
			return err
		}
		if cur.ETag != etag {
			return fmt.Errorf("put-if-match %q: %w", key, objstore.ErrPrecondition)
		}
		return nil
	})
}

// Delete implements objstore.Bucket. Parent directories left empty are removed.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	p, done, err := b.enter(ctx, key)
	if err != nil {
		return err
	}
	defer done()
	if err := b.writable("delete", key); err != nil {
		return err
	}
	unlock, err := b.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if st, err := b.fs.Lstat(p); err == nil && st.IsDir() {
		return nil // a directory of other keys: no object under this key
	}
	if err := b.fs.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("objstore: delete %q: %w", key, err)
	}
	dir := filepath.Dir(p)
	if err := b.syncDir(dir); err != nil {
		return fmt.Errorf("objstore: delete %q: sync directory: %w", key, err)
	}
	for dir != b.root {
		if b.fs.Remove(dir) != nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	return nil
}

// List implements objstore.Bucket. The file backend walks the directory below the
// prefix and sorts the keys, so listing order is byte order even where a
// directory walk would differ ("a/b" sorts after "a-c").
func (b *Bucket) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.closeMu.RLock()
	defer b.closeMu.RUnlock()
	if b.closed {
		return nil, objstore.ErrClosed
	}
	// Walk from the deepest directory the prefix names in full.
	base := ""
	if i := strings.LastIndexByte(opts.Prefix, '/'); i >= 0 {
		base = opts.Prefix[:i]
	}
	start := b.root
	if base != "" {
		if objstore.ValidateKey(base) != nil {
			return nil, nil // no valid key has this prefix
		}
		if first, _, _ := strings.Cut(base, "/"); first == fileTmpDir {
			return nil, nil // reserved: no key is in there
		}
		start = filepath.Join(b.root, filepath.FromSlash(base))
	}
	var keys []string
	gone := func(err error) bool { return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) }
	var walk func(dir string) error
	walk = func(dir string) error {
		ents, err := b.fs.ReadDirEntries(dir)
		if err != nil {
			if gone(err) {
				return nil // removed since its parent was read
			}
			return err
		}
		for _, e := range ents {
			path := filepath.Join(dir, e.Name())
			rel, _ := filepath.Rel(b.root, path)
			key := filepath.ToSlash(rel)
			if e.IsDir() {
				if key == fileTmpDir {
					continue
				}
				// Prune directories that cannot hold a matching key.
				if dk := key + "/"; !strings.HasPrefix(dk, opts.Prefix) && !strings.HasPrefix(opts.Prefix, dk) {
					continue
				}
				if err := walk(path); err != nil {
					return err
				}
				continue
			}
			if strings.HasPrefix(key, opts.Prefix) && key > opts.StartAfter {
				keys = append(keys, key)
			}
		}
		return nil
	}
	st, err := b.fs.Stat(start)
	switch {
	case err != nil && !gone(err):
	case err != nil:
		err = nil // no such directory: no keys
	case st.IsDir():
		err = walk(start)
	} // else base is an object, not a directory
	if err != nil {
		return nil, fmt.Errorf("objstore: list %q: %w", opts.Prefix, err)
	}
	slices.Sort(keys)
	if opts.Limit > 0 && len(keys) > opts.Limit {
		keys = keys[:opts.Limit]
	}
	out := make([]objstore.ObjectInfo, 0, len(keys))
	for _, k := range keys {
		f, err := b.fs.OpenFile(filepath.Join(b.root, filepath.FromSlash(k)), os.O_RDONLY, 0)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the walk
			}
			return nil, fmt.Errorf("objstore: list %q: %w", opts.Prefix, err)
		}
		info, err := b.stat(f, k)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Close implements objstore.Bucket.
func (b *Bucket) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.lockFD == nil {
		return nil
	}
	return b.lockFD.Close()
}
