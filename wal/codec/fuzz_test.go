package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func addSeeds(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.frag"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden files: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range smallFragments(f) {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte(Magic))
}

// checkDecoded is the fuzz property: Decode never panics; it fails only with
// ErrCorrupt or ErrUnsupportedVersion; it agrees with the straightforward
// two-pass verification (decodeTwoPass), error text included; DecodeTrusted
// accepts whatever Decode accepts, with the same result, and never panics;
// and whatever Decode accepts re-encodes to a fragment that decodes equal —
// byte-identical when the payload is not compressed (that encoding is
// canonical).
func checkDecoded(t *testing.T, b []byte) {
	frag, err := Decode(b)
	checkMatchesTwoPass(t, b, frag, err)
	checkTrusted(t, b, frag, err)
	h, n, herr := DecodeHeader(b)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("error wraps neither sentinel: %v", err)
		}
		if frag != nil {
			t.Fatalf("fragment returned with error %v", err)
		}
		if herr == nil && n > len(b) {
			t.Fatalf("DecodeHeader length %d beyond input %d", n, len(b))
		}
		return
	}
	if herr != nil || h != frag.Header || n != h.HeaderLen() {
		t.Fatalf("DecodeHeader disagrees with Decode: %+v %d %v vs %+v", h, n, herr, frag.Header)
	}
	entries := make([][]byte, frag.Len())
	for i := range entries {
		entries[i] = frag.Entry(i)
	}
	re, err := AppendFragment(nil, frag.Header, entries)
	if err != nil {
		t.Fatalf("re-encode of a decoded fragment failed: %v", err)
	}
	frag2, err := Decode(re)
	if err != nil {
		t.Fatalf("re-encoded fragment does not decode: %v", err)
	}
	h1, h2 := frag.Header, frag2.Header
	h1.StoredLen, h2.StoredLen = 0, 0
	if h1 != h2 || frag2.Len() != len(entries) {
		t.Fatalf("headers differ after re-encode: %+v vs %+v", h1, h2)
	}
	for i := range entries {
		if !bytes.Equal(entries[i], frag2.Entry(i)) {
			t.Fatalf("entry %d differs after re-encode", i)
		}
	}
	if (h.Compression == CompressionNone || h.PayloadLen == 0) && !bytes.Equal(re, b) {
		t.Fatalf("uncompressed fragment does not re-encode byte for byte")
	}
}

// FuzzDecode feeds arbitrary bytes to Decode. Random mutations almost never
// pass the header checksum, so this mostly exercises the envelope checks;
// FuzzDecodeResealed covers what lies behind the checksums.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(checkDecoded)
}

// FuzzDecodeResealed recomputes the header and payload checksums of its
// input before decoding (and, when the entry table is well formed, the entry
// checksums too), so the fuzzer reaches the field validation, the entry
// table and the decompressors with arbitrary content.
func FuzzDecodeResealed(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.Clone(b)
		if len(b) >= EnvelopeSize {
			resealAll(b)
		}
		checkDecoded(t, b)
	})
}

// FuzzDecodeTrusted feeds arbitrary bytes to DecodeTrusted, which has no
// checksum to stop them, so the fuzzer reaches every structural check
// directly. It must never panic, and it must behave exactly like Decode on
// the same bytes with every checksum recomputed (resealAll): same verdict,
// same error, same header and entries. The committed corpora of FuzzDecode
// and FuzzDecodeResealed are seeds too.
func FuzzDecodeTrusted(f *testing.F) {
	addSeeds(f)
	for _, target := range []string{"FuzzDecode", "FuzzDecodeResealed"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		for _, p := range files {
			if b, ok := readCorpusBytes(f, p); ok {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tf, terr := DecodeTrusted(b)
		if terr == nil {
			for i := 0; i < tf.Len(); i++ {
				_ = tf.Entry(i)
			}
		} else if !errors.Is(terr, ErrCorrupt) && !errors.Is(terr, ErrUnsupportedVersion) {
			t.Fatalf("error wraps neither sentinel: %v", terr)
		} else if tf != nil {
			t.Fatalf("fragment returned with error %v", terr)
		}
		r := bytes.Clone(b)
		if len(r) >= EnvelopeSize {
			resealAll(r)
		}
		vf, verr := Decode(r)
		switch {
		case terr != nil && verr != nil:
			if terr.Error() != verr.Error() {
				t.Fatalf("DecodeTrusted: %v\nDecode of the resealed bytes: %v", terr, verr)
			}
		case terr != nil || verr != nil:
			t.Fatalf("DecodeTrusted: %v; Decode of the resealed bytes: %v", terr, verr)
		default:
			requireSameFragment(t, vf, tf)
		}
	})
}

// readCorpusBytes reads a committed corpus file of a fuzz target taking
// one []byte argument.
func readCorpusBytes(f *testing.F, path string) ([]byte, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		return nil, false
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		f.Fatalf("%s: %v", path, err)
	}
	return []byte(s), true
}

