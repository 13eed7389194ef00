package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// runCLI executes the command line args and returns its stdout and error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := rootCmd()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return stdout.String(), err
}

// dirEntries lists every path under dir, relative to it.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReadOnlyCommandsOnMissingDirFail: ls, cat and meta ls of a file
// bucket whose directory does not exist fail with an error naming the
// directory, and create nothing.
func TestReadOnlyCommandsOnMissingDirFail(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "nonexistent", "dir")
	for _, args := range [][]string{
		{"ls", "file://" + dir},
		{"ls", "file://" + dir + "?nosync=true", "prefix/"},
		{"cat", "file://" + dir, "some/key"},
		{"meta", "ls", "bucket+file://" + dir},
	} {
		out, err := runCLI(t, args...)
		if err == nil {
			t.Errorf("woodpecker %s succeeded (output %q); want an error", strings.Join(args, " "), out)
		} else if !strings.Contains(err.Error(), dir+": no such file or directory") {
			t.Errorf("woodpecker %s: %q; want an error naming the missing %s", strings.Join(args, " "), err, dir)
		}
		if got := dirEntries(t, parent); len(got) != 1 {
			t.Errorf("woodpecker %s created %v", strings.Join(args, " "), got[1:])
			if err := os.RemoveAll(filepath.Join(parent, "nonexistent")); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestReadOnlyCommandsLeaveBucketUnchanged: ls and cat of an existing file
// bucket print its contents and add nothing to the directory.
func TestReadOnlyCommandsLeaveBucketUnchanged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := objstore.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutIfAbsent(ctx, "a/b", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	plain := t.TempDir() // a directory that never was a bucket
	if err := os.WriteFile(filepath.Join(plain, "k"), []byte("plain"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, beforePlain := dirEntries(t, dir), dirEntries(t, plain)

	if out, err := runCLI(t, "ls", "file://"+dir); err != nil || !strings.Contains(out, "a/b") {
		t.Errorf("ls = %q, %v; want a/b listed", out, err)
	}
	if out, err := runCLI(t, "cat", "file://"+dir, "a/b"); err != nil || out != "hello" {
		t.Errorf("cat = %q, %v; want hello", out, err)
	}
	if out, err := runCLI(t, "cat", "file://"+plain, "k"); err != nil || out != "plain" {
		t.Errorf("cat of a plain directory = %q, %v; want plain", out, err)
	}
	if _, err := runCLI(t, "meta", "ls", "bucket+file://"+plain); err != nil {
		t.Errorf("meta ls of a plain directory: %v", err)
	}
	if after := dirEntries(t, dir); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("the bucket changed:\nbefore %v\nafter  %v", before, after)
	}
	if after := dirEntries(t, plain); strings.Join(after, " ") != strings.Join(beforePlain, " ") {
		t.Errorf("the plain directory changed:\nbefore %v\nafter  %v", beforePlain, after)
	}
}

// TestReadOnlyBucketURL: file URLs gain nocreate=true unless they set it;
// other URLs are left alone.
func TestReadOnlyBucketURL(t *testing.T) {
	for in, want := range map[string]string{
		"file:///a/b":                "file:///a/b?nocreate=true",
		"file:///a/b?nosync=true":    "file:///a/b?nosync=true&nocreate=true",
		"file:///a/b?nocreate=false": "file:///a/b?nocreate=false",
		"file://localhost/a":         "file://localhost/a?nocreate=true",
		"file://relative/dir":        "file://relative/dir",
		"mem://":                     "mem://",
		"s3://bkt/p?endpoint=h:1":    "s3://bkt/p?endpoint=h:1",
		"%zz://x":                    "%zz://x",
	} {
		if got := readOnlyBucketURL(in); got != want {
			t.Errorf("readOnlyBucketURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := readOnlyMetaURL("bucket+file:///a"); got != "bucket+file:///a?nocreate=true" {
		t.Errorf("readOnlyMetaURL = %q", got)
	}
	if got := readOnlyMetaURL("etcd://h:1/p"); got != "etcd://h:1/p" {
		t.Errorf("readOnlyMetaURL = %q", got)
	}
}
