package etcd

import (
	"context"
	"net/url"

	"github.com/woodpecker-wal/woodpecker/meta"
)

func init() {
	open := func(ctx context.Context, u *url.URL) (meta.Store, error) {
		cfg, err := ConfigFromURL(u)
		if err != nil {
			return nil, err
		}
		return New(ctx, cfg)
	}
	meta.Register("etcd", open)
	meta.Register("etcds", open)
}
