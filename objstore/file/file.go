package file

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

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
}

// Bucket stores each object as a file under a root directory, the key
// being its relative path. It implements objstore.CASBucket.
//
// Durability: a write returns after the file and its directory (and any
// directory it created) are fsynced. PutIfAbsent writes a temporary file,
// fsyncs it, then link(2)s it to the final name, which fails atomically if the
// name exists, so a crash never leaves a torn object under a key. Put and
// PutIfMatch rename(2) a fsynced temporary file over the key.
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
	lockFD *os.File // nil when opened with NoCreate on a directory without one: no writes
	xattrs bool     // the filesystem stores user xattrs: ETags are random tokens

	// casMu serializes Put, PutIfMatch and Delete within the process; the
	// flock on lockFD serializes them across processes. Lock order: casMu,
	// then the flock.
	casMu sync.Mutex

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
	tmp := filepath.Join(root, fileTmpDir)
	if opts.NoCreate {
		return openFileNoCreate(root, tmp, opts)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("objstore: file bucket root: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("objstore: file bucket: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(tmp, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("objstore: file bucket lock: %w", err)
	}
	b := &Bucket{root: root, tmp: tmp, opts: opts, lockFD: lock}
	b.xattrs = unix.Fsetxattr(int(lock.Fd()), fileETagXattr, []byte("probe"), 0) == nil
	b.sweep()
	return b, nil
}

// openFileNoCreate opens an existing root without creating or removing
// anything. It uses the lock file when there is one (read-only when it may
// not be written, as for another user's bucket).
func openFileNoCreate(root, tmp string, opts Options) (*Bucket, error) {
	st, err := os.Stat(root)
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
	b := &Bucket{root: root, tmp: tmp, opts: opts}
	lockPath := filepath.Join(tmp, "lock")
	lock, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		lock, err = os.Open(lockPath)
	}
	switch {
	case err == nil:
		b.lockFD = lock
		var buf [8]byte
		_, xerr := unix.Fgetxattr(int(lock.Fd()), fileETagXattr, buf[:])
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
	ents, err := os.ReadDir(b.tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "tmp-") {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, "tmp-"), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || (pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH) {
			b.opts.Logger.Warn("objstore: removing leftover temporary file", "file", name)
			_ = os.Remove(filepath.Join(b.tmp, name))
		}
	}
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
	f, err := os.Open(p)
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
	f *os.File
}

func (r *fileReader) Close() error { return r.f.Close() }

// stat returns the info of an open object file.
func (b *Bucket) stat(f *os.File, key string) (objstore.ObjectInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return objstore.ObjectInfo{}, b.mapErr("stat", key, err)
	}
	if st.IsDir() {
		return objstore.ObjectInfo{}, fmt.Errorf("head %q: %w (a directory of other keys)", key, objstore.ErrNotFound)
	}
	info := objstore.ObjectInfo{Key: key, Size: st.Size()}
	var buf [64]byte
	if n, err := unix.Fgetxattr(int(f.Fd()), fileETagXattr, buf[:]); err == nil && n == 32 {
		info.ETag = string(buf[:n])
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
	f, err := os.Open(p)
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

// writeTemp writes r to a fsynced temporary file and records its MD5.
func (b *Bucket) writeTemp(r io.Reader, size int64) (name string, info objstore.ObjectInfo, err error) {
	f, err := os.CreateTemp(b.tmp, "tmp-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", objstore.ObjectInfo{}, err
	}
	name = f.Name()
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(name)
		}
	}()
	var n int64
	if b.xattrs {
		var tok [16]byte
		_, _ = rand.Read(tok[:])
		info.ETag = hex.EncodeToString(tok[:])
		if n, err = io.Copy(f, r); err == nil {
			err = unix.Fsetxattr(int(f.Fd()), fileETagXattr, []byte(info.ETag), 0)
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
		if err := f.Sync(); err != nil {
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
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// mkdirs creates the parent directories of p below the root, fsyncing each
// parent of a directory it created.
func (b *Bucket) mkdirs(p string, key string) error {
	dir := filepath.Dir(p)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return nil
	}
	rel, _ := filepath.Rel(b.root, dir)
	cur := b.root
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, c)
		err := os.Mkdir(next, 0o755)
		switch {
		case err == nil:
			if err := b.syncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			if st, serr := os.Stat(next); serr == nil && !st.IsDir() {
				conflict, _ := filepath.Rel(b.root, next)
				return fmt.Errorf("objstore: key %q: %q is an object, so it cannot also be a directory of keys", key, filepath.ToSlash(conflict))
			}
		default:
			return err
		}
		cur = next
	}
	return nil
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
	defer os.Remove(tmp)
	info.Key = key
	// A concurrent Delete may remove an emptied parent directory between
	// mkdirs and link; retry a few times.
	for attempt := 0; ; attempt++ {
		if err := b.mkdirs(p, key); err != nil {
			return objstore.ObjectInfo{}, err
		}
		err = os.Link(tmp, p)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) {
			if st, serr := os.Stat(p); serr == nil && st.IsDir() {
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
	for {
		err = unix.Flock(int(b.lockFD.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		b.casMu.Unlock()
		return nil, fmt.Errorf("objstore: file bucket lock: %w", err)
	}
	return func() {
		_ = unix.Flock(int(b.lockFD.Fd()), unix.LOCK_UN)
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
	defer os.Remove(tmp)
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
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: %s %q: the key is a directory of other keys", op, key)
	}
	if err := os.Rename(tmp, p); err != nil {
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
		f, err := os.Open(p)
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
	if st, err := os.Lstat(p); err == nil && st.IsDir() {
		return nil // a directory of other keys: no object under this key
	}
	if err := os.Remove(p); err != nil {
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
		if os.Remove(dir) != nil {
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
		start = filepath.Join(b.root, filepath.FromSlash(base))
	}
	var keys []string
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(b.root, path)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if path == b.root || path == start {
				return nil
			}
			if key == fileTmpDir {
				return fs.SkipDir
			}
			// Prune directories that cannot hold a matching key.
			if dk := key + "/"; !strings.HasPrefix(dk, opts.Prefix) && !strings.HasPrefix(opts.Prefix, dk) {
				return fs.SkipDir
			}
			return nil
		}
		if path == start && base != "" {
			return nil // base is an object, not a directory
		}
		if strings.HasPrefix(key, opts.Prefix) && key > opts.StartAfter {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: list %q: %w", opts.Prefix, err)
	}
	slices.Sort(keys)
	if opts.Limit > 0 && len(keys) > opts.Limit {
		keys = keys[:opts.Limit]
	}
	out := make([]objstore.ObjectInfo, 0, len(keys))
	for _, k := range keys {
		f, err := os.Open(filepath.Join(b.root, filepath.FromSlash(k)))
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
