package bucket_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/metasuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/meta/bucket"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/objstore/s3"
)

func newBucketStore(t testing.TB, b objstore.Bucket, prefix string) *bucket.Store {
	t.Helper()
	s, err := bucket.New(b, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBucketStoreOnMemConformance(t *testing.T) {
	metasuite.TestMetaStore(t, func(t testing.TB) meta.Store {
		return newBucketStore(t, objmem.New(), "deploy/meta")
	}, conformance.Options{Checks: 100})
}

func TestBucketStoreOnFileConformance(t *testing.T) {
	metasuite.TestMetaStore(t, func(t testing.TB) meta.Store {
		b, err := file.New(t.TempDir(), file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return newBucketStore(t, b, "")
	}, conformance.Options{Checks: 30})
}

// noCAS hides PutIfMatch.
type noCAS struct{ objstore.Bucket }

func TestBucketStoreNeedsCAS(t *testing.T) {
	_, err := bucket.New(noCAS{objmem.New()}, "")
	if err == nil || !strings.Contains(err.Error(), "If-Match") {
		t.Fatalf("NewBucketStore without CAS = %v", err)
	}
}

// TestBucketStoreDetectsCorruption: a flipped bit in a record object is an
// error naming the record, never a value.
func TestBucketStoreDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	b := objmem.New()
	s := newBucketStore(t, b, "p")
	if _, err := s.Create(ctx, "logs/x", []byte("the value")); err != nil {
		t.Fatal(err)
	}
	raw, _, err := objstore.ReadAll(ctx, b, "p/logs/x/~")
	if err != nil {
		t.Fatal(err)
	}
	for bit := 0; bit < len(raw)*8; bit++ {
		c := append([]byte(nil), raw...)
		c[bit/8] ^= 1 << (bit % 8)
		if _, err := b.Put(ctx, "p/logs/x/~", strings.NewReader(string(c)), int64(len(c))); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Get(ctx, "logs/x")
		if err == nil {
			t.Fatalf("bit %d flipped: Get returned %q without error", bit, rec.Value)
		}
		if !strings.Contains(err.Error(), "logs/x") {
			t.Fatalf("bit %d: error %q does not name the record", bit, err)
		}
	}
}

// TestBucketStoreResolvesAmbiguousWrites: a conditional PUT that landed but
// was answered with a precondition failure (minio-go retrying after a lost
// reply) is recognised as our own write by its nonce.
func TestBucketStoreResolvesAmbiguousWrites(t *testing.T) {
	ctx := context.Background()
	b := &landedButFailed{CASBucket: objmem.New()}
	s := newBucketStore(t, b, "")
	v, err := s.Create(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatalf("Create whose PUT landed but answered ErrExists: %v", err)
	}
	v2, err := s.Update(ctx, "k", []byte("2"), v)
	if err != nil {
		t.Fatalf("Update whose PUT landed but answered ErrPrecondition: %v", err)
	}
	rec, err := s.Get(ctx, "k")
	if err != nil || string(rec.Value) != "2" || rec.Version != v2 {
		t.Fatalf("Get = %+v, %v", rec, err)
	}
	if err := s.Delete(ctx, "k", v2); err != nil {
		t.Fatalf("Delete whose PUT landed but answered ErrPrecondition: %v", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
}

// landedButFailed applies every conditional write, then reports it failed
// the way a retried request would.
type landedButFailed struct{ objstore.CASBucket }

func (b *landedButFailed) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	if _, err := b.CASBucket.PutIfAbsent(ctx, key, data); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return objstore.ObjectInfo{}, objstore.ErrExists
}

func (b *landedButFailed) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	if _, err := b.CASBucket.PutIfMatch(ctx, key, data, etag); err != nil {
		return objstore.ObjectInfo{}, err
	}
	return objstore.ObjectInfo{}, objstore.ErrPrecondition
}

func TestBucketStoreOnVersitygwConformance(t *testing.T) {
	srv := testserver.Versitygw(t)
	metasuite.TestMetaStore(t, func(t testing.TB) meta.Store {
		b, err := s3.New(context.Background(), srv.Config(srv.NewBucket(t), "deploy"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return newBucketStore(t, b, "meta")
	}, conformance.Options{Checks: 10})
}
