package meta

import (
	"context"
	"net/url"
	"strings"

	"github.com/woodpecker-wal/woodpecker/internal/registry"
)

// Opener opens a metadata store from a URL whose scheme it was registered
// for. It validates the rest of the URL and names what was wrong; its errors
// must not repeat a password the URL holds.
type Opener func(ctx context.Context, u *url.URL) (Store, error)

// Register makes a backend available to [Open] under a URL scheme, in the
// manner of database/sql drivers: a backend package calls it from its init
// function, so linking the package is what makes its scheme work. A scheme
// registered as "name+" serves every URL "name+<rest>" (the bucket store's
// "bucket+file:///dir"). Register panics if the scheme is empty, already
// registered, or open is nil.
func Register(scheme string, open Opener) { openers.Register(scheme, open, open == nil) }

// Schemes returns the registered metadata URL schemes, sorted.
func Schemes() []string { return openers.Schemes() }

// openers holds the registered backends; the map names the package that
// registers each scheme woodpecker ships, so an unlinked one gets an error
// saying what to import.
var openers = registry.New[Opener]("meta", "metadata URL", "mem://, etcd://host:port/prefix or bucket+<bucket URL>", map[string]string{
	"mem":     "github.com/woodpecker-wal/woodpecker/meta/mem",
	"etcd":    "github.com/woodpecker-wal/woodpecker/meta/etcd",
	"etcds":   "github.com/woodpecker-wal/woodpecker/meta/etcd",
	"bucket+": "github.com/woodpecker-wal/woodpecker/meta/bucket",
})

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
	u, err := openers.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	scheme := u.Scheme
	if i := strings.IndexByte(scheme, '+'); i >= 0 {
		scheme = scheme[:i+1]
	}
	open, err := openers.Lookup(scheme, u.Scheme)
	if err != nil {
		return nil, err
	}
	return open(ctx, u)
}
