package meta

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// DefaultBucketPrefix is where Open's bucket+ URLs keep records inside the
// bucket.
const DefaultBucketPrefix = "meta"

// Open opens a metadata store from a URL:
//
//	mem://                                   a new, empty in-memory store
//	etcd://h1:p1,h2:p2/prefix?...            etcd (see EtcdConfigFromURL); etcds:// for TLS
//	bucket+<bucket URL>                      records in a bucket, e.g. bucket+file:///var/lib/app
//	                                         or bucket+s3://b/p?endpoint=...; kept under "meta/"
//
// The store returned for a bucket+ URL owns the bucket it opened and closes
// it on Close. Errors name what was wrong; passwords never appear in them.
func Open(ctx context.Context, rawURL string) (Store, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("meta: empty metadata URL (want mem://, etcd://host:port/prefix or bucket+<bucket URL>)")
	}
	if rest, ok := strings.CutPrefix(rawURL, "bucket+"); ok {
		b, err := objstore.Open(ctx, rest)
		if err != nil {
			return nil, fmt.Errorf("meta: bucket store: %w", err)
		}
		s, err := NewBucketStore(b, DefaultBucketPrefix)
		if err != nil {
			b.Close()
			return nil, err
		}
		s.owned = b
		return s, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, which may hold a password
		}
		return nil, fmt.Errorf("meta: malformed metadata URL: %w", err)
	}
	switch u.Scheme {
	case "mem":
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("meta: mem URL takes no host, path or parameters: %q", u.Redacted())
		}
		return NewMem(), nil
	case "etcd", "etcds":
		cfg, err := EtcdConfigFromURL(u)
		if err != nil {
			return nil, err
		}
		return NewEtcd(ctx, cfg)
	case "":
		return nil, fmt.Errorf("meta: metadata URL %q has no scheme (want mem://, etcd://host:port/prefix or bucket+<bucket URL>)", u.Redacted())
	default:
		return nil, fmt.Errorf("meta: unsupported metadata URL scheme %q (supported: mem, etcd, etcds, bucket+<bucket URL>)", u.Scheme)
	}
}
