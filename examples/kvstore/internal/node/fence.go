package node

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// fencedStore passes every call to a hashiraft.Store and reports the first
// wal.ErrFenced (another process opened this node's log: this one is a
// zombie) through onFenced, so the node stops instead of running on with a
// storage that refuses every write. hashicorp/raft itself would only step
// down and keep retrying.
type fencedStore struct {
	*hashiraft.Store
	once     sync.Once
	onFenced func(error)
}

var (
	_ raft.LogStore               = (*fencedStore)(nil)
	_ raft.StableStore            = (*fencedStore)(nil)
	_ raft.MonotonicLogStore      = (*fencedStore)(nil)
	_ raft.CommitTrackingLogStore = (*fencedStore)(nil)
)

func (f *fencedStore) check(err error) error {
	if errors.Is(err, wal.ErrFenced) {
		f.once.Do(func() { go f.onFenced(err) })
	}
	return err
}

func (f *fencedStore) StoreLog(l *raft.Log) error      { return f.check(f.Store.StoreLog(l)) }
func (f *fencedStore) StoreLogs(ls []*raft.Log) error  { return f.check(f.Store.StoreLogs(ls)) }
func (f *fencedStore) DeleteRange(lo, hi uint64) error { return f.check(f.Store.DeleteRange(lo, hi)) }
func (f *fencedStore) Set(k, v []byte) error           { return f.check(f.Store.Set(k, v)) }
func (f *fencedStore) SetUint64(k []byte, v uint64) error {
	return f.check(f.Store.SetUint64(k, v))
}
