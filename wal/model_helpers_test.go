package wal_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// This file holds the sequential model the concurrent model test checks its
// histories against (with porcupine), the history records and their
// classification, and the store wrappers the test steers.
//
// The model is one named log across its incarnations (DeleteLog, CreateLog):
// whether it exists, its entries, its meta value, and which writer holds
// it. Its state is a set of candidate logs (porcupine's Step is
// deterministic; the set is the nondeterminism).
//
// An operation that failed (an error, or a context that expired while it
// was queued) may or may not take effect, at any time until its writer is
// replaced: it joins the candidate's pending operations, which later steps
// may apply. A writer applies what it queued in queue order — appends and
// truncations are queued under the test's lock and numbered, so pending
// ones apply only in that order (a set-meta's place is not known: it may
// apply any time) — and an acknowledged operation implies that everything
// queued before it took effect. A takeover or deletion drops what is still
// pending. A failed operation is linearized at its call: its effect cannot
// come earlier, and the pending set already lets it come at any later
// point.
//
// Reads see one of two views, and each view is checked in its own
// partition together with every writer and admin operation:
//
//   - local: a read in the process of the live writer sees what that writer
//     acknowledged, as one view it publishes, and must be current: an entry
//     an append acknowledged is there, one a completed truncation removed is
//     not. (After the writer fails, that process reads the stores, which
//     hold no less.)
//   - remote: a read in a process without a writer reads the stores, so it
//     also sees fragments that landed but were not acknowledged yet.
//
// The two views are not one linearizable history (a remote read can be ahead
// of the writer's process), so they are not checked against each other. Reads
// in a process whose writer may be fenced, or that overlap a DeleteLog, are
// only checked for returning a value really written at that index. A Reader
// may return entries of a segment located before a truncation (it notices at
// the segment's end), so its entries are checked as live at some point since
// the reader was opened.

type mKind uint8

const (
	mAppend mKind = iota // one entry of an append
	mTruncateBack
	mTruncateFront
	mSetMeta
	mOpenWriter // a takeover or reopen: the writer it opens holds the log
	mDeleteLog
	mCreateLog
	mGet // also a Reader's Next
	mMeta
	mOpenLog
	mGC
	mFinal // the state a fresh process recovers at the end
)

var mKindNames = [...]string{"append", "truncate-back", "truncate-front", "set-meta", "open-writer",
	"delete-log", "create-log", "get", "meta", "open-log", "gc", "final"}

func (k mKind) String() string { return mKindNames[k] }

func (k mKind) writerOp() bool { return k <= mSetMeta }

type readRes uint8

const (
	resValue  readRes = iota
	resAbsent         // ErrTruncated or ErrOutOfRange
	resNoLog          // ErrLogNotFound
)

// Partitions of the checked history.
const (
	partLocal uint8 = 1 << iota
	partRemote
)

type mInput struct {
	kind   mKind
	parts  uint8
	proc   int
	writer int    // writer ops: the writer; mOpenWriter: the writer it opened
	idx    uint64 // append: the entry's index; truncations: the argument; get: the index; create: the incarnation
	val    string // append: the entry; set-meta: the value
	reader int    // a Reader's Next: the reader's number
	final  *finalState
	found  *recovered // open-writer: what the new writer found
	effect int        // writer ops: a number unique in the history
	qseq   int64      // appends and truncations: their place in the writer's queue; 0 for set-meta
	call   int64      // writer ops: when it was called
	ret    int64      // writer ops: when it returned
}

type mOutput struct {
	ok  bool // writer and admin ops: acknowledged; open-log: found
	res readRes
	val string
}

type finalState struct {
	exists bool
	first  uint64
	vals   []string
	meta   string
}

// recovered is what a writer found when it opened: the log at the takeover.
type recovered struct {
	first, last uint64 // 0, 0: empty
	lastVal     string // "" if it could not be read
	meta        string
}

// lnode is one entry of a candidate log. Nodes are interned, and a log's
// chain starts at its first entry, so two candidate logs holding the same
// entries share their last node: states compare with ==.
type lnode struct {
	parent *lnode
	idx    uint64
	val    string
	id     uint64
}

type nodeKey struct {
	parent uint64
	idx    uint64
	val    string
}

// pendSet is an interned set of failed operations of the log's writer that
// may still take effect, in queue order (set-metas first).
type pendSet struct {
	ops []mInput
	id  uint64
}

