package codec

import (
	"encoding/binary"
	"hash/crc32"
)

// Fragment is a decoded fragment: fully verified when it comes from Decode,
// unverified (checksums not checked) when it comes from DecodeTrusted.
//
// Aliasing: for an uncompressed fragment, the entry table and every entry
// returned by Entry are sub-slices of the buffer passed to Decode or
// DecodeTrusted (zero copy): that buffer must not be modified while the
// Fragment or any entry is in use. A compressed fragment owns one freshly
// allocated buffer holding its entry table and decompressed payload and
// does not retain the input.
//
// A Fragment is immutable and safe for concurrent use.
type Fragment struct {
	// Header is the fragment's header (verified, if it comes from Decode).
	Header Header

	table   []byte // Count slots of {end u32, crc u32}
	payload []byte // the uncompressed payload, PayloadLen bytes
}

// Len returns the number of entries (Header.Count).
func (f *Fragment) Len() int { return int(f.Header.Count) }

// Entry returns entry i (0 <= i < Len()), whose log index is
// Header.FirstIndex+i, in O(1). The slice's capacity equals its length, so
// appending to it copies; it must not be modified (see Fragment for
// aliasing). Entry panics if i is out of range, like a slice index.
func (f *Fragment) Entry(i int) []byte {
	end := binary.LittleEndian.Uint32(f.table[EntryTableEntrySize*i:])
	var begin uint32
	if i > 0 {
		begin = binary.LittleEndian.Uint32(f.table[EntryTableEntrySize*(i-1):])
	}
	return f.payload[begin:end:end]
}

