// Package kv is the replicated state machine of the kvstore example: a map
// of string keys to string values, plus the table of cluster members (their
// Raft and HTTP addresses), changed only by applying commands from the Raft
// log in order. It is engine independent: both Raft engines feed it the same
// commands and snapshot it in the same format.
package kv

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"
)

// Command operations.
const (
	OpPut      = "put"
	OpDelete   = "delete"
	OpMember   = "member"   // set Member's addresses
	OpUnmember = "unmember" // forget member ID
)

// Member is one node of the cluster as the state machine knows it. Raft is
// the Raft transport address; HTTP the API address (empty until the node
// published it, which it does when it first becomes leader or joins).
type Member struct {
	ID   uint64 `json:"id"`
	Raft string `json:"raft,omitempty"`
	HTTP string `json:"http,omitempty"`
}

// Command is one entry of the replicated log. It is encoded as JSON: the
// example favours readability over compactness.
type Command struct {
	Op     string  `json:"op"`
	Key    string  `json:"key,omitempty"`
	Value  string  `json:"value,omitempty"`
	Member *Member `json:"member,omitempty"`
	// ReqID lets the proposing node match the applied entry to the waiting
	// request (etcd engine); 0 when unused.
	ReqID uint64 `json:"req,omitempty"`
}

// Encode returns the log entry bytes of c.
func (c Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // a Command always marshals
	}
	return b
}

// DecodeCommand parses a log entry written by Encode.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("kv: bad command %q: %w", b, err)
	}
	return c, nil
}

// Result is what applying a command returns to its proposer.
type Result struct {
	Index   uint64 `json:"index"`             // log index of the command
	Existed bool   `json:"existed,omitempty"` // delete: the key was present
	Err     string `json:"error,omitempty"`   // a command the state machine rejected
}

// State is the state machine. All methods are safe for concurrent use;
// Apply and Restore must be called in log order by one goroutine (the
// engine's apply loop).
type State struct {
	mu struct {
		sync.RWMutex
		data    map[string]string
		members map[uint64]Member
		applied uint64        // index of the last entry applied
		changed chan struct{} // closed and replaced when applied grows
	}
}

// New returns an empty state.
func New() *State {
	s := &State{}
	s.mu.data = map[string]string{}
	s.mu.members = map[uint64]Member{}
	s.mu.changed = make(chan struct{})
	return s
}

// Apply applies the command of log entry index and advances the applied
// index to it.
func (s *State) Apply(index uint64, c Command) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Result{Index: index}
	switch c.Op {
	case OpPut:
		s.mu.data[c.Key] = c.Value
	case OpDelete:
		_, r.Existed = s.mu.data[c.Key]
		delete(s.mu.data, c.Key)
	case OpMember:
		if c.Member == nil || c.Member.ID == 0 {
			r.Err = "member command without a member"
			break
		}
		m := s.mu.members[c.Member.ID]
		m.ID = c.Member.ID
		if c.Member.Raft != "" {
			m.Raft = c.Member.Raft
		}
		if c.Member.HTTP != "" {
			m.HTTP = c.Member.HTTP
		}
		s.mu.members[m.ID] = m
	case OpUnmember:
		if c.Member != nil {
			delete(s.mu.members, c.Member.ID)
		}
	default:
		r.Err = fmt.Sprintf("unknown op %q", c.Op)
	}
	s.advanceLocked(index)
	return r
}

// SetApplied records that entry index (one without a command: an empty
// entry, a configuration change) was applied.
func (s *State) SetApplied(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked(index)
}

func (s *State) advanceLocked(index uint64) {
	if index > s.mu.applied {
		s.mu.applied = index
		close(s.mu.changed)
		s.mu.changed = make(chan struct{})
	}
}

// Applied returns the index of the last applied entry.
func (s *State) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.applied
}

// WaitApplied returns once entry index is applied, or ctx's error.
func (s *State) WaitApplied(ctx context.Context, index uint64) error {
	for {
		s.mu.RLock()
		applied, ch := s.mu.applied, s.mu.changed
		s.mu.RUnlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for entry %d to be applied (applied %d): %w", index, applied, ctx.Err())
		}
	}
}

// Get returns the value of key.
func (s *State) Get(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.mu.data[key]
	return v, ok
}

// Len returns the number of keys.
func (s *State) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.mu.data)
}

// Dump returns a copy of all keys and values.
func (s *State) Dump() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.mu.data)
}

// Digest returns a hash of all keys and values (FNV-64a over the sorted
// pairs): equal digests mean, with overwhelming probability, equal data.
func (s *State) Digest() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(s.mu.data)) {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(s.mu.data[k]), s.mu.data[k])
	}
	return h.Sum64()
}

// Member returns what the state knows about member id.
func (s *State) Member(id uint64) (Member, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.mu.members[id]
	return m, ok
}

// Members returns the known members sorted by ID.
func (s *State) Members() []Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Member, 0, len(s.mu.members))
	for _, id := range slices.Sorted(maps.Keys(s.mu.members)) {
		out = append(out, s.mu.members[id])
	}
	return out
}

// snapshot is the serialized form of a State (JSON; map keys come out
// sorted, so equal states encode to equal bytes).
type snapshot struct {
	Applied uint64            `json:"applied"`
	Data    map[string]string `json:"data"`
	Members []Member          `json:"members"`
}

// Snapshot returns the state's data and members, serialized.
func (s *State) Snapshot() []byte {
	s.mu.RLock()
	snap := snapshot{Applied: s.mu.applied, Data: s.mu.data, Members: make([]Member, 0, len(s.mu.members))}
	for _, id := range slices.Sorted(maps.Keys(s.mu.members)) {
		snap.Members = append(snap.Members, s.mu.members[id])
	}
	b, err := json.Marshal(snap)
	s.mu.RUnlock()
	if err != nil {
		panic(err)
	}
	return b
}

// Restore replaces the whole state with a snapshot taken at log index
// index (0: the applied index recorded in the snapshot). Empty b is the
// empty state.
func (s *State) Restore(index uint64, b []byte) error {
	snap := snapshot{Data: map[string]string{}}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &snap); err != nil {
			return fmt.Errorf("kv: restore snapshot at %d: %w", index, err)
		}
	}
	if snap.Data == nil {
		snap.Data = map[string]string{}
	}
	members := map[uint64]Member{}
	for _, m := range snap.Members {
		members[m.ID] = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if index == 0 {
		index = snap.Applied
	}
	s.mu.data, s.mu.members = snap.Data, members
	s.mu.applied = index
	close(s.mu.changed)
	s.mu.changed = make(chan struct{})
	return nil
}

// EncodeInitial returns the snapshot bytes of an empty store whose members
// are peers (ID → Raft address): the etcd engine bootstraps every initial
// node from the same bytes.
func EncodeInitial(peers map[uint64]string) []byte {
	s := New()
	for id, addr := range peers {
		s.mu.members[id] = Member{ID: id, Raft: addr}
	}
	return s.Snapshot()
}
