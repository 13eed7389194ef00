package codec

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestFragmentKey(t *testing.T) {
	require.Equal(t, "logs/a/s/00000000000000000001/00000000000000000002", FragmentKey("logs/a", 1, 2))
	require.Equal(t, "x/s/18446744073709551615/00000000000000000000", FragmentKey("x", math.MaxUint64, 0))
	require.Equal(t, "logs/a/s/00000000000000000001/", SegmentPrefix("logs/a", 1))
	require.True(t, strings.HasPrefix(FragmentKey("logs/a", 1, 99), SegmentPrefix("logs/a", 1)))

	seg, seq, ok := ParseFragmentKey("logs/a/s/00000000000000000001/00000000000000000002")
	require.True(t, ok)
	require.Equal(t, uint64(1), seg)
	require.Equal(t, uint64(2), seq)
	seg, seq, ok = ParseFragmentKey(FragmentKey("w", math.MaxUint64, math.MaxUint64))
	require.True(t, ok)
	require.Equal(t, uint64(math.MaxUint64), seg)
	require.Equal(t, uint64(math.MaxUint64), seq)
}

func TestParseFragmentKeyRejects(t *testing.T) {
	for _, k := range []string{
		"",
		"s/00000000000000000001/00000000000000000002",         // no log prefix
		"/s/00000000000000000001/00000000000000000002",        // empty log prefix
		"a//s/00000000000000000001/00000000000000000002",      // empty component
		"A/s/00000000000000000001/00000000000000000002",       // upper case
		"a-b/s/00000000000000000001/00000000000000000002",     // '-'
		"a/t/00000000000000000001/00000000000000000002",       // not the segment dir
		"a/s/0000000000000000001/000000000000000000002",       // widths 19/21
		"a/s/00000000000000000001/0000000000000000002",        // short seq
		"a/s/00000000000000000001/000000000000000000002",      // long seq (parses as prefix "a/s/...")
		"a/s/00000000000000000001/00000000000000000002/",      // trailing slash
		"a/s/00000000000000000001/",                           // segment prefix
		"a/s/0000000000000000000x/00000000000000000002",       // non-digit
		"a/s/+0000000000000000001/00000000000000000002",       // sign
		"a/s/99999999999999999999/00000000000000000002",       // > MaxUint64
		"a/s/00000000000000000001/18446744073709551616",       // MaxUint64+1
		"a/s/00000000000000000001-00000000000000000002xxxxxx", // junk
	} {
		_, _, ok := ParseFragmentKey(k)
		require.False(t, ok, "%q", k)
	}
}

func TestValidateLogPrefix(t *testing.T) {
	for _, p := range []string{"a", "logs/raft_1", "0/1/2", strings.Repeat("a", MaxLogPrefixLen)} {
		require.NoError(t, ValidateLogPrefix(p), "%q", p)
	}
	for _, p := range []string{"", "/a", "a/", "a//b", "A", "a.b", "a-b", "a b", "ä", strings.Repeat("a", MaxLogPrefixLen+1)} {
		require.Error(t, ValidateLogPrefix(p), "%q", p)
	}
}

var genPrefix = rapid.StringMatching(`[0-9a-z_]{1,6}(/[0-9a-z_]{1,6}){0,3}`)

// TestKeyProperties: keys parse back, byte order equals (segment, seq)
// order, and no key is a directory prefix of another.
func TestKeyProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		prefix := genPrefix.Draw(t, "prefix")
		type id struct{ seg, seq uint64 }
		genNum := rapid.OneOf(rapid.Uint64(), rapid.Uint64Range(0, 20), rapid.Just(uint64(math.MaxUint64)))
		ids := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) id {
			return id{genNum.Draw(t, "seg"), genNum.Draw(t, "seq")}
		}), 1, 20).Draw(t, "ids")
		keys := make([]string, len(ids))
		for i, x := range ids {
			keys[i] = FragmentKey(prefix, x.seg, x.seq)
			require.NoError(t, ValidateLogPrefix(prefix))
			seg, seq, ok := ParseFragmentKey(keys[i])
			require.True(t, ok, keys[i])
			require.Equal(t, x, id{seg, seq})
			require.True(t, strings.HasPrefix(keys[i], SegmentPrefix(prefix, x.seg)))
			for _, c := range keys[i] {
				require.True(t, c == '/' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'), keys[i])
			}
		}
		byKey := slices.Clone(ids)
		slices.SortFunc(byKey, func(a, b id) int {
			return strings.Compare(FragmentKey(prefix, a.seg, a.seq), FragmentKey(prefix, b.seg, b.seq))
		})
		byID := slices.Clone(ids)
		slices.SortFunc(byID, func(a, b id) int { return cmp.Or(cmp.Compare(a.seg, b.seg), cmp.Compare(a.seq, b.seq)) })
		require.Equal(t, byID, byKey)
		for _, a := range keys {
			for _, b := range keys {
				require.False(t, strings.HasPrefix(b, a+"/"), "%q is a directory prefix of %q", a, b)
			}
		}
	})
}