type mState struct {
	exists bool
	inc    uint64 // incarnation
	writer int    // the writer holding the log; 0: none yet
	first  uint64 // index of the first entry; 0 when empty
	tail   *lnode // the last entry; nil when empty
	meta   string
	pend   *pendSet // nil: none
}

func (s mState) last() uint64 {
	if s.tail == nil {
		return 0
	}
	return s.tail.idx
}

func (s mState) at(i uint64) (string, bool) {
	if s.tail == nil || i < s.first || i > s.tail.idx {
		return "", false
	}
	n := s.tail
	for n.idx > i {
		n = n.parent
	}
	return n.val, true
}

func (s mState) values() []string {
	var out []string
	for n := s.tail; n != nil; n = n.parent {
		out = append(out, n.val)
	}
	slices.Reverse(out)
	return out
}

func (s mState) pending() []mInput {
	if s.pend == nil {
		return nil
	}
	return s.pend.ops
}

// logModel steps candidate states. Its tables are shared by the partitions
// porcupine checks in parallel.
type logModel struct {
	mu      sync.Mutex
	nodes   map[nodeKey]*lnode
	pends   map[string]*pendSet
	closure map[mState]map[mState]bool // the states each state can reach
	ids     map[mState]uint64
	sets    map[string]*stateSet
}

// stateSet is porcupine's state: the candidate logs, interned, none of them
// reachable from another by applying its pending operations.
type stateSet struct {
	states []mState
	id     uint64
}

func (m *logModel) node(parent *lnode, idx uint64, val string) *lnode {
	k := nodeKey{idx: idx, val: val}
	if parent != nil {
		k.parent = parent.id
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.nodes[k]; ok {
		return n
	}
	n := &lnode{parent: parent, idx: idx, val: val, id: uint64(len(m.nodes) + 1)}
	m.nodes[k] = n
	return n
}

func (m *logModel) pendOf(ops []mInput) *pendSet {
	if len(ops) == 0 {
		return nil
	}
	var key strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&key, "%d,", op.effect)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.pends[key.String()]; ok {
		return p
	}
	p := &pendSet{ops: ops, id: uint64(len(m.pends) + 1)}
	m.pends[key.String()] = p
	return p
}

func (m *logModel) appendEntry(s mState, idx uint64, val string) mState {
	if s.tail == nil {
		s.first = idx
	}
	s.tail = m.node(s.tail, idx, val)
	return s
}

func (m *logModel) truncateBack(s mState, i uint64) mState {
	switch {
	case s.tail == nil || i >= s.tail.idx:
	case i < s.first:
		s.first, s.tail = 0, nil
	default:
		for s.tail.idx > i {
			s.tail = s.tail.parent
		}
	}
	return s
}

func (m *logModel) truncateFront(s mState, i uint64) mState {
	switch {
	case s.tail == nil || i <= s.first:
	case i > s.tail.idx:
		s.first, s.tail = 0, nil
	default:
		vals := s.values()[i-s.first:]
		s.first, s.tail = i, nil
		for k, v := range vals {
			s.tail = m.node(s.tail, i+uint64(k), v)
		}
	}
	return s
}

// effect applies a writer operation to s, if it can take effect there.
func (m *logModel) effect(s mState, in mInput) (mState, bool) {
	if !s.exists || s.writer != in.writer {
		return s, false
	}
	switch in.kind {
	case mAppend:
		if s.tail != nil && in.idx != s.tail.idx+1 {
			return s, false
		}
		return m.appendEntry(s, in.idx, in.val), true
	case mTruncateBack:
		return m.truncateBack(s, in.idx), true
	case mTruncateFront:
		return m.truncateFront(s, in.idx), true
	case mSetMeta:
		s.meta = in.val
		return s, true
	}
	panic(fmt.Sprintf("model: %v is no writer operation", in.kind))
}

