package benchharness

// The backend a benchmark run measures: a bucket (and a metadata store),
// optionally behind an emulated network latency, with every request counted.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/counting"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
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
	bucket     *counting.Bucket // counting over the emulated latency (if any) over a fresh bucket
	meta       *counting.Meta
	bucketMeta bool // meta is a BucketStore in bucket under metabucket.DefaultPrefix
	close      func()
}

// open returns fresh connections to the backend, counting every request.
// The emulated latency is objstore/fault's, on a wrapper that keeps no
// copy of the writes (which would distort throughput and peak RSS).
func (e *benchEnv) open(ctx context.Context) (*stores, error) {
	b, err := e.base(ctx)
	if err != nil {
		return nil, err
	}
	var inner objstore.Bucket = b
	if e.latency > 0 || e.jitter > 0 {
		f := fault.WrapUntracked(b, 1)
		f.SetLatency(e.latency, e.jitter)
		inner = f
	}
	cb := counting.NewBucket(inner)
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
	cm := counting.NewMeta(m)
	cb.CountMeta(cm)
	return &stores{
		bucket:     cb,
		meta:       cm,
		bucketMeta: bucketMeta,
		close:      func() { m.Close(); b.Close() },
	}, nil
}

// Backend selects what a run measures; the zero Backend is a temporary
// file:// directory (fsync on every write) with the metadata in it.
type Backend struct {
	BucketURL     string // a bucket URL (file://, s3://, mem://...)
	MetaURL       string // a metadata store URL; "": records in the bucket
	Server        string // "versitygw": start versitygw and an embedded etcd, as the tests do
	Latency       string // emulated latency per request: "5ms", or a uniform range "20ms-60ms"
	DisableSha256 bool   // with Server: UNSIGNED-PAYLOAD instead of hashing bodies
	Versitygw     string // the versitygw binary (default: testserver.VersitygwBinary's)
	Keep          bool   // keep the temporary directories
}

// newBenchEnv sets up the backend o names; log receives the servers' logs.
func newBenchEnv(ctx context.Context, o Backend, log func(format string, args ...any)) (*benchEnv, error) {
	lat, jit, err := ParseLatency(o.Latency)
	if err != nil {
		return nil, err
	}
	env := &benchEnv{latency: lat, jitter: jit, close: func() {}}
	switch {
	case o.Server != "" && o.BucketURL != "":
		return nil, errors.New("bench: give --bucket or --server, not both")
	case o.Server == "versitygw":
		if o.MetaURL != "" {
			return nil, errors.New("bench: --server versitygw brings its own etcd; drop --meta")
		}
		if o.Versitygw != "" {
			os.Setenv("WOODPECKER_VERSITYGW", o.Versitygw)
		}
		t, err := testserver.NewProgramTB("woodpecker-bench", o.Keep, log)
		if err != nil {
			return nil, err
		}
		var (
			vgw    *testserver.S3Server
			etcd   *etcdserver.Server
			bucket string
		)
		if err := t.Run(func() {
			vgw = testserver.Versitygw(t)
			bucket = vgw.NewBucket(t)
			etcd = etcdserver.Start(t)
		}); err != nil {
			t.Close()
			return nil, fmt.Errorf("bench: start servers: %w", err)
		}
		cfg := vgw.Config(bucket, "")
		cfg.DisableContentSha256 = o.DisableSha256
		env.kind = "versitygw"
		if o.DisableSha256 {
			env.kind += " (unsigned)"
		}
		env.desc = fmt.Sprintf("versitygw %s (posix backend, no fsync) on %s, bucket %s", testserver.VersitygwVersion, vgw.Endpoint, bucket)
		env.metaDesc = "embedded etcd v3.7.3 (no fsync)"
		env.signing = "signed payloads (SHA-256)"
		if o.DisableSha256 {
			env.signing = "UNSIGNED-PAYLOAD"
		}
		env.base = func(ctx context.Context) (objstore.Bucket, error) { return s3.New(ctx, cfg) }
		env.metaStore = func(ctx context.Context) (meta.Store, error) {
			return etcdmeta.New(ctx, etcd.Config("bench"))
		}
		env.close = t.Close
	case o.Server != "":
		return nil, fmt.Errorf("bench: unknown --server %q (supported: versitygw)", o.Server)
	default:
		url := o.BucketURL
		if url == "" {
			dir, err := os.MkdirTemp("", "woodpecker-bench-")
			if err != nil {
				return nil, err
			}
			url = "file://" + dir
			if !o.Keep {
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
		if o.MetaURL != "" {
			env.metaDesc = redactURL(o.MetaURL)
			env.metaStore = func(ctx context.Context) (meta.Store, error) { return meta.Open(ctx, o.MetaURL) }
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

// ParseLatency parses "" (none), "5ms" (fixed) or "20ms-60ms" (uniform in
// the range) into a base delay and a jitter, as fault.Bucket.SetLatency takes
// them.
func ParseLatency(s string) (base, jitter time.Duration, err error) {
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
