// Package counting wraps an objstore.Bucket and a meta.Store to count the
// requests made through them, for benchmarks: how many of each kind, the
// bytes they moved, and how many were in flight on average. It is the one
// counting wrapper of woodpecker's benchmarks (the woodpecker bench command
// and wal's go test benchmarks); emulated latency comes from
// objstore/fault (SetLatency on a WrapUntracked bucket).
package counting

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// Counts are the requests made through a Bucket (and the Meta linked to it)
// up to a moment: a Snapshot, or the difference of two (Sub).
type Counts struct {
	PutIfAbsent, Put, PutIfMatch, Get, Head, List, Delete int64

	PutBytes int64 // bytes sent by every PUT-class request
	GetBytes int64 // bytes read from Get bodies

	// DataPuts and DataPutBytes count PutIfAbsent calls under the data
	// prefix (SetDataPrefix: the WAL's fragments); DataGets and
	// DataGetBytes the Get calls there.
	DataPuts, DataPutBytes int64
	DataGets, DataGetBytes int64

	// MetaOps counts the requests to the linked metadata store (CountMeta).
	MetaOps int64

	// putSeconds and getSeconds integrate the number of PutIfAbsent and Get
	// calls in flight (a Get until its body is closed) over time, up to at.
	putSeconds, getSeconds float64
	at                     time.Time
}

// Puts is every billable write request (the PUT class on S3).
func (c Counts) Puts() int64 { return c.PutIfAbsent + c.Put + c.PutIfMatch }

// Sub returns the requests made between the snapshots o and c.
func (c Counts) Sub(o Counts) Counts {
	return Counts{
		PutIfAbsent: c.PutIfAbsent - o.PutIfAbsent, Put: c.Put - o.Put, PutIfMatch: c.PutIfMatch - o.PutIfMatch,
		Get: c.Get - o.Get, Head: c.Head - o.Head, List: c.List - o.List, Delete: c.Delete - o.Delete,
		PutBytes: c.PutBytes - o.PutBytes, GetBytes: c.GetBytes - o.GetBytes,
		DataPuts: c.DataPuts - o.DataPuts, DataPutBytes: c.DataPutBytes - o.DataPutBytes,
		DataGets: c.DataGets - o.DataGets, DataGetBytes: c.DataGetBytes - o.DataGetBytes,
		MetaOps: c.MetaOps - o.MetaOps,
	}
}

// PutsInFlight returns the mean number of PutIfAbsent calls in flight
// between the snapshots o and c.
func (c Counts) PutsInFlight(o Counts) float64 { return c.mean(o, c.putSeconds-o.putSeconds) }

// GetsInFlight returns the mean number of Get calls in flight (until their
// body is closed) between the snapshots o and c.
func (c Counts) GetsInFlight(o Counts) float64 { return c.mean(o, c.getSeconds-o.getSeconds) }

func (c Counts) mean(o Counts, area float64) float64 {
	d := c.at.Sub(o.at).Seconds()
	if d <= 0 {
		return 0
	}
	return area / d
}

// Bucket counts the requests made through it. It implements
// objstore.CASBucket; PutIfMatch fails when the wrapped bucket is not one.
type Bucket struct {
	objstore.Bucket
	dataPrefix                   atomic.Pointer[string]
	putIfAbsent, put, putIfMatch atomic.Int64
	get, head, list, del         atomic.Int64
	putBytes, getBytes           atomic.Int64
	dataPuts, dataPutBytes       atomic.Int64
	dataGets, dataGetBytes       atomic.Int64
	flight                       struct {
		sync.Mutex
		puts, gets       int       // PutIfAbsent and Get calls in flight
		putArea, getArea float64   // integrals of puts and gets over time, in seconds
		last             time.Time // when the areas were last brought up to date
	}
	meta atomic.Pointer[Meta]
}

var _ objstore.CASBucket = (*Bucket)(nil)

// NewBucket returns a counting wrapper of b.
func NewBucket(b objstore.Bucket) *Bucket { return &Bucket{Bucket: b} }

// SetDataPrefix makes PutIfAbsent and Get calls for keys under p count as
// data requests too (Counts.DataPuts, DataGets); "" counts none.
func (c *Bucket) SetDataPrefix(p string) { c.dataPrefix.Store(&p) }

// CountMeta makes Snapshot include m's requests (Counts.MetaOps).
func (c *Bucket) CountMeta(m *Meta) { c.meta.Store(m) }

// inFlight adds dp and dg to the numbers of PUTs and GETs in flight,
// first integrating them.
func (c *Bucket) inFlight(dp, dg int) (putArea, getArea float64, now time.Time) {
	f := &c.flight
	f.Lock()
	defer f.Unlock()
	now = time.Now()
	if !f.last.IsZero() {
		dt := now.Sub(f.last).Seconds()
		f.putArea += float64(f.puts) * dt
		f.getArea += float64(f.gets) * dt
	}
	f.last = now
	f.puts += dp
	f.gets += dg
	return f.putArea, f.getArea, now
}