// closed returns every state reachable from s by applying some of its
// pending operations, in any order they can take effect in (s included).
func (m *logModel) closed(s mState) map[mState]bool {
	if s.pend == nil {
		return map[mState]bool{s: true}
	}
	m.mu.Lock()
	c, ok := m.closure[s]
	m.mu.Unlock()
	if ok {
		return c
	}
	seen := map[mState]bool{s: true}
	todo := []mState{s}
	for len(todo) > 0 {
		cur := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		// The writer's queued operations take effect in queue order; a
		// set-meta's place in the queue is not known.
		first := true
		for j, op := range cur.pending() {
			if op.qseq > 0 {
				if !first {
					continue
				}
				first = false
			}
			next, ok := m.effect(cur, op)
			if !ok {
				continue
			}
			next.pend = m.pendOf(slices.Delete(slices.Clone(cur.pending()), j, j+1))
			if !seen[next] {
				seen[next] = true
				todo = append(todo, next)
			}
		}
	}
	m.mu.Lock()
	m.closure[s] = seen
	m.mu.Unlock()
	return seen
}

func (m *logModel) stateID(s mState) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.ids[s]
	if !ok {
		id = uint64(len(m.ids) + 1)
		m.ids[s] = id
	}
	return id
}

// setOf interns the candidates, dropping those another one can reach.
func (m *logModel) setOf(states []mState) *stateSet {
	keep := states[:0:0]
	for i, s := range states {
		redundant := slices.Contains(keep, s)
		for j := 0; j < len(states) && !redundant; j++ {
			o := states[j]
			// o can become s: s adds no possible future (of two that can
			// become each other, the first stays).
			redundant = o != s && o.pend != nil && m.closed(o)[s] && !(j > i && m.closed(s)[o])
		}
		if !redundant {
			keep = append(keep, s)
		}
	}
	ids := make([]uint64, len(keep))
	for i, s := range keep {
		ids[i] = m.stateID(s)
	}
	order := make([]int, len(keep))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return ids[order[a]] < ids[order[b]] })
	sorted := make([]mState, len(keep))
	key := make([]byte, 0, 8*len(keep))
	for i, k := range order {
		sorted[i] = keep[k]
		key = binary.LittleEndian.AppendUint64(key, ids[k])
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if set, ok := m.sets[string(key)]; ok {
		return set
	}
	set := &stateSet{states: sorted, id: uint64(len(m.sets) + 1)}
	m.sets[string(key)] = set
	return set
}

func (m *logModel) step(s mState, in mInput, out mOutput) []mState {
	var next []mState
	for c := range m.closed(s) {
		if in.kind.writerOp() && out.ok && slices.ContainsFunc(c.pending(), func(p mInput) bool {
			return p.writer == in.writer && (p.ret < in.call || p.qseq > 0 && in.qseq > 0 && p.qseq < in.qseq)
		}) {
			// What its writer queued before it is durable before it is
			// acknowledged.
			continue
		}
		next = append(next, m.apply(c, in, out)...)
	}
	return next
}

func (m *logModel) apply(s mState, in mInput, out mOutput) []mState {
	switch in.kind {
	case mAppend, mTruncateBack, mTruncateFront, mSetMeta:
		if !out.ok {
			// It may take effect later, until its writer is replaced.
			if !s.exists || s.writer != in.writer {
				return []mState{s}
			}
			ops := append(slices.Clone(s.pending()), in)
			slices.SortFunc(ops, func(a, b mInput) int {
				if a.qseq != b.qseq {
					return int(a.qseq - b.qseq)
				}
				if a.idx != b.idx {
					return int(int64(a.idx) - int64(b.idx))
				}
				return a.effect - b.effect
			})
			s.pend = m.pendOf(ops)
			return []mState{s}
		}
		next, ok := m.effect(s, in)
		if !ok {
			return nil
		}
		return []mState{next}
	case mOpenWriter:
		// A failed takeover changes nothing the model tracks: if it took a new
		// epoch, the old writer's later operations fail, and failed operations
		// may be no-ops; what the old writer acknowledged stays.
		if !out.ok {
			return []mState{s}
		}
		if !s.exists {
			return nil
		}
		if f := in.found; f != nil {
			if f.first == 0 && s.tail != nil || f.first != 0 && (s.tail == nil || s.first != f.first || s.tail.idx != f.last) || f.meta != s.meta {
				return nil
			}
			if f.lastVal != "" && s.tail.val != f.lastVal {
				return nil
			}
		}
		s.writer, s.pend = in.writer, nil
		return []mState{s}
	case mDeleteLog:
		return []mState{{}}
	case mCreateLog:
		if s.exists {
			return nil
		}
		return []mState{{exists: true, inc: in.idx}}
	case mGet:
		switch out.res {
		case resNoLog:
			if s.exists {
				return nil
			}
		case resAbsent:
			if _, ok := s.at(in.idx); !s.exists || ok {
				return nil
			}
		default:
			if v, ok := s.at(in.idx); !s.exists || !ok || v != out.val {
				return nil
			}
		}
		return []mState{s}
	case mMeta:
		if (out.res == resNoLog) == s.exists || (s.exists && out.val != s.meta) {
			return nil
		}
		return []mState{s}
	case mOpenLog:
		if out.ok != s.exists {
			return nil
		}
		return []mState{s}
	case mGC:
		return []mState{s}
	case mFinal:
		f := in.final
		if f.exists != s.exists {
			return nil
		}
		if f.exists && (f.meta != s.meta || !slices.Equal(f.vals, s.values()) || (len(f.vals) > 0 && f.first != s.first)) {
			return nil
		}
		return []mState{s}
	}
	panic(fmt.Sprintf("model: unknown operation %v", in.kind))
}

