package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// Bucket is an objstore.Bucket on an S3-compatible object store, through minio-go.
// It implements objstore.CASBucket.
//
// # Concurrency
//
// An Bucket is safe for concurrent use by multiple goroutines; requests run
// in parallel over a pool of HTTP connections.
//
// # Errors
//
//   - objstore.ErrNotFound: Get/Head of a missing key (404 NoSuchKey).
//   - objstore.ErrExists: PutIfAbsent answered 412 PreconditionFailed.
//   - objstore.ErrPrecondition: PutIfMatch answered 412, or 404 (versitygw and AWS
//     answer 404 to If-Match on a missing key, gofakes3 412).
//   - objstore.ErrInvalidKey: the key fails objstore.ValidateKey, or is too long with Prefix.
//   - objstore.ErrClosed: the bucket was closed.
//   - anything else (timeouts, 5xx after the retries, network errors): the
//     operation is ambiguous, a write may or may not have landed. The error
//     names the operation and key, and the HTTP status and S3 code when
//     there was an answer; it never contains credentials.
//
// # Storage assumptions
//
// Conditional writes (PutIfAbsent, PutIfMatch) are single-part PUTs with the
// exact size and multipart disabled, sent with If-None-Match: * or
// If-Match: "etag"; the server must enforce them atomically (AWS S3 since
// 2024, versitygw, MinIO, gofakes3 do; a server that ignores the headers
// silently breaks fencing, which the conformance suite detects). minio-go
// may resend a request once when the reply is lost or is a 5xx, this
// package retries 409/429/5xx answers when MaxRetries is set, and the WAL
// retries failed writes: a 412 can be the answer to a retry of our own
// write that had landed: objstore.ErrExists and
// objstore.ErrPrecondition are then not proof that someone else wrote. Callers that
// must know read the object back (the WAL's fragments carry the writer's
// epoch and nonce for this).
//
// Single-part ETags are the MD5 of the content, so an object rewritten with
// identical bytes keeps its ETag; callers that use PutIfMatch as a
// compare-and-swap must make every version's bytes unique.
//
// Keys are stored under Prefix+"/"+key. Listing relies on the server
// returning keys in ascending byte order (S3's contract); a page that comes
// back out of order is sorted and a warning logged.
type Bucket struct {
	client    *minio.Client
	core      minio.Core
	transport *http.Transport
	cfg       Config // after withDefaults
	keyPrefix string // "" or cfg.Prefix+"/"
	log       *slog.Logger
	redact    []string // secrets scrubbed from error strings
	closed    atomic.Bool
}

var _ objstore.CASBucket = (*Bucket)(nil)

// New opens the bucket described by cfg. It validates cfg, then checks
// with one bounded request (RequestTimeout, no internal retries) that the
// endpoint answers, accepts the credentials and holds the bucket, failing
// with an error wrapping ErrUnreachable, ErrAccessDenied or
// ErrBucketNotFound respectively.
func New(ctx context.Context, cfg Config) (*Bucket, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tr, err := s3Transport(cfg)
	if err != nil {
		return nil, err
	}
	opts := &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       cfg.Secure,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: s3Lookups[cfg.Lookup],
		// minio-go may resend a request once, inside the same attempt and
		// its deadline: a server that closes a kept-alive connection (as
		// versitygw does after a 412) breaks the next request on it before
		// it is sent. Outage retries are ours (MaxRetries) or the caller's.
		MaxRetries: 2,
	}
	client, err := minio.New(cfg.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("objstore: s3 client for endpoint %q: %w", cfg.Endpoint, err)
	}
	b := &Bucket{
		client:    client,
		core:      minio.Core{Client: client},
		transport: tr,
		cfg:       cfg,
		log:       cfg.Logger,
	}
	if cfg.Prefix != "" {
		b.keyPrefix = cfg.Prefix + "/"
	}
	for _, s := range []string{cfg.SecretKey, cfg.SessionToken} {
		if s != "" {
			b.redact = append(b.redact, s)
		}
	}

	// The check uses a client without internal retries, so an unreachable
	// endpoint fails at once instead of after minio-go's ten backoffs.
	probeOpts := *opts
	probeOpts.MaxRetries = 1
	probe, err := minio.New(cfg.Endpoint, &probeOpts)
	if err != nil {
		return nil, fmt.Errorf("objstore: s3 client for endpoint %q: %w", cfg.Endpoint, err)
	}
	if err := b.checkBucket(ctx, probe); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	b.log.Info("objstore: s3 bucket opened", "endpoint", cfg.Endpoint, "bucket", cfg.Bucket,
		"prefix", cfg.Prefix, "secure", cfg.Secure)
	return b, nil
}

