package mem

import (
	"context"
	"fmt"
	"net/url"

	"github.com/woodpecker-wal/woodpecker/internal/redact"
	"github.com/woodpecker-wal/woodpecker/meta"
)

func init() {
	meta.Register("mem", func(_ context.Context, u *url.URL) (meta.Store, error) {
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("meta: mem URL takes no host, path or parameters: %q", redact.Parsed(u))
		}
		return New(), nil
	})
}
