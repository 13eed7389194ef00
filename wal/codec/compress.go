package codec

import (
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// zstd encoders and decoders are expensive to create (hundreds of KiB of
// tables each) but safe for concurrent EncodeAll/DecodeAll: each keeps an
// internal pool of GOMAXPROCS states. One of each per process, created on
// first use, is the pool.
//
// Two encoders, so that every frame declares its content size (the decoder
// checks it before allocating) without large fragments pinning large
// encoder state: payloads up to zstdWindow bytes are written as
// single-segment frames (Frame_Content_Size always present, window = the
// content); larger ones as windowed frames with a zstdWindow window
// (Frame_Content_Size present because it is >= 256). Measured on 16 MiB
// payloads: same ratio and speed as a single-segment frame, and ~3 MiB
// instead of ~9 MiB of encoder+decoder state retained per concurrent state.
//
// The settings are pinned so that, for one version of klauspost/compress
// on one architecture, equal input gives equal output. Output is not
// promised to stay byte-identical across library versions, so golden tests
// compare compressed fragments by decoded content only. SpeedFastest:
// about twice the throughput of SpeedDefault on Raft-like entries for a
// few percent of ratio; the writer is latency-bound.
const zstdWindow = 1 << 20

func newZstdEncoder(single bool) func() (*zstd.Encoder, error) {
	return func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithEncoderCRC(false), // entries carry CRC-32C
			zstd.WithWindowSize(zstdWindow),
			zstd.WithSingleSegment(single),
			zstd.WithZeroFrames(false),
			zstd.WithLowerEncoderMem(false),
		)
	}
}

var (
	zstdSmallEncoder = sync.OnceValues(newZstdEncoder(true))
	zstdLargeEncoder = sync.OnceValues(newZstdEncoder(false))
	zstdDecoder      = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0), // GOMAXPROCS
			zstd.WithDecoderMaxMemory(MaxPayloadSize),
			zstd.WithDecoderMaxWindow(MaxPayloadSize),
			zstd.WithDecodeAllCapLimit(true),
		)
	})
)

// scratchPool holds buffers used to concatenate entries before compressing
// them (zstd EncodeAll and S2 block encoding need contiguous input).
var scratchPool sync.Pool // of *[]byte

// maxPooledScratch bounds the buffers kept in scratchPool, so that the
// buffer of one unusually large fragment is not kept for reuse.
const maxPooledScratch = 16 << 20

func getScratch(n int) *[]byte {
	if p, ok := scratchPool.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:0]
		return p
	}
	b := make([]byte, 0, n)
	return &b
}

func putScratch(p *[]byte) {
	if cap(*p) <= maxPooledScratch {
		scratchPool.Put(p)
	}
}

// appendCompressed appends the compressed form of src to dst.
func appendCompressed(dst, src []byte, c Compression) ([]byte, error) {
	switch c {
	case CompressionZstd:
		encoder := zstdSmallEncoder
		if len(src) > zstdWindow {
			encoder = zstdLargeEncoder
		}
		enc, err := encoder()
		if err != nil {
			return dst, fmt.Errorf("codec: creating zstd encoder: %w", err)
		}
		return enc.EncodeAll(src, dst), nil
	case CompressionS2:
		n := s2.MaxEncodedLen(len(src))
		if n < 0 {
			return dst, fmt.Errorf("%w: %d bytes cannot be s2-encoded", ErrTooLarge, len(src))
		}
		off := len(dst)
		dst = grow(dst, n)
		out := s2.Encode(dst[off:off+n], src)
		return dst[:off+len(out)], nil
	}
	return dst, fmt.Errorf("%w: unknown compression %d", ErrInvalid, uint8(c))
}

// checkDeclaredLen verifies that the compressed stream src declares exactly
// want uncompressed bytes, before anything is allocated for them. off is
// src's offset in the object, for error messages.
func checkDeclaredLen(src []byte, c Compression, want int, off int) error {
	switch c {
	case CompressionZstd:
		var zh zstd.Header
		if err := zh.Decode(src); err != nil {
			return corruptf("zstd frame header at offset %d: %v", off, err)
		}
		if zh.Skippable || !zh.HasFCS || zh.FrameContentSize != uint64(want) || zh.DictionaryID != 0 {
			return corruptf("zstd frame header at offset %d: content size %d (present %v, skippable %v, dictionary %d), expected %d",
				off, zh.FrameContentSize, zh.HasFCS, zh.Skippable, zh.DictionaryID, want)
		}
		return nil
	case CompressionS2:
		n, err := s2.DecodedLen(src)
		if err != nil {
			return corruptf("s2 block header at offset %d: %v", off, err)
		}
		if n != want {
			return corruptf("s2 block at offset %d declares %d bytes, expected %d", off, n, want)
		}
		return nil
	}
	// Unreachable: the header decoder rejects unknown codecs first.
	return unsupportedf("compression %d", uint8(c))
}

// decompress decodes src into dst, which it must fill exactly. The caller
// has checked checkDeclaredLen(src, c, len(dst), off) and, unless it is
// DecodeTrusted, src's checksum; src may be arbitrary bytes all the same
// (the fuzz targets feed it such), and decompress must not panic on them.
func decompress(dst, src []byte, c Compression, off int) error {
	want := len(dst)
	var out []byte
	var err error
	switch c {
	case CompressionZstd:
		dec, derr := zstdDecoder()
		if derr != nil {
			return fmt.Errorf("codec: creating zstd decoder: %w", derr)
		}
		// WithDecodeAllCapLimit: never writes past cap(dst).
		out, err = dec.DecodeAll(src, dst[:0])
	case CompressionS2:
		out, err = s2.Decode(dst, src)
	default:
		return unsupportedf("compression %d", uint8(c))
	}
	if err != nil {
		return corruptf("%v payload at offset %d: %v", c, off, err)
	}
	if len(out) != want || (want > 0 && &out[0] != &dst[0]) {
		return corruptf("%v payload at offset %d decodes to %d bytes, expected %d", c, off, len(out), want)
	}
	return nil
}

// grow returns b extended by n bytes (contents of the new bytes unspecified),
// reallocating at most once.
func grow(b []byte, n int) []byte {
	return slices.Grow(b, n)[:len(b)+n]
}
