package codec

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/woodpecker-wal/woodpecker/logstore"
)

// The constants in this block are part of the on-object format. They never
// change: every fragment ever written must keep decoding. A change to the
// layout is a new FormatVersion (see FORMAT.md, "Versioning rules").
const (
	// Magic is the first four bytes of every fragment, of every version.
	Magic = "WPFG"

	// FormatVersion is the version this package writes. It reads only this
	// version; any other value in a fragment whose header checksum verifies
	// is ErrUnsupportedVersion.
	FormatVersion = 1

	// EnvelopeSize is the size of the version-independent prefix of every
	// fragment: magic, version, three version-specific bytes, header length
	// and header checksum. Its layout is frozen for all versions.
	EnvelopeSize = 16

	// FixedHeaderSize is the size of the v1 header before the entry table.
	FixedHeaderSize = 80

	// EntryTableEntrySize is the size of one v1 entry-table slot: the end
	// offset of the entry in the uncompressed payload (u32) and the CRC-32C
	// of the entry's bytes (u32).
	EntryTableEntrySize = 8

	// MaxPayloadSize caps both the uncompressed payload length and the
	// stored (possibly compressed) payload length of a v1 fragment. A writer
	// never exceeds it; a reader treats a larger value as corruption and
	// never allocates more than this for one fragment's payload.
	MaxPayloadSize = 64 << 20

	// MaxEntries caps the entry count of a v1 fragment (so the entry table
	// is at most 8 MiB).
	MaxEntries = 1 << 20
)

// Byte offsets of the v1 header fields. Part of the on-object format; never
// change. Offsets 0-3 and 8-15 (the envelope) are the same in every version.
const (
	offMagic       = 0  // [4]byte "WPFG"           (envelope)
	offVersion     = 4  // u8                       (envelope)
	offKind        = 5  // u8
	offCompression = 6  // u8
	offFlags       = 7  // u8, must be 0 in v1
	offHeaderLen   = 8  // u32 H                    (envelope)
	offHeaderCRC   = 12 // u32 CRC-32C of [0,12)+[16,H) (envelope)
	offLogID       = 16 // u64
	offSegment     = 24 // u64
	offSeq         = 32 // u64
	offEpoch       = 40 // u64
	offNonce       = 48 // u64
	offFirstIndex  = 56 // u64
	offCount       = 64 // u32
	offPayloadLen  = 68 // u32 uncompressed payload length U
	offStoredLen   = 72 // u32 stored payload length S
	offPayloadCRC  = 76 // u32 CRC-32C of the stored payload
	offTable       = FixedHeaderSize
)

// Kind is the type of a fragment. The numeric values are part of the
// on-object format and never change.
type Kind uint8

const (
	// KindData carries one or more consecutive entries starting at
	// Header.FirstIndex.
	KindData Kind = 1
	// KindFence is written by a new writer at the lowest missing sequence
	// number of a segment it fences. It carries no entries; every fragment
	// of the segment with a higher sequence number is void.
	KindFence Kind = 2
	// KindSeal optionally ends a segment. It carries no entries; its
	// LastIndex() is the last index of the segment (FirstIndex is one past
	// it).
	KindSeal Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindFence:
		return "fence"
	case KindSeal:
		return "seal"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Compression is the codec applied to a fragment's payload. The numeric
// values are part of the on-object format and never change.
type Compression uint8

const (
	// CompressionNone stores the payload as is.
	CompressionNone Compression = 0
	// CompressionZstd stores the payload as a zstd stream (RFC 8878) whose
	// first frame declares the uncompressed length.
	CompressionZstd Compression = 1
	// CompressionS2 stores the payload as one S2 block
	// (github.com/klauspost/compress/s2, block format, not the stream format).
	CompressionS2 Compression = 2
)

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionZstd:
		return "zstd"
	case CompressionS2:
		return "s2"
	}
	return "compression(" + strconv.Itoa(int(c)) + ")"
}

