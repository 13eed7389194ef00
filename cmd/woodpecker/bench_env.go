package main

// The backend a benchmark run measures: a bucket (and a metadata store),
// optionally behind an emulated network latency, with every request counted.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
	"github.com/woodpecker-wal/woodpecker/objstore"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/objstore/s3"
)

// benchEnv is one backend. open returns fresh connections to it each time
// (the recovery step opens a cold client on new ones).
type benchEnv struct {
	kind     string // short name of the backend, for titles
	desc     string // the bucket, for the report
	metaDesc string // the metadata store, for the report
	signing  string // S3 payload signing, "" when not S3

	// base opens the bucket as it is, without emulated latency or counting;
	// used for setup and cleanup.
	base func(ctx context.Context) (objstore.Bucket, error)
	// metaStore opens the external metadata store, or returns nil when the
	// metadata lives in the bucket (metabucket.Store over the measured
	// bucket, so its requests get the latency and are counted).
	metaStore func(ctx context.Context) (meta.Store, error)

	latency, jitter time.Duration // emulated per request; zero: none

	close func() // stops servers and removes temporary directories
}

// stores is one opened set of connections to the backend.
type stores struct {
	bucket     *countingBucket // latency (if any) + counting over a fresh bucket
	meta       *countingMeta
	bucketMeta bool // meta is a BucketStore in bucket under metabucket.DefaultPrefix
	close      func()
}

// open returns fresh connections to the backend, counting every request.
func (e *benchEnv) open(ctx context.Context) (*stores, error) {
	b, err := e.base(ctx)
	if err != nil {
		return nil, err
	}
	var inner objstore.Bucket = b
	if e.latency > 0 || e.jitter > 0 {
		inner = newLatencyBucket(b, e.latency, e.jitter)
	}
	cb := &countingBucket{Bucket: inner}
	m, err := e.metaStore(ctx)
	if err != nil {
		b.Close()
		return nil, err
	}
	bucketMeta := m == nil
	if bucketMeta {
		if m, err = metabucket.New(cb, metabucket.DefaultPrefix); err != nil {
			b.Close()
			return nil, err
		}
	}
	cm := &countingMeta{Store: m}
	cb.metaOps = &cm.ops
	return &stores{
		bucket:     cb,
		meta:       cm,
		bucketMeta: bucketMeta,
		close:      func() { m.Close(); b.Close() },
	}, nil
}

// benchBackendOptions select the backend.
type benchBackendOptions struct {
	bucketURL     string
	metaURL       string
	server        string
	latency       string
	disableSha256 bool
	versitygw     string
	keep          bool
	log           func(format string, args ...any)
}

// newBenchEnv sets up the backend the options name.
func newBenchEnv(ctx context.Context, o benchBackendOptions) (*benchEnv, error) {
	lat, jit, err := parseLatency(o.latency)
	if err != nil {
		return nil, err
	}
	env := &benchEnv{latency: lat, jitter: jit, close: func() {}}
	switch {
	case o.server != "" && o.bucketURL != "":
		return nil, errors.New("bench: give --bucket or --server, not both")
	case o.server == "versitygw":
		if o.metaURL != "" {
			return nil, errors.New("bench: --server versitygw brings its own etcd; drop --meta")
		}
		if o.versitygw != "" {
			os.Setenv("WOODPECKER_VERSITYGW", o.versitygw)
		}
		t, err := newCLITB(o.keep, o.log)
		if err != nil {
			return nil, err
		}
		var (
			vgw    *testserver.S3Server
			etcd   *testserver.EtcdServer
			bucket string
		)
		if err := t.run(func() {
			vgw = testserver.Versitygw(t)
			bucket = vgw.NewBucket(t)
			etcd = testserver.Etcd(t)
		}); err != nil {
			t.close()
			return nil, fmt.Errorf("bench: start servers: %w", err)
		}
		cfg := vgw.Config(bucket, "")
		cfg.DisableContentSha256 = o.disableSha256
		env.kind = "versitygw"
		if o.disableSha256 {
			env.kind += " (unsigned)"
		}
		env.desc = fmt.Sprintf("versitygw %s (posix backend, no fsync) on %s, bucket %s", testserver.VersitygwVersion, vgw.Endpoint, bucket)
		env.metaDesc = "embedded etcd v3.7.3 (no fsync)"
		env.signing = "signed payloads (SHA-256)"
		if o.disableSha256 {
			env.signing = "UNSIGNED-PAYLOAD"
		}
		env.base = func(ctx context.Context) (objstore.Bucket, error) { return s3.New(ctx, cfg) }
		env.metaStore = func(ctx context.Context) (meta.Store, error) {
			return etcdmeta.New(ctx, etcd.Config("bench"))
		}
		env.close = t.close
	case o.server != "":
		return nil, fmt.Errorf("bench: unknown --server %q (supported: versitygw)", o.server)
	default:
		url := o.bucketURL
		if url == "" {
			dir, err := os.MkdirTemp("", "woodpecker-bench-")
			if err != nil {
				return nil, err
			}
			url = "file://" + dir
			if !o.keep {
				env.close = func() { os.RemoveAll(dir) }
			}
		}
		env.desc = redactURL(url)
		env.kind, _, _ = strings.Cut(url, ":")
		if strings.HasPrefix(url, "file://") {
			env.desc += fsyncNote(url)
			if strings.Contains(url, "nosync=true") {
				env.kind += ", no fsync"
			}
		}
		if strings.HasPrefix(url, "s3://") {
			env.signing = "as the URL says (disable_sha256)"
		}
		env.base = func(ctx context.Context) (objstore.Bucket, error) { return objstore.Open(ctx, url) }
		if url == "mem://" { // one in-memory bucket, shared by every connection
			mem := objmem.New()
			env.base = func(context.Context) (objstore.Bucket, error) { return noClose{mem}, nil }
			env.metaDesc = "records in the bucket (metabucket.Store)"
		}
		if o.metaURL != "" {
			env.metaDesc = redactURL(o.metaURL)
			env.metaStore = func(ctx context.Context) (meta.Store, error) { return meta.Open(ctx, o.metaURL) }
		} else {
			env.metaDesc = "records in the bucket (metabucket.Store, conditional writes)"
			env.metaStore = func(context.Context) (meta.Store, error) { return nil, nil }
		}
	}
	return env, nil
}

