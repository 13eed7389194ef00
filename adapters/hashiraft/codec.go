package hashiraft

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/logstore"
)

// Entry format constants: part of the stored format (see FORMAT.md), never
// change them.
const (
	// entryVersion is the first byte of every encoded raft.Log.
	entryVersion = 1
	// flagAppendedAt: seconds and nanoseconds of AppendedAt follow. Without
	// it AppendedAt is the zero time.Time.
	flagAppendedAt = 1 << 0
	// flagCommit: the commit index staged before the StoreLogs call that
	// wrote the entry follows (CommitTrackingLogStore).
	flagCommit = 1 << 1
	// flagsKnown is every flag this version understands.
	flagsKnown = flagAppendedAt | flagCommit
)

// appendEntry appends the encoding of l to dst. commit, when not zero, is
// stored with it (see FORMAT.md).
func appendEntry(dst []byte, l *raft.Log, commit uint64) []byte {
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	if commit != 0 {
		flags |= flagCommit
	}
	dst = append(dst, entryVersion, flags, byte(l.Type))
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	if flags&flagAppendedAt != 0 {
		dst = binary.AppendVarint(dst, l.AppendedAt.Unix())
		dst = binary.AppendUvarint(dst, uint64(l.AppendedAt.Nanosecond()))
	}
	if flags&flagCommit != 0 {
		dst = binary.AppendUvarint(dst, commit)
	}
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	return dst
}

// entrySize returns an upper bound of the encoded size of l.
func entrySize(l *raft.Log) int {
	return 3 + 5*binary.MaxVarintLen64 + len(l.Data) + len(l.Extensions)
}

// decodeEntry decodes b into out and returns the commit index stored with
// it (0 if none). out's Data and Extensions are fresh slices (nil when
// empty): nothing aliases b. On error out is unchanged; the error wraps
// logstore.ErrCorrupt or logstore.ErrUnsupportedVersion.
func decodeEntry(b []byte, out *raft.Log) (commit uint64, err error) {
	corrupt := func(what string) error {
		return fmt.Errorf("%w: hashiraft entry: %s", logstore.ErrCorrupt, what)
	}
	if len(b) < 3 {
		return 0, corrupt(fmt.Sprintf("%d bytes, shorter than the 3-byte header", len(b)))
	}
	if b[0] != entryVersion {
		return 0, fmt.Errorf("%w: hashiraft entry version %d (this version reads %d)", logstore.ErrUnsupportedVersion, b[0], entryVersion)
	}
	flags := b[1]
	if flags&^flagsKnown != 0 {
		return 0, corrupt(fmt.Sprintf("unknown flags %#x", flags))
	}
	var l raft.Log
	l.Type = raft.LogType(b[2])
	p := b[3:]
	uvarint := func(what string) (uint64, error) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, corrupt("bad varint for " + what)
		}
		p = p[n:]
		return v, nil
	}
	bytesField := func(what string) ([]byte, error) {
		n, err := uvarint(what + " length")
		if err != nil {
			return nil, err
		}
		if n > uint64(len(p)) {
			return nil, corrupt(fmt.Sprintf("%s length %d exceeds the %d bytes left", what, n, len(p)))
		}
		var v []byte
		if n > 0 {
			v = make([]byte, n)
			copy(v, p[:n])
		}
		p = p[n:]
		return v, nil
	}
	if l.Index, err = uvarint("index"); err != nil {
		return 0, err
	}
	if l.Term, err = uvarint("term"); err != nil {
		return 0, err
	}
	if flags&flagAppendedAt != 0 {
		sec, n := binary.Varint(p)
		if n <= 0 {
			return 0, corrupt("bad varint for appended_at seconds")
		}
		p = p[n:]
		nsec, err := uvarint("appended_at nanoseconds")
		if err != nil {
			return 0, err
		}
		if nsec >= uint64(time.Second) {
			return 0, corrupt(fmt.Sprintf("appended_at nanoseconds %d out of range", nsec))
		}
		l.AppendedAt = time.Unix(sec, int64(nsec))
	}
	if flags&flagCommit != 0 {
		if commit, err = uvarint("commit index"); err != nil {
			return 0, err
		}
	}
	if l.Data, err = bytesField("data"); err != nil {
		return 0, err
	}
	if l.Extensions, err = bytesField("extensions"); err != nil {
		return 0, err
	}
	if len(p) != 0 {
		return 0, corrupt(fmt.Sprintf("%d trailing bytes", len(p)))
	}
	*out = l
	return commit, nil
}
