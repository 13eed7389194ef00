package file

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/woodpecker-wal/woodpecker/internal/redact"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

func init() {
	objstore.Register("file", func(_ context.Context, u *url.URL) (objstore.Bucket, error) { return openURL(u) })
}

// openURL opens file:///abs/dir[?nosync=true][&nocreate=true].
func openURL(u *url.URL) (*Bucket, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("objstore: file URL %q: host %q given; a local directory needs an absolute path, file:///abs/dir", redact.Parsed(u), u.Host)
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("objstore: file URL %q: path must be absolute, file:///abs/dir", redact.Parsed(u))
	}
	var opts Options
	for k, vs := range u.Query() {
		switch k {
		case "nosync":
			v, err := strconv.ParseBool(vs[len(vs)-1])
			if err != nil {
				return nil, fmt.Errorf("objstore: file URL parameter nosync=%q is not a boolean", vs[len(vs)-1])
			}
			opts.NoSync = v
		case "nocreate":
			v, err := strconv.ParseBool(vs[len(vs)-1])
			if err != nil {
				return nil, fmt.Errorf("objstore: file URL parameter nocreate=%q is not a boolean", vs[len(vs)-1])
			}
			opts.NoCreate = v
		default:
			return nil, fmt.Errorf("objstore: file URL: unknown parameter %q (supported: nosync, nocreate)", k)
		}
	}
	return New(u.Path, opts)
}
