package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Opener opens a bucket from a URL whose scheme it was registered for. It
// validates the rest of the URL and names what was wrong; its errors must not
// repeat credentials the URL holds.
type Opener func(ctx context.Context, u *url.URL) (Bucket, error)

var registry struct {
	sync.RWMutex
	openers map[string]Opener
}

// Register makes a backend available to [Open] under a URL scheme, in the
// manner of database/sql drivers: a backend package calls it from its init
// function, so linking the package is what makes its scheme work. Register
// panics if the scheme is empty, already registered, or open is nil.
func Register(scheme string, open Opener) {
	registry.Lock()
	defer registry.Unlock()
	if scheme == "" || open == nil {
		panic("objstore: Register with an empty scheme or a nil opener")
	}
	if _, dup := registry.openers[scheme]; dup {
		panic(fmt.Sprintf("objstore: scheme %q registered twice", scheme))
	}
	if registry.openers == nil {
		registry.openers = make(map[string]Opener)
	}
	registry.openers[scheme] = open
}

// Schemes returns the registered bucket URL schemes, sorted.
func Schemes() []string {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]string, 0, len(registry.openers))
	for s := range registry.openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// backendPackages names the package that registers each scheme woodpecker
// ships, so an unlinked one gets an error saying what to import.
var backendPackages = map[string]string{
	"mem":  "github.com/woodpecker-wal/woodpecker/objstore/mem",
	"file": "github.com/woodpecker-wal/woodpecker/objstore/file",
	"s3":   "github.com/woodpecker-wal/woodpecker/objstore/s3",
}

// Open opens a bucket from a URL, with the backend registered for its scheme
// (see [Register]). The backends woodpecker ships:
//
//	mem://                               a new, empty in-memory bucket (objstore/mem)
//	file:///abs/dir[?nosync=true]        a local directory, created if missing (objstore/file)
//	file:///abs/dir?nocreate=true        an existing local directory, never created
//	s3://bucket/prefix?endpoint=host:port&...   an S3-compatible store (objstore/s3, see s3.ConfigFromURL)
//
// The wal package links mem and file, so every program using the engine can
// open them; s3 is linked by importing objstore/s3. A URL whose backend is
// not linked gets an error naming the import to add. Errors name what was
// wrong with the URL; credentials in it never appear in them.
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
	if u.Scheme == "" {
		return nil, fmt.Errorf("objstore: bucket URL %q has no scheme (want mem://, file:///abs/dir or s3://bucket/prefix?endpoint=...)", u.Redacted())
	}
	registry.RLock()
	open := registry.openers[u.Scheme]
	registry.RUnlock()
	if open == nil {
		if pkg, ok := backendPackages[u.Scheme]; ok {
			return nil, fmt.Errorf("objstore: bucket URL scheme %q: its backend is not linked into this program; add import _ %q", u.Scheme, pkg)
		}
		return nil, fmt.Errorf("objstore: unsupported bucket URL scheme %q (registered: %s)", u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}
