package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// tb is what the helpers need; both *testing.T and *rapid.T satisfy it.
type tb interface {
	require.TestingT
	Helper()
}

var compressions = []Compression{CompressionNone, CompressionZstd, CompressionS2}

func dataHeader(c Compression, first uint64, n int) Header {
	return Header{
		Kind: KindData, Compression: c,
		LogID: 7, Segment: 3, Seq: 42, Epoch: 9, Nonce: 0x0123456789abcdef,
		FirstIndex: first, Count: uint32(n),
	}
}

func mustEncode(t tb, h Header, entries [][]byte) []byte {
	t.Helper()
	b, err := AppendFragment(nil, h, entries)
	require.NoError(t, err)
	return b
}

// requireDecodesTo decodes b and checks it against h (ignoring the
// output-only length fields) and entries.
func requireDecodesTo(t tb, b []byte, h Header, entries [][]byte) *Fragment {
	t.Helper()
	f, err := Decode(b)
	require.NoError(t, err)
	got := f.Header
	require.Equal(t, len(b), got.HeaderLen()+int(got.StoredLen))
	var payloadLen int
	for _, e := range entries {
		payloadLen += len(e)
	}
	require.Equal(t, uint32(payloadLen), got.PayloadLen)
	got.PayloadLen, got.StoredLen = 0, 0
	h.PayloadLen, h.StoredLen = 0, 0
	require.Equal(t, h, got)
	require.Equal(t, len(entries), f.Len())
	for i := range entries {
		e := f.Entry(i)
		require.True(t, bytes.Equal(entries[i], e), "entry %d", i)
		require.Equal(t, len(e), cap(e), "entry %d capacity", i)
	}
	hh, n, err := DecodeHeader(b)
	require.NoError(t, err)
	require.Equal(t, f.Header, hh)
	require.Equal(t, f.Header.HeaderLen(), n)
	tf, err := DecodeTrusted(b)
	require.NoError(t, err)
	require.Equal(t, f.Header, tf.Header)
	require.Equal(t, f.Len(), tf.Len())
	for i := range entries {
		require.True(t, bytes.Equal(entries[i], tf.Entry(i)), "trusted entry %d", i)
	}
	return f
}

func entriesOf(sizes ...int) [][]byte {
	out := make([][]byte, len(sizes))
	for i, n := range sizes {
		e := make([]byte, n)
		for j := range e {
			e[j] = byte(i*31 + j*7 + j/13)
		}
		out[i] = e
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("woodpecker raft log entry "), 40000) // ~1 MiB, compressible
	cases := []struct {
		name    string
		h       Header
		entries [][]byte
	}{
		{"one entry", dataHeader(CompressionNone, 1, 1), entriesOf(10)},
		{"index zero", dataHeader(CompressionNone, 0, 3), entriesOf(1, 2, 3)},
		{"empty entries", dataHeader(CompressionNone, 5, 4), entriesOf(0, 0, 0, 0)},
		{"mixed empty", dataHeader(CompressionNone, 5, 4), entriesOf(0, 17, 0, 3)},
		{"hundred", dataHeader(CompressionNone, 1000, 100), entriesOf(make([]int, 100)...)},
		{"max first index", dataHeader(CompressionNone, math.MaxUint64-2, 2), entriesOf(1, 1)},
		{"fence", Header{Kind: KindFence, LogID: 1, Segment: 2, Seq: 3, Epoch: 4, Nonce: 5}, nil},
		{"fence with index", Header{Kind: KindFence, Segment: 2, Seq: 3, FirstIndex: 77}, nil},
		{"seal", Header{Kind: KindSeal, LogID: 1, Segment: 2, Seq: 9, Epoch: 4, Nonce: 5, FirstIndex: 101}, nil},
		{"seal max", Header{Kind: KindSeal, FirstIndex: math.MaxUint64}, nil},
		{"all max", Header{Kind: KindData, LogID: math.MaxUint64, Segment: math.MaxUint64, Seq: math.MaxUint64,
			Epoch: math.MaxUint64, Nonce: math.MaxUint64, FirstIndex: math.MaxUint64 - 1, Count: 1}, entriesOf(3)},
	}
	for _, c := range compressions {
		cases = append(cases,
			struct {
				name    string
				h       Header
				entries [][]byte
			}{fmt.Sprintf("big %v", c), dataHeader(c, 1, 3), [][]byte{big, big[:1000], {}}},
			struct {
				name    string
				h       Header
				entries [][]byte
			}{fmt.Sprintf("varied %v", c), dataHeader(c, 9, 5), entriesOf(1, 100, 1000, 0, 5000)},
			struct {
				name    string
				h       Header
				entries [][]byte
			}{fmt.Sprintf("over zstd window %v", c), dataHeader(c, 1, 3), [][]byte{big, big, entriesOf(300)[0]}},
			struct {
				name    string
				h       Header
				entries [][]byte
			}{fmt.Sprintf("tiny %v", c), dataHeader(c, 1, 1), entriesOf(1)},
			struct {
				name    string
				h       Header
				entries [][]byte
			}{fmt.Sprintf("empty payload %v", c), dataHeader(c, 9, 2), entriesOf(0, 0)},
			struct {
				name    string
				h       Header
				entries [][]byte
			}{fmt.Sprintf("seal %v", c), Header{Kind: KindSeal, Compression: c, FirstIndex: 3}, nil},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := mustEncode(t, tc.h, tc.entries)
			requireDecodesTo(t, b, tc.h, tc.entries)
			require.Equal(t, tc.h.FirstIndex+uint64(tc.h.Count)-1, tc.h.LastIndex())

			// Appending to a non-empty dst leaves the prefix alone and
			// produces the same bytes.
			prefix := []byte("prefix")
			b2, err := AppendFragment(append([]byte{}, prefix...), tc.h, tc.entries)
			require.NoError(t, err)
			require.Equal(t, prefix, b2[:len(prefix)])
			require.Equal(t, b, b2[len(prefix):])
		})
	}
}