// FuzzDecodeCompressed puts arbitrary bytes behind a valid header as the
// stored payload of a zstd or S2 fragment declaring an arbitrary
// uncompressed length, so the fuzzer drives the length checks and the
// decompressors directly. Decode must fail cleanly or, if the bytes happen
// to decompress to the declared length, pass the usual round trip.
func FuzzDecodeCompressed(f *testing.F) {
	for _, g := range goldenCases() {
		if g.h.Compression == CompressionNone {
			continue
		}
		b := mustEncode(f, g.h, g.entries)
		h, n, err := DecodeHeader(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[n:], uint8(h.Compression), h.PayloadLen)
	}
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x05, 0x29, 0, 0, 'h', 'e', 'l', 'l', 'o'}, uint8(CompressionZstd), uint32(5))
	f.Add([]byte{0x05, 0x10, 'h', 'e', 'l', 'l', 'o'}, uint8(CompressionS2), uint32(5))
	f.Fuzz(func(t *testing.T, stored []byte, codec uint8, u uint32) {
		c := CompressionZstd // odd codec bytes; even ones pick S2
		if codec%2 == 0 {
			c = CompressionS2
		}
		u %= 1 << 20
		b, err := AppendFragment(nil, Header{Kind: KindData, Count: 1, FirstIndex: 1}, [][]byte{stored})
		if err != nil {
			t.Fatal(err)
		}
		le := binary.LittleEndian
		b[offCompression] = byte(c)
		le.PutUint32(b[offPayloadLen:], u)
		le.PutUint32(b[offTable:], u)
		resealAll(b)
		checkDecoded(t, b)
	})
}

// resealAll is reseal plus entry checksums computed over the decompressed
// payload when the fragment is otherwise well formed.
func resealAll(b []byte) {
	reseal(b)
	h, hlen, err := DecodeHeader(b)
	if err != nil || len(b) < hlen {
		return
	}
	payload := b[hlen:]
	if h.Compression != CompressionNone && h.PayloadLen > 0 {
		if checkDeclaredLen(payload, h.Compression, int(h.PayloadLen), hlen) != nil {
			return
		}
		dst := make([]byte, h.PayloadLen)
		if decompress(dst, payload, h.Compression, hlen) != nil {
			return
		}
		payload = dst
	}
	le := binary.LittleEndian
	var begin uint32
	for i := 0; i < int(h.Count); i++ {
		slot := b[offTable+EntryTableEntrySize*i:]
		end := le.Uint32(slot)
		if int(end) > len(payload) {
			return
		}
		le.PutUint32(slot[4:], crc(payload[begin:end]))
		begin = end
	}
	reseal(b)
}

// FuzzParseFragmentKey: whatever parses is exactly the key FragmentKey
// builds from it.
func FuzzParseFragmentKey(f *testing.F) {
	f.Add(FragmentKey("logs/a", 1, 2))
	f.Add(FragmentKey("x", 1<<63, 1<<64-1))
	f.Add("a/s/99999999999999999999/00000000000000000002")
	f.Fuzz(func(t *testing.T, key string) {
		seg, seq, ok := ParseFragmentKey(key)
		if !ok {
			return
		}
		prefix := key[:len(key)-len(FragmentKey("", seg, seq))]
		if err := ValidateLogPrefix(prefix); err != nil {
			t.Fatalf("parsed key %q has invalid prefix: %v", key, err)
		}
		if got := FragmentKey(prefix, seg, seq); got != key {
			t.Fatalf("FragmentKey(%q, %d, %d) = %q, parsed from %q", prefix, seg, seq, got, key)
		}
	})
}

