package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/woodpecker-wal/woodpecker/meta"
)

// Defaults of Config, applied to zero fields.
const (
	etcdDefaultPrefix         = "woodpecker"
	etcdDefaultPort           = "2379"
	etcdDefaultDialTimeout    = 5 * time.Second
	etcdDefaultRequestTimeout = 10 * time.Second

	// etcdListPage is the number of records a List asks etcd for in one
	// range request. Records are small (per log and per segment), so a page
	// is normally a few KiB; with values near meta.MaxValueSize it would be
	// ~128 MiB, still below the client's receive limit (math.MaxInt32).
	etcdListPage = 128

	// etcdListAttempts bounds how often List restarts a paged listing whose
	// pinned revision was compacted away between two pages.
	etcdListAttempts = 3

	// etcdWatchCoalesceAt is the number of events waiting for a Watch
	// consumer above which new events replace older ones of the same key.
	etcdWatchCoalesceAt = 256

	// gRPC keepalive of clients made by New.
	etcdKeepAliveTime    = 30 * time.Second
	etcdKeepAliveTimeout = 10 * time.Second
	// etcdMaxReconnectDelay caps gRPC's reconnect backoff.
	etcdMaxReconnectDelay = 2 * time.Second

	// Watch resync backoff bounds.
	etcdWatchMinBackoff = 50 * time.Millisecond
	etcdWatchMaxBackoff = 2 * time.Second
)

// Config configures an [Store]. The zero value of every field means
// the documented default; Endpoints is the only required field.
//
// Build one by hand or from a URL with [ConfigFromURL].
type Config struct {
	// Endpoints are the etcd client endpoints, as "host:port" (TLS is used
	// when TLS or the *File fields are set) or as URLs with scheme http,
	// https, unix or unixs. Required. Credentials never go here.
	Endpoints []string

	// Prefix is the deployment prefix: a record with key K is stored at the
	// etcd key Prefix + "/" + K. It has the form of a valid key (see
	// meta.ValidateKey), optionally preceded by one '/' (etcd's habit, e.g.
	// "/woodpecker"). Deployments sharing a cluster need prefixes of which
	// none is a '/'-component prefix of another ("a" and "a/b" overlap; "a"
	// and "ab" do not). Default "woodpecker".
	Prefix string

	// Username and Password authenticate with etcd's auth (both or
	// neither). The password never appears in an error, a log line or
	// the String form of this struct.
	Username string
	Password string

	// TLS, when non-nil, is used as is for every connection.
	TLS *tls.Config
	// CAFile, CertFile and KeyFile, used only when TLS is nil, build the
	// TLS configuration from PEM files: CAFile replaces the system roots;
	// CertFile and KeyFile (both or neither) are the client certificate.
	// Setting any of them turns TLS on.
	CAFile   string
	CertFile string
	KeyFile  string

	// DialTimeout bounds connecting and authenticating in New, and the
	// connectivity check it makes. Default 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds every call to etcd, on top of the caller's
	// context. Default 10s.
	RequestTimeout time.Duration

	// Logger receives lifecycle and watch-resync messages; nil discards
	// them. The etcd client's own (zap) logging is always discarded.
	Logger *slog.Logger
}

// String describes the configuration with the password redacted.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "xxxxx"
	}
	return fmt.Sprintf("etcd.Config{Endpoints:%q Prefix:%q Username:%q Password:%q TLS:%t CAFile:%q CertFile:%q KeyFile:%q DialTimeout:%v RequestTimeout:%v}",
		c.Endpoints, c.Prefix, c.Username, pw, c.TLS != nil, c.CAFile, c.CertFile, c.KeyFile, c.DialTimeout, c.RequestTimeout)
}

// useTLS reports whether connections use TLS beyond what endpoint schemes say.
func (c *Config) useTLS() bool {
	return c.TLS != nil || c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
}