func TestLastIndex(t *testing.T) {
	require.Equal(t, uint64(10), Header{FirstIndex: 10, Count: 1}.LastIndex())
	require.Equal(t, uint64(19), Header{FirstIndex: 10, Count: 10}.LastIndex())
	require.Equal(t, uint64(9), Header{Kind: KindSeal, FirstIndex: 10}.LastIndex())
	require.Equal(t, uint64(math.MaxUint64), Header{Kind: KindSeal}.LastIndex())
}

func genHeader(t *rapid.T) (Header, [][]byte) {
	kind := rapid.SampledFrom([]Kind{KindData, KindData, KindData, KindFence, KindSeal}).Draw(t, "kind")
	var entries [][]byte
	if kind == KindData {
		entries = rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 0, 300), 1, 40).Draw(t, "entries")
		if rapid.Bool().Draw(t, "compressible") {
			for _, e := range entries {
				for i := range e {
					e[i] %= 4
				}
			}
		}
	}
	n := uint64(len(entries))
	h := Header{
		Kind:        kind,
		Compression: rapid.SampledFrom(compressions).Draw(t, "compression"),
		LogID:       rapid.Uint64().Draw(t, "log"),
		Segment:     rapid.Uint64().Draw(t, "segment"),
		Seq:         rapid.Uint64().Draw(t, "seq"),
		Epoch:       rapid.Uint64().Draw(t, "epoch"),
		Nonce:       rapid.Uint64().Draw(t, "nonce"),
		FirstIndex:  rapid.Uint64Range(0, math.MaxUint64-n).Draw(t, "first"),
		Count:       uint32(n),
	}
	return h, entries
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h, entries := genHeader(t)
		b, err := AppendFragment(nil, h, entries)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		requireDecodesTo(t, b, h, entries)
	})
}