// noClose shares one bucket between connections: Close does nothing.
type noClose struct{ *objmem.Bucket }

func (noClose) Close() error { return nil }

func fsyncNote(url string) string {
	if strings.Contains(url, "nosync=true") {
		return " (no fsync)"
	}
	return " (fsync on every write)"
}

// redactURL drops query parameters, which may hold credentials.
func redactURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// parseLatency parses "" (none), "5ms" (fixed) or "20ms-60ms" (uniform in
// the range) into a base delay and a jitter, as fault.Bucket.SetLatency takes
// them.
func parseLatency(s string) (base, jitter time.Duration, err error) {
	if s == "" {
		return 0, 0, nil
	}
	lo, hi, ranged := strings.Cut(s, "-")
	base, err = time.ParseDuration(lo)
	if err != nil || base < 0 {
		return 0, 0, fmt.Errorf("bench: --latency %q: want a duration like 5ms or a range like 20ms-60ms", s)
	}
	if !ranged {
		return base, 0, nil
	}
	top, err := time.ParseDuration(hi)
	if err != nil || top < base {
		return 0, 0, fmt.Errorf("bench: --latency %q: want a range like 20ms-60ms (low <= high)", s)
	}
	return base, top - base, nil
}

// latencyBucket delays every request by base plus a uniform random
// [0, jitter), like objstore/fault's SetLatency. It is not fault.Bucket
// because that wrapper keeps a copy of every write that landed, for its
// crash view: one extra copy of every fragment and memory growing with all
// the data a run writes, which would distort throughput and peak RSS.
type latencyBucket struct {
	objstore.Bucket
	base, jitter time.Duration
	mu           sync.Mutex
	rng          *rand.Rand
}

func newLatencyBucket(b objstore.Bucket, base, jitter time.Duration) *latencyBucket {
	return &latencyBucket{Bucket: b, base: base, jitter: jitter, rng: rand.New(rand.NewPCG(1, 2))}
}

func (l *latencyBucket) wait(ctx context.Context) error {
	d := l.base
	if l.jitter > 0 {
		l.mu.Lock()
		d += time.Duration(l.rng.Int64N(int64(l.jitter)))
		l.mu.Unlock()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *latencyBucket) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	if err := l.wait(ctx); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	return l.Bucket.Get(ctx, key, off, length)
}

func (l *latencyBucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := l.wait(ctx); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return l.Bucket.Head(ctx, key)
}

func (l *latencyBucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	if err := l.wait(ctx); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return l.Bucket.PutIfAbsent(ctx, key, data)
}

func (l *latencyBucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	if err := l.wait(ctx); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return l.Bucket.Put(ctx, key, r, size)
}

func (l *latencyBucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	cb, ok := l.Bucket.(objstore.CASBucket)
	if !ok {
		return objstore.ObjectInfo{}, fmt.Errorf("bench: %T does not support PutIfMatch", l.Bucket)
	}
	if err := l.wait(ctx); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return cb.PutIfMatch(ctx, key, data, etag)
}

