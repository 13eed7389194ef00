package bucket

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// DefaultPrefix is where "bucket+" URLs (and a wal client without a separate
// metadata store) keep records inside the bucket.
const DefaultPrefix = "meta"

func init() {
	meta.Register("bucket+", func(ctx context.Context, u *url.URL) (meta.Store, error) {
		inner := *u
		inner.Scheme = strings.TrimPrefix(u.Scheme, "bucket+")
		b, err := objstore.Open(ctx, inner.String())
		if err != nil {
			return nil, fmt.Errorf("meta: bucket store: %w", err)
		}
		s, err := New(b, DefaultPrefix)
		if err != nil {
			b.Close()
			return nil, err
		}
		s.owned = b
		return s, nil
	})
}