func TestEncodeErrors(t *testing.T) {
	cases := []struct {
		name    string
		h       Header
		entries [][]byte
		want    error
		msg     string
	}{
		{"count mismatch", dataHeader(CompressionNone, 1, 3), entriesOf(1, 2), ErrInvalid, "count is 3 but 2 entries"},
		{"zero count data", dataHeader(CompressionNone, 1, 0), nil, ErrInvalid, "zero entries"},
		{"entries on fence", Header{Kind: KindFence, Count: 1}, entriesOf(1), ErrInvalid, "fence fragment with 1 entries"},
		{"entries on seal", Header{Kind: KindSeal, Count: 2}, entriesOf(1, 1), ErrInvalid, "seal fragment with 2"},
		{"overflow", dataHeader(CompressionNone, math.MaxUint64, 1), entriesOf(1), ErrInvalid, "overflows"},
		{"overflow 2", dataHeader(CompressionNone, math.MaxUint64-1, 2), entriesOf(1, 1), ErrInvalid, "overflows"},
		{"kind zero", Header{}, nil, ErrInvalid, "unknown kind 0"},
		{"kind unknown", Header{Kind: 4}, nil, ErrInvalid, "unknown kind 4"},
		{"compression unknown", Header{Kind: KindSeal, Compression: 3}, nil, ErrInvalid, "unknown compression 3"},
		{"payload too large", dataHeader(CompressionNone, 1, 2), [][]byte{make([]byte, MaxPayloadSize), {1}}, ErrTooLarge, "MaxPayloadSize"},
		{"too many entries", dataHeader(CompressionNone, 1, MaxEntries+1), make([][]byte, MaxEntries+1), ErrTooLarge, "MaxEntries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := AppendFragment(dst, tc.h, tc.entries)
			require.ErrorIs(t, err, tc.want)
			require.Contains(t, err.Error(), tc.msg)
			require.Equal(t, "keep", string(out))
		})
	}
	// Exactly at the limit is fine.
	b := mustEncode(t, dataHeader(CompressionNone, 1, 1), [][]byte{make([]byte, MaxPayloadSize)})
	_, err := Decode(b)
	require.NoError(t, err)
}

// smallFragments returns small valid fragments of every kind and codec.
func smallFragments(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{
		"fence":         mustEncode(t, Header{Kind: KindFence, LogID: 1, Segment: 2, Seq: 3, Epoch: 4, Nonce: 5}, nil),
		"seal":          mustEncode(t, Header{Kind: KindSeal, LogID: 1, Segment: 2, Seq: 4, Epoch: 4, Nonce: 5, FirstIndex: 11}, nil),
		"empty entries": mustEncode(t, dataHeader(CompressionNone, 1, 3), entriesOf(0, 0, 0)),
		// Entries on both sides of combineMinLen, a repeated length and
		// one beyond 4 KiB (two-table shift): every path of
		// verifyUncompressed.
		"data none long": mustEncode(t, dataHeader(CompressionNone, 1, 11),
			entriesOf(0, combineMinLen+72, 5, combineMinLen+2, combineMinLen+2, combineMinLen+172, 7,
				combineMinLen-1, combineMinLen, 1, 4096+300)),
	}
	for _, c := range compressions {
		out["data "+c.String()] = mustEncode(t, dataHeader(c, 1, 3), [][]byte{[]byte("hello"), {}, []byte("woodpecker woodpecker woodpecker")})
	}
	return out
}

// TestEveryBitFlip flips every bit of small fragments: each flip must be
// ErrCorrupt (never ErrUnsupportedVersion: the header checksum is verified
// before the version is read) and never decode as data.
func TestEveryBitFlip(t *testing.T) {
	for name, orig := range smallFragments(t) {
		t.Run(name, func(t *testing.T) {
			hlen := binary.LittleEndian.Uint32(orig[offHeaderLen:])
			b := bytes.Clone(orig)
			for bit := 0; bit < 8*len(b); bit++ {
				b[bit/8] ^= 1 << (bit % 8)
				f, err := Decode(b)
				require.Nil(t, f, "bit %d", bit)
				require.ErrorIs(t, err, ErrCorrupt, "bit %d", bit)
				require.NotErrorIs(t, err, ErrUnsupportedVersion, "bit %d", bit)
				if bit/8 < int(hlen) {
					_, _, err := DecodeHeader(b)
					require.ErrorIs(t, err, ErrCorrupt, "header bit %d", bit)
				}
				b[bit/8] ^= 1 << (bit % 8)
			}
			require.Equal(t, orig, b)
		})
	}
}