func (b *Bucket) checkBucket(ctx context.Context, probe *minio.Client) error {
	cfg := b.cfg
	pctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	where := fmt.Sprintf("bucket %q at %s", cfg.Bucket, cfg.Endpoint)
	ok, err := probe.BucketExists(pctx, cfg.Bucket)
	if err == nil && !ok {
		// A HEAD answer has no body, so "404" may also mean an unknown
		// access key (versitygw answers 404 XAdminUserNotFound). A one-key
		// listing's error body tells them apart.
		lctx, lcancel := context.WithCancel(pctx)
		for oi := range probe.ListObjects(lctx, cfg.Bucket, minio.ListObjectsOptions{MaxKeys: 1, FetchOwner: new(bool)}) {
			err = oi.Err
			break
		}
		lcancel()
		if err == nil {
			return nil // the listing works: the bucket is there after all
		}
		if status, code := s3Status(err); status == http.StatusNotFound && code == "NoSuchBucket" {
			return fmt.Errorf("%w: %s", ErrBucketNotFound, where)
		}
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("objstore: s3 open %s: %w", where, ctx.Err())
	case errors.Is(err, context.DeadlineExceeded) || pctx.Err() != nil:
		return fmt.Errorf("%w: %s: no answer within %s: %w", ErrUnreachable, where, cfg.RequestTimeout,
			context.DeadlineExceeded)
	}
	status, code := s3Status(err)
	switch {
	case status == 0:
		// No HTTP answer: connection refused, DNS, TLS, reset, header timeout.
		return b.s3ErrWhat("open", where, ErrUnreachable, err)
	case status == http.StatusForbidden, status == http.StatusUnauthorized, code == "InvalidAccessKeyId",
		code == "SignatureDoesNotMatch", code == "ExpiredToken", code == "XAdminUserNotFound":
		return b.s3ErrWhat("open", where, ErrAccessDenied, err)
	case status == http.StatusNotFound && (code == "NoSuchBucket" || code == ""):
		return fmt.Errorf("%w: %s", ErrBucketNotFound, where)
	}
	return b.s3ErrWhat("open", where, nil, err)
}

// s3Key validates key and returns the object name inside the bucket.
func (b *Bucket) s3Key(key string) (string, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return "", err
	}
	full := b.keyPrefix + key
	if len(full) > objstore.MaxKeyLen {
		return "", fmt.Errorf("%w %q: longer than %d bytes with the prefix %q", objstore.ErrInvalidKey, key, objstore.MaxKeyLen,
			b.cfg.Prefix)
	}
	return full, nil
}

func (b *Bucket) checkOpen(op, key string) error {
	if b.closed.Load() {
		return fmt.Errorf("objstore: s3 %s %q: %w", op, key, objstore.ErrClosed)
	}
	return nil
}

func s3TrimETag(etag string) string {
	return strings.TrimSuffix(strings.TrimPrefix(etag, `"`), `"`)
}

