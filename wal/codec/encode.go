package codec

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/klauspost/compress/s2"
)

// castagnoli is the CRC-32C table. Every checksum in the format is CRC-32C
// (Castagnoli polynomial, as in iSCSI, ext4 and pebble), initial value 0 in
// the sense of hash/crc32.Update(0, castagnoli, data).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Update(0, castagnoli, b) }

// headerCRC is the checksum stored at offset 12: CRC-32C over hdr[0:12]
// followed by hdr[16:H], i.e. the whole header except the checksum field.
func headerCRC(hdr []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[:offHeaderCRC])
	return crc32.Update(c, castagnoli, hdr[offHeaderCRC+4:])
}

// AppendFragment appends the encoding of a fragment with header h and the
// given entries to dst and returns the extended slice. h.PayloadLen and
// h.StoredLen are ignored (computed). On error dst is returned unchanged
// (its spare capacity may have been written).
//
// entries[i] gets index h.FirstIndex+i. h.Count must equal len(entries):
// at least 1 for KindData, 0 for KindFence and KindSeal. Entries may be
// empty. Uncompressed entries are copied exactly once, into dst; with
// compression they are first gathered into a pooled scratch buffer. If dst
// has enough spare capacity, an uncompressed encode does not allocate.
//
// Errors wrap ErrInvalid or ErrTooLarge. AppendFragment is safe for
// concurrent use; it does not retain dst or entries.
func AppendFragment(dst []byte, h Header, entries [][]byte) ([]byte, error) {
	if len(entries) > MaxEntries {
		return dst, fmt.Errorf("%w: %d entries, MaxEntries is %d", ErrTooLarge, len(entries), MaxEntries)
	}
	if int(h.Count) != len(entries) {
		return dst, fmt.Errorf("%w: header count is %d but %d entries given", ErrInvalid, h.Count, len(entries))
	}
	if msg := h.validate(); msg != "" {
		return dst, fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	if h.Compression > CompressionS2 {
		return dst, fmt.Errorf("%w: unknown compression %d", ErrInvalid, uint8(h.Compression))
	}
	payloadLen := 0
	for i, e := range entries {
		if len(e) > MaxPayloadSize-payloadLen {
			return dst, fmt.Errorf("%w: payload exceeds MaxPayloadSize %d at entry %d (index %d)",
				ErrTooLarge, MaxPayloadSize, i, h.FirstIndex+uint64(i))
		}
		payloadLen += len(e)
	}

	// Reserve room for the header and the stored payload up front, so the
	// uncompressed case allocates at most once (and not at all when dst
	// already has the capacity).
	start := len(dst)
	hlen := h.HeaderLen()
	reserve := hlen + payloadLen
	if h.Compression == CompressionS2 && payloadLen > 0 {
		reserve = hlen + s2.MaxEncodedLen(payloadLen)
	}
	out := slices.Grow(dst, reserve)[:start+hlen]

	hdr := out[start : start+hlen]
	copy(hdr[offMagic:], Magic)
	hdr[offVersion] = FormatVersion
	hdr[offKind] = byte(h.Kind)
	hdr[offCompression] = byte(h.Compression)
	hdr[offFlags] = 0
	le := binary.LittleEndian
	le.PutUint32(hdr[offHeaderLen:], uint32(hlen))
	le.PutUint64(hdr[offLogID:], h.LogID)
	le.PutUint64(hdr[offSegment:], h.Segment)
	le.PutUint64(hdr[offSeq:], h.Seq)
	le.PutUint64(hdr[offEpoch:], h.Epoch)
	le.PutUint64(hdr[offNonce:], h.Nonce)
	le.PutUint64(hdr[offFirstIndex:], h.FirstIndex)
	le.PutUint32(hdr[offCount:], h.Count)
	le.PutUint32(hdr[offPayloadLen:], uint32(payloadLen))
	end := 0
	for i, e := range entries {
		end += len(e)
		slot := hdr[offTable+EntryTableEntrySize*i:]
		le.PutUint32(slot, uint32(end))
		le.PutUint32(slot[4:], crc(e))
	}

	switch {
	case payloadLen == 0:
		// Nothing stored, whatever the codec: S = 0.
	case h.Compression == CompressionNone:
		for _, e := range entries {
			out = append(out, e...)
		}
	default:
		sp := getScratch(payloadLen)
		for _, e := range entries {
			*sp = append(*sp, e...)
		}
		var err error
		out, err = appendCompressed(out, *sp, h.Compression)
		putScratch(sp)
		if err != nil {
			return dst, err
		}
	}
	stored := out[start+hlen:]
	if len(stored) > MaxPayloadSize {
		return dst, fmt.Errorf("%w: %v payload is %d bytes, MaxPayloadSize is %d",
			ErrTooLarge, h.Compression, len(stored), MaxPayloadSize)
	}
	hdr = out[start : start+hlen] // out may have moved
	le.PutUint32(hdr[offStoredLen:], uint32(len(stored)))
	le.PutUint32(hdr[offPayloadCRC:], crc(stored))
	le.PutUint32(hdr[offHeaderCRC:], headerCRC(hdr))
	return out, nil
}
