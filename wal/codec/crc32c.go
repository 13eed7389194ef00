package codec

// CRC-32C combination: crcCombine(crc(A), crc(B), crcShift(len(B))) ==
// crc(A ++ B), without reading A or B again. Decode uses it to derive an
// uncompressed fragment's payload checksum from the entry checksums it
// computes anyway, so that the payload is read once (see
// verifyUncompressed).
//
// Arithmetic is in GF(2)[x] modulo the Castagnoli polynomial P, in the
// reflected bit order of hash/crc32: bit i of a uint32 is the coefficient
// of x^(31-i), so 0x80000000 is 1 and crc32.Castagnoli is P without its
// x^32 term. For the conditioned CRC of hash/crc32 (initial value and final
// xor all ones) the identity is
//
//	crc(A ++ B) = crc(A) * x^(8*len(B)) mod P  xor  crc(B)
//
// (the two all-ones conditionings cancel; this is zlib's crc32_combine).
// x^(8n) mod P is one lookup for n < 4096 and the product of two or three
// lookups above, so combining the checksum of an entry shorter than 4 KiB
// costs one multiplication mod P: a software 32x32 carry-less multiply (16
// integer multiplications) and a four-lookup reduction, 7-9 ns on amd64.

// gfOne is the polynomial 1 in reflected order.
const gfOne = 0x80000000

var (
	// gfReduce[j][v] = (v << 8j) * x^32 mod P: reduces the low half of a
	// 64-bit product one byte per table.
	gfReduce [4][256]uint32
	// gfPowLo[v] = x^(8v) mod P and gfPowHi[j][v] = x^(8 * (v << (12+8j)))
	// mod P: the shift operator for n bytes is the product of
	// gfPowLo[n & 0xfff] and gfPowHi[j][the next bytes of n].
	gfPowLo [1 << gfLoBits]uint32
	gfPowHi [3][256]uint32
)

const gfLoBits = 12

func init() {
	// One step of the byte-wise CRC table multiplies by x^8 mod P.
	x8 := func(s uint32) uint32 { return castagnoli[s&0xff] ^ s>>8 }
	for j := range gfReduce {
		for v := range gfReduce[j] {
			s := uint32(v) << (8 * j)
			for range 4 {
				s = x8(s)
			}
			gfReduce[j][v] = s
		}
	}
	p := uint32(gfOne)
	for v := range gfPowLo {
		gfPowLo[v] = p
		p = x8(p)
	}
	step := p // x^(8 * 2^(12+8j))
	for j := range gfPowHi {
		p := uint32(gfOne)
		for v := range gfPowHi[j] {
			gfPowHi[j][v] = p
			p = gfMul(p, step)
		}
		step = p
	}
}

// clmul32 is the carry-less product of x and y. The operands are split
// into four interleaved bit classes (bits 4k+c), so that each integer
// product sums at most 8 one-bits per result position: the carries stay
// inside the three positions above it, which belong to other classes and
// are masked off.
func clmul32(x, y uint32) uint64 {
	const (
		m0 = 0x1111111111111111
		m1 = m0 << 1
		m2 = m0 << 2
		m3 = m0 << 3
	)
	x0, x1, x2, x3 := uint64(x)&m0, uint64(x)&m1, uint64(x)&m2, uint64(x)&m3
	y0, y1, y2, y3 := uint64(y)&m0, uint64(y)&m1, uint64(y)&m2, uint64(y)&m3
	z0 := x0*y0 ^ x1*y3 ^ x2*y2 ^ x3*y1
	z1 := x0*y1 ^ x1*y0 ^ x2*y3 ^ x3*y2
	z2 := x0*y2 ^ x1*y1 ^ x2*y0 ^ x3*y3
	z3 := x0*y3 ^ x1*y2 ^ x2*y1 ^ x3*y0
	return z0&m0 | z1&m1 | z2&m2 | z3&m3
}

// gfMul returns a*b mod P (reflected order).
func gfMul(a, b uint32) uint32 {
	// Bit k of the carry-less product of the reflected operands is the
	// coefficient of x^(62-k); shifted left by one, the high word is the
	// product's x^0..x^31 part in reflected order and the low word its
	// x^32..x^63 part divided by x^32.
	r := clmul32(a, b) << 1
	lo := uint32(r)
	return uint32(r>>32) ^ gfReduce[0][lo&0xff] ^ gfReduce[1][lo>>8&0xff] ^
		gfReduce[2][lo>>16&0xff] ^ gfReduce[3][lo>>24]
}

// crcShift returns x^(8n) mod P, the operator that appends n bytes.
func crcShift(n uint32) uint32 {
	op := gfPowLo[n&(1<<gfLoBits-1)]
	n >>= gfLoBits
	for j := 0; n != 0; j++ {
		if v := n & 0xff; v != 0 {
			if op == gfOne {
				op = gfPowHi[j][v]
			} else {
				op = gfMul(op, gfPowHi[j][v])
			}
		}
		n >>= 8
	}
	return op
}

// crcCombine returns the CRC-32C of A ++ B given crcA = CRC-32C(A), crcB =
// CRC-32C(B) and shift = crcShift(len(B)).
func crcCombine(crcA, crcB, shift uint32) uint32 {
	return gfMul(crcA, shift) ^ crcB
}