// Get implements objstore.Bucket. RequestTimeout bounds the request and the reading
// of the body; Close the reader to release the connection. A range that
// starts at or beyond the end yields an empty reader (S3 answers 416; the
// info then comes from a HEAD).
func (b *Bucket) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	const op = "get"
	if err := b.checkOpen(op, key); err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	name, err := b.s3Key(key)
	if err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	if off < 0 {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 get %q: negative offset %d", key, off)
	}
	if length == 0 {
		info, err := b.Head(ctx, key)
		if err != nil {
			return nil, info, err
		}
		return io.NopCloser(bytes.NewReader(nil)), info, nil
	}
	var opts minio.GetObjectOptions
	if off > 0 || length > 0 {
		rng := fmt.Sprintf("bytes=%d-", off)
		if length > 0 {
			rng = fmt.Sprintf("bytes=%d-%d", off, off+length-1)
		}
		opts.Set("Range", rng)
	}
	var (
		body   io.ReadCloser
		info   objstore.ObjectInfo
		empty  bool
		cancel context.CancelFunc
	)
	err = b.s3Retry(ctx, op, key, nil, func(context.Context) error {
		// The body is read after this returns, so the attempt gets its own
		// context, cancelled by the reader's Close (or below on failure).
		rctx, rcancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		rc, oi, hdr, err := b.core.GetObject(rctx, b.cfg.Bucket, name, opts)
		if err != nil {
			rcancel()
			if status, _ := s3Status(err); status == http.StatusRequestedRangeNotSatisfiable {
				empty = true
				return nil
			}
			return err
		}
		info = objstore.ObjectInfo{Key: key, Size: oi.Size, ETag: s3TrimETag(oi.ETag)}
		if total, ok := s3ContentRangeTotal(hdr.Get("Content-Range")); ok {
			info.Size = total
		} else if off > 0 {
			// The server ignored the range and sent the whole object.
			if _, err := io.CopyN(io.Discard, rc, off); err != nil && !errors.Is(err, io.EOF) {
				rc.Close()
				rcancel()
				return err
			}
		}
		body, cancel = rc, rcancel
		return nil
	})
	if err != nil {
		return nil, objstore.ObjectInfo{}, b.mapReadErr(op, key, err)
	}
	if empty {
		info, err := b.Head(ctx, key)
		if err != nil {
			return nil, info, err
		}
		return io.NopCloser(bytes.NewReader(nil)), info, nil
	}
	var r io.Reader = body
	if length > 0 {
		r = io.LimitReader(body, length)
	}
	return &s3Body{r: r, c: body, cancel: cancel}, info, nil
}

// s3ContentRangeTotal parses the total of "bytes a-b/total".
func s3ContentRangeTotal(cr string) (int64, bool) {
	_, rest, ok := strings.Cut(cr, "/")
	if !ok || rest == "*" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// s3Body is the reader Get returns; Close releases the connection and the
// request's context.
type s3Body struct {
	r      io.Reader
	c      io.Closer
	cancel context.CancelFunc
	closed atomic.Bool
}

func (s *s3Body) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *s3Body) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := s.c.Close()
	s.cancel()
	return err
}

// mapReadErr maps the errors of Get and Head.
func (b *Bucket) mapReadErr(op, key string, err error) error {
	status, code := s3Status(err)
	if status == http.StatusNotFound && code != "NoSuchBucket" {
		return fmt.Errorf("objstore: s3 %s %q: %w", op, key, objstore.ErrNotFound)
	}
	return b.s3Err(op, key, err)
}

