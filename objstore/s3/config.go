package s3

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// Defaults of Config, applied to zero values.
const (
	// DefaultRequestTimeout bounds each request attempt (see Config.RequestTimeout).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxRetries is the number of retries of a retryable answer:
	// none. The caller owns the retry budget (the WAL engine retries every
	// transient failure for its Config.RetryBudget); a bucket that retried
	// too would multiply the budget.
	DefaultMaxRetries = 0
	// DefaultEndpoint is used by ConfigFromURL when neither the URL
	// nor the environment names an endpoint.
	DefaultEndpoint = "s3.amazonaws.com"
	// PartSize is the part size of multipart uploads (Put with size -1).
	PartSize = 16 << 20
)

// Config configures an S3-compatible bucket reached through minio-go.
// Zero values mean the documented defaults.
type Config struct {
	// Endpoint is the server's host or host:port, without a scheme
	// ("127.0.0.1:9000", "s3.amazonaws.com"). Required.
	Endpoint string
	// Bucket is the bucket name. Required; the bucket must exist.
	Bucket string
	// Prefix is prepended to every key as Prefix+"/"+key, so several users
	// can share one bucket. It must be empty or a valid key (objstore.ValidateKey).
	Prefix string
	// Region is the bucket's region. Empty means minio-go detects it with a
	// GetBucketLocation request (once per bucket).
	Region string
	// AccessKey and SecretKey are static credentials; both empty means
	// anonymous requests. SessionToken is the STS token of temporary
	// credentials, if any. None of them ever appears in an error or a log.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Secure selects HTTPS. The zero value is plain HTTP.
	Secure bool
	// InsecureSkipVerify disables verification of the server's certificate
	// (tests only). Requires Secure.
	InsecureSkipVerify bool
	// CAFile is a PEM file of extra CA certificates (a private CA), added to
	// the system pool. Requires Secure.
	CAFile string
	// Lookup selects how the bucket is addressed: "path"
	// (http://host/bucket/key), "dns" (http://bucket.host/key) or "auto"
	// (minio-go decides from the endpoint). Empty means "auto".
	Lookup string
	// DisableContentSha256 sends UNSIGNED-PAYLOAD instead of hashing every
	// body with SHA-256. Over plain HTTP the hashing costs 25-50% of the PUT
	// throughput; gofakes3 corrupts multipart uploads unless this is set.
	DisableContentSha256 bool
	// MaxRetries is how many times a retryable answer is retried by this
	// package, with exponential backoff and full jitter. Retryable: 409
	// ConditionalRequestConflict (AWS under concurrent conditional writes),
	// 429, 503 SlowDown, other 5xx and network errors. minio-go's own
	// retries are limited to resending a request once within the same
	// attempt (a broken kept-alive connection), so that one layer owns the
	// outage budget. 0 means DefaultMaxRetries (none: the WAL engine
	// retries); set it for other uses of the bucket. Negative means none.
	MaxRetries int
	// RequestTimeout bounds each attempt of an operation (including
	// minio-go's internal retries of that attempt), and the bucket check of
	// New. For Get it also bounds reading the body, until Close. 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives lifecycle (Info) and retry (Warn) records. nil
	// discards them.
	Logger *slog.Logger
}

// String describes the configuration without its secrets, so a config can
// be logged or printed with %v safely.
func (c Config) String() string {
	redact := func(s string) string {
		if s == "" {
			return ""
		}
		return "REDACTED"
	}
	return fmt.Sprintf("s3.Config{Endpoint:%q Bucket:%q Prefix:%q Region:%q AccessKey:%q SecretKey:%q "+
		"SessionToken:%q Secure:%t InsecureSkipVerify:%t CAFile:%q Lookup:%q DisableContentSha256:%t "+
		"MaxRetries:%d RequestTimeout:%s}",
		c.Endpoint, c.Bucket, c.Prefix, c.Region, c.AccessKey, redact(c.SecretKey),
		redact(c.SessionToken), c.Secure, c.InsecureSkipVerify, c.CAFile, c.Lookup, c.DisableContentSha256,
		c.MaxRetries, c.RequestTimeout)
}

// GoString is String, so %#v does not print the secrets either.
func (c Config) GoString() string { return c.String() }

