package bucket

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// Store keeps each record as one object in a bucket, updated with
// conditional writes: Create uses If-None-Match: * (PutIfAbsent), Update and
// Delete use If-Match on the version, which is the object's ETag. It needs no
// server besides the bucket, which makes it the embedded default.
//
// # Layout
//
// The record for key K is the object "<prefix>/K/~". '~' cannot appear in a
// key, so no record object is ever a directory prefix of another key's object,
// which path-based stores (the file backend, versitygw) require.
//
// # meta.Record body
//
//	magic "wpmr" | format u8 = 1 | flags u8 (bit 0: tombstone) | reserved u16 = 0
//	| nonce [16]byte | crc32c u32 (Castagnoli, over everything before it and the value) | value
//
// Every write carries a fresh random 128-bit nonce, so two writes never
// produce the same bytes and therefore never the same ETag (single-part ETags
// are the MD5 of the body): a stale If-Match can never pass against a record
// rewritten with an identical value. (A strictly increasing counter would do
// the same but cost a read before every update.) The nonce also resolves
// ambiguous writes: a conditional PUT retried after its first attempt landed
// is answered 412, and reading back our own nonce proves it succeeded.
//
// # Deletion
//
// Delete replaces the record with a tombstone through If-Match and leaves it
// there: a tombstone reads as absent, and Create over it uses If-Match on the
// tombstone. Deleting the tombstone object with an unconditional DELETE (the
// only kind minio-go offers) could remove a record created over it meanwhile,
// so tombstones (about 30 bytes each) are kept.
//
// Watch is not supported; callers poll.
type Store struct {
	b      objstore.CASBucket
	prefix string
	closed atomic.Bool
	owned  objstore.Bucket // closed by Close when set (Open's bucket+ URLs)
}

// meta.Record body format constants: part of the stored format, never change.
const (
	recMagic      = "wpmr"
	recFormat     = 1
	recTombstone  = 1 << 0
	recHeaderSize = 4 + 1 + 1 + 2 + 16 + 4
	recLeaf       = "~"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// New returns a store keeping records under prefix in b, which
// must support conditional replacement (objstore.CASBucket). prefix may be
// empty. The store does not close b.
func New(b objstore.Bucket, prefix string) (*Store, error) {
	cb, ok := b.(objstore.CASBucket)
	if !ok {
		return nil, fmt.Errorf("meta: bucket store: %T does not support conditional replacement (If-Match)", b)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := objstore.ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("meta: bucket store prefix: %w", err)
		}
	}
	return &Store{b: cb, prefix: prefix}, nil
}

// enter validates key (when non-empty) and fails after Close.
func (s *Store) enter(key string) error {
	if s.closed.Load() {
		return meta.ErrClosed
	}
	return meta.ValidateKey(key)
}

func (s *Store) objKey(key string) string {
	if s.prefix == "" {
		return key + "/" + recLeaf
	}
	return s.prefix + "/" + key + "/" + recLeaf
}

type bucketRec struct {
	tombstone bool
	nonce     [16]byte
	value     []byte
}

func encodeRec(tombstone bool, value []byte) ([]byte, [16]byte) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	buf := make([]byte, recHeaderSize+len(value))
	copy(buf, recMagic)
	buf[4] = recFormat
	if tombstone {
		buf[5] = recTombstone
	}
	copy(buf[8:24], nonce[:])
	copy(buf[recHeaderSize:], value)
	crc := crc32.Update(crc32.Checksum(buf[:24], crcTable), crcTable, value)
	binary.LittleEndian.PutUint32(buf[24:28], crc)
	return buf, nonce
}

func decodeRec(key string, buf []byte) (bucketRec, error) {
	if len(buf) < recHeaderSize || string(buf[:4]) != recMagic {
		return bucketRec{}, fmt.Errorf("meta: record %q is corrupt: bad magic or %d-byte body", key, len(buf))
	}
	if buf[4] != recFormat {
		return bucketRec{}, fmt.Errorf("meta: record %q has unsupported format %d", key, buf[4])
	}
	want := binary.LittleEndian.Uint32(buf[24:28])
	got := crc32.Update(crc32.Checksum(buf[:24], crcTable), crcTable, buf[recHeaderSize:])
	if want != got {
		return bucketRec{}, fmt.Errorf("meta: record %q is corrupt: checksum %08x, stored %08x", key, got, want)
	}
	if buf[5]&^recTombstone != 0 || buf[6] != 0 || buf[7] != 0 {
		return bucketRec{}, fmt.Errorf("meta: record %q has unsupported flags %#x", key, buf[5:8])
	}
	r := bucketRec{tombstone: buf[5]&recTombstone != 0, value: buf[recHeaderSize:]}
	copy(r.nonce[:], buf[8:24])
	return r, nil
}

// read returns the stored record object (possibly a tombstone) and its ETag.
func (s *Store) read(ctx context.Context, key string) (bucketRec, string, error) {
	data, info, err := objstore.ReadAll(ctx, s.b, s.objKey(key))
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return bucketRec{}, "", fmt.Errorf("get %q: %w", key, meta.ErrNotFound)
		}
		return bucketRec{}, "", fmt.Errorf("meta: get %q: %w", key, err)
	}
	r, err := decodeRec(key, data)
	return r, info.ETag, err
}

