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
// bucket, beside the log's fragments ("<prefix>/<name>/<log ID>/...").
func (s storeClient) Blobs(name string) logstore.Blobs {
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
	return p.prefix + key, nil
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
	objs, err := p.b.List(ctx, opts)
	for i := range objs {
		if !strings.HasPrefix(objs[i].Key, p.prefix) {
			return nil, fmt.Errorf("objstore: list %q returned %q outside it", p.prefix, objs[i].Key)
		}
		objs[i] = p.info(objs[i])
	}
	return objs, err
}
