package testserver_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/woodpecker-wal/woodpecker/internal/testserver"
)

// Servers starts each server once and hands the same one out after.
func TestServers(t *testing.T) {
	srv := testserver.NewServers(t)
	fake := srv.FakeS3()
	if srv.FakeS3() != fake {
		t.Fatal("Servers started a second server of a kind")
	}
	ctx := context.Background()
	b := fake.OpenBucket(t, "p")
	if _, err := b.PutIfAbsent(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
}

// A ProgramTB turns Fatal into Run's error, runs cleanups on Close in
// reverse order and removes its temporary directories.
func TestProgramTB(t *testing.T) {
	var logged []string
	tb, err := testserver.NewProgramTB("testserver-test", false, func(format string, args ...any) {
		logged = append(logged, format)
	})
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	var dir string
	err = tb.Run(func() {
		dir = tb.TempDir()
		tb.Cleanup(func() { order = append(order, 1) })
		tb.Cleanup(func() { order = append(order, 2) })
		tb.Logf("hello")
		tb.Fatalf("boom %d", 7)
		t.Error("Run went on after Fatalf")
	})
	if err == nil || err.Error() != "boom 7" || !tb.Failed() {
		t.Fatalf("Run = %v (failed %v), want the Fatalf message", err, tb.Failed())
	}
	tb.Close()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Fatalf("cleanups ran in order %v, want [2 1]", order)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir %s after Close: %v", dir, err)
	}
	if len(logged) != 1 || logged[0] != "hello" {
		t.Fatalf("logged %q", logged)
	}
}

// From a nested module (bench/), the versitygw binary is the main module's.
func TestVersitygwBinaryFromNestedModule(t *testing.T) {
	if os.Getenv("WOODPECKER_VERSITYGW") != "" {
		t.Setenv("WOODPECKER_VERSITYGW", "")
	}
	want := testserver.VersitygwBinary(t)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(wd, "..", "..", "bench"))
	if got := testserver.VersitygwBinary(t); got != want || filepath.Base(filepath.Dir(got)) != "bin" {
		t.Fatalf("from bench/: %s, want %s", got, want)
	}
}