func (c Config) withDefaults() Config {
	c.Endpoints = slices.Clone(c.Endpoints)
	if c.Prefix == "" {
		c.Prefix = etcdDefaultPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = etcdDefaultDialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = etcdDefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("meta: etcd config: "+format, args...)
	}
	if len(c.Endpoints) == 0 {
		return bad("Endpoints: empty, need at least one")
	}
	for i, ep := range c.Endpoints {
		if err := etcdCheckEndpoint(ep, c.useTLS()); err != nil {
			return bad("Endpoints[%d]: %v", i, err)
		}
	}
	if err := etcdCheckPrefix(c.Prefix); err != nil {
		return bad("Prefix: %v", err)
	}
	if c.Username == "" && c.Password != "" {
		return bad("Password set without Username")
	}
	if c.Username != "" && c.Password == "" {
		return bad("Username %q set without Password", c.Username)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return bad("CertFile %q and KeyFile %q: set both or neither", c.CertFile, c.KeyFile)
	}
	if c.DialTimeout < 0 {
		return bad("DialTimeout %v: negative", c.DialTimeout)
	}
	if c.RequestTimeout < 0 {
		return bad("RequestTimeout %v: negative", c.RequestTimeout)
	}
	return nil
}

// etcdCheckEndpoint validates one endpoint. The endpoint is quoted in errors
// only after ruling out embedded credentials.
func etcdCheckEndpoint(ep string, useTLS bool) error {
	if ep == "" {
		return errors.New("empty")
	}
	if strings.Contains(ep, "@") {
		return errors.New("contains '@': credentials in an endpoint are not supported (use Username and Password)")
	}
	if strings.ContainsFunc(ep, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%q contains a space or control character", ep)
	}
	hostport := ep
	if scheme, rest, ok := strings.Cut(ep, "://"); ok {
		switch scheme {
		case "unix", "unixs":
			if rest == "" {
				return fmt.Errorf("%q: empty socket path", ep)
			}
			return nil
		case "http":
			if useTLS {
				return fmt.Errorf("%q: http:// endpoint but TLS is configured (use https:// or host:port)", ep)
			}
		case "https":
		default:
			return fmt.Errorf("%q: scheme %q is not http, https, unix or unixs", ep, scheme)
		}
		hostport = strings.TrimSuffix(rest, "/")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %v", ep, err)
	}
	if host == "" {
		return fmt.Errorf("%q: empty host", ep)
	}
	if err := etcdCheckPort(port); err != nil {
		return fmt.Errorf("%q: %v", ep, err)
	}
	return nil
}

func etcdCheckPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	return nil
}

// etcdCheckPrefix validates a deployment prefix: a valid key, optionally
// preceded by one '/'.
func etcdCheckPrefix(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	if err := meta.ValidateKey(strings.TrimPrefix(p, "/")); err != nil {
		return fmt.Errorf("%q: %v", p, err)
	}
	return nil
}

