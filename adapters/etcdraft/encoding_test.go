package etcdraft

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A snapshot record written when records held the whole bucket key of the
// data object decodes to the key relative to the log's blobs, the same
// object; the rest of the record is unchanged.
func TestSnapRecordKeyIsRelativeToTheLogsBlobs(t *testing.T) {
	const rel = "snap/00000000000000000042_00000000deadbeef"
	decoded := func(stored string) snapRecord {
		t.Helper()
		b, err := encodeSnapRecord(snapRecord{md: &pb.SnapshotMetadata{Index: proto.Uint64(42), Term: proto.Uint64(3)},
			hasData: stored != "", size: 7, crc: 9, key: stored})
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeSnapRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if r.md.GetIndex() != 42 || r.size != 7 || r.crc != 9 {
			t.Fatalf("record with key %q decoded as %+v", stored, r)
		}
		return r
	}
	for _, stored := range []string{"wal/raft/" + rel, "a/b/snap/node_1/" + rel, rel} {
		if got := decoded(stored).key; got != rel {
			t.Errorf("stored key %q decodes to %q, want %q", stored, got, rel)
		}
	}
	if got := decoded("").key; got != "" {
		t.Errorf("a record without data decodes with key %q", got)
	}
}