func TestTruncationAndTrailingBytes(t *testing.T) {
	for name, orig := range smallFragments(t) {
		t.Run(name, func(t *testing.T) {
			hlen := int(binary.LittleEndian.Uint32(orig[offHeaderLen:]))
			for n := 0; n < len(orig); n++ {
				// A fresh exact-size copy, so the race detector or a
				// bounds bug sees any read past the end.
				b := bytes.Clone(orig[:n])
				_, err := Decode(b)
				require.ErrorIs(t, err, ErrCorrupt, "length %d", n)
				_, _, err = DecodeHeader(b)
				if n < hlen {
					require.ErrorIs(t, err, ErrCorrupt, "header length %d", n)
				} else {
					require.NoError(t, err, "header prefix %d", n)
				}
			}
			_, err := Decode(append(bytes.Clone(orig), 0))
			require.ErrorIs(t, err, ErrCorrupt)
			require.Contains(t, err.Error(), "trailing bytes")
		})
	}
}

// reseal recomputes both checksums of b (len(b) >= EnvelopeSize) in place, as a (future or buggy)
// writer would, so that tests can craft well-formed but unusual headers.
func reseal(b []byte) []byte {
	le := binary.LittleEndian
	hlen := int(le.Uint32(b[offHeaderLen:]))
	if hlen >= FixedHeaderSize && hlen <= len(b) {
		le.PutUint32(b[offPayloadCRC:], crc(b[hlen:]))
	}
	hlen = min(max(hlen, EnvelopeSize), len(b))
	le.PutUint32(b[offHeaderCRC:], headerCRC(b[:hlen]))
	return b
}

func TestUnsupported(t *testing.T) {
	base := mustEncode(t, dataHeader(CompressionNone, 1, 2), entriesOf(3, 4))
	cases := []struct {
		name string
		off  int
		val  byte
		msg  string
	}{
		{"version 2", offVersion, 2, "format version 2"},
		{"version 0", offVersion, 0, "format version 0"},
		{"version 255", offVersion, 255, "format version 255"},
		{"flags", offFlags, 0x01, "flags 0x01"},
		{"high flag", offFlags, 0x80, "flags 0x80"},
		{"kind", offKind, 4, "kind 4"},
		{"compression", offCompression, 3, "compression 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(base)
			b[tc.off] = tc.val
			reseal(b)
			_, err := Decode(b)
			require.ErrorIs(t, err, ErrUnsupportedVersion)
			require.NotErrorIs(t, err, ErrCorrupt)
			require.Contains(t, err.Error(), tc.msg)
			_, _, err = DecodeHeader(b)
			require.ErrorIs(t, err, ErrUnsupportedVersion)
		})
	}
	// A future version may use a different header length; the envelope
	// still lets us verify the checksum and report the version.
	b := append(bytes.Clone(base[:EnvelopeSize]), make([]byte, 200)...)
	b[offVersion] = 2
	binary.LittleEndian.PutUint32(b[offHeaderLen:], 100)
	reseal(b)
	_, err := Decode(b)
	require.ErrorIs(t, err, ErrUnsupportedVersion)
}

