package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/bucketsuite"
	"github.com/woodpecker-wal/woodpecker/internal/vfs"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/file"
)

func newFile(t testing.TB, opts file.Options) *file.Bucket {
	t.Helper()
	b, err := file.New(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFileConformance(t *testing.T) {
	bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket { return newFile(t, file.Options{}) }, conformance.Options{Checks: 30})
}

// TestFileConformanceStrict runs the suite on a simulated filesystem
// (vfs.Strict, without crashes): the backend does all its I/O through
// vfs.FS.
func TestFileConformanceStrict(t *testing.T) {
	bucketsuite.TestBucket(t, func(t testing.TB) objstore.Bucket {
		b, err := file.New("/bucket", file.Options{FS: vfs.NewStrict()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, conformance.Options{Checks: 30})
}

func TestFileRejectsRelativeRoot(t *testing.T) {
	_, err := file.New("relative/dir", file.Options{})
	if err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("NewFile(relative) = %v, want an error about an absolute path", err)
	}
}

// TestFileNoEscape writes through every invalid key and checks that nothing
// appeared outside the root (a sibling directory acts as the canary).
func TestFileNoEscape(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	b, err := file.New(root, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for _, key := range append(bucketsuite.InvalidKeys, ".woodpecker-tmp/lock", ".woodpecker-tmp/x/y") {
		if _, err := b.PutIfAbsent(ctx, key, []byte("x")); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("PutIfAbsent(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 || ents[0].Name() != "root" {
		t.Fatalf("files appeared beside the root: %v", ents)
	}
}

// TestFilePathConflicts: keys are paths, so an object cannot also be a
// directory of keys; the error says so instead of pretending ErrExists.
func TestFilePathConflicts(t *testing.T) {
	b := newFile(t, file.Options{})
	ctx := context.Background()
	if _, err := b.PutIfAbsent(ctx, "a/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err := b.PutIfAbsent(ctx, "a", []byte("y"))
	if err == nil || errors.Is(err, objstore.ErrExists) || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("PutIfAbsent over a directory of keys = %v", err)
	}
	_, err = b.PutIfAbsent(ctx, "a/b/c", []byte("y"))
	if err == nil || !strings.Contains(err.Error(), `"a/b" is an object`) {
		t.Fatalf("PutIfAbsent below an object = %v", err)
	}
	if _, err := b.Head(ctx, "a"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Head of a directory = %v, want ErrNotFound", err)
	}
	// Deleting the last key below a directory frees the name.
	if err := b.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutIfAbsent(ctx, "a", []byte("y")); err != nil {
		t.Fatalf("PutIfAbsent after the directory emptied: %v", err)
	}
}

// TestFileSweepsTempFiles: temporary files of dead writers are removed on
// open, those of live processes are kept.
func TestFileSweepsTempFiles(t *testing.T) {
	root := t.TempDir()
	b, err := file.New(root, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	tmp := filepath.Join(root, ".woodpecker-tmp")
	dead := filepath.Join(tmp, "tmp-999999999-123")
	live := filepath.Join(tmp, "tmp-1-456") // pid 1 always exists
	for _, p := range []string{dead, live} {
		if err := os.WriteFile(p, []byte("torn"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err = file.New(root, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead writer's temp file survived open: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live process's temp file was removed: %v", err)
	}
}

// TestFileETagWithoutXattr: an object written by other means (no xattr)
// still gets its MD5 as ETag, so CAS works on it.
func TestFileETagWithoutXattr(t *testing.T) {
	b := newFile(t, file.Options{})
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(b.Root(), "plain"), []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := b.Head(ctx, "plain")
	if err != nil || info.ETag != "900150983cd24fb0d6963f7d28e17f72" {
		t.Fatalf("Head = %+v, %v; want the MD5 of abc", info, err)
	}
	if _, err := b.PutIfMatch(ctx, "plain", []byte("def"), info.ETag); err != nil {
		t.Fatalf("PutIfMatch: %v", err)
	}
}
