package etcdraft

import (
	"encoding/binary"
	"fmt"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/logstore"
)

// Format versions. They are part of the stored format (WAL entries and the
// values kept in the log's metadata record) and never change; a new layout
// takes a new number, and an unknown number is logstore.ErrUnsupportedVersion.
const (
	entryFormat = 1 // WAL entry: [1] uvarint(gen) proto(raftpb.Entry)
	hsFormat    = 1 // metaHardState: [1] proto(raftpb.HardState)
	logFormat   = 1 // metaLog: [1] uvarint(off) uvarint(offTerm) uvarint(gen)
	snapFormat  = 1 // metaSnap: [1] flags uvarint(size) crc32c(4, LE) uvarint(len(key)) key proto(SnapshotMetadata)
)

// Keys in the WAL log's metadata record (wal.Writer.SetMeta). Part of the
// stored format.
const (
	metaHardState = "etcdraft.hs"
	metaLog       = "etcdraft.log"
	metaSnap      = "etcdraft.snap"
)

const snapFlagHasData = 1 << 0 // Snapshot.Data was non-nil (possibly empty)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: etcdraft: "+format, append([]any{logstore.ErrCorrupt}, args...)...)
}

func unsupported(what string, v byte) error {
	return fmt.Errorf("%w: etcdraft: %s format %d (this version reads 1)", logstore.ErrUnsupportedVersion, what, v)
}

// encodeEntry encodes e for the WAL under generation gen.
func encodeEntry(e *pb.Entry, gen uint64) ([]byte, error) {
	buf := make([]byte, 1, 1+binary.MaxVarintLen64+proto.Size(e))
	buf[0] = entryFormat
	buf = binary.AppendUvarint(buf, gen)
	return proto.MarshalOptions{}.MarshalAppend(buf, e)
}

// decodeEntry decodes the WAL entry at index i and returns it with its
// generation. The entry's own Index must be i.
func decodeEntry(b []byte, i uint64) (*pb.Entry, uint64, error) {
	if len(b) == 0 {
		return nil, 0, corrupt("entry %d is empty", i)
	}
	if b[0] != entryFormat {
		return nil, 0, unsupported(fmt.Sprintf("entry %d", i), b[0])
	}
	gen, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return nil, 0, corrupt("entry %d: bad generation", i)
	}
	e := new(pb.Entry)
	if err := proto.Unmarshal(b[1+n:], e); err != nil {
		return nil, 0, corrupt("entry %d: %v", i, err)
	}
	if e.GetIndex() != i {
		return nil, 0, corrupt("WAL position %d holds entry with index %d", i, e.GetIndex())
	}
	return e, gen, nil
}

func encodeHardState(hs *pb.HardState) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend([]byte{hsFormat}, hs)
}

func decodeHardState(b []byte) (*pb.HardState, error) {
	if len(b) == 0 {
		return nil, corrupt("empty HardState value")
	}
	if b[0] != hsFormat {
		return nil, unsupported("HardState", b[0])
	}
	hs := new(pb.HardState)
	if err := proto.Unmarshal(b[1:], hs); err != nil {
		return nil, corrupt("HardState: %v", err)
	}
	return hs, nil
}

// logState is the compaction point and the log generation. Entries (off,
// last] are in the WAL; off's term is kept here because the WAL no longer
// holds the entry. gen is bumped by every snapshot applied (which replaces
// the whole log): WAL entries of an older generation are stale leftovers of
// an interrupted reset.
type logState struct {
	off, offTerm, gen uint64
}

func encodeLogState(s logState) []byte {
	b := []byte{logFormat}
	b = binary.AppendUvarint(b, s.off)
	b = binary.AppendUvarint(b, s.offTerm)
	return binary.AppendUvarint(b, s.gen)
}

func decodeLogState(b []byte) (logState, error) {
	var s logState
	if len(b) == 0 {
		return s, corrupt("empty log state value")
	}
	if b[0] != logFormat {
		return s, unsupported("log state", b[0])
	}
	b = b[1:]
	for _, p := range []*uint64{&s.off, &s.offTerm, &s.gen} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return s, corrupt("log state: truncated")
		}
		*p, b = v, b[n:]
	}
	return s, nil
}

// snapRecord describes the current snapshot: its metadata and where its
// data object is. key is empty when the data is empty (or nil).
type snapRecord struct {
	md      *pb.SnapshotMetadata
	hasData bool
	size    int64
	crc     uint32
	key     string
}

// snapBlobKey returns a recorded data key relative to the log's blobs:
// records hold "snap/<name>", and records written before the adapter saw
// only its log's blobs held the whole bucket key "<prefix>/<log>/snap/<name>"
// of the same object.
func snapBlobKey(key string) string {
	if i := strings.LastIndex(key, "/snap/"); i >= 0 {
		return key[i+1:]
	}
	return key
}

func encodeSnapRecord(r snapRecord) ([]byte, error) {
	b := []byte{snapFormat, 0}
	if r.hasData {
		b[1] |= snapFlagHasData
	}
	b = binary.AppendUvarint(b, uint64(r.size))
	b = binary.LittleEndian.AppendUint32(b, r.crc)
	b = binary.AppendUvarint(b, uint64(len(r.key)))
	b = append(b, r.key...)
	return proto.MarshalOptions{}.MarshalAppend(b, r.md)
}

func decodeSnapRecord(b []byte) (snapRecord, error) {
	var r snapRecord
	if len(b) < 2 {
		return r, corrupt("snapshot record: truncated")
	}
	if b[0] != snapFormat {
		return r, unsupported("snapshot record", b[0])
	}
	r.hasData = b[1]&snapFlagHasData != 0
	b = b[2:]
	size, n := binary.Uvarint(b)
	if n <= 0 || len(b[n:]) < 4 {
		return r, corrupt("snapshot record: truncated")
	}
	r.size = int64(size)
	b = b[n:]
	r.crc = binary.LittleEndian.Uint32(b)
	b = b[4:]
	kl, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b[n:])) < kl {
		return r, corrupt("snapshot record: truncated")
	}
	r.key = snapBlobKey(string(b[n : n+int(kl)]))
	r.md = new(pb.SnapshotMetadata)
	if err := proto.Unmarshal(b[n+int(kl):], r.md); err != nil {
		return r, corrupt("snapshot record: %v", err)
	}
	return r, nil
}
