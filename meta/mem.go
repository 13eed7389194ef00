package meta

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// MemStore is an in-memory Store for unit and property tests. It implements
// Watcher. Versions are a store-wide counter, so they never repeat. It is safe
// for concurrent use; nothing survives the process.
type MemStore struct {
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
	ch     chan Event
	// pending holds events not yet delivered, so writers never block on a
	// slow consumer; guarded by MemStore.mu.
	pending []Event
	wake    chan struct{}
}

var _ Watcher = (*MemStore)(nil)

// NewMem returns an empty in-memory store.
func NewMem() *MemStore {
	s := &MemStore{}
	s.mu.recs = make(map[string]memRecord)
	s.mu.watchers = make(map[*memWatch]struct{})
	return s
}

func (s *MemStore) enter(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.mu.closed {
		return ErrClosed
	}
	return ValidateKey(key)
}

func memVersion(rev uint64) Version { return Version(strconv.FormatUint(rev, 10)) }

// Get implements Store.
func (s *MemStore) Get(ctx context.Context, key string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx, key); err != nil {
		return Record{}, err
	}
	r, ok := s.mu.recs[key]
	if !ok {
		return Record{}, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	return Record{Key: key, Value: bytes.Clone(r.value), Version: memVersion(r.rev)}, nil
}

func (s *MemStore) put(key string, value []byte) Version {
	s.mu.rev++
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	s.mu.recs[key] = memRecord{value: v, rev: s.mu.rev}
	s.notify(Event{Type: EventPut, Record: Record{Key: key, Value: v, Version: memVersion(s.mu.rev)}})
	return memVersion(s.mu.rev)
}

// Create implements Store.
func (s *MemStore) Create(ctx context.Context, key string, value []byte) (Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx, key); err != nil {
		return "", err
	}
	if err := checkValue(key, value); err != nil {
		return "", err
	}
	if _, ok := s.mu.recs[key]; ok {
		return "", fmt.Errorf("create %q: %w", key, ErrExists)
	}
	return s.put(key, value), nil
}

// Update implements Store.
func (s *MemStore) Update(ctx context.Context, key string, value []byte, ver Version) (Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx, key); err != nil {
		return "", err
	}
	if err := checkValue(key, value); err != nil {
		return "", err
	}
	if r, ok := s.mu.recs[key]; !ok || memVersion(r.rev) != ver {
		return "", fmt.Errorf("update %q at version %q: %w", key, ver, ErrPrecondition)
	}
	return s.put(key, value), nil
}

// Delete implements Store.
func (s *MemStore) Delete(ctx context.Context, key string, ver Version) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx, key); err != nil {
		return err
	}
	if r, ok := s.mu.recs[key]; !ok || memVersion(r.rev) != ver {
		return fmt.Errorf("delete %q at version %q: %w", key, ver, ErrPrecondition)
	}
	delete(s.mu.recs, key)
	s.mu.rev++
	s.notify(Event{Type: EventDelete, Record: Record{Key: key, Version: memVersion(s.mu.rev)}})
	return nil
}

// List implements Store.
func (s *MemStore) List(ctx context.Context, prefix string) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.mu.closed {
		return nil, ErrClosed
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	var out []Record
	for k, r := range s.mu.recs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Record{Key: k, Value: bytes.Clone(r.value), Version: memVersion(r.rev)})
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// notify queues ev for every matching watch. REQUIRES: s.mu held.
func (s *MemStore) notify(ev Event) {
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

// Watch implements Watcher. Events are delivered in order, none dropped.
func (s *MemStore) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	w := &memWatch{prefix: prefix, ch: make(chan Event), wake: make(chan struct{}, 1)}
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

// Close implements Store.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.closed = true
	return nil
}
