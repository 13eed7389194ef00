package mem

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/woodpecker-wal/woodpecker/meta"
)

// Store is an in-memory meta.Store for unit and property tests. It implements
// meta.Watcher. Versions are a store-wide counter, so they never repeat. It is safe
// for concurrent use; nothing survives the process.
type Store struct {
	mu struct {
		sync.Mutex
		recs     map[string]memRecord // guarded by mu
		rev      uint64               // last version issued; guarded by mu
		watchers map[*memWatch]struct{}
		closed   bool
	}
}

type memRecord struct {
	value []byte
	rev   uint64
}

type memWatch struct {
	prefix string
	ch     chan meta.Event
	// pending holds events not yet delivered, so writers never block on a
	// slow consumer; guarded by Store.mu.
	pending []meta.Event
	wake    chan struct{}
}

var _ meta.Watcher = (*Store)(nil)

// New returns an empty in-memory store.
func New() *Store {
	s := &Store{}
	s.mu.recs = make(map[string]memRecord)
	s.mu.watchers = make(map[*memWatch]struct{})
	return s
}

// enterWrite is enter for a write of value. REQUIRES: s.mu held.
func (s *Store) enterWrite(ctx context.Context, key string, value []byte) error {
	if err := s.enter(ctx, key); err != nil {
		return err
	}
	return meta.CheckValue(key, value)
}

func (s *Store) enter(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.mu.closed {
		return meta.ErrClosed
	}
	return meta.ValidateKey(key)
}

func memVersion(rev uint64) meta.Version { return meta.Version(strconv.FormatUint(rev, 10)) }

// Get implements meta.Store.
func (s *Store) Get(ctx context.Context, key string) (meta.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx, key); err != nil {
		return meta.Record{}, err
	}
	r, ok := s.mu.recs[key]
	if !ok {
		return meta.Record{}, fmt.Errorf("get %q: %w", key, meta.ErrNotFound)
	}
	return meta.Record{Key: key, Value: bytes.Clone(r.value), Version: memVersion(r.rev)}, nil
}

func (s *Store) put(key string, value []byte) meta.Version {
	s.mu.rev++
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	s.mu.recs[key] = memRecord{value: v, rev: s.mu.rev}
	s.notify(meta.Event{Type: meta.EventPut, Record: meta.Record{Key: key, Value: v, Version: memVersion(s.mu.rev)}})
	return memVersion(s.mu.rev)
}

// Create implements meta.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (meta.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enterWrite(ctx, key, value); err != nil {
		return "", err
	}
	if _, ok := s.mu.recs[key]; ok {
		return "", fmt.Errorf("create %q: %w", key, meta.ErrExists)
	}
	return s.put(key, value), nil
}

// Update implements meta.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, ver meta.Version) (meta.Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enterWrite(ctx, key, value); err != nil {
		return "", err
	}
	if r, ok := s.mu.recs[key]; !ok || memVersion(r.rev) != ver {
		return "", fmt.Errorf("update %q at version %q: %w", key, ver, meta.ErrPrecondition)
	}
	return s.put(key, value), nil
}

// Delete implements meta.Store.
func (s *Store) Delete(ctx context.Context, key string, ver meta.Version) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx, key); err != nil {
		return err
	}
	if r, ok := s.mu.recs[key]; !ok || memVersion(r.rev) != ver {
		return fmt.Errorf("delete %q at version %q: %w", key, ver, meta.ErrPrecondition)
	}
	delete(s.mu.recs, key)
	s.mu.rev++
	s.notify(meta.Event{Type: meta.EventDelete, Record: meta.Record{Key: key, Version: memVersion(s.mu.rev)}})
	return nil
}

// List implements meta.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]meta.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.mu.closed {
		return nil, meta.ErrClosed
	}
	if err := meta.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	var out []meta.Record
	for k, r := range s.mu.recs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, meta.Record{Key: k, Value: bytes.Clone(r.value), Version: memVersion(r.rev)})
		}
	}
	slices.SortFunc(out, func(a, b meta.Record) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// notify queues ev for every matching watch. REQUIRES: s.mu held.
func (s *Store) notify(ev meta.Event) {
	for w := range s.mu.watchers {
		if strings.HasPrefix(ev.Record.Key, w.prefix) {
			e := ev
			e.Record.Value = bytes.Clone(ev.Record.Value)
			w.pending = append(w.pending, e)
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Watch implements meta.Watcher. Events are delivered in order, none dropped.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan meta.Event, error) {
	if err := meta.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil, meta.ErrClosed
	}
	w := &memWatch{prefix: prefix, ch: make(chan meta.Event), wake: make(chan struct{}, 1)}
	s.mu.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(w.ch)
		defer func() {
			s.mu.Lock()
			delete(s.mu.watchers, w)
			s.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			batch := w.pending
			w.pending = nil
			s.mu.Unlock()
			for _, ev := range batch {
				select {
				case w.ch <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-w.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return w.ch, nil
}

// Close implements meta.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.closed = true
	return nil
}
