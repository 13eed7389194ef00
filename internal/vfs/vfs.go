// Package vfs is the small filesystem interface that woodpecker's local
// storage (the tiered mode's local segments, the file:// bucket) is written
// against, so that tests can substitute a filesystem that loses, at a
// simulated power cut, everything that was not made durable (see Strict).
//
// The durability rules the code relies on, and that Strict enforces, are
// those of Linux filesystems with ordered data (ext4, xfs):
//   - File data written with Write/WriteAt is durable once File.Sync
//     (fdatasync) returns on that file.
//   - A directory entry (a file created, removed, renamed or linked) is
//     durable once SyncDir of its directory returns.
//   - A file's size change is durable with File.Sync.
//
// Nothing else is: a crash may drop any write that was not synced, in any
// combination.
package vfs

import (
	"io"
	"os"
)

// FS is a filesystem. Paths are OS paths (filepath.Join).
type FS interface {
	// OpenFile opens name like os.OpenFile (flags os.O_RDONLY, O_RDWR,
	// O_WRONLY, O_CREATE, O_EXCL, O_TRUNC, O_APPEND).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// MkdirAll creates dir and its parents like os.MkdirAll. The new
	// directory entries are durable once SyncDir of each parent returns.
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the names in dir, sorted.
	ReadDir(dir string) ([]string, error)
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Rename renames oldname to newname, replacing newname if it exists.
	Rename(oldname, newname string) error
	// Stat returns the file's size and mode.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory's entries durable (fsync of the
	// directory).
	SyncDir(dir string) error
	// Lock takes an exclusive advisory lock on the file name (created if
	// missing) for this process, or fails at once with ErrLocked if
	// another holder has it. Close releases it.
	Lock(name string) (io.Closer, error)
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes the file's data and size durable (fdatasync).
	Sync() error
	// Truncate changes the file's size; it is durable with Sync.
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Name() string
}
