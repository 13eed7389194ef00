package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// Errors returned by New when the bucket cannot be opened. Each is distinct
// so that a misconfiguration is diagnosed at once; the wrapped error says
// more.
var (
	// ErrBucketNotFound is returned by New when the endpoint answers
	// but the bucket does not exist.
	ErrBucketNotFound = errors.New("objstore: s3 bucket does not exist")
	// ErrAccessDenied is returned by New when the endpoint refuses the
	// credentials (wrong access key or secret, expired session token, or a
	// policy that denies access to the bucket).
	ErrAccessDenied = errors.New("objstore: s3 access denied (check the credentials)")
	// ErrUnreachable is returned by New when no HTTP answer came from the
	// endpoint: connection refused, DNS failure, TLS failure, or no answer
	// within Config.RequestTimeout.
	ErrUnreachable = errors.New("objstore: s3 endpoint unreachable")
)

// minio.ErrorResponse when it is built, in case a server echoed them.
type s3Error struct {
	msg  string
	wrap error // optional sentinel also matched by errors.Is
	err  error
}

func (e *s3Error) Error() string { return e.msg }

// GoString keeps %#v from printing the wrapped errors' fields.
func (e *s3Error) GoString() string { return e.msg }

func (e *s3Error) Unwrap() []error {
	if e.wrap != nil {
		return []error{e.wrap, e.err}
	}
	return []error{e.err}
}

// s3Err wraps an error that maps to no sentinel; nil stays nil.
func (b *Bucket) s3Err(op, key string, err error) error {
	if err == nil {
		return nil
	}
	return b.s3ErrWhat(op, strconv.Quote(key), nil, err)
}

func (b *Bucket) s3ErrWhat(op, what string, wrap, err error) error {
	scrub := func(s string) string {
		for _, secret := range b.redact {
			s = strings.ReplaceAll(s, secret, "REDACTED")
		}
		return s
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		er.Message, er.Key, er.Resource = scrub(er.Message), scrub(er.Key), scrub(er.Resource)
		er.HostID, er.RequestID = scrub(er.HostID), scrub(er.RequestID)
		err = er
	}
	var sb strings.Builder
	sb.WriteString("objstore: s3 ")
	sb.WriteString(op)
	if what != "" {
		sb.WriteString(" ")
		sb.WriteString(what)
	}
	sb.WriteString(": ")
	if wrap != nil {
		sb.WriteString(strings.TrimPrefix(wrap.Error(), "objstore: "))
		sb.WriteString(": ")
	}
	if er.StatusCode != 0 {
		fmt.Fprintf(&sb, "%d %s: ", er.StatusCode, er.Code)
	}
	sb.WriteString(err.Error())
	return &s3Error{msg: scrub(sb.String()), wrap: wrap, err: err}
}

// s3Status returns the HTTP status and S3 code of a minio-go error, or 0.
func s3Status(err error) (int, string) {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode, er.Code
	}
	return 0, ""
}

// s3Retryable reports whether an answer is worth another attempt.
func s3Retryable(err error) bool {
	status, code := s3Status(err)
	switch {
	case status == http.StatusConflict:
		return code == "ConditionalRequestConflict" || code == "OperationAborted"
	case status == http.StatusTooManyRequests, status >= 500:
		return true
	case code == "SlowDown" || code == "SlowDownWrite" || code == "SlowDownRead" || code == "InternalError":
		return true
	}
	var ne net.Error
	return status == 0 && errors.As(err, &ne) // no answer: connection refused or reset, a timeout
}

// s3Policy is how this package retries an operation when Config.MaxRetries
// is set: full-jitter exponential backoff, each wait random in
// [0, min(2s, 50ms·2^(n-1))] before retry n, at most MaxRetries times.
func s3Policy(maxRetries int) retry.Policy {
	return retry.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 1, MaxRetries: maxRetries}
}

// s3Retry runs fn, each attempt under its own RequestTimeout, retrying
// retryable answers up to MaxRetries times (s3Policy) while ctx lives.
// rewind, if not nil, prepares the request body for another attempt; if it
// fails, the attempt's error is returned without retrying.
func (b *Bucket) s3Retry(ctx context.Context, op, key string, rewind func() error,
	fn func(ctx context.Context) error,
) error {
	var rt *retry.Retrier
	for {
		actx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		err := fn(actx)
		cancel()
		if err == nil || b.cfg.MaxRetries <= 0 || !s3Retryable(err) || ctx.Err() != nil {
			return err
		}
		if rt == nil {
			rt = s3Policy(b.cfg.MaxRetries).Retrier()
		}
		attempt := rt.Attempt()
		d, ok := rt.Next()
		if !ok {
			return err
		}
		if rewind != nil {
			if rerr := rewind(); rerr != nil {
				return err
			}
		}
		status, code := s3Status(err)
		b.log.Warn("objstore: s3 retrying", "op", op, "key", key, "attempt", attempt,
			"status", status, "code", code, "backoff", d)
		if retry.Sleep(ctx, d) != nil {
			return err
		}
	}
}
