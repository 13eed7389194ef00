package mem

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// Bucket is an in-memory objstore.Bucket for unit and property tests. It implements
// objstore.CASBucket. ETags are the hex MD5 of the content, as on S3. It is safe for
// concurrent use; nothing survives the process.
type Bucket struct {
	mu struct {
		sync.Mutex
		objs   map[string]memObject // guarded by mu
		keys   []string             // sorted keys of objs; guarded by mu
		closed bool                 // guarded by mu
	}
}

type memObject struct {
	data []byte
	etag string
}

var _ objstore.CASBucket = (*Bucket)(nil)

// New returns an empty in-memory bucket.
func New() *Bucket {
	b := &Bucket{}
	b.mu.objs = make(map[string]memObject)
	return b
}

func etagOf(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

func (b *Bucket) check(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.mu.closed {
		return objstore.ErrClosed
	}
	return objstore.ValidateKey(key)
}

// Get implements objstore.Bucket. The returned reader reads a private copy.
func (b *Bucket) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(ctx, key); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	o, ok := b.mu.objs[key]
	if !ok {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("get %q: %w", key, objstore.ErrNotFound)
	}
	info := objstore.ObjectInfo{Key: key, Size: int64(len(o.data)), ETag: o.etag}
	if off < 0 {
		return nil, info, fmt.Errorf("objstore: get %q: negative offset %d", key, off)
	}
	data := sliceRange(o.data, off, length)
	return io.NopCloser(bytes.NewReader(bytes.Clone(data))), info, nil
}

// sliceRange returns data[off:off+length] clamped to data, length < 0 meaning
// to the end.
func sliceRange(data []byte, off, length int64) []byte {
	n := int64(len(data))
	if off >= n {
		return nil
	}
	end := n
	if length >= 0 && off+length < n {
		end = off + length
	}
	return data[off:end]
}

// Head implements objstore.Bucket.
func (b *Bucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(ctx, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	o, ok := b.mu.objs[key]
	if !ok {
		return objstore.ObjectInfo{}, fmt.Errorf("head %q: %w", key, objstore.ErrNotFound)
	}
	return objstore.ObjectInfo{Key: key, Size: int64(len(o.data)), ETag: o.etag}, nil
}

func (b *Bucket) store(key string, data []byte) objstore.ObjectInfo {
	if _, ok := b.mu.objs[key]; !ok {
		i, _ := slices.BinarySearch(b.mu.keys, key)
		b.mu.keys = slices.Insert(b.mu.keys, i, key)
	}
	o := memObject{data: data, etag: etagOf(data)}
	b.mu.objs[key] = o
	return objstore.ObjectInfo{Key: key, Size: int64(len(data)), ETag: o.etag}
}

// PutIfAbsent implements objstore.Bucket.
func (b *Bucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(ctx, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	if _, ok := b.mu.objs[key]; ok {
		return objstore.ObjectInfo{}, fmt.Errorf("put-if-absent %q: %w", key, objstore.ErrExists)
	}
	return b.store(key, bytes.Clone(data)), nil
}

// PutIfMatch implements objstore.CASBucket.
func (b *Bucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(ctx, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	if o, ok := b.mu.objs[key]; !ok || o.etag != etag {
		return objstore.ObjectInfo{}, fmt.Errorf("put-if-match %q: %w", key, objstore.ErrPrecondition)
	}
	return b.store(key, bytes.Clone(data)), nil
}

// Put implements objstore.Bucket.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	data, err := readSized(r, size)
	if err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: put %q: %w", key, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(ctx, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return b.store(key, data), nil
}

// readSized reads r fully, checking it holds exactly size bytes when size >= 0.
func readSized(r io.Reader, size int64) ([]byte, error) {
	if size < 0 {
		return io.ReadAll(r)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("reading %d bytes: %w", size, err)
	}
	var one [1]byte
	if n, _ := r.Read(one[:]); n > 0 {
		return nil, fmt.Errorf("reader holds more than the declared %d bytes", size)
	}
	return data, nil
}

// Delete implements objstore.Bucket.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(ctx, key); err != nil {
		return err
	}
	if _, ok := b.mu.objs[key]; ok {
		delete(b.mu.objs, key)
		i, _ := slices.BinarySearch(b.mu.keys, key)
		b.mu.keys = slices.Delete(b.mu.keys, i, i+1)
	}
	return nil
}

// List implements objstore.Bucket.
func (b *Bucket) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.mu.closed {
		return nil, objstore.ErrClosed
	}
	start := sort.SearchStrings(b.mu.keys, opts.Prefix)
	if opts.StartAfter >= opts.Prefix {
		start = sort.Search(len(b.mu.keys), func(i int) bool { return b.mu.keys[i] > opts.StartAfter })
	}
	var out []objstore.ObjectInfo
	for _, k := range b.mu.keys[start:] {
		if len(k) < len(opts.Prefix) || k[:len(opts.Prefix)] != opts.Prefix {
			break
		}
		o := b.mu.objs[k]
		out = append(out, objstore.ObjectInfo{Key: k, Size: int64(len(o.data)), ETag: o.etag})
		if opts.Limit > 0 && len(out) == opts.Limit {
			break
		}
	}
	return out, nil
}

// Clone returns an independent copy of the bucket's current contents.
func (b *Bucket) Clone() *Bucket {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := New()
	for k, o := range b.mu.objs {
		c.mu.objs[k] = o // data is never mutated in place
	}
	c.mu.keys = slices.Clone(b.mu.keys)
	return c
}

// Close implements objstore.Bucket.
func (b *Bucket) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.closed = true
	return nil
}