func describeState(s mState) string {
	if !s.exists {
		return "no log"
	}
	vals := s.values()
	var b strings.Builder
	fmt.Fprintf(&b, "inc %d, writer %d, meta %q, ", s.inc, s.writer, s.meta)
	if len(vals) == 0 {
		b.WriteString("empty")
	} else {
		fmt.Fprintf(&b, "[%d..%d]", s.first, s.last())
		const show = 12
		if len(vals) > show {
			fmt.Fprintf(&b, " ...%s", strings.Join(vals[len(vals)-show:], " "))
		} else {
			fmt.Fprintf(&b, " %s", strings.Join(vals, " "))
		}
	}
	if p := s.pending(); len(p) > 0 {
		var ds []string
		for _, op := range p {
			ds = append(ds, describeOp(op, mOutput{}))
		}
		fmt.Fprintf(&b, "; may still happen: %s", strings.Join(ds, "; "))
	}
	return b.String()
}

func describeOp(in mInput, out mOutput) string {
	who := fmt.Sprintf("p%d", in.proc)
	if in.kind.writerOp() {
		who = fmt.Sprintf("p%d w%d", in.proc, in.writer)
	}
	res := "ok"
	if !out.ok {
		res = "failed"
	}
	switch in.kind {
	case mAppend:
		return fmt.Sprintf("%s append[%d]=%s %s", who, in.idx, in.val, res)
	case mTruncateBack, mTruncateFront:
		return fmt.Sprintf("%s %v(%d) %s", who, in.kind, in.idx, res)
	case mSetMeta:
		return fmt.Sprintf("%s set-meta %s %s", who, in.val, res)
	case mOpenWriter:
		if f := in.found; f != nil && out.ok {
			if f.first == 0 {
				return fmt.Sprintf("%s open-writer w%d ok: empty, meta %q", who, in.writer, f.meta)
			}
			return fmt.Sprintf("%s open-writer w%d ok: [%d..%d] last %q, meta %q", who, in.writer, f.first, f.last, f.lastVal, f.meta)
		}
		return fmt.Sprintf("%s open-writer w%d %s", who, in.writer, res)
	case mCreateLog:
		return fmt.Sprintf("%s create-log inc %d", who, in.idx)
	case mDeleteLog, mGC:
		return fmt.Sprintf("%s %v", who, in.kind)
	case mOpenLog:
		return fmt.Sprintf("%s open-log found=%t", who, out.ok)
	case mGet, mMeta:
		what := fmt.Sprintf("get(%d)", in.idx)
		if in.kind == mMeta {
			what = "meta"
		}
		if in.reader > 0 {
			what = fmt.Sprintf("reader%d next", in.reader)
		}
		view := map[uint8]string{partLocal: "local", partRemote: "remote"}[in.parts]
		switch out.res {
		case resNoLog:
			return fmt.Sprintf("%s %s %s -> no log", who, view, what)
		case resAbsent:
			return fmt.Sprintf("%s %s %s -> absent", who, view, what)
		}
		return fmt.Sprintf("%s %s %s -> %q", who, view, what, out.val)
	case mFinal:
		f := in.final
		if !f.exists {
			return "final: no log"
		}
		return fmt.Sprintf("final: first %d, %d entries, meta %q", f.first, len(f.vals), f.meta)
	}
	return in.kind.String()
}

func newLogModel() porcupine.Model {
	return newLogModelOf(&logModel{nodes: map[nodeKey]*lnode{}, pends: map[string]*pendSet{},
		closure: map[mState]map[mState]bool{}, ids: map[mState]uint64{}, sets: map[string]*stateSet{}})
}