func (l *latencyBucket) Delete(ctx context.Context, key string) error {
	if err := l.wait(ctx); err != nil {
		return err
	}
	return l.Bucket.Delete(ctx, key)
}

func (l *latencyBucket) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	if err := l.wait(ctx); err != nil {
		return nil, err
	}
	return l.Bucket.List(ctx, opts)
}

// reqCounts are request counters of a bucket and a metadata store.
type reqCounts struct {
	putIfAbsent, put, putIfMatch, get, head, list, del int64
	putBytes, getBytes                                 int64
	dataPuts, dataPutBytes                             int64 // PutIfAbsent under the data prefix (fragments)
	dataGets, dataGetBytes                             int64 // Get under the data prefix (fragments)
	metaOps                                            int64 // external metadata store requests (etcd)

	// putSeconds integrates the number of PutIfAbsent calls in flight over
	// time, up to at: over an interval, its difference divided by the
	// interval's length is the mean number of PUTs in flight.
	putSeconds, getSeconds float64
	at                     time.Time
}

// putsInFlight returns the mean number of PutIfAbsent calls in flight
// between o and c.
func (c reqCounts) putsInFlight(o reqCounts) float64 {
	d := c.at.Sub(o.at).Seconds()
	if d <= 0 {
		return 0
	}
	return (c.putSeconds - o.putSeconds) / d
}

// getsInFlight returns the mean number of Get calls in flight (until their
// body is closed) between o and c.
func (c reqCounts) getsInFlight(o reqCounts) float64 {
	d := c.at.Sub(o.at).Seconds()
	if d <= 0 {
		return 0
	}
	return (c.getSeconds - o.getSeconds) / d
}

// puts is every billable write request (PUT class on S3).
func (c reqCounts) puts() int64 { return c.putIfAbsent + c.put + c.putIfMatch }

func (c reqCounts) sub(o reqCounts) reqCounts {
	return reqCounts{
		putIfAbsent: c.putIfAbsent - o.putIfAbsent, put: c.put - o.put, putIfMatch: c.putIfMatch - o.putIfMatch,
		get: c.get - o.get, head: c.head - o.head, list: c.list - o.list, del: c.del - o.del,
		putBytes: c.putBytes - o.putBytes, getBytes: c.getBytes - o.getBytes,
		dataPuts: c.dataPuts - o.dataPuts, dataPutBytes: c.dataPutBytes - o.dataPutBytes,
		dataGets: c.dataGets - o.dataGets, dataGetBytes: c.dataGetBytes - o.dataGetBytes,
		metaOps: c.metaOps - o.metaOps,
	}
}

// countingBucket counts the requests made through it, as wal's benchmarks
// do. PutIfAbsent calls under dataPrefix are also counted as data
// (fragment) PUTs.
type countingBucket struct {
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
	metaOps *atomic.Int64 // the countingMeta's, when linked
}

func (c *countingBucket) setDataPrefix(p string) { c.dataPrefix.Store(&p) }

// inFlight adds dp and dg to the numbers of PUTs and GETs in flight,
// first integrating them.
func (c *countingBucket) inFlight(dp, dg int) (putArea, getArea float64, now time.Time) {
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

func (c *countingBucket) snapshot() reqCounts {
	putArea, getArea, now := c.inFlight(0, 0)
	r := reqCounts{
		putSeconds: putArea, getSeconds: getArea, at: now,
		putIfAbsent: c.putIfAbsent.Load(), put: c.put.Load(), putIfMatch: c.putIfMatch.Load(),
		get: c.get.Load(), head: c.head.Load(), list: c.list.Load(), del: c.del.Load(),
		putBytes: c.putBytes.Load(), getBytes: c.getBytes.Load(),
		dataPuts: c.dataPuts.Load(), dataPutBytes: c.dataPutBytes.Load(),
		dataGets: c.dataGets.Load(), dataGetBytes: c.dataGetBytes.Load(),
	}
	if c.metaOps != nil {
		r.metaOps = c.metaOps.Load()
	}
	return r
}

func (c *countingBucket) isData(key string) bool {
	p := c.dataPrefix.Load()
	return p != nil && *p != "" && strings.HasPrefix(key, *p)
}

func (c *countingBucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
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

func (c *countingBucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	c.put.Add(1)
	if size > 0 {
		c.putBytes.Add(size)
	}
	return c.Bucket.Put(ctx, key, r, size)
}

func (c *countingBucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	cb, ok := c.Bucket.(objstore.CASBucket)
	if !ok {
		return objstore.ObjectInfo{}, fmt.Errorf("bench: %T does not support PutIfMatch", c.Bucket)
	}
	c.putIfMatch.Add(1)
	c.putBytes.Add(int64(len(data)))
	return cb.PutIfMatch(ctx, key, data, etag)
}

func (c *countingBucket) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
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
	cr := &countingReader{ReadCloser: rc, n: &c.getBytes, done: func() { c.inFlight(0, -1) }}
	if data {
		cr.data = &c.dataGetBytes
	}
	return cr, info, nil
}

func (c *countingBucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	c.head.Add(1)
	return c.Bucket.Head(ctx, key)
}

func (c *countingBucket) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	c.list.Add(1)
	return c.Bucket.List(ctx, opts)
}