// Get implements meta.Store.
func (s *Store) Get(ctx context.Context, key string) (meta.Record, error) {
	if err := s.enter(key); err != nil {
		return meta.Record{}, err
	}
	r, etag, err := s.read(ctx, key)
	if err != nil {
		return meta.Record{}, err
	}
	if r.tombstone {
		return meta.Record{}, fmt.Errorf("get %q: %w", key, meta.ErrNotFound)
	}
	return meta.Record{Key: key, Value: r.value, Version: meta.Version(etag)}, nil
}

// resolve decides an ambiguous conditional write by reading the record back:
// if it holds our nonce the write landed.
func (s *Store) resolve(ctx context.Context, key string, nonce [16]byte) (meta.Version, bool, error) {
	r, etag, err := s.read(ctx, key)
	if errors.Is(err, meta.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return meta.Version(etag), r.nonce == nonce, nil
}

// Create implements meta.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (meta.Version, error) {
	if err := s.enter(key); err != nil {
		return "", err
	}
	if err := meta.CheckValue(key, value); err != nil {
		return "", err
	}
	body, nonce := encodeRec(false, value)
	for {
		info, err := s.b.PutIfAbsent(ctx, s.objKey(key), body)
		if err == nil {
			return meta.Version(info.ETag), nil
		}
		if !errors.Is(err, objstore.ErrExists) {
			return "", fmt.Errorf("meta: create %q: %w", key, err)
		}
		// Something is there: our own landed retry, a live record or a
		// tombstone to create over.
		r, etag, err := s.read(ctx, key)
		if errors.Is(err, meta.ErrNotFound) {
			continue // deleted under us; try again
		}
		if err != nil {
			return "", err
		}
		if r.nonce == nonce {
			return meta.Version(etag), nil
		}
		if !r.tombstone {
			return "", fmt.Errorf("create %q: %w", key, meta.ErrExists)
		}
		info, err = s.b.PutIfMatch(ctx, s.objKey(key), body, etag)
		if err == nil {
			return meta.Version(info.ETag), nil
		}
		if !errors.Is(err, objstore.ErrPrecondition) {
			return "", fmt.Errorf("meta: create %q: %w", key, err)
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		// Lost a race over the tombstone (or our write landed): re-read.
	}
}

// cas replaces the record at version ver with body, resolving ambiguity.
func (s *Store) cas(ctx context.Context, op, key string, body []byte, nonce [16]byte, ver meta.Version) (meta.Version, error) {
	if ver == "" {
		return "", fmt.Errorf("%s %q: %w (empty version)", op, key, meta.ErrPrecondition)
	}
	info, err := s.b.PutIfMatch(ctx, s.objKey(key), body, string(ver))
	if err == nil {
		return meta.Version(info.ETag), nil
	}
	if !errors.Is(err, objstore.ErrPrecondition) {
		return "", fmt.Errorf("meta: %s %q: %w", op, key, err)
	}
	v, ours, rerr := s.resolve(ctx, key, nonce)
	if rerr != nil {
		return "", rerr
	}
	if ours {
		return v, nil
	}
	return "", fmt.Errorf("%s %q at version %q: %w", op, key, ver, meta.ErrPrecondition)
}

// Update implements meta.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, ver meta.Version) (meta.Version, error) {
	if err := s.enter(key); err != nil {
		return "", err
	}
	if err := meta.CheckValue(key, value); err != nil {
		return "", err
	}
	body, nonce := encodeRec(false, value)
	return s.cas(ctx, "update", key, body, nonce, ver)
}

// Delete implements meta.Store. It leaves a tombstone (see the type's doc).
func (s *Store) Delete(ctx context.Context, key string, ver meta.Version) error {
	if err := s.enter(key); err != nil {
		return err
	}
	body, nonce := encodeRec(true, nil)
	_, err := s.cas(ctx, "delete", key, body, nonce, ver)
	return err
}

// List implements meta.Store. It costs one LIST page per 1000 records and one GET
// per record.
func (s *Store) List(ctx context.Context, prefix string) ([]meta.Record, error) {
	if s.closed.Load() {
		return nil, meta.ErrClosed
	}
	if err := meta.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	base := ""
	if s.prefix != "" {
		base = s.prefix + "/"
	}
	var keys []string
	err := objstore.ListAll(ctx, s.b, base+prefix, 0, func(o objstore.ObjectInfo) error {
		k, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, base), "/"+recLeaf)
		if ok && strings.HasPrefix(k, prefix) && meta.ValidateKey(k) == nil {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("meta: list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	out := make([]meta.Record, 0, len(keys))
	for _, k := range keys {
		rec, err := s.Get(ctx, k)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// Close implements meta.Store. It closes the bucket only if Open opened it.
func (s *Store) Close() error {
	if s.closed.Swap(true) || s.owned == nil {
		return nil
	}
	return s.owned.Close()
}