func newLogModelOf(m *logModel) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			var out [][]porcupine.Operation
			for _, p := range []uint8{partLocal, partRemote} {
				var part []porcupine.Operation
				for _, op := range history {
					if op.Input.(mInput).parts&p != 0 {
						part = append(part, op)
					}
				}
				if len(part) > 0 {
					out = append(out, part)
				}
			}
			return out
		},
		Init: func() any { return m.setOf([]mState{{}}) },
		Step: func(state, input, output any) (bool, any) {
			var next []mState
			for _, s := range state.(*stateSet).states {
				next = append(next, m.step(s, input.(mInput), output.(mOutput))...)
			}
			if len(next) == 0 {
				return false, state
			}
			return true, m.setOf(next)
		},
		Equal:             func(a, b any) bool { return a.(*stateSet) == b.(*stateSet) },
		Hash:              func(s any) uint64 { return s.(*stateSet).id },
		DescribeOperation: func(in, out any) string { return describeOp(in.(mInput), out.(mOutput)) },
		DescribeState: func(s any) string {
			var ds []string
			for _, st := range s.(*stateSet).states {
				ds = append(ds, describeState(st))
			}
			return strings.Join(ds, " | ")
		},
	}
}

// histRec is one recorded operation, before classification.
type histRec struct {
	client int // the goroutine that issued it
	kind   mKind
	proc   int
	writer int
	idx    uint64
	vals   []string // mAppend: the entries, from idx on
	val    string
	ok     bool
	res    readRes
	call   int64
	ret    int64
	reader int
	final  *finalState
	found  *recovered
	qseq   int64 // appends and truncations: their place in the writer's queue
	err    string
}

type writerRec struct {
	proc                int
	openCall, openRet   int64
	ok                  bool
	closeCall, closeRet int64 // math.MaxInt64 while open
	failed              bool  // its Close returned an error
}

type readerRec struct {
	proc       int
	start, end int64
}

type historyLog struct {
	recs    []histRec
	writers map[int]*writerRec
	readers map[int]*readerRec
}

func overlaps(a0, a1, b0, b1 int64) bool { return a0 <= b1 && b0 <= a1 }

// view classifies a read in proc over [start, end]: partLocal, partRemote,
// or 0 (only checked for returning a written value).
func (h *historyLog) view(proc int, start, end int64) uint8 {
	var host *writerRec
	hostID := 0
	for id, w := range h.writers {
		if w.proc != proc || !overlaps(w.openCall, w.closeRet, start, end) {
			continue
		}
		if host != nil {
			return 0
		}
		host, hostID = w, id
	}
	for _, r := range h.recs {
		if r.kind == mDeleteLog && overlaps(r.call, r.ret, start, end) {
			return 0
		}
	}
	if host == nil {
		return partRemote
	}
	if !host.ok || host.openRet >= start || end >= host.closeCall {
		return 0
	}
	// Any other takeover or deletion since the writer opened may have
	// fenced it: then this process reads a zombie's view.
	for _, r := range h.recs {
		if (r.kind == mOpenWriter && r.writer != hostID || r.kind == mDeleteLog) && overlaps(r.call, r.ret, host.openCall, end) {
			return 0
		}
	}
	return partLocal
}

