package meta

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Opener opens a metadata store from a URL whose scheme it was registered
// for. It validates the rest of the URL and names what was wrong; its errors
// must not repeat a password the URL holds.
type Opener func(ctx context.Context, u *url.URL) (Store, error)

var registry struct {
	sync.RWMutex
	openers map[string]Opener
}

// Register makes a backend available to [Open] under a URL scheme, in the
// manner of database/sql drivers: a backend package calls it from its init
// function, so linking the package is what makes its scheme work. A scheme
// registered as "name+" serves every URL "name+<rest>" (the bucket store's
// "bucket+file:///dir"). Register panics if the scheme is empty, already
// registered, or open is nil.
func Register(scheme string, open Opener) {
	registry.Lock()
	defer registry.Unlock()
	if scheme == "" || open == nil {
		panic("meta: Register with an empty scheme or a nil opener")
	}
	if _, dup := registry.openers[scheme]; dup {
		panic(fmt.Sprintf("meta: scheme %q registered twice", scheme))
	}
	if registry.openers == nil {
		registry.openers = make(map[string]Opener)
	}
	registry.openers[scheme] = open
}

// Schemes returns the registered metadata URL schemes, sorted.
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
	"mem":     "github.com/woodpecker-wal/woodpecker/meta/mem",
	"etcd":    "github.com/woodpecker-wal/woodpecker/meta/etcd",
	"etcds":   "github.com/woodpecker-wal/woodpecker/meta/etcd",
	"bucket+": "github.com/woodpecker-wal/woodpecker/meta/bucket",
}

// Open opens a metadata store from a URL, with the backend registered for
// its scheme (see [Register]). The backends woodpecker ships:
//
//	mem://                                   a new, empty in-memory store (meta/mem)
//	etcd://h1:p1,h2:p2/prefix?...            etcd (meta/etcd, see etcd.ConfigFromURL); etcds:// for TLS
//	bucket+<bucket URL>                      records in a bucket (meta/bucket), e.g. bucket+file:///var/lib/app
//	                                         or bucket+s3://b/p?endpoint=...; kept under "meta/"
//
// The wal package links mem and bucket; etcd is linked by importing
// meta/etcd. A URL whose backend is not linked gets an error naming the
// import to add. Errors name what was wrong; passwords never appear in them.
func Open(ctx context.Context, rawURL string) (Store, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("meta: empty metadata URL (want mem://, etcd://host:port/prefix or bucket+<bucket URL>)")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, which may hold a password
		}
		return nil, fmt.Errorf("meta: malformed metadata URL: %w", err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("meta: metadata URL %q has no scheme (want mem://, etcd://host:port/prefix or bucket+<bucket URL>)", u.Redacted())
	}
	scheme := u.Scheme
	if i := strings.IndexByte(scheme, '+'); i >= 0 {
		scheme = scheme[:i+1]
	}
	registry.RLock()
	open := registry.openers[scheme]
	registry.RUnlock()
	if open == nil {
		if pkg, ok := backendPackages[scheme]; ok {
			return nil, fmt.Errorf("meta: metadata URL scheme %q: its backend is not linked into this program; add import _ %q", u.Scheme, pkg)
		}
		return nil, fmt.Errorf("meta: unsupported metadata URL scheme %q (registered: %s)", u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}