// Header is the decoded metadata of a fragment.
//
// AppendFragment reads every field except PayloadLen and StoredLen, which it
// computes; Decode and DecodeHeader fill in all fields.
type Header struct {
	Kind        Kind
	Compression Compression

	LogID   uint64 // the log this fragment belongs to
	Segment uint64 // segment id within the log
	Seq     uint64 // dense sequence number of the fragment within the segment
	Epoch   uint64 // epoch of the writer that wrote it
	Nonce   uint64 // random per-writer value, tells two writers of one epoch apart

	// FirstIndex is the index of the first entry (KindData). For KindSeal
	// it is one past the last index of the segment. For KindFence the
	// engine decides (the codec places no constraint on it).
	FirstIndex uint64
	// Count is the number of entries: >= 1 for KindData, 0 otherwise.
	// Invariant: FirstIndex+Count does not overflow uint64.
	Count uint32

	// PayloadLen is the uncompressed payload length (sum of entry lengths).
	// Output only: set by decoding, ignored by AppendFragment.
	PayloadLen uint32
	// StoredLen is the stored payload length (after compression); the whole
	// object is HeaderLen()+StoredLen bytes. Output only.
	StoredLen uint32
}

// LastIndex returns FirstIndex+Count-1, the index of the last entry. For a
// fragment without entries (fence, seal) it is FirstIndex-1, computed modulo
// 2^64: math.MaxUint64 when FirstIndex is 0.
func (h Header) LastIndex() uint64 { return h.FirstIndex + uint64(h.Count) - 1 }

// HeaderLen returns the encoded size in bytes of the header including its
// entry table; the stored payload starts at this offset.
func (h Header) HeaderLen() int { return FixedHeaderSize + EntryTableEntrySize*int(h.Count) }

// validate checks the invariants every v1 header satisfies that do not
// depend on the payload. It returns a plain description, wrapped by the
// caller with ErrInvalid (encode) or ErrCorrupt (decode).
func (h *Header) validate() string {
	if h.Count > MaxEntries {
		return fmt.Sprintf("count %d exceeds MaxEntries %d", h.Count, MaxEntries)
	}
	switch h.Kind {
	case KindData:
		if h.Count == 0 {
			return "data fragment with zero entries"
		}
	case KindFence, KindSeal:
		if h.Count != 0 {
			return fmt.Sprintf("%v fragment with %d entries (must have none)", h.Kind, h.Count)
		}
	default:
		return fmt.Sprintf("unknown kind %d", uint8(h.Kind))
	}
	if h.FirstIndex > math.MaxUint64-uint64(h.Count) {
		return fmt.Sprintf("first index %d + count %d overflows uint64", h.FirstIndex, h.Count)
	}
	return ""
}

var (
	// ErrCorrupt is returned (wrapped, with the offset, field and values at
	// fault) when bytes are not a valid fragment: bad magic, a checksum
	// mismatch, truncation, trailing bytes, or a checksummed header whose
	// fields contradict each other or the v1 limits. Any single-bit flip of a
	// valid fragment yields ErrCorrupt.
	ErrCorrupt = logstore.ErrCorrupt

	// ErrUnsupportedVersion is returned (wrapped) when a fragment's header
	// checksum verifies but it uses something this package does not know: a
	// format version other than FormatVersion, or, in a v1 header, an
	// unknown kind, compression codec or flag bit. It means "written by a
	// newer writer", never "damaged".
	ErrUnsupportedVersion = logstore.ErrUnsupportedVersion

	// ErrInvalid is returned (wrapped) by AppendFragment when the header and
	// entries are inconsistent: count mismatch, zero entries for data,
	// entries on a fence or seal, index overflow, unknown kind or codec.
	ErrInvalid = errors.New("codec: invalid fragment")

	// ErrTooLarge is returned (wrapped) by AppendFragment when the fragment
	// exceeds MaxEntries or MaxPayloadSize (before or after compression).
	// The caller should split the batch.
	ErrTooLarge = errors.New("codec: fragment too large")
)

// WithObject annotates err with the name of the object it is about, so
// "which object is corrupt" survives up the stack: the message becomes
// `object "<key>": <err>` and errors.Is/As still see err. It returns nil if
// err is nil.
func WithObject(err error, key string) error {
	if err == nil {
		return nil
	}
	return &objectError{key: key, err: err}
}

type objectError struct {
	key string
	err error
}

func (e *objectError) Error() string { return "object " + strconv.Quote(e.key) + ": " + e.err.Error() }
func (e *objectError) Unwrap() error { return e.err }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupportedVersion}, args...)...)
}
