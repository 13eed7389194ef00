package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/internal/benchharness"
)

// TestBenchQuick runs `woodpecker bench --quick` against a temporary file
// bucket, so CI exercises every step of the benchmark command and its
// report. It checks that the report and the charts are written, not the
// numbers.
func TestBenchQuick(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	args := []string{"bench", "--quick", "--bucket", "file://" + filepath.Join(dir, "bucket"), "--out", out,
		"--step-time", "150ms", "--cost-time", "300ms", "--recovery-entries", "20000", "--replay-mib", "2"}
	if testing.Short() {
		args = append(args, "--steps", "raw,sync,recovery")
	}
	root := rootCmd()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	md := stdout.String()
	for _, want := range []string{"## Raw limit", "## Sync append latency", "## Open / recovery after a crash",
		"## Peak RSS", "## Targets", "## LogStore comparison: pending"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if !testing.Short() {
		for _, want := range []string{"## Async append throughput", "## Replay of a sealed log", "## Cost: PUT rate"} {
			if !strings.Contains(md, want) {
				t.Errorf("report lacks %q:\n%s", want, md)
			}
		}
	}
	if !strings.Contains(stderr.String(), "1 KiB, 1 in flight") {
		t.Errorf("no progress lines on stderr:\n%s", stderr.String())
	}
	saved, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(saved) != md {
		t.Errorf("results.md differs from the report printed on stdout")
	}
	js, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res benchharness.Results
	if err := json.Unmarshal(js, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if res.Recovery == nil || res.Recovery.Total <= 0 || res.Sync == nil || res.Sync.WAL.N == 0 {
		t.Errorf("results.json lacks measurements: %s", js)
	}
	charts := []string{"latency_cdf.png"}
	if !testing.Short() {
		charts = append(charts, "throughput.png")
	}
	for _, name := range charts {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s is not a PNG", name)
		}
	}
	// Everything the run wrote to the bucket was removed (the metadata
	// records of the run are removed too; only the file backend's own
	// temporary directory may remain).
	var left []string
	filepath.WalkDir(filepath.Join(dir, "bucket"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, "/.") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("the run left %d objects in the bucket, e.g. %s", len(left), left[0])
	}
}