func (c *countingBucket) Delete(ctx context.Context, key string) error {
	c.del.Add(1)
	return c.Bucket.Delete(ctx, key)
}

type countingReader struct {
	io.ReadCloser
	n, data *atomic.Int64
	done    func()
	once    sync.Once
}

func (r *countingReader) Close() error {
	r.once.Do(r.done)
	return r.ReadCloser.Close()
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	if r.data != nil {
		r.data.Add(int64(n))
	}
	return n, err
}

// countingMeta counts metadata requests (for an external store; a
// BucketStore's requests are counted by the bucket under it as well).
type countingMeta struct {
	meta.Store
	ops atomic.Int64
}

func (m *countingMeta) Get(ctx context.Context, key string) (meta.Record, error) {
	m.ops.Add(1)
	return m.Store.Get(ctx, key)
}

func (m *countingMeta) Create(ctx context.Context, key string, value []byte) (meta.Version, error) {
	m.ops.Add(1)
	return m.Store.Create(ctx, key, value)
}

func (m *countingMeta) Update(ctx context.Context, key string, value []byte, ver meta.Version) (meta.Version, error) {
	m.ops.Add(1)
	return m.Store.Update(ctx, key, value, ver)
}

func (m *countingMeta) Delete(ctx context.Context, key string, ver meta.Version) error {
	m.ops.Add(1)
	return m.Store.Delete(ctx, key, ver)
}

func (m *countingMeta) List(ctx context.Context, prefix string) ([]meta.Record, error) {
	m.ops.Add(1)
	return m.Store.List(ctx, prefix)
}

// cliTB lets the command start the servers of internal/testserver, which
// take a testing.TB: it implements the methods those helpers call. Fatal
// panics with tbFatal, which run turns into an error; Cleanup functions run
// on close, in reverse order; TempDir makes directories under one root that
// close removes. Any other testing.TB method panics (nil embedded TB).
type cliTB struct {
	testing.TB
	root string
	keep bool
	log  func(format string, args ...any)

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

type tbFatal struct{ msg string }

func newCLITB(keep bool, log func(string, ...any)) (*cliTB, error) {
	root, err := os.MkdirTemp("", "woodpecker-bench-servers-")
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = func(string, ...any) {}
	}
	return &cliTB{root: root, keep: keep, log: log}, nil
}

// run calls fn, turning a Fatal inside it into an error.
func (t *cliTB) run(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(tbFatal)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
	}()
	fn()
	return nil
}

func (t *cliTB) close() {
	t.mu.Lock()
	fns := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	if !t.keep {
		os.RemoveAll(t.root)
	}
}

func (t *cliTB) Helper()      {}
func (t *cliTB) Name() string { return "woodpecker-bench" }
func (t *cliTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *cliTB) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}

func (t *cliTB) TempDir() string {
	d, err := os.MkdirTemp(t.root, "srv-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	return d
}

func (t *cliTB) Logf(format string, args ...any) { t.log(format, args...) }
func (t *cliTB) Log(args ...any)                 { t.log("%s", fmt.Sprint(args...)) }

func (t *cliTB) Errorf(format string, args ...any) {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	t.log(format, args...)
}

func (t *cliTB) Fatalf(format string, args ...any) {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	panic(tbFatal{fmt.Sprintf(format, args...)})
}

func (t *cliTB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }

// usage is the process's CPU time and heap allocation count at a moment.
type usage struct {
	at     time.Time
	cpu    time.Duration // user + system, every thread of the process
	allocs uint64        // heap objects allocated since the process started
	faults int64         // minor page faults of the process
}

func readUsage() usage {
	u := usage{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		u.faults = ru.Minflt
	}
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		u.allocs = s[0].Value.Uint64()
	}
	return u
}

// cores returns the CPU cores the process used on average since o.
func (u usage) cores(o usage) float64 {
	d := u.at.Sub(o.at).Seconds()
	if d <= 0 {
		return 0
	}
	return (u.cpu - o.cpu).Seconds() / d
}
