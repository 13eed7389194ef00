package codec

import (
	"errors"
	"fmt"
	"strconv"
)

// Object key layout (docs/design.md, decision 11). Part of the on-storage
// format; never changes.
//
//	<logPrefix>/s/<segment>/<seq>
//
// segment and seq are decimal, zero-padded to 20 digits (the width of
// math.MaxUint64), so byte order, numeric order and directory-walk order all
// agree. Every component uses only [0-9a-z_], which sorts after '/', so a
// listing of <logPrefix>/s/ is in (segment, seq) order on every backend.
// The name "s" under a log prefix is reserved for the segment tree: nothing
// else may be stored at <logPrefix>/s, and only fragments live inside a
// segment directory, so no fragment key is a directory prefix of another key.
const (
	segmentsDir = "s"
	keyDigits   = 20
	// MaxLogPrefixLen bounds a log prefix so that fragment keys stay far
	// below S3's 1024-byte key limit.
	MaxLogPrefixLen = 512
)

// ValidateLogPrefix reports whether p can be used as a log prefix: one or
// more non-empty components of [0-9a-z_] separated by single '/', at most
// MaxLogPrefixLen bytes, no leading or trailing '/'. A log prefix must be its
// log's own namespace: no other log's prefix may start with p + "/".
func ValidateLogPrefix(p string) error {
	if p == "" {
		return errors.New("codec: empty log prefix")
	}
	if len(p) > MaxLogPrefixLen {
		return fmt.Errorf("codec: log prefix is %d bytes, the limit is %d", len(p), MaxLogPrefixLen)
	}
	prevSlash := true // a leading '/' is an empty component
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if prevSlash {
				return fmt.Errorf("codec: log prefix %q has an empty component at byte %d", p, i)
			}
			prevSlash = true
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c == '_':
			prevSlash = false
		default:
			return fmt.Errorf("codec: log prefix %q has byte %q at %d; allowed: [0-9a-z_] and '/'", p, c, i)
		}
	}
	if prevSlash {
		return fmt.Errorf("codec: log prefix %q ends with '/'", p)
	}
	return nil
}

// FragmentKey returns the object key of fragment seq of segment:
// "<logPrefix>/s/<20-digit segment>/<20-digit seq>".
//
// REQUIRES: ValidateLogPrefix(logPrefix) == nil (not re-checked here).
func FragmentKey(logPrefix string, segment, seq uint64) string {
	b := make([]byte, 0, len(logPrefix)+len("/s/")+keyDigits+1+keyDigits)
	b = append(b, logPrefix...)
	b = append(b, '/', 's', '/')
	b = appendPadded(b, segment)
	b = append(b, '/')
	b = appendPadded(b, seq)
	return string(b)
}

// SegmentPrefix returns the key prefix shared by every fragment of segment,
// ending in '/': "<logPrefix>/s/<20-digit segment>/". LIST it (with a
// start-after key from FragmentKey) to find a segment's fragments in order.
//
// REQUIRES: ValidateLogPrefix(logPrefix) == nil.
func SegmentPrefix(logPrefix string, segment uint64) string {
	b := make([]byte, 0, len(logPrefix)+len("/s/")+keyDigits+1)
	b = append(b, logPrefix...)
	b = append(b, '/', 's', '/')
	b = appendPadded(b, segment)
	b = append(b, '/')
	return string(b)
}

// ParseFragmentKey is the inverse of FragmentKey: it reports the segment
// and sequence number of key, and ok=false unless key is exactly
// FragmentKey(p, segment, seq) for some valid log prefix p.
func ParseFragmentKey(key string) (segment, seq uint64, ok bool) {
	// .../s/<20>/<20>
	const suffix = 1 + len(segmentsDir) + 1 + keyDigits + 1 + keyDigits
	if len(key) <= suffix {
		return 0, 0, false
	}
	p := len(key) - suffix
	tail := key[p:]
	if tail[0] != '/' || tail[1:2] != segmentsDir || tail[2] != '/' || tail[3+keyDigits] != '/' {
		return 0, 0, false
	}
	segment, ok1 := parsePadded(tail[3 : 3+keyDigits])
	seq, ok2 := parsePadded(tail[4+keyDigits:])
	if !ok1 || !ok2 || ValidateLogPrefix(key[:p]) != nil {
		return 0, 0, false
	}
	return segment, seq, true
}

func appendPadded(b []byte, v uint64) []byte {
	var tmp [keyDigits]byte
	for i := keyDigits - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[:]...)
}

func parsePadded(s string) (uint64, bool) {
	if len(s) != keyDigits {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64) // rejects values above MaxUint64
	return v, err == nil
}
