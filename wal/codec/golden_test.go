package codec

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden fragments in testdata/")

type goldenCase struct {
	file    string
	h       Header
	entries [][]byte
}

// goldenEntries are the entries of the golden data fragments. Never change
// them: the committed files must keep decoding to exactly this.
func goldenEntries() [][]byte {
	return [][]byte{
		[]byte("first entry"),
		{},
		[]byte(strings.Repeat("compressible raft log entry payload; ", 30)),
		{0x00, 0x01, 0xfe, 0xff},
	}
}

func goldenCases() []goldenCase {
	base := Header{Kind: KindData, LogID: 0x1122334455667788, Segment: 5, Seq: 17, Epoch: 3,
		Nonce: 0xdeadbeefcafef00d, FirstIndex: 1000, Count: 4}
	with := func(c Compression) Header { h := base; h.Compression = c; return h }
	return []goldenCase{
		{"data_none.frag", with(CompressionNone), goldenEntries()},
		{"data_zstd.frag", with(CompressionZstd), goldenEntries()},
		{"data_s2.frag", with(CompressionS2), goldenEntries()},
		{"data_empty_entries.frag", Header{Kind: KindData, LogID: 1, Segment: 1, Seq: 1, Epoch: 1, Nonce: 1,
			FirstIndex: 1, Count: 3}, [][]byte{{}, {}, {}}},
		{"data_max_values.frag", Header{Kind: KindData, LogID: math.MaxUint64, Segment: math.MaxUint64,
			Seq: math.MaxUint64, Epoch: math.MaxUint64, Nonce: math.MaxUint64, FirstIndex: math.MaxUint64 - 1,
			Count: 1}, [][]byte{[]byte("last")}},
		{"fence.frag", Header{Kind: KindFence, LogID: 0x1122334455667788, Segment: 5, Seq: 18, Epoch: 4,
			Nonce: 0xbadc0ffee0ddf00d}, nil},
		{"seal.frag", Header{Kind: KindSeal, LogID: 0x1122334455667788, Segment: 5, Seq: 19, Epoch: 4,
			Nonce: 0xbadc0ffee0ddf00d, FirstIndex: 1004}, nil},
	}
}

// TestGolden decodes the committed fragments in testdata/ and re-encodes
// them. Fragments without a compressed payload must re-encode byte for
// byte. Compressed ones are checked by decoded content only: zstd and S2
// output is deterministic for one library version and architecture (the
// settings are pinned in compress.go) but is not promised to be stable
// across versions of klauspost/compress, so a difference is logged, not
// failed. Run with -update to (re)create the files; never do so to make a
// failing test pass.
func TestGolden(t *testing.T) {
	for _, g := range goldenCases() {
		t.Run(g.file, func(t *testing.T) {
			path := filepath.Join("testdata", g.file)
			if *update {
				require.NoError(t, os.WriteFile(path, mustEncode(t, g.h, g.entries), 0o644))
			}
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			requireDecodesTo(t, b, g.h, g.entries)

			re := mustEncode(t, g.h, g.entries)
			if g.h.Compression == CompressionNone || len(bytes.Join(g.entries, nil)) == 0 {
				require.Equal(t, b, re, "re-encoding must be byte-identical")
				return
			}
			if !bytes.Equal(b, re) {
				t.Logf("%s: re-encoding differs from the golden bytes (allowed for compressed payloads)", g.file)
			}
			requireDecodesTo(t, re, g.h, g.entries)
		})
	}
}
