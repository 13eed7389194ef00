// Package codec encodes and decodes woodpecker fragment objects and names
// them. It is pure: it works over []byte, does no I/O, and imports only the
// standard library and github.com/klauspost/compress. The full
// specification is wal/FORMAT.md; this is its summary.
//
// A fragment is one immutable object, written once per flush of a log's
// writer. It holds Count consecutive entries (entry i has index
// FirstIndex+i and an opaque payload) or, for a fence or seal, none, and
// carries everything a reader needs to verify and place it.
//
// All integers are little-endian, fixed width. Offsets in bytes:
//
//	off  size  field                                 [E] = envelope: same
//	 0      4  magic "WPFG"                          [E]   in every version
//	 4      1  version (1)                           [E]
//	 5      1  kind: 1 data, 2 fence, 3 seal
//	 6      1  compression: 0 none, 1 zstd, 2 s2
//	 7      1  flags (0 in v1)
//	 8      4  header length H = 80 + 8*Count        [E]
//	12      4  header CRC-32C of [0,12) ++ [16,H)    [E]
//	16      8  log id
//	24      8  segment id
//	32      8  sequence number within the segment
//	40      8  writer epoch
//	48      8  writer nonce
//	56      8  first index
//	64      4  count
//	68      4  uncompressed payload length U
//	72      4  stored payload length S (U when uncompressed; 0 when U is 0)
//	76      4  payload CRC-32C over the S stored bytes
//	80  8*Count entry table, per entry: u32 end offset in the uncompressed
//	            payload, u32 CRC-32C of the entry's bytes
//	 H      S  stored payload: the entries back to back, compressed as a
//	            whole; the object is exactly H+S bytes
//
// Verification order: envelope structure, then the header checksum, then the
// version and every field, then the object length, the payload checksum,
// the decompressed length and the entry checksums. Because the header
// checksum comes before the version, any damage (a flipped version bit
// included) is ErrCorrupt; ErrUnsupportedVersion means a well-formed header
// written by a newer writer (unknown version, kind, compression or flag).
//
// Decode makes entry i available in O(1) through the entry table.
// Uncompressed fragments are decoded without copying: entries alias the
// input buffer (see Fragment); their payload is verified in one pass, the
// payload checksum being derived from the entry checksums by CRC-32C
// combination. DecodeTrusted skips every checksum; it is only for bytes the
// caller has just produced with AppendFragment itself.
//
// Object keys (FragmentKey) are "<logPrefix>/s/<segment>/<seq>" with both
// numbers zero-padded to 20 decimal digits, using only [0-9a-z_/], so byte
// order equals (segment, seq) order and no key is a directory prefix of
// another.
package codec
