package hashiraft

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/wal"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden returns the golden file testdata/name, first rewriting it with
// enc when -update is given.
func golden(t *testing.T, name string, enc []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	return want
}

// goldenEntries are encoded in testdata/ by version 1 of the format and
// must decode, and re-encode byte for byte, forever.
var goldenEntries = []struct {
	name   string
	log    raft.Log
	commit uint64
}{
	{"entry_v1_bootstrap.bin", raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf")}, 0},
	{"entry_v1_full.bin", raft.Log{Index: 1 << 40, Term: 7, Type: raft.LogCommand, Data: []byte("data"),
		Extensions: []byte("ext"), AppendedAt: time.Unix(1_700_000_000, 123_456_789)}, 99},
	{"entry_v1_pre_epoch.bin", raft.Log{Index: 2, Term: 1 << 63, Type: raft.LogType(255),
		AppendedAt: time.Unix(-62_135_596_799, 1)}, 0},
}

func TestGolden(t *testing.T) {
	for _, g := range goldenEntries {
		t.Run(g.name, func(t *testing.T) {
			enc := appendEntry(nil, &g.log, g.commit)
			want := golden(t, g.name, enc)
			var got raft.Log
			commit, err := decodeEntry(want, &got)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if commit != g.commit || got.Index != g.log.Index || got.Term != g.log.Term || got.Type != g.log.Type ||
				!bytes.Equal(got.Data, g.log.Data) || !bytes.Equal(got.Extensions, g.log.Extensions) ||
				!got.AppendedAt.Equal(g.log.AppendedAt) {
				t.Fatalf("decoded %+v commit %d, want %+v commit %d", got, commit, g.log, g.commit)
			}
			if !bytes.Equal(enc, want) {
				t.Fatalf("re-encoding differs from the golden file:\n got %x\nwant %x", enc, want)
			}
		})
	}
}

func TestZeroAppendedAt(t *testing.T) {
	// time.Time{}.UnixNano() overflows; the zero time must come back zero.
	var got raft.Log
	if _, err := decodeEntry(appendEntry(nil, &raft.Log{Index: 1, Term: 1}, 0), &got); err != nil {
		t.Fatal(err)
	}
	if !got.AppendedAt.IsZero() || !got.AppendedAt.Equal(time.Time{}) || got.AppendedAt != (time.Time{}) {
		t.Fatalf("AppendedAt = %v, want the zero time", got.AppendedAt)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := appendEntry(nil, &goldenEntries[1].log, 5)
	var l raft.Log
	for i := range len(good) {
		if _, err := decodeEntry(good[:i], &l); !errors.Is(err, wal.ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorrupt", i, err)
		}
	}
	if _, err := decodeEntry(append(bytes.Clone(good), 0), &l); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("trailing byte: %v, want ErrCorrupt", err)
	}
	bad := bytes.Clone(good)
	bad[0] = 2
	if _, err := decodeEntry(bad, &l); !errors.Is(err, wal.ErrUnsupportedVersion) {
		t.Fatalf("version 2: %v, want ErrUnsupportedVersion", err)
	}
	bad = bytes.Clone(good)
	bad[1] |= 0x80
	if _, err := decodeEntry(bad, &l); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("unknown flag: %v, want ErrCorrupt", err)
	}
	if l.Index != 0 || l.Data != nil {
		t.Fatalf("a failed decode changed its output: %+v", l)
	}
}

func FuzzDecode(f *testing.F) {
	for _, g := range goldenEntries {
		f.Add(appendEntry(nil, &g.log, g.commit))
	}
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		scratch := bytes.Clone(b)
		commit, err := decodeEntry(scratch, &l)
		clear(scratch) // nothing decoded may alias the input
		if err != nil {
			if !errors.Is(err, wal.ErrCorrupt) && !errors.Is(err, wal.ErrUnsupportedVersion) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrUnsupportedVersion", err)
			}
			return
		}
		// What decodes re-encodes to a canonical form that decodes the same.
		enc := appendEntry(nil, &l, commit)
		var l2 raft.Log
		commit2, err := decodeEntry(enc, &l2)
		if err != nil || commit2 != commit || l2.Index != l.Index || l2.Term != l.Term || l2.Type != l.Type ||
			!bytes.Equal(l2.Data, l.Data) || !bytes.Equal(l2.Extensions, l.Extensions) || !l2.AppendedAt.Equal(l.AppendedAt) {
			t.Fatalf("re-encoding does not round-trip: %+v (%v) vs %+v", l2, err, l)
		}
		var l3 raft.Log
		if _, err := decodeEntry(b, &l3); err != nil || !bytes.Equal(l3.Data, l.Data) || !bytes.Equal(l3.Extensions, l.Extensions) {
			t.Fatal("the decoded entry aliases its input")
		}
	})
}