// DecodeHeader decodes and verifies the header (including the entry table)
// at the start of b and returns it with its length in bytes, which is also
// the offset of the stored payload. b may be the whole object or any prefix
// holding the whole header; the payload is not read or verified, and
// trailing bytes are not checked. It does not allocate on success.
//
// To decide whether an object is a fragment you wrote (resolving a PUT whose
// outcome is unknown), use Decode, which verifies the payload too, and then
// compare Epoch and Nonce.
//
// Errors wrap ErrCorrupt or ErrUnsupportedVersion (see those).
func DecodeHeader(b []byte) (Header, int, error) {
	var h Header
	n, err := decodeHeader(b, &h, true)
	if err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

// Decode decodes b, one whole fragment object, verifying the header
// checksum, the payload checksum, the length of b and, after any
// decompression, every entry's checksum. It never panics and allocates at
// most once for an uncompressed fragment (the Fragment) and at most
// MaxPayloadSize plus the entry table for a compressed one; counts and
// lengths are checked against len(b) and the v1 limits before allocating.
// An uncompressed payload is read once: its checksum is derived from the
// entry checksums by CRC-32C combination (see verifyUncompressed).
//
// Errors wrap ErrCorrupt or ErrUnsupportedVersion (see those) and name the
// offset and field at fault; use WithObject to add the object's key.
func Decode(b []byte) (*Fragment, error) {
	f := &Fragment{}
	if err := f.decode(b, true); err != nil {
		return nil, err
	}
	return f, nil
}

// DecodeTrusted is Decode WITHOUT ANY CHECKSUM VERIFICATION. It checks the
// structure (magic, header length, the fields, the entry table, the object
// length), decompresses if needed and returns the Fragment, but never
// computes the header, payload or entry CRC-32C: damaged bytes can decode
// to wrong data without an error.
//
// Use it ONLY for bytes this process has itself just produced with
// AppendFragment and kept in its own memory (a writer caching the fragment
// it has just stored). NEVER use it for bytes read from storage, the
// network, a file, or any buffer another component could have written:
// use Decode for those.
//
// Like Decode it never panics on any input and never allocates on the
// say-so of the input beyond the v1 limits, and for bytes AppendFragment
// produced it returns exactly what Decode returns. Its errors wrap
// ErrCorrupt or ErrUnsupportedVersion, but without the header checksum
// they do not tell damage from a newer writer: for the caller's own bytes
// any error is a bug.
func DecodeTrusted(b []byte) (*Fragment, error) {
	f := &Fragment{}
	if err := f.decode(b, false); err != nil {
		return nil, err
	}
	return f, nil
}

// decode decodes b into f, verifying every checksum if verify is set.
// Without verify it makes every other check, so that whatever it accepts
// satisfies the invariants Entry relies on.
func (f *Fragment) decode(b []byte, verify bool) error {
	h := &f.Header
	hlen, err := decodeHeader(b, h, verify)
	if err != nil {
		return err
	}
	total := uint64(hlen) + uint64(h.StoredLen)
	if uint64(len(b)) != total {
		what := "truncated"
		if uint64(len(b)) > total {
			what = "trailing bytes"
		}
		return corruptf("%s: object is %d bytes, header (offsets %d, %d) says %d header + %d stored payload = %d",
			what, len(b), offHeaderLen, offStoredLen, hlen, h.StoredLen, total)
	}
	stored := b[hlen:]
	f.table = b[offTable:hlen:hlen]
	f.payload = stored
	if h.Compression == CompressionNone || h.PayloadLen == 0 {
		// Stored as is (or empty, S = U = 0): the entries alias b.
		if verify {
			return f.verifyUncompressed(b, hlen)
		}
		return nil
	}
	if verify {
		if got, want := crc(stored), binary.LittleEndian.Uint32(b[offPayloadCRC:]); got != want {
			return payloadMismatch(hlen, len(b), got, want)
		}
	}
	// One buffer: decompressed payload, then a copy of the table, so the
	// Fragment does not pin the compressed object.
	if err := checkDeclaredLen(stored, h.Compression, int(h.PayloadLen), hlen); err != nil {
		return err
	}
	tlen := hlen - offTable
	buf := make([]byte, int(h.PayloadLen)+tlen)
	f.payload = buf[:h.PayloadLen:h.PayloadLen]
	f.table = buf[h.PayloadLen:]
	copy(f.table, b[offTable:hlen])
	if err := decompress(f.payload, stored, h.Compression, hlen); err != nil {
		return err
	}
	if !verify {
		return nil
	}
	// The entry checksums are the only end-to-end check of the
	// decompressed bytes.
	var begin uint32
	for i := 0; i < int(h.Count); i++ {
		slot := f.table[EntryTableEntrySize*i:]
		end := binary.LittleEndian.Uint32(slot)
		if got, want := crc(f.payload[begin:end]), binary.LittleEndian.Uint32(slot[4:]); got != want {
			return f.entryMismatch(i, begin, end, got, want)
		}
		begin = end
	}
	return nil
}

// combineMinLen is the entry length from which verifyUncompressed extends
// the payload checksum by combination (crcCombine: one multiplication mod
// P for an entry under 4 KiB, 7-9 ns on amd64) rather than by checksumming
// the entry's bytes a second time. Below it, rereading the bytes (in L1
// cache, and checksummed in one call together with their short
// neighbours, at ~30 GB/s) is as fast: measured, the break-even lies
// between 128 and 256 bytes, and the choice does not affect the result.
const combineMinLen = 192

// verifyUncompressed verifies the entry checksums and the payload checksum
// of a fragment whose payload is stored as is (f.payload is b[hlen:]) in
// one pass. It computes each entry's CRC-32C, compares it with the table
// and extends the CRC-32C of the payload so far by combination; only runs
// of entries shorter than combineMinLen are checksummed a second time,
// where that is cheaper. The result is exactly crc(f.payload), so this
// accepts exactly what checking the payload checksum and then every entry
// checksum accepts, and it returns the same error: on an entry mismatch it
// checksums the whole payload, to report a payload mismatch first as that
// order prescribes.
func (f *Fragment) verifyUncompressed(b []byte, hlen int) error {
	le := binary.LittleEndian
	payload, table := f.payload, f.table
	var (
		sum          uint32 // CRC-32C of payload[:done]
		done, begin  uint32
		lastN, shift uint32 = 0, gfOne // shift = crcShift(lastN)
	)
	for i := 0; i < int(f.Header.Count); i++ {
		slot := table[EntryTableEntrySize*i:]
		end := le.Uint32(slot)
		got, want := crc(payload[begin:end]), le.Uint32(slot[4:])
		if got != want {
			if psum, pwant := crc(payload), le.Uint32(b[offPayloadCRC:]); psum != pwant {
				return payloadMismatch(hlen, len(b), psum, pwant)
			}
			return f.entryMismatch(i, begin, end, got, want)
		}
		if n := end - begin; n >= combineMinLen {
			if done < begin {
				sum = crc32.Update(sum, castagnoli, payload[done:begin])
			}
			if n != lastN {
				lastN, shift = n, crcShift(n)
			}
			sum = crcCombine(sum, got, shift)
			done = end
		}
		begin = end
	}
	sum = crc32.Update(sum, castagnoli, payload[done:])
	if want := le.Uint32(b[offPayloadCRC:]); sum != want {
		return payloadMismatch(hlen, len(b), sum, want)
	}
	return nil
}

func payloadMismatch(hlen, size int, got, want uint32) error {
	return corruptf("payload checksum mismatch: stored payload [%d,%d) has CRC-32C %#08x, header (offset %d) says %#08x",
		hlen, size, got, offPayloadCRC, want)
}

func (f *Fragment) entryMismatch(i int, begin, end, got, want uint32) error {
	return corruptf("entry %d (index %d, payload bytes [%d,%d)) has CRC-32C %#08x, entry table (offset %d) says %#08x",
		i, f.Header.FirstIndex+uint64(i), begin, end, got, offTable+EntryTableEntrySize*i+4, want)
}

// decodeHeader is DecodeHeader without the copies. The order of checks is
// part of the contract: structure needed to find the checksum, then the
// header checksum, and only then the version and the fields. So a damaged
// header (a flipped version byte included) is ErrCorrupt, and only a header
// that verifies can be ErrUnsupportedVersion. With verify unset (for
// DecodeTrusted only) the header checksum is skipped and everything else
// is checked.
func decodeHeader(b []byte, h *Header, verify bool) (int, error) {
	le := binary.LittleEndian
	if len(b) < EnvelopeSize {
		return 0, corruptf("truncated: %d bytes, a fragment has at least %d", len(b), EnvelopeSize)
	}
	if string(b[offMagic:offMagic+4]) != Magic {
		return 0, corruptf("bad magic at offset %d: %q, expected %q", offMagic, b[offMagic:offMagic+4], Magic)
	}
	hlen64 := uint64(le.Uint32(b[offHeaderLen:]))
	if hlen64 < EnvelopeSize || hlen64 > uint64(len(b)) {
		return 0, corruptf("header length %d (offset %d) outside [%d,%d] (object has %d bytes)",
			hlen64, offHeaderLen, EnvelopeSize, len(b), len(b))
	}
	hlen := int(hlen64)
	hdr := b[:hlen]
	if verify {
		if got, want := headerCRC(hdr), le.Uint32(b[offHeaderCRC:]); got != want {
			return 0, corruptf("header checksum mismatch: bytes [0,%d) have CRC-32C %#08x, offset %d says %#08x",
				hlen, got, offHeaderCRC, want)
		}
	}

	// The header is as its writer wrote it. Anything unknown from here on
	// is a newer writer's, not damage.
	if v := hdr[offVersion]; v != FormatVersion {
		return 0, unsupportedf("format version %d (offset %d), this reader knows %d", v, offVersion, FormatVersion)
	}
	if fl := hdr[offFlags]; fl != 0 {
		return 0, unsupportedf("flags %#02x (offset %d), v1 defines none", fl, offFlags)
	}
	if k := hdr[offKind]; k > byte(KindSeal) {
		return 0, unsupportedf("kind %d (offset %d)", k, offKind)
	}
	if c := hdr[offCompression]; c > byte(CompressionS2) {
		return 0, unsupportedf("compression %d (offset %d)", c, offCompression)
	}

	// Everything below is something no correct v1 writer produces.
	if hlen < FixedHeaderSize {
		return 0, corruptf("v1 header length %d (offset %d) below %d", hlen, offHeaderLen, FixedHeaderSize)
	}
	*h = Header{
		Kind:        Kind(hdr[offKind]),
		Compression: Compression(hdr[offCompression]),
		LogID:       le.Uint64(hdr[offLogID:]),
		Segment:     le.Uint64(hdr[offSegment:]),
		Seq:         le.Uint64(hdr[offSeq:]),
		Epoch:       le.Uint64(hdr[offEpoch:]),
		Nonce:       le.Uint64(hdr[offNonce:]),
		FirstIndex:  le.Uint64(hdr[offFirstIndex:]),
		Count:       le.Uint32(hdr[offCount:]),
		PayloadLen:  le.Uint32(hdr[offPayloadLen:]),
		StoredLen:   le.Uint32(hdr[offStoredLen:]),
	}
	if h.Kind == 0 {
		return 0, corruptf("kind 0 (offset %d) is never written", offKind)
	}
	if want := uint64(FixedHeaderSize) + EntryTableEntrySize*uint64(h.Count); hlen64 != want {
		return 0, corruptf("header length %d (offset %d) does not match count %d (offset %d): expected %d",
			hlen, offHeaderLen, h.Count, offCount, want)
	}
	if msg := h.validate(); msg != "" {
		return 0, corruptf("header: %s", msg)
	}
	if h.PayloadLen > MaxPayloadSize || h.StoredLen > MaxPayloadSize {
		return 0, corruptf("payload length %d / stored length %d (offsets %d, %d) exceed MaxPayloadSize %d",
			h.PayloadLen, h.StoredLen, offPayloadLen, offStoredLen, MaxPayloadSize)
	}
	switch {
	case h.PayloadLen == 0 && h.StoredLen != 0:
		return 0, corruptf("stored length %d (offset %d) for an empty payload, expected 0", h.StoredLen, offStoredLen)
	case h.Compression == CompressionNone && h.StoredLen != h.PayloadLen:
		return 0, corruptf("uncompressed fragment: stored length %d (offset %d) != payload length %d (offset %d)",
			h.StoredLen, offStoredLen, h.PayloadLen, offPayloadLen)
	case h.PayloadLen != 0 && h.StoredLen == 0:
		return 0, corruptf("stored length 0 (offset %d) for a %d-byte payload", offStoredLen, h.PayloadLen)
	}
	var prev uint32
	for i := 0; i < int(h.Count); i++ {
		end := le.Uint32(hdr[offTable+EntryTableEntrySize*i:])
		if end < prev || end > h.PayloadLen {
			return 0, corruptf("entry table: entry %d ends at %d (offset %d), previous ends at %d, payload length %d",
				i, end, offTable+EntryTableEntrySize*i, prev, h.PayloadLen)
		}
		prev = end
	}
	if prev != h.PayloadLen {
		return 0, corruptf("entry table: entries end at %d, payload length (offset %d) is %d", prev, offPayloadLen, h.PayloadLen)
	}
	return hlen, nil
}