// ConfigFromURL parses an etcd URL:
//
//	etcd://[user:password@]host1:port1[,host2:port2...]/prefix[?param=value&...]
//	etcds://...   (the same with TLS)
//
// The path is the deployment Prefix (required; "a/b" for a path "/a/b"; one
// trailing '/' is ignored). A host without a port gets etcd's 2379; IPv6
// hosts are bracketed. Query parameters:
//
//	tls=true|false       TLS on the client connections (etcds:// implies true)
//	ca_file, cert_file, key_file   PEM files (see Config; any implies TLS)
//	dial_timeout=5s      Config.DialTimeout
//	timeout=10s          Config.RequestTimeout
//	user, password       credentials, instead of the userinfo part
//
// Unknown or repeated parameters are errors. No error ever contains the
// password; callers must not log the URL itself (url.URL.Redacted hides a
// userinfo password but not a password query parameter). The returned
// config is validated.
func ConfigFromURL(u *url.URL) (Config, error) {
	var cfg Config
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("meta: etcd URL: "+format, args...)
	}
	if u == nil {
		return bad("nil URL")
	}
	wantTLS := false
	switch u.Scheme {
	case "etcd":
	case "etcds":
		wantTLS = true
	default:
		return bad("scheme %q is not etcd or etcds", u.Scheme)
	}
	if u.Opaque != "" {
		return bad("want %s://host:port/prefix, got an opaque URL", u.Scheme)
	}
	if u.Fragment != "" {
		return bad("unexpected #fragment (a password holding '#' must be percent-encoded as %%23)")
	}

	// Hosts.
	if u.Host == "" {
		return bad("empty host list")
	}
	for h := range strings.SplitSeq(u.Host, ",") {
		ep, err := etcdHostPort(h)
		if err != nil {
			return bad("host list: %v", err)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}

	// Prefix.
	p := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/")
	if p == "" {
		return bad("missing prefix: want %s://host:port/prefix", u.Scheme)
	}
	cfg.Prefix = p

	// Credentials from the userinfo.
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
		if cfg.Username == "" {
			return bad("userinfo without a user name")
		}
	}

	// Query parameters.
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// The raw query may hold the password: do not quote it.
		return bad("malformed query string")
	}
	tlsParam := ""
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vals := q[name]
		if len(vals) != 1 {
			return bad("parameter %q given %d times", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("tls=%q: want true or false", v)
			}
			if u.Scheme == "etcds" && !b {
				return bad("tls=false contradicts the etcds scheme")
			}
			wantTLS = b
			tlsParam = v
		case "ca_file":
			cfg.CAFile = v
		case "cert_file":
			cfg.CertFile = v
		case "key_file":
			cfg.KeyFile = v
		case "dial_timeout", "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("%s=%q: want a positive duration such as 5s", name, v)
			}
			if name == "timeout" {
				cfg.RequestTimeout = d
			} else {
				cfg.DialTimeout = d
			}
		case "user":
			if u.User != nil {
				return bad("user given both in the userinfo and as a parameter")
			}
			cfg.Username = v
		case "password":
			if u.User != nil {
				return bad("password given both in the userinfo and as a parameter")
			}
			cfg.Password = v
		default:
			return bad("unknown parameter %q (known: tls, ca_file, cert_file, key_file, dial_timeout, timeout, user, password)", name)
		}
	}
	hasFiles := cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	if tlsParam != "" && !wantTLS && hasFiles {
		return bad("tls=false but ca_file, cert_file or key_file given")
	}
	if wantTLS && !hasFiles {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	checked := cfg.withDefaults()
	if err := checked.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// etcdHostPort validates one host of a URL host list and adds the default
// port when it has none.
func etcdHostPort(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host")
	}
	// A port follows the last ':' unless that colon is inside an IPv6
	// literal's brackets.
	if i, j := strings.LastIndexByte(h, ':'), strings.LastIndexByte(h, ']'); i < 0 || i < j {
		if strings.HasPrefix(h, "[") != (j >= 0) {
			return "", fmt.Errorf("host %q: unbalanced brackets", h)
		}
		h = net.JoinHostPort(strings.Trim(h, "[]"), etcdDefaultPort)
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		return "", fmt.Errorf("host %q: %v", h, err)
	}
	if host == "" {
		return "", fmt.Errorf("host %q: empty host name", h)
	}
	if err := etcdCheckPort(port); err != nil {
		return "", fmt.Errorf("host %q: %v", h, err)
	}
	return net.JoinHostPort(host, port), nil
}

// etcdBuildTLS returns the TLS configuration for cfg, or nil for none.
func etcdBuildTLS(cfg *Config) (*tls.Config, error) {
	if cfg.TLS != nil {
		return cfg.TLS, nil
	}
	if !cfg.useTLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("meta: etcd config: CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("meta: etcd config: CAFile %q: no PEM certificate found", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("meta: etcd config: CertFile %q / KeyFile %q: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