// operations turns the records into porcupine's history; weak are the reads
// only checked directly.
func (h *historyLog) operations() (ops []porcupine.Operation, weak []histRec) {
	type read struct {
		r     histRec
		parts uint8
		call  int64
	}
	var reads []read
	local := false
	for _, r := range h.recs {
		call, end := r.call, r.ret
		if r.reader > 0 {
			rr := h.readers[r.reader]
			call, end = rr.start, rr.end
		}
		switch r.kind {
		case mGet, mMeta:
			p := h.view(r.proc, call, end)
			if p == 0 {
				weak = append(weak, r)
				continue
			}
			local = local || p == partLocal
			reads = append(reads, read{r, p, call})
		case mOpenLog:
			if !h.overlapsDelete(call, end) {
				reads = append(reads, read{r, partRemote, call})
			}
		}
	}
	all := partRemote
	if local {
		all |= partLocal
	}
	effect := 0
	for _, r := range h.recs {
		in := mInput{kind: r.kind, parts: all, proc: r.proc, writer: r.writer, idx: r.idx, val: r.val, final: r.final, found: r.found, call: r.call, ret: r.ret}
		out := mOutput{ok: r.ok}
		in.qseq = r.qseq
		ret := r.ret
		switch r.kind {
		case mAppend, mTruncateBack, mTruncateFront, mSetMeta:
			if !r.ok {
				// Its effect, if any, comes after its call, and the pending
				// set lets it come at any later point: linearizing it anywhere
				// but at its call only multiplies equivalent orders.
				ret = r.call
			}
		case mOpenWriter:
			if !r.ok {
				continue // changes nothing the model tracks
			}
		case mDeleteLog, mCreateLog, mFinal:
		default:
			continue
		}
		if r.kind == mAppend {
			for k, v := range r.vals {
				effect++
				in.idx, in.val, in.effect = r.idx+uint64(k), v, effect
				ops = append(ops, porcupine.Operation{ClientId: r.client, Input: in, Output: out, Call: r.call, Return: ret})
			}
			continue
		}
		effect++
		in.effect = effect
		ops = append(ops, porcupine.Operation{ClientId: r.client, Input: in, Output: out, Call: r.call, Return: ret})
	}
	for _, rd := range reads {
		r := rd.r
		in := mInput{kind: r.kind, parts: rd.parts, proc: r.proc, idx: r.idx, reader: r.reader}
		ops = append(ops, porcupine.Operation{ClientId: r.client, Input: in,
			Output: mOutput{ok: r.ok, res: r.res, val: r.val}, Call: rd.call, Return: r.ret})
	}
	return ops, weak
}

func (h *historyLog) overlapsDelete(start, end int64) bool {
	for _, r := range h.recs {
		if r.kind == mDeleteLog && overlaps(r.call, r.ret, start, end) {
			return true
		}
	}
	return false
}

// checkValues checks every read, whatever its view, returns only values
// written at that index by an operation called before the read returned.
func (h *historyLog) checkValues() []string {
	type wrote struct {
		idx  uint64
		call int64
	}
	entries, metas := map[string]wrote{}, map[string]int64{}
	for _, r := range h.recs {
		switch r.kind {
		case mAppend:
			for k, v := range r.vals {
				entries[v] = wrote{r.idx + uint64(k), r.call}
			}
		case mSetMeta:
			metas[r.val] = r.call
		}
	}
	var bad []string
	for _, r := range h.recs {
		if r.res != resValue {
			continue
		}
		switch r.kind {
		case mGet:
			if w, ok := entries[r.val]; !ok || w.idx != r.idx || w.call > r.ret {
				bad = append(bad, fmt.Sprintf("p%d get(%d) at %v returned %q, never written there", r.proc, r.idx, time.Duration(r.ret), r.val))
			}
		case mMeta:
			if c, ok := metas[r.val]; r.val != "" && (!ok || c > r.ret) {
				bad = append(bad, fmt.Sprintf("p%d meta at %v returned %q, never set", r.proc, time.Duration(r.ret), r.val))
			}
		}
	}
	return bad
}