// TestCheckedCorruption crafts headers whose checksums verify but whose
// fields are inconsistent: a buggy writer, not a newer one. All ErrCorrupt.
func TestCheckedCorruption(t *testing.T) {
	le := binary.LittleEndian
	data := mustEncode(t, dataHeader(CompressionNone, 1, 2), entriesOf(3, 4))
	data3 := mustEncode(t, dataHeader(CompressionNone, 1, 3), entriesOf(3, 4, 5))
	zdata := mustEncode(t, dataHeader(CompressionZstd, 1, 2), entriesOf(300, 400))
	sdata := mustEncode(t, dataHeader(CompressionS2, 1, 2), entriesOf(300, 400))
	fence := mustEncode(t, Header{Kind: KindFence}, nil)
	cases := []struct {
		name string
		base []byte
		mod  func(b []byte)
		msg  string
	}{
		{"kind zero", data, func(b []byte) { b[offKind] = 0 }, "kind 0"},
		{"data as fence", data, func(b []byte) { b[offKind] = byte(KindFence) }, "fence fragment with 2 entries"},
		{"index overflow", data, func(b []byte) { le.PutUint64(b[offFirstIndex:], math.MaxUint64) }, "overflows"},
		{"count vs header length", data, func(b []byte) { le.PutUint32(b[offCount:], 3) }, "does not match count"},
		{"huge count", data, func(b []byte) { le.PutUint32(b[offCount:], math.MaxUint32) }, "does not match count"},
		{"header below fixed", data, func(b []byte) { le.PutUint32(b[offHeaderLen:], 40) }, "below 80"},
		{"stored != payload", data, func(b []byte) { le.PutUint32(b[offStoredLen:], 6) }, "stored length 6"},
		{"payload len", data, func(b []byte) { le.PutUint32(b[offPayloadLen:], 8); le.PutUint32(b[offStoredLen:], 8) }, "entries end at 7"},
		{"table decreasing", data3, func(b []byte) { le.PutUint32(b[offTable+8:], 2) }, "entry 1 ends at 2 (offset 88), previous ends at 3"},
		{"table beyond", data, func(b []byte) { le.PutUint32(b[offTable+8:], 9) }, "entry 1 ends at 9"},
		{"entry crc", data, func(b []byte) { le.PutUint32(b[offTable+4:], 1) }, "entry 0 (index 1"},
		{"fence payload", fence, func(b []byte) { le.PutUint32(b[offStoredLen:], 1) }, "empty payload"},
		{"payload too large", data, func(b []byte) {
			le.PutUint32(b[offPayloadLen:], MaxPayloadSize+1)
			le.PutUint32(b[offStoredLen:], MaxPayloadSize+1)
		}, "exceed MaxPayloadSize"},
		{"zstd no stored", zdata, func(b []byte) { le.PutUint32(b[offStoredLen:], 0) }, "stored length 0"},
		{"zstd size", zdata, func(b []byte) {
			le.PutUint32(b[offPayloadLen:], 701)
			le.PutUint32(b[offTable+8:], 701)
		}, "content size 700"},
		{"s2 size", sdata, func(b []byte) {
			le.PutUint32(b[offPayloadLen:], 701)
			le.PutUint32(b[offTable+8:], 701)
		}, "declares 700 bytes"},
		{"zstd garbage", zdata, func(b []byte) {
			h := int(le.Uint32(b[offHeaderLen:]))
			for i := h + 8; i < len(b); i++ {
				b[i] = 0xAA
			}
		}, "zstd payload"},
		{"s2 garbage", sdata, func(b []byte) {
			h := int(le.Uint32(b[offHeaderLen:]))
			for i := h + 3; i < len(b); i++ {
				b[i] = 0xFF
			}
		}, "s2 payload"},
		{"zstd wrong codec", zdata, func(b []byte) { b[offCompression] = byte(CompressionS2) }, "s2 block"},
		{"s2 wrong entry", sdata, func(b []byte) { le.PutUint32(b[offTable+12:], 0) }, "entry 1 (index 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(tc.base)
			tc.mod(b)
			reseal(b)
			_, err := Decode(b)
			require.ErrorIs(t, err, ErrCorrupt)
			require.NotErrorIs(t, err, ErrUnsupportedVersion)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

// TestAbsurdClaimsDoNotAllocate: inputs claiming billions of entries or a
// huge payload are rejected before allocating for them.
func TestAbsurdClaimsDoNotAllocate(t *testing.T) {
	le := binary.LittleEndian
	small := make([]byte, 20)
	copy(small, Magic)
	small[offVersion] = FormatVersion
	le.PutUint32(small[offHeaderLen:], math.MaxUint32)
	hugeCount := mustEncode(t, Header{Kind: KindFence}, nil)
	le.PutUint32(hugeCount[offCount:], math.MaxUint32)
	reseal(hugeCount)
	// A checksummed zstd header claiming a 64 MiB payload over a few bytes.
	bomb := mustEncode(t, dataHeader(CompressionZstd, 1, 1), entriesOf(100))
	le.PutUint32(bomb[offPayloadLen:], MaxPayloadSize)
	le.PutUint32(bomb[offTable:], MaxPayloadSize)
	reseal(bomb)

	for name, b := range map[string][]byte{"20 bytes": small, "count 2^32-1": hugeCount, "zstd claims 64MiB": bomb} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range 10 {
				_, err := Decode(b)
				require.ErrorIs(t, err, ErrCorrupt)
			}
			runtime.ReadMemStats(&after)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20))
		})
	}
}