// Head implements objstore.Bucket.
func (b *Bucket) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	const op = "head"
	if err := b.checkOpen(op, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	name, err := b.s3Key(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	var oi minio.ObjectInfo
	err = b.s3Retry(ctx, op, key, nil, func(ctx context.Context) error {
		var err error
		oi, err = b.client.StatObject(ctx, b.cfg.Bucket, name, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return objstore.ObjectInfo{}, b.mapReadErr(op, key, err)
	}
	return objstore.ObjectInfo{Key: key, Size: oi.Size, ETag: s3TrimETag(oi.ETag)}, nil
}

// putOpts are the options of every single-part PUT.
func (b *Bucket) putOpts() minio.PutObjectOptions {
	return minio.PutObjectOptions{
		DisableMultipart:     true,
		DisableContentSha256: b.cfg.DisableContentSha256,
	}
}

// PutIfAbsent implements objstore.Bucket with one single-part PUT carrying
// If-None-Match: *. A 412 maps to objstore.ErrExists, which may be the answer to a
// retry of this very write (see the type's docs).
func (b *Bucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	const op = "put-if-absent"
	if err := b.checkOpen(op, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	name, err := b.s3Key(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	opts := b.putOpts()
	opts.SetMatchETagExcept("*")
	info, err := b.putBytes(ctx, op, key, name, data, opts)
	if status, _ := s3Status(err); status == http.StatusPreconditionFailed {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 %s %q: %w", op, key, objstore.ErrExists)
	}
	return info, b.s3Err(op, key, err)
}

// PutIfMatch implements objstore.CASBucket with one single-part PUT carrying
// If-Match: "etag". A 412, or a 404 for a missing key, maps to
// objstore.ErrPrecondition.
func (b *Bucket) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (objstore.ObjectInfo, error) {
	const op = "put-if-match"
	if err := b.checkOpen(op, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	name, err := b.s3Key(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	etag = s3TrimETag(etag)
	if etag == "" {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 %s %q: empty etag: %w", op, key, objstore.ErrPrecondition)
	}
	opts := b.putOpts()
	opts.SetMatchETag(etag)
	info, err := b.putBytes(ctx, op, key, name, data, opts)
	status, code := s3Status(err)
	if status == http.StatusPreconditionFailed || (status == http.StatusNotFound && code != "NoSuchBucket") {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 %s %q: %d %s: %w", op, key, status, code, objstore.ErrPrecondition)
	}
	return info, b.s3Err(op, key, err)
}

// putBytes PUTs data to name in one request, retrying; errors are minio-go's.
func (b *Bucket) putBytes(ctx context.Context, op, key, name string, data []byte, opts minio.PutObjectOptions,
) (objstore.ObjectInfo, error) {
	var ui minio.UploadInfo
	err := b.s3Retry(ctx, op, key, nil, func(ctx context.Context) error {
		var err error
		ui, err = b.client.PutObject(ctx, b.cfg.Bucket, name, bytes.NewReader(data), int64(len(data)), opts)
		return err
	})
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	return objstore.ObjectInfo{Key: key, Size: int64(len(data)), ETag: s3TrimETag(ui.ETag)}, nil
}

// Put implements objstore.Bucket. With size >= 0 it is one PUT of exactly size bytes,
// retried only when r is an io.Seeker. With size -1 up to PartSize bytes
// are buffered first: a shorter stream goes out as one PUT, a longer one as
// a multipart upload of PartSize parts (minio-go retries each part; the
// object appears only when the upload completes). The multipart upload is
// bounded by ctx, each of its requests by RequestTimeout.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	const op = "put"
	if err := b.checkOpen(op, key); err != nil {
		return objstore.ObjectInfo{}, err
	}
	name, err := b.s3Key(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	if size < -1 {
		return objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 put %q: bad size %d", key, size)
	}
	opts := b.putOpts()
	if size < 0 {
		var first bytes.Buffer
		n, err := io.CopyN(&first, r, PartSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 put %q: read: %w", key, err)
		}
		if n < PartSize {
			return b.Put(ctx, key, bytes.NewReader(first.Bytes()), n)
		}
		opts.DisableMultipart = false
		opts.PartSize = PartSize
		ui, err := b.client.PutObject(ctx, b.cfg.Bucket, name, io.MultiReader(&first, r), -1, opts)
		if err != nil {
			return objstore.ObjectInfo{}, b.s3Err(op, key, err)
		}
		info := objstore.ObjectInfo{Key: key, Size: ui.Size, ETag: s3TrimETag(ui.ETag)}
		// Servers disagree on a multipart object's ETag: gofakes3 answers
		// CompleteMultipartUpload with "md5-N" but HEAD/GET with the MD5 of
		// the content. Return the one If-Match compares against.
		if hinfo, err := b.Head(ctx, key); err == nil && hinfo.Size == info.Size {
			info.ETag = hinfo.ETag
		}
		return info, nil
	}

	rewind := func() error { return errors.New("body cannot be rewound") }
	if s, ok := r.(io.Seeker); ok {
		start, err := s.Seek(0, io.SeekCurrent)
		if err == nil {
			end, err := s.Seek(0, io.SeekEnd)
			if err == nil {
				if _, err = s.Seek(start, io.SeekStart); err != nil {
					return objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 put %q: seek: %w", key, err)
				}
			}
			// Fail a short body here: minio-go would send it, fail, and
			// resend it.
			if err == nil && end-start < size {
				return objstore.ObjectInfo{}, fmt.Errorf("objstore: s3 put %q: reader has %d bytes, size is %d: %w",
					key, end-start, size, io.ErrUnexpectedEOF)
			}
			rewind = func() error {
				_, err := s.Seek(start, io.SeekStart)
				return err
			}
		}
	}
	var ui minio.UploadInfo
	err = b.s3Retry(ctx, op, key, rewind, func(ctx context.Context) error {
		var err error
		ui, err = b.client.PutObject(ctx, b.cfg.Bucket, name, r, size, opts)
		return err
	})
	if err != nil {
		return objstore.ObjectInfo{}, b.s3Err(op, key, err)
	}
	return objstore.ObjectInfo{Key: key, Size: size, ETag: s3TrimETag(ui.ETag)}, nil
}

// Delete implements objstore.Bucket. Deleting a missing key succeeds.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	const op = "delete"
	if err := b.checkOpen(op, key); err != nil {
		return err
	}
	name, err := b.s3Key(key)
	if err != nil {
		return err
	}
	err = b.s3Retry(ctx, op, key, nil, func(ctx context.Context) error {
		return b.client.RemoveObject(ctx, b.cfg.Bucket, name, minio.RemoveObjectOptions{})
	})
	if status, code := s3Status(err); status == http.StatusNotFound && code != "NoSuchBucket" {
		return nil
	}
	return b.s3Err(op, key, err)
}

// List implements objstore.Bucket with ListObjectsV2 (recursive). Keys come back
// without the bucket's Prefix.
func (b *Bucket) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	const op = "list"
	if err := b.checkOpen(op, opts.Prefix); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, fmt.Errorf("objstore: s3 list %q: negative limit %d", opts.Prefix, opts.Limit)
	}
	lo := minio.ListObjectsOptions{
		Prefix:     b.keyPrefix + opts.Prefix,
		Recursive:  true,
		FetchOwner: new(bool),
	}
	if opts.StartAfter != "" {
		lo.StartAfter = b.keyPrefix + opts.StartAfter
	}
	if opts.Limit > 0 {
		lo.MaxKeys = min(opts.Limit, 1000)
	}
	var out []objstore.ObjectInfo
	err := b.s3Retry(ctx, op, opts.Prefix, nil, func(actx context.Context) error {
		out = out[:0]
		lctx, cancel := context.WithCancel(actx)
		defer cancel()
		for oi := range b.client.ListObjects(lctx, b.cfg.Bucket, lo) {
			if oi.Err != nil {
				return oi.Err
			}
			key, ok := strings.CutPrefix(oi.Key, b.keyPrefix)
			if !ok || key == "" || strings.HasSuffix(key, "/") {
				continue // not ours, or a directory marker (never a valid key)
			}
			if opts.StartAfter != "" && key <= opts.StartAfter {
				continue
			}
			out = append(out, objstore.ObjectInfo{Key: key, Size: oi.Size, ETag: s3TrimETag(oi.ETag)})
			if opts.Limit > 0 && len(out) >= opts.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, b.s3Err(op, opts.Prefix, err)
	}
	sorted := slices.IsSortedFunc(out, func(x, y objstore.ObjectInfo) int { return strings.Compare(x.Key, y.Key) })
	if !sorted {
		b.log.Warn("objstore: s3 listing out of byte order; sorting the page", "prefix", opts.Prefix)
		slices.SortFunc(out, func(x, y objstore.ObjectInfo) int { return strings.Compare(x.Key, y.Key) })
	}
	return out, nil
}

// Close implements objstore.Bucket. It is idempotent; later calls of other methods
// fail with objstore.ErrClosed. Requests already in flight finish normally.
func (b *Bucket) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.transport.CloseIdleConnections()
		b.log.Info("objstore: s3 bucket closed", "endpoint", b.cfg.Endpoint, "bucket", b.cfg.Bucket,
			"prefix", b.cfg.Prefix)
	}
	return nil
}