// checkMatchesTwoPass checks Decode's result on b against decodeTwoPass:
// the same verdict, the same error text, the same fragment.
func checkMatchesTwoPass(t *testing.T, b []byte, frag *Fragment, err error) {
	t.Helper()
	ref, rerr := decodeTwoPass(b)
	switch {
	case err != nil && rerr != nil:
		if err.Error() != rerr.Error() {
			t.Fatalf("Decode: %v\ntwo-pass reference: %v", err, rerr)
		}
	case err != nil || rerr != nil:
		t.Fatalf("Decode: %v; two-pass reference: %v", err, rerr)
	default:
		requireSameFragment(t, ref, frag)
	}
}

// checkTrusted checks DecodeTrusted on b given Decode's result: no panic,
// sentinel errors, and the same fragment wherever Decode accepts.
func checkTrusted(t *testing.T, b []byte, frag *Fragment, err error) {
	t.Helper()
	tf, terr := DecodeTrusted(b)
	if terr != nil {
		if !errors.Is(terr, ErrCorrupt) && !errors.Is(terr, ErrUnsupportedVersion) {
			t.Fatalf("DecodeTrusted error wraps neither sentinel: %v", terr)
		}
		if tf != nil {
			t.Fatalf("DecodeTrusted returned a fragment with error %v", terr)
		}
		if err == nil {
			t.Fatalf("DecodeTrusted rejects what Decode accepts: %v", terr)
		}
		return
	}
	for i := 0; i < tf.Len(); i++ {
		_ = tf.Entry(i)
	}
	if err == nil {
		requireSameFragment(t, frag, tf)
	}
}

func requireSameFragment(t *testing.T, want, got *Fragment) {
	t.Helper()
	if want.Header != got.Header || want.Len() != got.Len() {
		t.Fatalf("headers differ: %+v vs %+v", want.Header, got.Header)
	}
	for i := 0; i < want.Len(); i++ {
		if !bytes.Equal(want.Entry(i), got.Entry(i)) {
			t.Fatalf("entry %d differs", i)
		}
	}
}

// decodeTwoPass is the reference verification Decode must agree with: the
// checks of FORMAT.md "Decoding and errors" step 5 done literally, in
// order — object length, payload CRC over the stored bytes, decompression,
// then every entry CRC over its bytes — reading an uncompressed payload
// twice. (It was Decode's implementation before the one-pass verification.)
func decodeTwoPass(b []byte) (*Fragment, error) {
	le := binary.LittleEndian
	h, hlen, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	total := uint64(hlen) + uint64(h.StoredLen)
	if uint64(len(b)) != total {
		what := "truncated"
		if uint64(len(b)) > total {
			what = "trailing bytes"
		}
		return nil, corruptf("%s: object is %d bytes, header (offsets %d, %d) says %d header + %d stored payload = %d",
			what, len(b), offHeaderLen, offStoredLen, hlen, h.StoredLen, total)
	}
	stored := b[hlen:]
	if got, want := crc32.Checksum(stored, castagnoli), le.Uint32(b[offPayloadCRC:]); got != want {
		return nil, corruptf("payload checksum mismatch: stored payload [%d,%d) has CRC-32C %#08x, header (offset %d) says %#08x",
			hlen, len(b), got, offPayloadCRC, want)
	}
	f := &Fragment{Header: h, table: b[offTable:hlen], payload: stored}
	if h.Compression != CompressionNone && h.PayloadLen > 0 {
		if err := checkDeclaredLen(stored, h.Compression, int(h.PayloadLen), hlen); err != nil {
			return nil, err
		}
		f.payload = make([]byte, h.PayloadLen)
		if err := decompress(f.payload, stored, h.Compression, hlen); err != nil {
			return nil, err
		}
	}
	var begin uint32
	for i := 0; i < int(h.Count); i++ {
		slot := f.table[EntryTableEntrySize*i:]
		end := le.Uint32(slot)
		if got, want := crc32.Checksum(f.payload[begin:end], castagnoli), le.Uint32(slot[4:]); got != want {
			return nil, corruptf("entry %d (index %d, payload bytes [%d,%d)) has CRC-32C %#08x, entry table (offset %d) says %#08x",
				i, h.FirstIndex+uint64(i), begin, end, got, offTable+EntryTableEntrySize*i+4, want)
		}
		begin = end
	}
	return f, nil
}
