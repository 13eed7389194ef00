package hashiraft

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/objstore/mem"
)

// goldenSnapshot is testdata/snapshot_meta_v1.json: version 1 snapshot
// metadata, readable forever and re-encoded byte for byte.
var goldenSnapshot = snapshotRecord{
	Format: 1, Version: 1, ID: "00000000000000004096_00000000000000000007_0123456789abcdef",
	Index: 4096, Term: 7,
	Configuration: raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "n1", Address: "10.0.0.1:7000"},
		{Suffrage: raft.Nonvoter, ID: "n2", Address: "10.0.0.2:7000"},
	}},
	ConfigurationIndex: 4000, Size: 10, ChunkSize: 8, ChunkCRCs: []uint32{0x1234, 0xabcdef01},
}

func TestGoldenSnapshotMeta(t *testing.T) {
	enc, err := json.Marshal(&goldenSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	want := golden(t, "snapshot_meta_v1.json", enc)
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoding differs from the golden file:\n got %s\nwant %s", enc, want)
	}
	b := mem.New()
	s, err := NewSnapshotStore(b, "p", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutIfAbsent(context.Background(), s.metaKey(goldenSnapshot.ID), want); err != nil {
		t.Fatal(err)
	}
	got, err := s.readMeta(goldenSnapshot.ID)
	if err != nil {
		t.Fatalf("readMeta: %v", err)
	}
	if got.Index != 4096 || got.Term != 7 || got.Size != 10 || got.ConfigurationIndex != 4000 ||
		!slices.Equal(got.ChunkCRCs, goldenSnapshot.ChunkCRCs) ||
		!slices.Equal(got.Configuration.Servers, goldenSnapshot.Configuration.Servers) {
		t.Fatalf("decoded %+v", got)
	}
}

func TestStableKeyFormat(t *testing.T) {
	for key, want := range map[string]string{
		"CurrentTerm":  "stable:CurrentTerm",
		"LastVoteCand": "stable:LastVoteCand",
		"a.b-c_d":      "stable:a.b-c_d",
		"":             "stable.hex:",
		"a/b":          "stable.hex:612f62",
		"\x00\xff":     "stable.hex:00ff",
	} {
		if got := stableKey([]byte(key)); got != want {
			t.Errorf("stableKey(%q) = %q, want %q", key, got, want)
		}
	}
}
