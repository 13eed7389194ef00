package etcdraft

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A snapshot record written when records held the whole bucket key of the
// data object decodes to the key relative to the log's blobs, the same
// object.
func TestSnapRecordKeyIsRelativeToTheLogsBlobs(t *testing.T) {
	for stored, want := range map[string]string{
		"wal/raft/snap/00000000000000000042_00000000deadbeef":     "snap/00000000000000000042_00000000deadbeef",
		"a/b/c/node_1/snap/00000000000000000042_00000000deadbeef": "snap/00000000000000000042_00000000deadbeef",
		"snap/00000000000000000042_00000000deadbeef":              "snap/00000000000000000042_00000000deadbeef",
		"": "",
	} {
		b, err := encodeSnapRecord(snapRecord{md: &pb.SnapshotMetadata{Index: proto.Uint64(42), Term: proto.Uint64(3)}, hasData: stored != "", size: 7, crc: 9, key: stored})
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeSnapRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if r.key != want || r.md.GetIndex() != 42 || r.size != 7 || r.crc != 9 {
			t.Errorf("stored key %q: decoded %+v, want key %q", stored, r, want)
		}
	}
}