// hints names patterns in a failing history, to point at the operation that
// broke the model. They are heuristics for the failure message only.
func (h *historyLog) hints() []string {
	var out []string
	var final *finalState
	for _, r := range h.recs {
		if r.kind == mFinal {
			final = r.final
		}
	}
	for _, r := range h.recs {
		if !r.kind.writerOp() || !r.ok {
			continue
		}
		for _, d := range h.recs {
			if d.kind == mDeleteLog && d.ok && d.ret < r.call && h.writers[r.writer].openRet < d.call {
				what := r.val
				if r.kind == mAppend {
					what = strings.Join(r.vals, ",")
				}
				out = append(out, fmt.Sprintf("writer w%d of a deleted log acknowledged %v(%d %s) called at %v, after DeleteLog returned at %v",
					r.writer, r.kind, r.idx, what, time.Duration(r.call), time.Duration(d.ret)))
				break
			}
		}
	}
	for _, r := range h.recs {
		if !r.kind.writerOp() || !r.ok {
			continue
		}
		for _, o := range h.recs {
			if o.kind == mOpenWriter && o.ok && o.writer != r.writer && o.ret < r.call && h.writers[r.writer].openRet < o.call {
				out = append(out, fmt.Sprintf("writer w%d acknowledged %v(%d) called at %v, after w%d took the log over (returned at %v)",
					r.writer, r.kind, r.idx, time.Duration(r.call), o.writer, time.Duration(o.ret)))
				break
			}
		}
	}
	// Acknowledged entries missing from the final log although nothing
	// truncated or deleted them later.
	if final != nil && final.exists {
		for _, r := range h.recs {
			if r.kind != mAppend || !r.ok {
				continue
			}
			for k, v := range r.vals {
				i := r.idx + uint64(k)
				if h.touchedAfter(i, r.ret) {
					continue
				}
				got := "absent"
				if i >= final.first && i-final.first < uint64(len(final.vals)) {
					got = final.vals[i-final.first]
				}
				if got != v {
					out = append(out, fmt.Sprintf("entry %d = %q acknowledged at %v (writer w%d) but the final log holds %s", i, v, time.Duration(r.ret), r.writer, got))
				}
			}
		}
	}
	// Strict reads that contradict an acknowledgement or a completed
	// truncation before them.
	ops, _ := h.operations()
	for _, op := range ops {
		in, o := op.Input.(mInput), op.Output.(mOutput)
		if in.kind != mGet || in.reader > 0 {
			continue
		}
		for _, r := range h.recs {
			switch {
			case r.kind == mAppend && r.ok && r.ret < op.Call && in.idx >= r.idx && in.idx < r.idx+uint64(len(r.vals)):
				want := r.vals[in.idx-r.idx]
				if (o.res != resValue || o.val != want) && !h.touchedAfter(in.idx, r.ret) {
					out = append(out, fmt.Sprintf("%s at %v, but entry %d = %q was acknowledged at %v", describeOp(in, o), time.Duration(op.Call), in.idx, want, time.Duration(r.ret)))
				}
			case r.kind == mTruncateBack && r.ok && r.ret < op.Call && in.idx > r.idx && o.res == resValue && h.writtenBefore(o.val, r.call):
				out = append(out, fmt.Sprintf("%s at %v returned an entry that TruncateBack(%d) (w%d, returned at %v) removed", describeOp(in, o), time.Duration(op.Call), r.idx, r.writer, time.Duration(r.ret)))
			}
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... and %d more", len(out)-20))
	}
	return out
}

// touchedAfter reports whether an operation that may have taken effect
// after t may have removed or replaced entry i.
func (h *historyLog) touchedAfter(i uint64, t int64) bool {
	for _, r := range h.recs {
		if r.ret < t && r.ok {
			continue
		}
		switch r.kind {
		case mTruncateBack:
			if r.idx < i {
				return true
			}
		case mTruncateFront:
			if r.idx > i {
				return true
			}
		case mDeleteLog:
			return true
		}
	}
	return false
}

func (h *historyLog) writtenBefore(val string, t int64) bool {
	for _, r := range h.recs {
		if r.kind == mAppend && r.call < t && slices.Contains(r.vals, val) {
			return true
		}
	}
	return false
}

// describe renders the records in call order, for a failing history's
// report.
func (h *historyLog) describe() string {
	recs := slices.Clone(h.recs)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].call < recs[j].call })
	var b strings.Builder
	for _, r := range recs {
		in := mInput{kind: r.kind, proc: r.proc, writer: r.writer, idx: r.idx, val: r.val, reader: r.reader, final: r.final, found: r.found}
		if r.kind == mAppend {
			in.val = strings.Join(r.vals, ",")
		}
		fmt.Fprintf(&b, "%12v %12v  c%d  %s", time.Duration(r.call), time.Duration(r.ret), r.client, describeOp(in, mOutput{ok: r.ok, res: r.res, val: r.val}))
		if r.err != "" {
			fmt.Fprintf(&b, ": %s", r.err)
		}
		b.WriteString("\n")
	}
	ids := make([]int, 0, len(h.writers))
	for id := range h.writers {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		w := h.writers[id]
		fmt.Fprintf(&b, "writer w%d: p%d open [%v, %v] ok=%t close [%v, %v] failed=%t\n", id, w.proc,
			time.Duration(w.openCall), time.Duration(w.openRet), w.ok, time.Duration(w.closeCall), time.Duration(w.closeRet), w.failed)
	}
	return b.String()
}

// probeBucket sits under the fault injector and lets the test hold data
// fragment PUTs at a gate, or slow some of them down.
type probeBucket struct {
	objstore.CASBucket
	gate atomic.Pointer[probeGate]
	slow atomic.Pointer[slowRule]
}

