package mem

import (
	"context"
	"fmt"
	"net/url"

	"github.com/woodpecker-wal/woodpecker/internal/redact"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

func init() {
	objstore.Register("mem", func(_ context.Context, u *url.URL) (objstore.Bucket, error) {
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("objstore: mem URL takes no host, path or parameters: %q", redact.Parsed(u))
		}
		return New(), nil
	})
}
