package wal

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// LogStore returns the client as a logstore.Client, the interface the Raft
// adapters and the conformance suites consume. The handles it returns wrap
// this client's *Log, *Writer and *Reader; closing the returned value
// closes the client.
func (c *Client) LogStore() logstore.Client { return storeClient{c} }

type storeClient struct{ c *Client }

var (
	_ logstore.Client = storeClient{}
	_ logstore.Log    = storeLog{}
	_ logstore.Writer = storeWriter{}
	_ logstore.Reader = (*Reader)(nil)
	_ logstore.Future = (*Future)(nil)
)

func (s storeClient) CreateLog(ctx context.Context, name string) error {
	return s.c.CreateLog(ctx, name)
}

func (s storeClient) OpenLog(ctx context.Context, name string) (logstore.Log, error) {
	l, err := s.c.OpenLog(ctx, name)
	if err != nil {
		return nil, err
	}
	return storeLog{l}, nil
}

func (s storeClient) DeleteLog(ctx context.Context, name string) error {
	return s.c.DeleteLog(ctx, name)
}

func (s storeClient) ListLogs(ctx context.Context) ([]string, error) { return s.c.ListLogs(ctx) }

// Blobs keeps a log's blobs under "<prefix>/<name>/" in the client's
// bucket, beside the log's fragments ("<prefix>/<name>/<log ID>/...", the
// ID decimal). A blob key whose first component is all digits would be
// among the fragments: it is refused, and List never shows one. An invalid
// name gives blobs whose every call fails.
func (s storeClient) Blobs(name string) logstore.Blobs {
	if err := logstore.ValidateLogName(name); err != nil {
		return failedBlobs{fmt.Errorf("%w: blobs of a log: %w", objstore.ErrInvalidKey, err)}
	}
	return prefixedBlobs{b: s.c.cfg.Bucket, prefix: s.c.cfg.Prefix + "/" + name + "/"}
}

func (s storeClient) Limits() logstore.Limits {
	cfg := s.c.cfg
	window, why := cfg.RetryWindow()
	return logstore.Limits{
		MaxEntrySize:      cfg.MaxFlushSize,
		MaxMetaSize:       MaxMetaSize,
		RetryWindow:       window,
		RetryWindowSource: why,
		OperationBound:    cfg.OperationBound(),
		RequestTimeout:    cfg.RequestTimeout,
		RetryInterval:     cfg.RetryInterval,
	}
}

func (s storeClient) Close() error { return s.c.Close() }

type storeLog struct{ *Log }

func (l storeLog) NewReader(ctx context.Context, from uint64) (logstore.Reader, error) {
	r, err := l.Log.NewReader(ctx, from)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (l storeLog) OpenWriter(ctx context.Context) (logstore.Writer, error) {
	return wrapWriter(l.Log.OpenWriter(ctx))
}

func (l storeLog) ReopenWriter(ctx context.Context, id logstore.WriterID) (logstore.Writer, error) {
	return wrapWriter(l.Log.ReopenWriter(ctx, WriterID(id)))
}

func wrapWriter(w *Writer, err error) (logstore.Writer, error) {
	if err != nil {
		return nil, err
	}
	return storeWriter{w}, nil
}

type storeWriter struct{ *Writer }

func (w storeWriter) ID() logstore.WriterID { return logstore.WriterID(w.Writer.ID()) }

func (w storeWriter) AppendAsync(first uint64, entries [][]byte) logstore.Future {
	return w.Writer.AppendAsync(first, entries)
}

func (w storeWriter) Reopen(ctx context.Context) (logstore.Writer, error) {
	return wrapWriter(w.Writer.Reopen(ctx))
}

// prefixedBlobs is a bucket seen through a key prefix.
type prefixedBlobs struct {
	b      objstore.Bucket
	prefix string // ends in "/"
}

func (p prefixedBlobs) key(key string) (string, error) {
	if err := objstore.ValidateKey(key); err != nil {
		return "", err
	}
	if logDataKey(key) {
		return "", fmt.Errorf("%w %q: a first component of digits only is the log's own data", objstore.ErrInvalidKey, key)
	}
	return p.prefix + key, nil
}

// logDataKey reports whether key, relative to a log's area, is under one of
// the log's incarnations (a decimal log ID).
func logDataKey(key string) bool {
	first, _, _ := strings.Cut(key, "/")
	if first == "" {
		return false
	}
	for i := 0; i < len(first); i++ {
		if first[i] < '0' || first[i] > '9' {
			return false
		}
	}
	return true
}

func (p prefixedBlobs) info(o objstore.ObjectInfo) objstore.ObjectInfo {
	o.Key = strings.TrimPrefix(o.Key, p.prefix)
	return o
}

func (p prefixedBlobs) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	k, err := p.key(key)
	if err != nil {
		return nil, objstore.ObjectInfo{}, err
	}
	rc, o, err := p.b.Get(ctx, k, off, length)
	return rc, p.info(o), err
}

func (p prefixedBlobs) Head(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	k, err := p.key(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	o, err := p.b.Head(ctx, k)
	return p.info(o), err
}

func (p prefixedBlobs) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	k, err := p.key(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	o, err := p.b.PutIfAbsent(ctx, k, data)
	return p.info(o), err
}

func (p prefixedBlobs) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	k, err := p.key(key)
	if err != nil {
		return objstore.ObjectInfo{}, err
	}
	o, err := p.b.Put(ctx, k, r, size)
	return p.info(o), err
}

func (p prefixedBlobs) Delete(ctx context.Context, key string) error {
	k, err := p.key(key)
	if err != nil {
		return err
	}
	return p.b.Delete(ctx, k)
}

func (p prefixedBlobs) List(ctx context.Context, opts objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	opts.Prefix = p.prefix + opts.Prefix
	if opts.StartAfter != "" {
		opts.StartAfter = p.prefix + opts.StartAfter
	}
	// The log's own data is left out; a page that loses some of it is
	// filled from the next, so that a short page still means the end.
	var out []objstore.ObjectInfo
	for {
		objs, err := p.b.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if !strings.HasPrefix(o.Key, p.prefix) {
				return nil, fmt.Errorf("objstore: list %q returned %q outside it", p.prefix, o.Key)
			}
			if o = p.info(o); logDataKey(o.Key) {
				continue
			}
			if out = append(out, o); opts.Limit > 0 && len(out) == opts.Limit {
				return out, nil
			}
		}
		if opts.Limit <= 0 || len(objs) < opts.Limit {
			return out, nil
		}
		opts.StartAfter = objs[len(objs)-1].Key
	}
}

// failedBlobs fails every call with err.
type failedBlobs struct{ err error }

func (f failedBlobs) Get(context.Context, string, int64, int64) (io.ReadCloser, objstore.ObjectInfo, error) {
	return nil, objstore.ObjectInfo{}, f.err
}
func (f failedBlobs) Head(context.Context, string) (objstore.ObjectInfo, error) {
	return objstore.ObjectInfo{}, f.err
}
func (f failedBlobs) PutIfAbsent(context.Context, string, []byte) (objstore.ObjectInfo, error) {
	return objstore.ObjectInfo{}, f.err
}
func (f failedBlobs) Put(context.Context, string, io.Reader, int64) (objstore.ObjectInfo, error) {
	return objstore.ObjectInfo{}, f.err
}
func (f failedBlobs) Delete(context.Context, string) error { return f.err }
func (f failedBlobs) List(context.Context, objstore.ListOptions) ([]objstore.ObjectInfo, error) {
	return nil, f.err
}
