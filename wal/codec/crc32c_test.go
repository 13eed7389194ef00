package codec

import (
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// refMul is zlib's multmodp: a*b mod P, one bit at a time.
func refMul(a, b uint32) uint32 {
	var p uint32
	for m := uint32(gfOne); m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc32.Castagnoli
		} else {
			b >>= 1
		}
	}
	return p
}

// refShift is x^(8n) mod P by square and multiply over refMul.
func refShift(n uint32) uint32 {
	op, sq := uint32(gfOne), uint32(gfOne>>8) // 1 and x^8
	for ; n != 0; n >>= 1 {
		if n&1 != 0 {
			op = refMul(op, sq)
		}
		sq = refMul(sq, sq)
	}
	return op
}

func TestGFMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	special := []uint32{0, 1, gfOne, gfOne >> 1, 0xffffffff, crc32.Castagnoli, 0x55555555, 0xaaaaaaaa}
	for _, a := range special {
		for _, b := range special {
			require.Equal(t, refMul(a, b), gfMul(a, b), "%#x * %#x", a, b)
		}
	}
	for range 100000 {
		a, b := rng.Uint32(), rng.Uint32()
		require.Equal(t, refMul(a, b), gfMul(a, b), "%#x * %#x", a, b)
		require.Equal(t, gfMul(a, b), gfMul(b, a))
	}
	for _, a := range special {
		require.Equal(t, a, gfMul(a, gfOne))
	}
}

func TestCRCShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ns := []uint32{0, 1, 2, 255, 256, 257, 1 << 10, 65535, 65536, 1<<24 - 1, 1 << 24, MaxPayloadSize, 1<<32 - 1}
	for range 2000 {
		ns = append(ns, rng.Uint32()>>rng.IntN(32))
	}
	for _, n := range ns {
		require.Equal(t, refShift(n), crcShift(n), "n=%d", n)
	}
}

// TestCRCCombine checks the combination against crc32.Checksum of the
// whole, over random splits of random data into pieces, empty ones
// included: combining the pieces' checksums left to right must give the
// checksum of the whole.
func TestCRCCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	data := make([]byte, 1<<17)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	require.Equal(t, crc32.Checksum(nil, castagnoli), crcCombine(0, 0, crcShift(0)))
	for range 3000 {
		n := rng.IntN(len(data) + 1)
		if rng.IntN(4) == 0 {
			n = rng.IntN(64)
		}
		whole := data[:n]
		var acc uint32
		rest := whole
		for len(rest) > 0 || rng.IntN(3) == 0 {
			k := 0
			switch rng.IntN(4) {
			case 0: // empty piece
			case 1:
				k = rng.IntN(min(len(rest), 16) + 1)
			default:
				k = rng.IntN(len(rest) + 1)
			}
			piece := rest[:k]
			rest = rest[k:]
			acc = crcCombine(acc, crc32.Checksum(piece, castagnoli), crcShift(uint32(len(piece))))
		}
		require.Equal(t, crc32.Checksum(whole, castagnoli), acc, "n=%d", n)
	}
	// Every table level at once: a piece longer than 2^24 bytes.
	big := make([]byte, 1<<24+65536+257)
	copy(big, data)
	head := []byte("woodpecker")
	whole := append(append([]byte{}, head...), big...)
	got := crcCombine(crc(head), crc(big), crcShift(uint32(len(big))))
	require.Equal(t, crc32.Checksum(whole, castagnoli), got)
}

func BenchmarkCRCCombine(b *testing.B) {
	data := make([]byte, 64<<10)
	for _, n := range []int{64, 256, 1 << 10, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("update/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			c := uint32(1)
			for b.Loop() {
				c = crc32.Update(c, castagnoli, data[:n])
			}
			crcSink = c
		})
		b.Run(fmt.Sprintf("combine/%d", n), func(b *testing.B) {
			c := uint32(1)
			for b.Loop() {
				c = crcCombine(c, 0x1234, crcShift(uint32(n)+uint32(c&1)))
			}
			crcSink = c
		})
	}
}

var crcSink uint32
