package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
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
// ErrCorrupt or ErrUnsupportedVersion; and whatever it accepts re-encodes
// to a fragment that decodes equal — byte-identical when the payload is not
// compressed (that encoding is canonical).
func checkDecoded(t *testing.T, b []byte) {
	frag, err := Decode(b)
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
