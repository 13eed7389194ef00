package file_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/objstore"
)

// tree lists every path under dir, relative to it, with sizes, so a test
// can tell whether anything was created, removed or written.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out = append(out, rel+"/")
		} else {
			out = append(out, rel+" "+strings.Repeat("#", int(info.Size())))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFileNoCreateMissingRootFails: opening a missing directory with
// nocreate fails with an error that names it and wraps fs.ErrNotExist, and
// creates nothing.
func TestFileNoCreateMissingRootFails(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "no", "such", "dir")
	b, err := objstore.Open(context.Background(), "file://"+dir+"?nocreate=true")
	if err == nil {
		b.Close()
		t.Fatalf("Open of missing %s with nocreate succeeded", dir)
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir+": no such file or directory") {
		t.Errorf("Open = %q; want an fs.ErrNotExist naming %s", err, dir)
	}
	if got := tree(t, parent); !slices.Equal(got, []string{"./"}) {
		t.Errorf("the open created %v", got)
	}
}

// TestFileNoCreateRootIsAFile: a root that is a file is an error naming it.
func TestFileNoCreateRootIsAFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.Open(context.Background(), "file://"+p+"?nocreate=true")
	if err == nil {
		b.Close()
		t.Fatal("Open of a file as a bucket root succeeded")
	}
	if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open = %q; want it to say %s is not a directory", err, p)
	}
}

// TestFileNoCreateReadsBucketUnchanged: a bucket made by a normal open
// reads back through a nocreate open, which leaves the directory as it was
// (leftover temporary files included) until it writes; writes still work
// there.
func TestFileNoCreateReadsBucketUnchanged(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, err := objstore.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.PutIfAbsent(ctx, "a/b", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// A temporary file of a process that is gone: a normal open sweeps it.
	leftover := filepath.Join(dir, ".woodpecker-tmp", "tmp-999999999-1")
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)

	b, err := objstore.Open(ctx, "file://"+dir+"?nocreate=true")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data, _, err := objstore.ReadAll(ctx, b, "a/b")
	if err != nil || string(data) != "hello" {
		t.Fatalf("ReadAll = %q, %v", data, err)
	}
	objs, err := b.List(ctx, objstore.ListOptions{})
	if err != nil || len(objs) != 1 || objs[0].Key != "a/b" {
		t.Fatalf("List = %v, %v", objs, err)
	}
	if after := tree(t, dir); !slices.Equal(before, after) {
		t.Errorf("reading changed the directory:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := b.PutIfAbsent(ctx, "c", []byte("v")); err != nil {
		t.Errorf("PutIfAbsent on a bucket with its lock file: %v", err)
	}
	if err := b.Delete(ctx, "c"); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

// TestFileNoCreatePlainDirectory: a directory that never was a bucket reads
// as one without gaining a temporary directory, and writes fail saying why.
func TestFileNoCreatePlainDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x", "y"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)
	b, err := objstore.Open(ctx, "file://"+dir+"?nocreate=true")
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := objstore.ReadAll(ctx, b, "x/y")
	if err != nil || string(data) != "data" {
		t.Fatalf("ReadAll = %q, %v", data, err)
	}
	if _, err := b.PutIfAbsent(ctx, "k", []byte("v")); err == nil || !strings.Contains(err.Error(), "nocreate") {
		t.Errorf("PutIfAbsent = %v; want an error saying the bucket was opened with nocreate", err)
	}
	if err := b.Delete(ctx, "x/y"); err == nil || !strings.Contains(err.Error(), "nocreate") {
		t.Errorf("Delete = %v; want an error saying the bucket was opened with nocreate", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := tree(t, dir); !slices.Equal(before, after) {
		t.Errorf("the nocreate bucket changed the directory:\nbefore %v\nafter  %v", before, after)
	}
}

// TestFileNoCreateParameter: nocreate takes a boolean, and nocreate=false
// is the default, which creates the directory.
func TestFileNoCreateParameter(t *testing.T) {
	ctx := context.Background()
	if _, err := objstore.Open(ctx, "file:///tmp/x?nocreate=maybe"); err == nil || !strings.Contains(err.Error(), "not a boolean") {
		t.Errorf("Open with nocreate=maybe = %v; want a not-a-boolean error", err)
	}
	dir := filepath.Join(t.TempDir(), "new")
	b, err := objstore.Open(ctx, "file://"+dir+"?nocreate=false")
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Errorf("nocreate=false did not create %s: %v", dir, err)
	}
}