type probeGate struct {
	open chan struct{} // closed to let everything through
	hits chan struct{} // one value per PUT that reached the gate
}

type slowRule struct {
	from  uint64 // data fragments starting at or after this index
	delay time.Duration
}

func newProbeBucket(b objstore.CASBucket) *probeBucket { return &probeBucket{CASBucket: b} }

// hold makes data fragment PUTs wait until release; the returned channel
// gets a value for each PUT that reached the gate.
func (p *probeBucket) hold() *probeGate {
	g := &probeGate{open: make(chan struct{}), hits: make(chan struct{}, 64)}
	p.gate.Store(g)
	return g
}

func (p *probeBucket) release(g *probeGate) {
	p.gate.CompareAndSwap(g, nil)
	close(g.open)
}

func (p *probeBucket) PutIfAbsent(ctx context.Context, key string, data []byte) (objstore.ObjectInfo, error) {
	if len(data) > codec.FixedHeaderSize && strings.Contains(key, "/s/") {
		if g := p.gate.Load(); g != nil {
			if err := waitAtGate(ctx, g.hits, g.open); err != nil {
				return objstore.ObjectInfo{}, err
			}
		}
		if s := p.slow.Load(); s != nil {
			if hdr, _, err := codec.DecodeHeader(data); err == nil && hdr.FirstIndex >= s.from {
				t := time.NewTimer(s.delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return objstore.ObjectInfo{}, ctx.Err()
				}
			}
		}
	}
	return p.CASBucket.PutIfAbsent(ctx, key, data)
}

// slowMeta delays some metadata reads after reading, so the record a caller
// gets may be overtaken by a writer's update before the caller uses it; and
// it can hold the next read back for the stale-record probe.
type slowMeta struct {
	meta.Store
	mu       sync.Mutex
	rng      *rand.Rand
	p        float64
	maxDelay time.Duration
	hold     atomic.Pointer[metaHold]
}

type metaHold struct {
	key     string
	read    chan struct{} // closed once the held read has read the record
	release chan struct{} // closed to let it return
}

// holdNext makes the next Get of key return only after release is closed.
func (s *slowMeta) holdNext(key string) *metaHold {
	h := &metaHold{key: key, read: make(chan struct{}), release: make(chan struct{})}
	s.hold.Store(h)
	return h
}

func (s *slowMeta) Get(ctx context.Context, key string) (meta.Record, error) {
	r, err := s.Store.Get(ctx, key)
	if h := s.hold.Load(); h != nil && h.key == key && s.hold.CompareAndSwap(h, nil) {
		close(h.read)
		select {
		case <-h.release:
		case <-ctx.Done():
		}
		return r, err
	}
	s.mu.Lock()
	var d time.Duration
	if s.maxDelay > 0 && s.rng.Float64() < s.p {
		d = time.Duration(s.rng.Int64N(int64(s.maxDelay)))
	}
	s.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	return r, err
}

// logRing is a slog.Handler keeping a history's log records, formatted
// only for the report of a failing history.
type logRing struct {
	begin time.Time
	attrs []slog.Attr
	rs    *logRecords
}

type logRecords struct {
	mu   sync.Mutex
	recs []logLine
}

type logLine struct {
	r     slog.Record
	attrs []slog.Attr
}

func newLogRing(begin time.Time) *logRing { return &logRing{begin: begin, rs: &logRecords{}} }

func (h *logRing) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRing) Handle(_ context.Context, r slog.Record) error {
	h.rs.mu.Lock()
	defer h.rs.mu.Unlock()
	if len(h.rs.recs) < 20000 {
		h.rs.recs = append(h.rs.recs, logLine{r.Clone(), h.attrs})
	}
	return nil
}

func (h *logRing) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRing{begin: h.begin, attrs: append(slices.Clip(h.attrs), as...), rs: h.rs}
}

func (h *logRing) WithGroup(string) slog.Handler { return h }

func (h *logRing) String() string {
	h.rs.mu.Lock()
	defer h.rs.mu.Unlock()
	var b strings.Builder
	for _, l := range h.rs.recs {
		fmt.Fprintf(&b, "%12v %-5v %s", l.r.Time.Sub(h.begin), l.r.Level, l.r.Message)
		for _, a := range l.attrs {
			fmt.Fprintf(&b, " %s", a)
		}
		l.r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s", a)
			return true
		})
		b.WriteString("\n")
	}
	return b.String()
}
