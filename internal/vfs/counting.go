package vfs

import (
	"os"
	"sync/atomic"
)

// Counts is a snapshot of a CountingFS's counters.
type Counts struct {
	Syncs        int64 // File.Sync calls (fdatasync)
	SyncAlls     int64 // File.SyncAll calls (fsync)
	SyncDirs     int64 // FS.SyncDir calls
	Writes       int64 // File.Write and File.WriteAt calls
	BytesWritten int64 // bytes those calls wrote
}

// Sub returns c minus d, counter by counter: what happened between two
// snapshots.
func (c Counts) Sub(d Counts) Counts {
	return Counts{
		Syncs:        c.Syncs - d.Syncs,
		SyncAlls:     c.SyncAlls - d.SyncAlls,
		SyncDirs:     c.SyncDirs - d.SyncDirs,
		Writes:       c.Writes - d.Writes,
		BytesWritten: c.BytesWritten - d.BytesWritten,
	}
}

// CountingFS is an FS that counts the calls that cost durable I/O on the
// FS it wraps (failed calls included), for benchmarks and for tests that
// assert, say, one fdatasync per group commit. Every other method is the
// wrapped FS's. It is safe for concurrent use.
type CountingFS struct {
	FS
	syncs, syncAlls, syncDirs, writes, bytes atomic.Int64
}

// Counting wraps fs in a CountingFS with zero counters.
func Counting(fs FS) *CountingFS { return &CountingFS{FS: fs} }

// Syncs returns the number of File.Sync (fdatasync) calls.
func (c *CountingFS) Syncs() int64 { return c.syncs.Load() }

// SyncAlls returns the number of File.SyncAll (fsync) calls.
func (c *CountingFS) SyncAlls() int64 { return c.syncAlls.Load() }

// SyncDirs returns the number of FS.SyncDir calls.
func (c *CountingFS) SyncDirs() int64 { return c.syncDirs.Load() }

// Writes returns the number of File.Write and File.WriteAt calls.
func (c *CountingFS) Writes() int64 { return c.writes.Load() }

// BytesWritten returns the number of bytes File.Write and File.WriteAt
// calls wrote.
func (c *CountingFS) BytesWritten() int64 { return c.bytes.Load() }

// Counts returns a snapshot of the counters (each read atomically, not all
// at one instant).
func (c *CountingFS) Counts() Counts {
	return Counts{
		Syncs:        c.syncs.Load(),
		SyncAlls:     c.syncAlls.Load(),
		SyncDirs:     c.syncDirs.Load(),
		Writes:       c.writes.Load(),
		BytesWritten: c.bytes.Load(),
	}
}

// Reset sets the counters to zero.
func (c *CountingFS) Reset() {
	c.syncs.Store(0)
	c.syncAlls.Store(0)
	c.syncDirs.Store(0)
	c.writes.Store(0)
	c.bytes.Store(0)
}

// OpenFile implements FS; the file counts its writes and syncs.
func (c *CountingFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, c: c}, nil
}

// SyncDir implements FS.
func (c *CountingFS) SyncDir(dir string) error {
	c.syncDirs.Add(1)
	return c.FS.SyncDir(dir)
}

type countingFile struct {
	File
	c *CountingFS
}

func (f *countingFile) Write(p []byte) (int, error) {
	f.c.writes.Add(1)
	n, err := f.File.Write(p)
	f.c.bytes.Add(int64(n))
	return n, err
}

func (f *countingFile) WriteAt(p []byte, off int64) (int, error) {
	f.c.writes.Add(1)
	n, err := f.File.WriteAt(p, off)
	f.c.bytes.Add(int64(n))
	return n, err
}

func (f *countingFile) Sync() error {
	f.c.syncs.Add(1)
	return f.File.Sync()
}

func (f *countingFile) SyncAll() error {
	f.c.syncAlls.Add(1)
	return f.File.SyncAll()
}

var (
	_ FS   = (*CountingFS)(nil)
	_ File = (*countingFile)(nil)
)
