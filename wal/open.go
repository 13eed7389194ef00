package wal

import (
	"context"
	"fmt"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/meta/bucket"
	"github.com/woodpecker-wal/woodpecker/objstore"

	// file:// and mem:// URLs work in every program that uses the engine.
	_ "github.com/woodpecker-wal/woodpecker/meta/mem"
	_ "github.com/woodpecker-wal/woodpecker/objstore/file"
	_ "github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// OpenURL opens a client over stores named by URLs (see objstore.Open and
// meta.Open), which the client owns and closes on Close. An empty metaURL
// keeps metadata in the bucket itself (under "meta/", with conditional
// writes), the zero-service default:
//
//	wal.OpenURL(ctx, "file:///var/lib/app/raft", "", wal.Config{})
//	wal.OpenURL(ctx, "s3://bucket/node-1?endpoint=10.0.0.5:9000", "etcd://10.0.0.1:2379/app", wal.Config{})
//
// cfg.Bucket and cfg.Meta must be nil.
func OpenURL(ctx context.Context, bucketURL, metaURL string, cfg Config) (*Client, error) {
	if cfg.Bucket != nil || cfg.Meta != nil {
		return nil, fmt.Errorf("wal: OpenURL: Config.Bucket and Config.Meta must be nil; the URLs name the stores")
	}
	if metaURL == "" && cfg.Prefix == bucket.DefaultPrefix {
		return nil, fmt.Errorf("wal: OpenURL: Config.Prefix %q is where the bucket keeps the metadata when no metadata URL is given; choose another prefix", cfg.Prefix)
	}
	b, err := objstore.Open(ctx, bucketURL)
	if err != nil {
		return nil, err
	}
	var m meta.Store
	if metaURL == "" {
		m, err = bucket.New(b, bucket.DefaultPrefix)
	} else {
		m, err = meta.Open(ctx, metaURL)
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	cfg.Bucket, cfg.Meta = b, m
	c, err := Open(ctx, cfg)
	if err != nil {
		m.Close()
		b.Close()
		return nil, err
	}
	c.owned = []interface{ Close() error }{m, b}
	return c, nil
}

// Bucket returns the client's bucket (for snapshots and other objects kept
// beside the logs).
func (c *Client) Bucket() objstore.Bucket { return c.cfg.Bucket }

// Meta returns the client's metadata store.
func (c *Client) Meta() meta.Store { return c.cfg.Meta }

// Prefix returns the deployment prefix under which the client keeps its keys.
func (c *Client) Prefix() string { return c.cfg.Prefix }

// Config returns the client's configuration with defaults filled in (for
// example MaxFlushSize, the largest entry an append accepts).
func (c *Client) Config() Config { return c.cfg }
