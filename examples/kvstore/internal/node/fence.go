package node

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// fencedStore passes every call to a hashiraft.Store and reports the first
// wal.ErrFenced (another process opened this node's log: this one is a
// zombie) through onFenced, so the node stops instead of running on with a
// storage that refuses every write. hashicorp/raft itself would only step
// down and keep retrying.
//
// Once riding is set (the node runs), it also rides out storage outages
// longer than a call: hashicorp/raft panics when it cannot store its term
// or read an entry it applies, which would end the process over a
// transient failure the Store recovers from at its next call (reopening
// its writer, or finding it taken over: then ErrFenced stops the node). So
// Set, SetUint64 and GetLog are retried, with backoff, while their error
// may go away, until the node stops. The raft goroutine making the call
// waits meanwhile, as it would for a slow disk.
type fencedStore struct {
	*hashiraft.Store
	once     sync.Once
	onFenced func(error)
	lg       *slog.Logger
	riding   atomic.Bool
	ctx      context.Context // ends when the node stops: retries end
}

var (
	_ raft.LogStore               = (*fencedStore)(nil)
	_ raft.StableStore            = (*fencedStore)(nil)
	_ raft.MonotonicLogStore      = (*fencedStore)(nil)
	_ raft.CommitTrackingLogStore = (*fencedStore)(nil)
)

func (f *fencedStore) check(err error) error {
	if errors.Is(err, wal.ErrFenced) {
		f.once.Do(func() { f.onFenced(err) })
	}
	return err
}

// transient reports whether a failed Store call may succeed if repeated.
func transient(err error) bool {
	for _, target := range []error{
		wal.ErrFenced, hashiraft.ErrClosed, raft.ErrLogNotFound, wal.ErrCorrupt, wal.ErrUnsupportedVersion,
	} {
		if errors.Is(err, target) {
			return false
		}
	}
	return true
}

// ride runs call, and again while it fails transiently, the node runs and
// riding is set. A call that finds the log taken over does not return while
// riding: hashicorp/raft panics when it cannot store its term or vote or
// read an entry it applies, which would end the process with a crash the
// supervisor restarts, and the restarted node would take the log back from
// its new owner. So the raft goroutine making the call waits, the node
// having reported the fence (Done), until the node stops, and then ends
// without returning (runtime.Goexit runs its deferred calls, so raft's
// shutdown still sees it finish).
func (f *fencedStore) ride(op string, call func() error) error {
	again := func(err error) bool { return transient(err) && f.riding.Load() }
	err := retryStorage(f.ctx, f.lg, op, again, func(int) error { return f.check(call()) })
	if errors.Is(err, wal.ErrFenced) && f.riding.Load() {
		<-f.ctx.Done()
		runtime.Goexit()
	}
	return err
}

func (f *fencedStore) StoreLog(l *raft.Log) error      { return f.check(f.Store.StoreLog(l)) }
func (f *fencedStore) StoreLogs(ls []*raft.Log) error  { return f.check(f.Store.StoreLogs(ls)) }
func (f *fencedStore) DeleteRange(lo, hi uint64) error { return f.check(f.Store.DeleteRange(lo, hi)) }
func (f *fencedStore) Set(k, v []byte) error {
	return f.ride("set", func() error { return f.Store.Set(k, v) })
}
func (f *fencedStore) SetUint64(k []byte, v uint64) error {
	return f.ride("set", func() error { return f.Store.SetUint64(k, v) })
}
func (f *fencedStore) GetLog(index uint64, out *raft.Log) error {
	return f.ride("get log", func() error { return f.Store.GetLog(index, out) })
}
