// Package localtier is the tiered mode's local segment store: the records a
// tiered writer makes durable with one write and one fdatasync per group
// commit before it acknowledges them, and replays after a crash.
//
// # Files
//
// A tier is one directory per log holding:
//
//   - LOCK: flock(2)ed by the one process that has the tier open.
//   - IDENTITY: which writer the records belong to (log incarnation, epoch,
//     owner) and the tier's random id, replaced atomically (temporary file,
//     fdatasync, rename, directory fsync).
//   - <20-digit id>.seg: segments, written sequentially. A new segment is a
//     zero-filled (or recycled) file of SegmentSize bytes whose directory
//     entry is made durable before any record in it is acknowledged.
//
// # Records
//
// Every record is a 48-byte header followed by its payload (little-endian):
//
//	0  u32 CRC-32C of bytes [4, 48+len)
//	4  u32 payload length
//	8  u8  kind (1 base, 2 entries, 3 truncate back, 4 truncate front)
//	9  7 zero bytes
//	16 u64 segment id
//	24 u64 tier id
//	32 u64 writer epoch
//	40 u64 LSN: 1, 2, 3, ... across segments, without a gap (a base
//	       record carries the LSN of the op that follows it)
//
// A segment starts with a base record (the log's logical state before the
// segment's first operation: first index, next index, empty flag) and then
// holds operations: entries (first index, count, one u32 length per entry,
// the entries' bytes), truncate back (index) and truncate front (index).
//
// Replay reads each segment from its start and stops at the first record
// that does not verify: a bad CRC, a length beyond the file, a segment id,
// tier id or LSN that is not the one expected. Zero-filled or recycled
// space therefore never passes as data: stale bytes carry another segment
// id, another tier id or an LSN out of sequence. In the last segment that
// point is the torn tail of a write that was never acknowledged, and it is
// cut there. In an earlier segment it is where the segment ended; the next
// segment's base record must then continue the LSN sequence, else the
// replay reports ErrCorrupt (records that were acknowledged are missing).
package localtier

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Kind is a record's kind.
type Kind uint8

const (
	kindBase          Kind = 1
	KindEntries       Kind = 2
	KindTruncateBack  Kind = 3
	KindTruncateFront Kind = 4
)

