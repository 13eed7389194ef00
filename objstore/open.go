package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Open opens a bucket from a URL:
//
//	mem://                               a new, empty in-memory bucket
//	file:///abs/dir[?nosync=true]        a local directory (created if missing)
//	file:///abs/dir?nocreate=true        an existing local directory, never created (FileOptions.NoCreate)
//	s3://bucket/prefix?endpoint=host:port&...   an S3-compatible store (see S3ConfigFromURL)
//
// Errors name what was wrong with the URL; credentials in an s3 URL never
// appear in them.
func Open(ctx context.Context, rawURL string) (Bucket, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("objstore: empty bucket URL (want mem://, file:///abs/dir or s3://bucket/prefix?endpoint=...)")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the URL, which may hold credentials.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("objstore: malformed bucket URL: %w", err)
	}
	switch u.Scheme {
	case "mem":
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("objstore: mem URL takes no host, path or parameters: %q", u.Redacted())
		}
		return NewMem(), nil
	case "file":
		return openFileURL(u)
	case "s3":
		cfg, err := S3ConfigFromURL(u)
		if err != nil {
			return nil, err
		}
		return NewS3(ctx, cfg)
	case "":
		return nil, fmt.Errorf("objstore: bucket URL %q has no scheme (want mem://, file:///abs/dir or s3://bucket/prefix?endpoint=...)", u.Redacted())
	default:
		return nil, fmt.Errorf("objstore: unsupported bucket URL scheme %q (supported: mem, file, s3)", u.Scheme)
	}
}

func openFileURL(u *url.URL) (Bucket, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("objstore: file URL %q: host %q given; a local directory needs an absolute path, file:///abs/dir", u.String(), u.Host)
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("objstore: file URL %q: path must be absolute, file:///abs/dir", u.String())
	}
	var opts FileOptions
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
	return NewFile(u.Path, opts)
}