func TestAliasing(t *testing.T) {
	entries := entriesOf(10, 20, 30)
	b := mustEncode(t, dataHeader(CompressionNone, 1, 3), entries)
	f, err := Decode(b)
	require.NoError(t, err)
	e := f.Entry(1)
	e[0] ^= 0xff // the Fragment aliases b: this write shows through b
	hlen := f.Header.HeaderLen()
	require.Equal(t, e[0], b[hlen+10])
	e = append(e, 'x') // capacity is clipped: append copies, entry 2 is intact
	require.Equal(t, entries[2], f.Entry(2))
	_ = e

	for _, c := range []Compression{CompressionZstd, CompressionS2} {
		b := mustEncode(t, dataHeader(c, 1, 3), entries)
		f, err := Decode(b)
		require.NoError(t, err)
		for i := range b {
			b[i] = 0 // the decoded fragment does not retain the input
		}
		for i := range entries {
			require.Equal(t, entries[i], f.Entry(i))
		}
	}
}

func TestEntryOutOfRangePanics(t *testing.T) {
	f, err := Decode(mustEncode(t, dataHeader(CompressionNone, 1, 2), entriesOf(1, 2)))
	require.NoError(t, err)
	require.Panics(t, func() { f.Entry(2) })
	require.Panics(t, func() { f.Entry(-1) })
}

func TestWithObject(t *testing.T) {
	require.NoError(t, WithObject(nil, "k"))
	b := mustEncode(t, dataHeader(CompressionNone, 1, 1), entriesOf(5))
	b[len(b)-1] ^= 1
	_, err := Decode(b)
	key := FragmentKey("logs/l1", 3, 42)
	err = WithObject(err, key)
	require.ErrorIs(t, err, ErrCorrupt)
	require.True(t, strings.HasPrefix(err.Error(), `object "logs/l1/s/00000000000000000003/00000000000000000042": corrupt data: payload checksum mismatch`), err.Error())
	var target interface{ Unwrap() error }
	require.True(t, errors.As(err, &target))
}

func TestErrorMessages(t *testing.T) {
	b := mustEncode(t, dataHeader(CompressionNone, 1, 1), entriesOf(5))
	b[offHeaderCRC] ^= 1
	_, err := Decode(b)
	require.ErrorContains(t, err, "header checksum mismatch: bytes [0,88) have CRC-32C 0x")
	require.ErrorContains(t, err, "offset 12 says 0x")
	_, err = Decode([]byte("WPFX0123456789abcdef"))
	require.ErrorContains(t, err, `bad magic at offset 0: "WPFX", expected "WPFG"`)
	_, err = Decode(nil)
	require.ErrorContains(t, err, "truncated: 0 bytes")
}

func TestDecodeHeaderDoesNotAllocate(t *testing.T) {
	b := mustEncode(t, dataHeader(CompressionZstd, 1, 100), entriesOf(make([]int, 100)...))
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := DecodeHeader(b); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

var fragmentSink *Fragment

func TestUncompressedAllocs(t *testing.T) {
	entries := entriesOf(make([]int, 100)...)
	for i := range entries {
		entries[i] = make([]byte, 1024)
	}
	h := dataHeader(CompressionNone, 1, 100)
	buf := mustEncode(t, h, entries)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = AppendFragment(buf[:0], h, entries)
		if err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs, "encode into a reused buffer")
	allocs = testing.AllocsPerRun(100, func() {
		f, err := Decode(buf)
		if err != nil {
			t.Fatal(err)
		}
		fragmentSink = f
	})
	require.Equal(t, 1.0, allocs, "decode: the Fragment only")
	allocs = testing.AllocsPerRun(100, func() {
		f, err := DecodeTrusted(buf)
		if err != nil {
			t.Fatal(err)
		}
		fragmentSink = f
	})
	require.Equal(t, 1.0, allocs, "trusted decode: the Fragment only")
}

