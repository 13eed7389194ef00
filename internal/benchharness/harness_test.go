package benchharness

import (
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/latency"
)

func TestParseLatency(t *testing.T) {
	for _, tc := range []struct {
		in           string
		base, jitter string
		bad          bool
	}{
		{"", "0s", "0s", false},
		{"5ms", "5ms", "0s", false},
		{"20ms-60ms", "20ms", "40ms", false},
		{"60ms-20ms", "", "", true},
		{"fast", "", "", true},
	} {
		b, j, err := ParseLatency(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParseLatency(%q) error = %v, want error %v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && (b.String() != tc.base || j.String() != tc.jitter) {
			t.Errorf("ParseLatency(%q) = %v, %v; want %s, %s", tc.in, b, j, tc.base, tc.jitter)
		}
	}
}

func TestParseSteps(t *testing.T) {
	m, err := ParseSteps(" raw, sync ,,")
	if err != nil || len(m) != 2 || !m["raw"] || !m["sync"] {
		t.Fatalf("ParseSteps = %v, %v", m, err)
	}
	for _, bad := range []string{"", " , ", "raw,fast"} {
		if _, err := ParseSteps(bad); err == nil {
			t.Errorf("ParseSteps(%q) succeeded", bad)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	full, quick := DefaultConfig(false), DefaultConfig(true)
	for _, c := range []Config{full, quick} {
		if err := c.validate(); err != nil {
			t.Fatalf("DefaultConfig(%v): %v", c.Quick, err)
		}
		if len(c.Steps) != len(StepGroups) {
			t.Fatalf("DefaultConfig(%v) runs %v, want every group", c.Quick, c.Steps)
		}
	}
	if quick.StepTime >= full.StepTime || quick.RecoveryEntries >= full.RecoveryEntries || time.Duration(0) >= quick.CostTime {
		t.Fatalf("quick %+v is not smaller than full %+v", quick, full)
	}
}

// The report has a table per step group that ran, with the rows of the
// steps that ran, and none for a group that did not.
func TestMarkdown(t *testing.T) {
	r := &Results{
		Kind: "file", Latency: "none",
		Async: []*AsyncRow{
			{Entry: 64 << 10, Logs: 1, Entries: 100, Ratio: 0.95, Raw: Throughput{Ops: 10}},
			{Entry: 128, Logs: 4}, // did not run
		},
		Sync: &SyncResult{Entry: 1 << 10, WAL: latency.Stats{N: 3, P50: time.Millisecond}},
		Cost: []*CostRow{{Load: "idle"}}, // did not run
	}
	md := r.markdown()
	for _, want := range []string{
		"| Entry | Logs | entries/s | MB/s | Fragments (mean size) | Raw PUT MB/s | WAL / raw | PUTs in flight WAL / raw | CPU cores WAL / raw | CPU per entry | allocs per entry | Target |\n" +
			"|---|---|---|---|---|---|---|---|---|---|---|---|\n| 64 KiB | 1 |",
		"|  | p50 | p99 | mean | samples |\n|---|---|---|---|---|\n| WAL `Append` | 1.00 ms |",
		"- Async append of 64 KiB entries, 1 log(s): 95% of raw PUT bandwidth (target >= 90%): **met**.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, unwanted := range []string{"| 128 B | 4 |", "## Cost", "## Replay"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("report has %q of a step that did not run:\n%s", unwanted, md)
		}
	}
}
