package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Lock when another holder has the lock.
var ErrLocked = errors.New("vfs: locked by another process")

// OS is the real filesystem.
var OS FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return unix.Fdatasync(int(f.Fd())) }

func (f osFile) SyncAll() error { return f.File.Sync() }

func (f osFile) GetXattr(attr string) ([]byte, error) {
	var small [128]byte
	buf := small[:]
	for {
		n, err := unix.Fgetxattr(int(f.Fd()), attr, buf)
		if err == nil {
			return slices.Clone(buf[:n]), nil
		}
		if err != unix.ERANGE {
			return nil, &os.PathError{Op: "getxattr", Path: f.Name(), Err: err}
		}
		// Too small: ask for the size, then try again (the value may
		// grow in between).
		n, err = unix.Fgetxattr(int(f.Fd()), attr, nil)
		if err != nil {
			return nil, &os.PathError{Op: "getxattr", Path: f.Name(), Err: err}
		}
		buf = make([]byte, n+64)
	}
}

func (f osFile) SetXattr(attr string, value []byte) error {
	if err := unix.Fsetxattr(int(f.Fd()), attr, value, 0); err != nil {
		return &os.PathError{Op: "setxattr", Path: f.Name(), Err: err}
	}
	return nil
}

func (f osFile) Lock() error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err == nil {
			return nil
		}
		if err != unix.EINTR {
			return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
	}
}

func (f osFile) Unlock() error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
		return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
	}
	return nil
}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Mkdir(dir string, perm os.FileMode) error    { return os.Mkdir(dir, perm) }
func (osFS) Lstat(name string) (os.FileInfo, error)      { return os.Lstat(name) }
func (osFS) Link(oldname, newname string) error          { return os.Link(oldname, newname) }

func (osFS) ReadDirEntries(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

func (osFS) ReadDir(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) Remove(name string) error              { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error  { return os.Rename(oldname, newname) }
func (osFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, name)
		}
		return nil, fmt.Errorf("vfs: lock %s: %w", name, err)
	}
	return f, nil // closing the file releases the flock
}

var _ File = osFile{}