// TestDecodeTrusted: DecodeTrusted checks the structure but no checksum.
// (Round trips are checked by requireDecodesTo, panics by the fuzz targets.)
func TestDecodeTrusted(t *testing.T) {
	entries := entriesOf(10, 200, 30)
	for _, c := range compressions {
		b := mustEncode(t, dataHeader(c, 1, 3), entries)
		hlen := int(binary.LittleEndian.Uint32(b[offHeaderLen:]))

		// A wrong header, payload or entry checksum goes unnoticed.
		for _, off := range []int{offHeaderCRC, offPayloadCRC, offTable + 4, offTable + 12, offTable + 20} {
			d := bytes.Clone(b)
			d[off] ^= 1
			_, err := Decode(d)
			require.ErrorIs(t, err, ErrCorrupt)
			f, err := DecodeTrusted(d)
			require.NoError(t, err, "%v, offset %d", c, off)
			for i := range entries {
				require.Equal(t, entries[i], f.Entry(i))
			}
		}
		if c == CompressionNone {
			// So does damage to the payload: the entry reads back damaged.
			d := bytes.Clone(b)
			d[hlen+10] ^= 1
			f, err := DecodeTrusted(d)
			require.NoError(t, err)
			require.NotEqual(t, entries[1], f.Entry(1))
			require.Equal(t, d[hlen+10:hlen+210], f.Entry(1), "aliases the input")
		}

		// Everything else is checked.
		for n := 0; n < len(b); n++ {
			_, err := DecodeTrusted(bytes.Clone(b[:n]))
			require.ErrorIs(t, err, ErrCorrupt, "%v, length %d", c, n)
		}
		_, err := DecodeTrusted(append(bytes.Clone(b), 0))
		require.ErrorContains(t, err, "trailing bytes")
		d := bytes.Clone(b)
		d[offMagic] ^= 1
		_, err = DecodeTrusted(d)
		require.ErrorContains(t, err, "bad magic")
		d = bytes.Clone(b)
		binary.LittleEndian.PutUint32(d[offTable+8:], 1000) // entry 1 ends past U
		_, err = DecodeTrusted(d)
		require.ErrorContains(t, err, "entry table: entry 1 ends at 1000")
	}
}

// TestDecodeMatchesTwoPass: on valid fragments and on damaged ones whose
// damage some or all checksums were recomputed over, Decode gives exactly
// the verdict and error of the two-pass reference (decodeTwoPass). The
// reseals reach the cases where the payload checksum and the entry
// checksums disagree, which bit flips alone do not.
func TestDecodeMatchesTwoPass(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h, entries := genHeader(rt)
		if rapid.Bool().Draw(rt, "long entries") {
			for i := range entries {
				entries[i] = append(entries[i], make([]byte, rapid.IntRange(0, 6000).Draw(rt, "extra"))...)
			}
		}
		b, err := AppendFragment(nil, h, entries)
		if err != nil {
			rt.Fatalf("encode: %v", err)
		}
		hlen := h.HeaderLen()
		le := binary.LittleEndian
		switch rapid.IntRange(0, 5).Draw(rt, "damage") {
		case 0: // none
		case 1: // one bit anywhere
			bit := rapid.IntRange(0, 8*len(b)-1).Draw(rt, "bit")
			b[bit/8] ^= 1 << (bit % 8)
		case 2, 3: // payload bits, then reseal the header (2) or all but the entry checksums (3)
			if len(b) == hlen {
				return
			}
			for range rapid.IntRange(1, 3).Draw(rt, "flips") {
				bit := rapid.IntRange(8*hlen, 8*len(b)-1).Draw(rt, "bit")
				b[bit/8] ^= 1 << (bit % 8)
			}
			if rapid.Bool().Draw(rt, "payload crc too") {
				reseal(b)
			} else {
				le.PutUint32(b[offHeaderCRC:], headerCRC(b[:hlen]))
			}
		case 4: // an entry checksum, header resealed
			if h.Count == 0 {
				return
			}
			i := rapid.IntRange(0, int(h.Count)-1).Draw(rt, "entry")
			b[offTable+EntryTableEntrySize*i+4+rapid.IntRange(0, 3).Draw(rt, "byte")] ^= byte(rapid.IntRange(1, 255).Draw(rt, "xor"))
			reseal(b)
		case 5: // the payload checksum, header resealed
			le.PutUint32(b[offPayloadCRC:], rapid.Uint32().Draw(rt, "payload crc"))
			le.PutUint32(b[offHeaderCRC:], headerCRC(b[:hlen]))
		}
		f, err := Decode(b)
		ref, rerr := decodeTwoPass(b)
		if (err == nil) != (rerr == nil) || (err != nil && err.Error() != rerr.Error()) {
			rt.Fatalf("Decode: %v\ntwo-pass: %v", err, rerr)
		}
		if err == nil {
			require.Equal(rt, ref.Header, f.Header)
			for i := range entries {
				require.Equal(rt, ref.Entry(i), f.Entry(i))
			}
		}
	})
}
