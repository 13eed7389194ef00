package s3

import (
	"context"
	"net/url"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

func init() {
	objstore.Register("s3", func(ctx context.Context, u *url.URL) (objstore.Bucket, error) {
		cfg, err := ConfigFromURL(u)
		if err != nil {
			return nil, err
		}
		return New(ctx, cfg)
	})
}
