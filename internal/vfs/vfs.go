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
//   - A file's extended attributes are durable once File.SyncAll (fsync)
//     returns on that file; SyncAll also does what Sync does.
//
// Nothing else is: a crash may drop any write that was not synced, in any
// combination.
package vfs

import (
	"io"
	"io/fs"
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

	// Mkdir creates one directory like os.Mkdir: it fails with an error
	// wrapping fs.ErrExist when the name exists. The entry is durable once
	// SyncDir of the parent returns.
	Mkdir(dir string, perm os.FileMode) error
	// Lstat is Stat without following a final symbolic link (os.Lstat).
	Lstat(name string) (os.FileInfo, error)
	// ReadDirEntries returns the entries of dir sorted by name, like
	// os.ReadDir: with their types, those of symbolic links not followed.
	ReadDirEntries(dir string) ([]fs.DirEntry, error)
	// Link makes newname a second name of the file oldname (link(2)); it
	// fails atomically, with an error wrapping fs.ErrExist, when newname
	// exists. The new entry is durable once SyncDir of its directory
	// returns.
	Link(oldname, newname string) error
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

	// SyncAll makes the file's data, size and metadata, its extended
	// attributes included, durable (fsync).
	SyncAll() error
	// GetXattr returns the value of the extended attribute attr. It fails
	// with an error wrapping ENODATA when the file has no such attribute,
	// and with one wrapping ENOTSUP (EOPNOTSUPP) when the filesystem has no
	// user xattrs.
	GetXattr(attr string) ([]byte, error)
	// SetXattr sets the extended attribute attr, creating or replacing
	// it; it is durable with SyncAll.
	SetXattr(attr string, value []byte) error
	// Lock blocks until it holds an exclusive advisory lock on the file
	// (flock(2) LOCK_EX). The lock belongs to this open file: it conflicts
	// with locks taken through other open files of the same file (FS.Lock's
	// included), and Unlock or Close releases it. Locking again through
	// the same open file is a no-op.
	Lock() error
	// Unlock releases the lock Lock took; without one it does nothing.
	Unlock() error
}
