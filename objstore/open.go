package objstore

import (
	"context"
	"net/url"

	"github.com/woodpecker-wal/woodpecker/internal/registry"
)

// Opener opens a bucket from a URL whose scheme it was registered for. It
// validates the rest of the URL and names what was wrong; its errors must not
// repeat credentials the URL holds.
type Opener func(ctx context.Context, u *url.URL) (Bucket, error)

// Register makes a backend available to [Open] under a URL scheme, in the
// manner of database/sql drivers: a backend package calls it from its init
// function, so linking the package is what makes its scheme work. Register
// panics if the scheme is empty, already registered, or open is nil.
func Register(scheme string, open Opener) { openers.Register(scheme, open, open == nil) }

// Schemes returns the registered bucket URL schemes, sorted.
func Schemes() []string { return openers.Schemes() }

// openers holds the registered backends; the map names the package that
// registers each scheme woodpecker ships, so an unlinked one gets an error
// saying what to import.
var openers = registry.New[Opener]("objstore", "bucket URL", "mem://, file:///abs/dir or s3://bucket/prefix?endpoint=...", map[string]string{
	"mem":  "github.com/woodpecker-wal/woodpecker/objstore/mem",
	"file": "github.com/woodpecker-wal/woodpecker/objstore/file",
	"s3":   "github.com/woodpecker-wal/woodpecker/objstore/s3",
})

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
	u, err := openers.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	open, err := openers.Lookup(u.Scheme, u.Scheme)
	if err != nil {
		return nil, err
	}
	return open(ctx, u)
}
