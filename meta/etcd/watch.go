package etcd

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/meta"
)

// Watch delivers changes to records whose keys start with prefix, made after
// the call, until ctx is done or the store is closed; then the channel is
// closed. It reads the keys under the prefix first (keys only, paged), so it
// fails early when etcd cannot be reached.
//
// Events of one key arrive in order. A consumer that keeps up sees every
// change; once etcdWatchCoalesceAt (256) events wait for it, a new event
// replaces the newest waiting event of its key, so memory stays bounded by
// that many events plus one per key, and a slow consumer may miss
// intermediate versions (and a put followed by a delete may show only the
// delete). The watch also keeps the key and ModRevision of every record
// under the prefix, to turn a re-list into events. When the
// etcd watch breaks (compaction of the revision it needs, a lost leader or
// connection), the store re-lists the prefix, emits the difference as puts
// and deletes, and watches again from the listing's revision, retrying with
// backoff until ctx ends; so the latest state of every key is always
// delivered eventually. The meta.Version of a meta.EventDelete is empty.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan meta.Event, error) {
	if err := meta.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	w := &etcdWatch{
		s:     s,
		full:  s.prefix + prefix,
		out:   make(chan meta.Event, 16),
		known: make(map[string]int64),
		pidx:  make(map[string]int),
	}
	lctx, done, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := s.rangeAll(lctx, w.full, true, func(kv *mvccpb.KeyValue) {
		w.known[string(kv.Key[len(s.prefix):])] = kv.ModRevision
	}, func() { clear(w.known) })
	done()
	if err != nil {
		return nil, s.wrapErr("watch", prefix, false, err)
	}

	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, meta.ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	go func() {
		defer s.wg.Done()
		defer close(w.out)
		defer cancel()
		defer stop()
		w.run(wctx, prefix, rev)
	}()
	return w.out, nil
}

// etcdWatch is the state of one Watch goroutine; only that goroutine
// touches it.
type etcdWatch struct {
	s    *Store
	full string // etcd key prefix watched
	out  chan meta.Event

	// known maps the key of every record believed to exist under the
	// prefix to its ModRevision, for turning a re-list into events.
	known map[string]int64

	// pending[head:] are events not yet sent, oldest first; pidx maps a
	// key to the index of its newest pending event.
	pending []meta.Event
	head    int
	pidx    map[string]int
}

func (w *etcdWatch) run(ctx context.Context, prefix string, rev int64) {
	policy := retry.Policy{Initial: etcdWatchMinBackoff, Max: etcdWatchMaxBackoff}
	waits := policy.Retrier()
	for {
		began := time.Now()
		err := w.stream(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > etcdWatchMaxBackoff {
			waits = policy.Retrier() // it was healthy for a while
		}
		for {
			backoff, _ := waits.Next() // an unbounded policy never says no
			w.s.log.Warn("meta: etcd watch broken, re-listing", "prefix", prefix, "revision", rev, "err", err, "retry_in", backoff)
			if !w.sleep(ctx, backoff) {
				return
			}
			var rerr error
			rev, rerr = w.resync(ctx)
			if rerr == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			err = rerr
		}
	}
}

// stream watches from rev+1 and turns etcd events into pending events until
// the watch breaks or ctx ends. A healthy stream resets nothing: run re-lists
// after any break, which is correct whatever the cause.
func (w *etcdWatch) stream(ctx context.Context, rev int64) error {
	sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.s.cli.Watch(sctx, w.full, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		out, next := w.offer()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case out <- next:
			w.pop()
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				w.apply(ev)
			}
		}
	}
}

// sleep waits d while still delivering pending events; false if ctx ended.
func (w *etcdWatch) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		out, next := w.offer()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case out <- next:
			w.pop()
		}
	}
}

// resync re-lists the prefix and queues the difference from known.
func (w *etcdWatch) resync(ctx context.Context) (int64, error) {
	lctx, done, err := w.s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var kvs []*mvccpb.KeyValue
	rev, err := w.s.rangeAll(lctx, w.full, false, func(kv *mvccpb.KeyValue) {
		kvs = append(kvs, kv)
	}, func() { kvs = kvs[:0] })
	if err != nil {
		return 0, err
	}
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		k := string(kv.Key[len(w.s.prefix):])
		seen[k] = true
		if w.known[k] != kv.ModRevision {
			w.known[k] = kv.ModRevision
			w.push(meta.Event{Type: meta.EventPut, Record: meta.Record{Key: k, Value: kv.Value, Version: etcdVersion(kv.ModRevision)}})
		}
	}
	var gone []string
	for k := range w.known {
		if !seen[k] {
			gone = append(gone, k)
		}
	}
	slices.Sort(gone)
	for _, k := range gone {
		delete(w.known, k)
		w.push(meta.Event{Type: meta.EventDelete, Record: meta.Record{Key: k}})
	}
	return rev, nil
}

func (w *etcdWatch) apply(ev *clientv3.Event) {
	if len(ev.Kv.Key) < len(w.s.prefix) {
		return // cannot happen: the watch is on a longer prefix
	}
	k := string(ev.Kv.Key[len(w.s.prefix):])
	switch ev.Type {
	case clientv3.EventTypePut:
		w.known[k] = ev.Kv.ModRevision
		w.push(meta.Event{Type: meta.EventPut, Record: meta.Record{Key: k, Value: ev.Kv.Value, Version: etcdVersion(ev.Kv.ModRevision)}})
	case clientv3.EventTypeDelete:
		delete(w.known, k)
		w.push(meta.Event{Type: meta.EventDelete, Record: meta.Record{Key: k}})
	}
}

// push queues ev. Once etcdWatchCoalesceAt events are pending, it replaces
// the newest pending event of the same key instead, if there is one.
// offer returns the consumer's channel and the next pending event, or a nil
// channel (which a select never sends on) when nothing is pending.
func (w *etcdWatch) offer() (chan<- meta.Event, meta.Event) {
	if w.head < len(w.pending) {
		return w.out, w.pending[w.head]
	}
	return nil, meta.Event{}
}

func (w *etcdWatch) push(ev meta.Event) {
	k := ev.Record.Key
	if i, ok := w.pidx[k]; ok && len(w.pending)-w.head >= etcdWatchCoalesceAt {
		w.pending[i] = ev
		return
	}
	w.pidx[k] = len(w.pending)
	w.pending = append(w.pending, ev)
}

// pop drops the event at the head of the queue, which was just sent.
func (w *etcdWatch) pop() {
	if k := w.pending[w.head].Record.Key; w.pidx[k] == w.head {
		delete(w.pidx, k)
	}
	w.pending[w.head] = meta.Event{}
	w.head++
	switch {
	case w.head == len(w.pending):
		w.pending, w.head = w.pending[:0], 0
	case w.head > 64 && w.head > len(w.pending)/2:
		n := copy(w.pending, w.pending[w.head:])
		clear(w.pending[n:])
		w.pending, w.head = w.pending[:n], 0
		for i, ev := range w.pending {
			w.pidx[ev.Record.Key] = i
		}
	}
}