// Snapshot returns the counts so far.
func (c *Bucket) Snapshot() Counts {
	putArea, getArea, now := c.inFlight(0, 0)
	r := Counts{
		putSeconds: putArea, getSeconds: getArea, at: now,
		PutIfAbsent: c.putIfAbsent.Load(), Put: c.put.Load(), PutIfMatch: c.putIfMatch.Load(),
		Get: c.get.Load(), Head: c.head.Load(), List: c.list.Load(), Delete: c.del.Load(),
		PutBytes: c.putBytes.Load(), GetBytes: c.getBytes.Load(),
		DataPuts: c.dataPuts.Load(), DataPutBytes: c.dataPutBytes.Load(),
		DataGets: c.dataGets.Load(), DataGetBytes: c.dataGetBytes.Load(),
	}
	if m := c.meta.Load(); m != nil {
		r.MetaOps = m.Ops()
	}
	return r
}

func (c *Bucket) isData(key string) bool {
	p := c.dataPrefix.Load()
	return p != nil && *p != "" && strings.HasPrefix(key, *p)
}

// PutIfAbsent implements objstore.Bucket.
func (c *Bucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	c.putIfAbsent.Add(1)
	c.putBytes.Add(int64(len(data)))
	if c.isData(key) {
		c.dataPuts.Add(1)
		c.dataPutBytes.Add(int64(len(data)))
	}
	c.inFlight(1, 0)
	defer c.inFlight(-1, 0)
	return c.Bucket.PutIfAbsent(ctx, key, data)
}

// Put implements objstore.Bucket.
func (c *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	c.put.Add(1)
	if size > 0 {
		c.putBytes.Add(size)
	}
	return c.Bucket.Put(ctx, key, r, size)
}

// PutIfMatch implements objstore.CASBucket.
func (c *Bucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	cb, ok := c.Bucket.(objstore.CASBucket)
	if !ok {
		return objstore.ObjectInfo{}, fmt.Errorf("counting: %T does not support PutIfMatch", c.Bucket)
	}
	c.putIfMatch.Add(1)
	c.putBytes.Add(int64(len(data)))
	return cb.PutIfMatch(ctx, key, data, etag)
}

// Get implements objstore.Bucket; the body's bytes are counted as they are
// read, and the call stays in flight until the body is closed.
func (c *Bucket) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	c.get.Add(1)
	data := c.isData(key)
	if data {
		c.dataGets.Add(1)
	}
	c.inFlight(0, 1)
	rc, info, err := c.Bucket.Get(ctx, key, off, length)
	if err != nil {
		c.inFlight(0, -1)
		return rc, info, err
	}
	cr := &reader{ReadCloser: rc, n: &c.getBytes, done: func() { c.inFlight(0, -1) }}
	if data {
		cr.data = &c.dataGetBytes
	}
	return cr, info, nil
}

// Head implements objstore.Bucket.
func (c *Bucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	c.head.Add(1)
	return c.Bucket.Head(ctx, key)
}

// List implements objstore.Bucket.
func (c *Bucket) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	c.list.Add(1)
	return c.Bucket.List(ctx, opts)
}

// Delete implements objstore.Bucket.
func (c *Bucket) Delete(ctx context.Context, key string) error {
	c.del.Add(1)
	return c.Bucket.Delete(ctx, key)
}

type reader struct {
	io.ReadCloser
	n, data *atomic.Int64
	done    func()
	once    sync.Once
}

func (r *reader) Close() error {
	r.once.Do(r.done)
	return r.ReadCloser.Close()
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	if r.data != nil {
		r.data.Add(int64(n))
	}
	return n, err
}

// Meta counts the requests made through it (for an external store; a
// store kept in a counted bucket has its requests counted there as well).
type Meta struct {
	meta.Store
	ops atomic.Int64
}

// NewMeta returns a counting wrapper of m.
func NewMeta(m meta.Store) *Meta { return &Meta{Store: m} }

// Ops returns the number of requests so far.
func (m *Meta) Ops() int64 { return m.ops.Load() }

// Get implements meta.Store.
func (m *Meta) Get(ctx context.Context, key string) (meta.Record, error) {
	m.ops.Add(1)
	return m.Store.Get(ctx, key)
}

// Create implements meta.Store.
func (m *Meta) Create(ctx context.Context, key string, value []byte) (meta.Version, error) {
	m.ops.Add(1)
	return m.Store.Create(ctx, key, value)
}

// Update implements meta.Store.
func (m *Meta) Update(ctx context.Context, key string, value []byte, ver meta.Version) (meta.Version, error) {
	m.ops.Add(1)
	return m.Store.Update(ctx, key, value, ver)
}

// Delete implements meta.Store.
func (m *Meta) Delete(ctx context.Context, key string, ver meta.Version) error {
	m.ops.Add(1)
	return m.Store.Delete(ctx, key, ver)
}

// List implements meta.Store.
func (m *Meta) List(ctx context.Context, prefix string) ([]meta.Record, error) {
	m.ops.Add(1)
	return m.Store.List(ctx, prefix)
}