func (k Kind) String() string {
	switch k {
	case kindBase:
		return "base"
	case KindEntries:
		return "entries"
	case KindTruncateBack:
		return "truncate-back"
	case KindTruncateFront:
		return "truncate-front"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

const headerSize = 48

// ErrCorrupt is returned when acknowledged records are missing or damaged.
var ErrCorrupt = errors.New("localtier: corrupt local tier")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Op is one operation of the log, in the order the writer accepted it.
type Op struct {
	Kind Kind
	// Index is the first entry's index (KindEntries) or the truncation's
	// argument.
	Index   uint64
	Entries [][]byte // KindEntries
	LSN     uint64
}

// State is the log's logical state: entries First..Next-1, or none when
// Empty (the next append may then use any index).
type State struct {
	First, Next uint64
	Empty       bool
}

// Apply returns the state after op, with the engine's semantics (an op the
// writer accepted is valid for the state it was accepted in).
func (s State) Apply(op Op) State {
	switch op.Kind {
	case KindEntries:
		if s.Empty {
			s.Empty, s.First, s.Next = false, op.Index, op.Index
		}
		s.Next += uint64(len(op.Entries))
	case KindTruncateBack:
		if s.Empty || op.Index+1 >= s.Next {
			break
		}
		if op.Index < s.First {
			s.Empty, s.Next = true, s.First
		} else {
			s.Next = op.Index + 1
		}
	case KindTruncateFront:
		if op.Index <= s.First {
			break
		}
		s.First = op.Index
		if op.Index >= s.Next {
			s.Empty, s.Next = true, op.Index
		}
	}
	return s
}

type recHeader struct {
	kind          Kind
	seg, tier     uint64
	epoch, lsn    uint64
	payloadLength uint32
}

func payloadSize(op Op) int {
	switch op.Kind {
	case KindEntries:
		n := 12 + 4*len(op.Entries)
		for _, e := range op.Entries {
			n += len(e)
		}
		return n
	case kindBase:
		return 17
	default:
		return 8
	}
}

// appendRecord encodes op (or, for kindBase, the state st) into dst.
func appendRecord(dst []byte, h recHeader, op Op, st State) []byte {
	start := len(dst)
	n := payloadSize(op)
	dst = append(dst, make([]byte, headerSize+n)...)
	b := dst[start:]
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	b[8] = byte(h.kind)
	binary.LittleEndian.PutUint64(b[16:], h.seg)
	binary.LittleEndian.PutUint64(b[24:], h.tier)
	binary.LittleEndian.PutUint64(b[32:], h.epoch)
	binary.LittleEndian.PutUint64(b[40:], h.lsn)
	p := b[headerSize:]
	switch h.kind {
	case kindBase:
		binary.LittleEndian.PutUint64(p, st.First)
		binary.LittleEndian.PutUint64(p[8:], st.Next)
		if st.Empty {
			p[16] = 1
		}
	case KindEntries:
		binary.LittleEndian.PutUint64(p, op.Index)
		binary.LittleEndian.PutUint32(p[8:], uint32(len(op.Entries)))
		off := 12 + 4*len(op.Entries)
		for i, e := range op.Entries {
			binary.LittleEndian.PutUint32(p[12+4*i:], uint32(len(e)))
			off += copy(p[off:], e)
		}
	default:
		binary.LittleEndian.PutUint64(p, op.Index)
	}
	binary.LittleEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	return dst
}

// decodeRecord decodes the record at the start of b, expecting segment seg,
// tier tier and LSN lsn (any LSN when lsn is 0). ok is false when there is no valid such record
// there (the end of the segment's data).
func decodeRecord(b []byte, seg, tier, lsn uint64) (h recHeader, op Op, st State, size int, ok bool) {
	if len(b) < headerSize {
		return h, op, st, 0, false
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if uint64(n) > uint64(len(b)-headerSize) {
		return h, op, st, 0, false
	}
	size = headerSize + int(n)
	if crc32.Checksum(b[4:size], castagnoli) != binary.LittleEndian.Uint32(b) {
		return h, op, st, 0, false
	}
	h = recHeader{
		kind: Kind(b[8]), seg: binary.LittleEndian.Uint64(b[16:]), tier: binary.LittleEndian.Uint64(b[24:]),
		epoch: binary.LittleEndian.Uint64(b[32:]), lsn: binary.LittleEndian.Uint64(b[40:]), payloadLength: n,
	}
	if h.seg != seg || h.tier != tier || (lsn != 0 && h.lsn != lsn) {
		return h, op, st, 0, false
	}
	for _, z := range b[9:16] {
		if z != 0 {
			return h, op, st, 0, false
		}
	}
	p := b[headerSize:size]
	op = Op{Kind: h.kind, LSN: h.lsn}
	switch h.kind {
	case kindBase:
		if n != 17 || p[16] > 1 {
			return h, op, st, 0, false
		}
		st = State{First: binary.LittleEndian.Uint64(p), Next: binary.LittleEndian.Uint64(p[8:]), Empty: p[16] == 1}
	case KindEntries:
		if n < 12 {
			return h, op, st, 0, false
		}
		op.Index = binary.LittleEndian.Uint64(p)
		cnt := int(binary.LittleEndian.Uint32(p[8:]))
		if cnt == 0 || 12+4*uint64(cnt) > uint64(n) {
			return h, op, st, 0, false
		}
		off := 12 + 4*cnt
		op.Entries = make([][]byte, cnt)
		for i := range cnt {
			l := int(binary.LittleEndian.Uint32(p[12+4*i:]))
			if off+l > len(p) {
				return h, op, st, 0, false
			}
			op.Entries[i] = append([]byte{}, p[off:off+l]...)
			off += l
		}
		if off != len(p) {
			return h, op, st, 0, false
		}
	case KindTruncateBack, KindTruncateFront:
		if n != 8 {
			return h, op, st, 0, false
		}
		op.Index = binary.LittleEndian.Uint64(p)
	default:
		return h, op, st, 0, false
	}
	return h, op, st, size, true
}