func (c Config) withDefaults() Config {
	if c.Lookup == "" {
		c.Lookup = "auto"
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a config that went through withDefaults. Its errors name
// the field and the bad value, except for secrets.
func (c Config) validate() error {
	bad := func(field string, value any, why string) error {
		return fmt.Errorf("objstore: s3 config: %s %q: %s", field, fmt.Sprint(value), why)
	}
	if strings.Contains(c.Endpoint, "@") {
		// Do not echo it: it may hold credentials.
		return errors.New("objstore: s3 config: Endpoint must not contain user info ('@')")
	}
	if err := s3ValidateEndpoint(c.Endpoint); err != nil {
		return bad("Endpoint", c.Endpoint, err.Error())
	}
	if c.Bucket == "" {
		return errors.New("objstore: s3 config: Bucket is empty")
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		return bad("Bucket", c.Bucket, err.Error())
	}
	if c.Prefix != "" {
		if err := objstore.ValidateKey(c.Prefix); err != nil {
			return bad("Prefix", c.Prefix, err.Error())
		}
	}
	if _, ok := s3Lookups[c.Lookup]; !ok {
		return bad("Lookup", c.Lookup, `want "auto", "path" or "dns"`)
	}
	switch {
	case c.AccessKey != "" && c.SecretKey == "":
		return errors.New("objstore: s3 config: AccessKey is set but SecretKey is empty")
	case c.AccessKey == "" && c.SecretKey != "":
		return errors.New("objstore: s3 config: SecretKey is set but AccessKey is empty")
	case c.SessionToken != "" && c.AccessKey == "":
		return errors.New("objstore: s3 config: SessionToken is set without AccessKey and SecretKey")
	}
	if c.RequestTimeout < 0 {
		return bad("RequestTimeout", c.RequestTimeout, "negative")
	}
	if !c.Secure && c.InsecureSkipVerify {
		return bad("InsecureSkipVerify", c.InsecureSkipVerify, "requires Secure")
	}
	if !c.Secure && c.CAFile != "" {
		return bad("CAFile", c.CAFile, "requires Secure")
	}
	return nil
}

var s3Lookups = map[string]minio.BucketLookupType{
	"auto": minio.BucketLookupAuto,
	"path": minio.BucketLookupPath,
	"dns":  minio.BucketLookupDNS,
}

// s3ValidateEndpoint accepts "host" or "host:port" without scheme or path.
func s3ValidateEndpoint(ep string) error {
	if ep == "" {
		return errors.New("empty")
	}
	if strings.Contains(ep, "://") {
		return errors.New("must not have a scheme (use Secure for https)")
	}
	if strings.ContainsAny(ep, "/?#@ \t") {
		return errors.New("want host or host:port")
	}
	host := ep
	if strings.LastIndexByte(ep, ':') > strings.LastIndexByte(ep, ']') {
		h, port, err := net.SplitHostPort(ep)
		if err != nil {
			return errors.New("want host or host:port")
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
		host = h
	}
	if strings.Trim(host, "[]") == "" {
		return errors.New("empty host")
	}
	return nil
}

// s3URLParams are the query parameters ConfigFromURL accepts.
var s3URLParams = []string{
	"access_key", "ca_file", "disable_sha256", "endpoint", "insecure_skip_verify", "lookup",
	"max_retries", "region", "secret_key", "secure", "session_token", "timeout",
}

// ConfigFromURL builds a configuration from a URL of the form
//
//	s3://[ACCESS:SECRET@]bucket[/prefix][?param=value&...]
//
// Parameters: endpoint (host:port, or a URL whose http/https scheme sets
// secure), region, secure, lookup (auto|path|dns), access_key, secret_key,
// session_token, disable_sha256, timeout (a Go duration), max_retries,
// insecure_skip_verify, ca_file. Unknown or repeated parameters are errors.
//
// What the URL leaves out comes from the standard AWS environment:
// credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN (only when the URL names no credentials at all); the
// region from AWS_REGION or AWS_DEFAULT_REGION; the endpoint from
// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else s3.amazonaws.com. secure
// defaults to true unless the endpoint came with an http:// scheme.
//
// The result is not validated beyond parsing; New validates it. Errors
// never contain the secret key or the session token.
func ConfigFromURL(u *url.URL) (Config, error) {
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("objstore: s3 URL: "+format, args...)
	}
	if u == nil {
		return fail("nil URL")
	}
	if u.Scheme != "s3" {
		return fail("scheme %q, want \"s3\"", u.Scheme)
	}
	if u.Opaque != "" {
		return fail("want s3://bucket/prefix")
	}
	if u.Fragment != "" {
		return fail("unexpected #fragment")
	}
	if u.Port() != "" || strings.HasSuffix(u.Host, ":") {
		return fail("bucket %q has a port; the endpoint goes in ?endpoint=host:port", u.Hostname())
	}
	var cfg Config
	cfg.Bucket = u.Host
	if cfg.Bucket == "" {
		return fail("missing bucket name (want s3://bucket/prefix)")
	}
	cfg.Prefix = strings.Trim(u.Path, "/")

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// The raw query may hold secrets: do not echo it or the parser's error.
		return fail("malformed query string")
	}
	var unknown []string
	for name, vals := range q {
		if !slices.Contains(s3URLParams, name) {
			unknown = append(unknown, name)
			continue
		}
		if len(vals) > 1 {
			return fail("query parameter %s given %d times", name, len(vals))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fail("unknown query parameter(s) %s (known: %s)",
			strings.Join(unknown, ", "), strings.Join(s3URLParams, ", "))
	}
	get := func(name string) (string, bool) {
		v, ok := q[name]
		if !ok {
			return "", false
		}
		return v[0], true
	}
	parseBool := func(name string) (bool, bool, error) {
		s, ok := get(name)
		if !ok {
			return false, false, nil
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, false, fmt.Errorf("objstore: s3 URL: query parameter %s=%q: not a boolean", name, s)
		}
		return b, true, nil
	}

	// Credentials: userinfo or query, else the environment.
	var haveUser bool
	if u.User != nil {
		haveUser = true
		cfg.AccessKey = u.User.Username()
		cfg.SecretKey, _ = u.User.Password()
	}
	if v, ok := get("access_key"); ok {
		if haveUser {
			return fail("access key given both in the URL's user info and as access_key")
		}
		cfg.AccessKey = v
	}
	if v, ok := get("secret_key"); ok {
		if haveUser {
			return fail("secret key given both in the URL's user info and as secret_key")
		}
		cfg.SecretKey = v
	}
	cfg.SessionToken, _ = get("session_token")
	if cfg.AccessKey == "" && cfg.SecretKey == "" && cfg.SessionToken == "" {
		cfg.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
		cfg.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
		cfg.SessionToken = os.Getenv("AWS_SESSION_TOKEN")
	}

	cfg.Region, _ = get("region")
	if cfg.Region == "" {
		cfg.Region = cmp.Or(os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	}

	// Endpoint and scheme.
	secure := true
	schemeSecure, haveScheme := false, false
	ep, ok := get("endpoint")
	if !ok || ep == "" {
		ep = cmp.Or(os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	}
	if ep == "" {
		ep = DefaultEndpoint
	}
	if strings.Contains(ep, "@") {
		// Do not echo it: it may hold credentials.
		return fail("endpoint must not contain user info ('@')")
	}
	if i := strings.Index(ep, "://"); i >= 0 {
		switch strings.ToLower(ep[:i]) {
		case "http":
			schemeSecure = false
		case "https":
			schemeSecure = true
		default:
			return fail("endpoint %q: scheme must be http or https", ep)
		}
		haveScheme = true
		secure = schemeSecure
		ep = strings.TrimSuffix(ep[i+3:], "/")
	}
	if err := s3ValidateEndpoint(ep); err != nil {
		return fail("endpoint %q: %v", ep, err)
	}
	cfg.Endpoint = ep
	if b, ok, err := parseBool("secure"); err != nil {
		return Config{}, err
	} else if ok {
		if haveScheme && b != schemeSecure {
			return fail("secure=%t contradicts the endpoint's scheme", b)
		}
		secure = b
	}
	cfg.Secure = secure

	if cfg.Lookup, ok = get("lookup"); ok {
		if _, known := s3Lookups[cfg.Lookup]; !known {
			return fail(`query parameter lookup=%q: want "auto", "path" or "dns"`, cfg.Lookup)
		}
	}
	if cfg.DisableContentSha256, _, err = parseBool("disable_sha256"); err != nil {
		return Config{}, err
	}
	if cfg.InsecureSkipVerify, _, err = parseBool("insecure_skip_verify"); err != nil {
		return Config{}, err
	}
	cfg.CAFile, _ = get("ca_file")
	if s, ok := get("timeout"); ok {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fail("query parameter timeout=%q: want a positive duration such as 10s", s)
		}
		cfg.RequestTimeout = d
	}
	if s, ok := get("max_retries"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < -1 {
			return fail("query parameter max_retries=%q: want an integer >= -1", s)
		}
		cfg.MaxRetries = n
	}
	return cfg, nil
}

func s3Transport(cfg Config) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("objstore: s3 transport: %w", err)
	}
	// Bounds every request's wait for its answer, also those of multipart
	// uploads, which no per-call context covers.
	tr.ResponseHeaderTimeout = cfg.RequestTimeout
	if !cfg.Secure {
		return tr, nil
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.InsecureSkipVerify = cfg.InsecureSkipVerify
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("objstore: s3 config: CAFile %q: %w", cfg.CAFile, err)
		}
		pool := tr.TLSClientConfig.RootCAs
		if pool == nil {
			if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("objstore: s3 config: CAFile %q: no PEM certificate found", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return tr, nil
}

// s3Error is an error from the server or the network that does not map to a
// sentinel: the operation is ambiguous. Its text names the operation, key,
// status and S3 code; secrets are scrubbed from the text and from a wrapped
