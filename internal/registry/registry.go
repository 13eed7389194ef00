// Package registry is the scheme registry behind objstore.Open and
// meta.Open: backends register an opener per URL scheme from their init
// functions, in the manner of database/sql drivers, and Open finds it.
package registry

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Registry maps URL schemes to openers of type T.
type Registry[T any] struct {
	what     string // "objstore" or "meta", prefixing errors
	kind     string // "bucket URL" or "metadata URL"
	want     string // the forms of URL accepted, for errors
	mu       sync.RWMutex
	openers  map[string]T
	packages map[string]string // scheme -> the package that registers it
}

// Registry also parses the URLs: kind names them in errors ("bucket URL"),
// want lists the forms a user may mean.

// New returns a registry; packages names the package that registers each
// scheme woodpecker ships, for the error when one is not linked.
func New[T any](what, kind, want string, packages map[string]string) *Registry[T] {
	return &Registry[T]{what: what, kind: kind, want: want, openers: make(map[string]T), packages: packages}
}

// Register adds open under scheme. It panics if the scheme is empty or
// already registered, or if isNil (open is nil).
func (r *Registry[T]) Register(scheme string, open T, isNil bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if scheme == "" || isNil {
		panic(r.what + ": Register with an empty scheme or a nil opener")
	}
	if _, dup := r.openers[scheme]; dup {
		panic(fmt.Sprintf("%s: scheme %q registered twice", r.what, scheme))
	}
	r.openers[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func (r *Registry[T]) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.openers))
}

// Parse parses rawURL, which must name a scheme. Its errors never repeat
// the credentials the URL may hold.
func (r *Registry[T]) Parse(rawURL string) (*url.URL, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, fmt.Errorf("%s: empty %s (want %s)", r.what, r.kind, r.want)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// Not even url.Error's reason is shown: it quotes a part of the URL,
		// which may be a secret holding an unescaped '/', '#' or '@'.
		return nil, fmt.Errorf("%s: malformed %s (a password or key holding '/', '#', '?' or '@' must be percent-encoded)", r.what, r.kind)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("%s: %s has no scheme (want %s)", r.what, r.kind, r.want)
	}
	return u, nil
}

// Lookup returns the opener of scheme, or an error naming the import that
// would register it (a scheme woodpecker ships) or the registered schemes;
// shown is the scheme as the user wrote it.
func (r *Registry[T]) Lookup(scheme, shown string) (T, error) {
	r.mu.RLock()
	open, ok := r.openers[scheme]
	r.mu.RUnlock()
	if ok {
		return open, nil
	}
	var zero T
	if pkg, known := r.packages[scheme]; known {
		return zero, fmt.Errorf("%s: %s scheme %q: its backend is not linked into this program; add import _ %q",
			r.what, r.kind, shown, pkg)
	}
	return zero, fmt.Errorf("%s: unsupported %s scheme %q (registered: %s)", r.what, r.kind, shown, strings.Join(r.Schemes(), ", "))
}
