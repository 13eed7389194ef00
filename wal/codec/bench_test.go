package codec

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchEntries returns n entries of size bytes each, deterministic and
// moderately compressible (key/value records with random hex values, like
// a KV store's Raft commands).
func benchEntries(n, size int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"put", "delete", "key", "value", "user", "order", "session", "raft", "term", "index"}
	out := make([][]byte, n)
	for i := range out {
		e := make([]byte, 0, size+64)
		for len(e) < size {
			e = append(e, words[rng.IntN(len(words))]...)
			e = append(e, '/')
			e = fmt.Appendf(e, "%x", rng.Uint64())
			e = append(e, ';')
		}
		out[i] = e[:size]
	}
	return out
}

var benchShapes = []struct {
	name    string
	n, size int
}{
	{"100x1KiB", 100, 1 << 10},
	{"16x64KiB", 16, 64 << 10},
	{"1000x256B", 1000, 256},
}

// benchFragments runs fn as a sub-benchmark <shape>/<compression> for
// every shape and compression, with the shape's entries, the header and the
// fragment they encode to, and b.SetBytes set to the entries' payload.
func benchFragments(b *testing.B, fn func(b *testing.B, h Header, entries [][]byte, frag []byte)) {
	for _, s := range benchShapes {
		entries := benchEntries(s.n, s.size)
		for _, c := range compressions {
			b.Run(fmt.Sprintf("%s/%v", s.name, c), func(b *testing.B) {
				h := dataHeader(c, 1, s.n)
				frag, err := AppendFragment(nil, h, entries)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(s.n * s.size))
				b.ReportAllocs()
				b.ResetTimer()
				fn(b, h, entries, frag)
			})
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	benchFragments(b, func(b *testing.B, h Header, entries [][]byte, buf []byte) {
		var err error
		for b.Loop() {
			buf, err = AppendFragment(buf[:0], h, entries)
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf))/float64(len(entries)*len(entries[0])), "size/raw")
	})
}

func BenchmarkDecode(b *testing.B) { benchDecode(b, Decode) }

// BenchmarkDecodeTrusted: the same without checksum verification.
func BenchmarkDecodeTrusted(b *testing.B) { benchDecode(b, DecodeTrusted) }

func benchDecode(b *testing.B, decode func([]byte) (*Fragment, error)) {
	benchFragments(b, func(b *testing.B, _ Header, _ [][]byte, buf []byte) {
		for b.Loop() {
			f, err := decode(buf)
			if err != nil {
				b.Fatal(err)
			}
			fragmentSink = f
		}
	})
}

func BenchmarkDecodeHeader(b *testing.B) {
	buf, err := AppendFragment(nil, dataHeader(CompressionNone, 1, 100), benchEntries(100, 1<<10))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeHeader(buf); err != nil {
			b.Fatal(err)
		}
	}
}
