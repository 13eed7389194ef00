package walsuite

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/internal/harness"
	"github.com/woodpecker-wal/woodpecker/logstore"
	"github.com/woodpecker-wal/woodpecker/meta"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
)

// TestWAL runs the WAL engine's property-based state machine against a
// plain-slice model. Actions: append (sync and async), truncate front,
// truncate back, append at a new index into an emptied log, read ranges
// (random access and a sequential reader), close and reopen, crash (a
// fault-injecting bucket drops what a crash would, with ambiguous successes
// and failed PUTs along the way), and a second writer taking over. After
// every step: the acknowledged prefix is intact and in order, with no
// duplicates; the index bounds agree with the model; a fenced writer can add
// nothing.
//
// The crash action needs the bucket's state to survive into a new client:
// the suite wraps the factory's bucket in a fault.Bucket and replaces it by
// its crash view, which is in memory; the metadata store is shared. open
// makes each process's client over those stores, e.g.
// embedded.Client(cfg) for the engine; it should retry a failed write a
// few times at most (the suite injects failures).
func TestWAL(t *testing.T, stores conformance.WALStores, open conformance.ClientFactory, opts conformance.Options) {
	harness.Machine(t, opts.Checks, func(rt *rapid.T) (map[string]func(*rapid.T), func()) {
		b, m := stores(t)
		sm := &walMachine{t: t, base: b, meta: m, open: open, seed: rapid.Uint64().Draw(rt, "seed")}
		sm.init(rt)
		return sm.actions(), sm.cleanup
	})
}

type walMachine struct {
	t    *testing.T
	base objstore.Bucket
	meta meta.Store
	open conformance.ClientFactory
	seed uint64

	// The current process.
	fb     *fault.Bucket
	gm     *harness.GatedMeta
	client logstore.Client
	log    logstore.Log
	w      logstore.Writer

	// The model. acked holds the log's entries [first, first+len(acked)),
	// all acknowledged. pending holds entries appended after them whose
	// acknowledgement is outstanding (async) or was lost (writer failed):
	// after a recovery any prefix of them may be in the log.
	first   uint64
	acked   [][]byte
	pending []pendingAppend
	gen     int
	empty   bool
	nextSeq uint64
}

type pendingAppend struct {
	first uint64
	data  [][]byte
	fut   logstore.Future
}

const walLogName = "conf"

func (m *walMachine) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	m.t.Cleanup(cancel)
	return ctx
}

// newProcess starts a new client and writer. With sameBucket the new process
// shares the current fault-injecting bucket (two processes on one bucket);
// otherwise it wraps m.base afresh (after a crash or a clean shutdown).
func (m *walMachine) newProcess(rt *rapid.T, sameBucket bool) {
	if !sameBucket || m.fb == nil {
		m.fb = fault.Wrap(m.base, m.seed+m.nextSeq)
		m.nextSeq++
	}
	m.gm = &harness.GatedMeta{Store: m.meta}
	c, err := m.open(m.ctx(), m.fb, m.gm)
	if err != nil {
		rt.Fatalf("open client: %v", err)
	}
	m.client = c
	l, err := c.OpenLog(m.ctx(), walLogName)
	if err != nil {
		rt.Fatalf("OpenLog: %v", err)
	}
	m.log = l
	w, err := l.OpenWriter(m.ctx())
	if err != nil {
		rt.Fatalf("OpenWriter: %v", err)
	}
	m.w = w
}

func (m *walMachine) init(rt *rapid.T) {
	c, err := m.open(m.ctx(), m.base, m.meta)
	if err != nil {
		rt.Fatal(err)
	}
	if err := c.CreateLog(m.ctx(), walLogName); err != nil {
		rt.Fatalf("CreateLog: %v", err)
	}
	c.Close()
	m.first, m.empty = 1, true
	m.newProcess(rt, false)
	m.checkBounds(rt)
}

func (m *walMachine) cleanup() {
	if m.w != nil {
		m.w.Close()
	}
	if m.client != nil {
		m.client.Close()
	}
}

func (m *walMachine) last() uint64 { return m.first + uint64(len(m.acked)) - 1 }

// settle waits for every outstanding async append; they must succeed.
func (m *walMachine) settle(rt *rapid.T) {
	for _, p := range m.pending {
		if err := p.fut.Wait(m.ctx()); err != nil {
			rt.Fatalf("async append at %d: %v", p.first, err)
		}
		m.acked = append(m.acked, p.data...)
	}
	m.pending = nil
}

func (m *walMachine) data(i uint64) []byte { return []byte(fmt.Sprintf("g%d/i%d", m.gen, i)) }

func (m *walMachine) batch(rt *rapid.T, first uint64) [][]byte {
	n := rapid.IntRange(1, 5).Draw(rt, "n")
	out := make([][]byte, n)
	for k := range out {
		out[k] = m.data(first + uint64(k))
	}
	return out
}

// nextIndex returns the index the next append must use, choosing one for an
// empty log.
func (m *walMachine) nextIndex(rt *rapid.T) uint64 {
	if m.empty {
		return rapid.Uint64Range(1, 1000).Draw(rt, "resetAt")
	}
	n := m.last() + 1
	for _, p := range m.pending {
		n = p.first + uint64(len(p.data))
	}
	return n
}

func (m *walMachine) appendTo(first uint64) {
	if m.empty {
		m.first, m.acked, m.empty = first, nil, false
	}
}

func (m *walMachine) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"AppendSync": func(rt *rapid.T) {
			first := m.nextIndex(rt)
			data := m.batch(rt, first)
			err := m.w.Append(m.ctx(), first, data)
			if err != nil {
				rt.Fatalf("Append(%d, %d entries): %v", first, len(data), err)
			}
			m.appendTo(first)
			m.settle(rt) // everything before a sync append is durable when it returns
			m.acked = append(m.acked, data...)
			m.checkBounds(rt)
		},
		"AppendAsync": func(rt *rapid.T) {
			first := m.nextIndex(rt)
			data := m.batch(rt, first)
			fut := m.w.AppendAsync(first, data)
			if m.empty {
				m.settle(rt)
				m.appendTo(first)
			}
			m.pending = append(m.pending, pendingAppend{first: first, data: data, fut: fut})
		},
		"Settle": func(rt *rapid.T) {
			m.settle(rt)
			m.checkBounds(rt)
		},
		"TruncateFront": func(rt *rapid.T) {
			m.settle(rt)
			if m.empty {
				rt.Skip("empty log")
			}
			i := rapid.Uint64Range(m.first, m.last()+2).Draw(rt, "i")
			if err := m.w.TruncateFront(m.ctx(), i); err != nil {
				rt.Fatalf("TruncateFront(%d): %v", i, err)
			}
			switch {
			case i > m.last():
				m.acked, m.empty = nil, true
			case i > m.first:
				m.acked = m.acked[i-m.first:]
				m.first = i
			}
			m.checkBounds(rt)
		},
		"TruncateBack": func(rt *rapid.T) {
			m.settle(rt)
			if m.empty {
				rt.Skip("empty log")
			}
			lo := m.first - 1
			if lo > 0 && rapid.Bool().Draw(rt, "keepSome") {
				lo = m.first
			}
			i := rapid.Uint64Range(lo, m.last()+1).Draw(rt, "i")
			if err := m.w.TruncateBack(m.ctx(), i); err != nil {
				rt.Fatalf("TruncateBack(%d): %v", i, err)
			}
			switch {
			case i < m.first:
				m.acked, m.empty = nil, true
			case i < m.last():
				m.acked = m.acked[:i-m.first+1]
			}
			m.gen++ // rewritten entries differ from the truncated ones
			m.checkBounds(rt)
		},
		"Read": func(rt *rapid.T) {
			m.settle(rt)
			m.checkRead(rt, rapid.Bool().Draw(rt, "sequential"))
		},
		"Reopen": func(rt *rapid.T) {
			m.settle(rt)
			if err := m.w.Close(); err != nil {
				rt.Fatalf("Close: %v", err)
			}
			m.client.Close()
			m.newProcess(rt, false)
			m.checkBounds(rt)
			m.checkRead(rt, false)
		},
		"FaultyAppends": func(rt *rapid.T) {
			// Ambiguous successes and failed PUTs, resolved by the writer's
			// retries: every append still succeeds.
			m.fb.AmbiguousRate(fault.OpPutIfAbsent, 0.2)
			m.fb.FailRate(fault.OpPutIfAbsent, 0.1)
			defer m.fb.Heal()
			for k := rapid.IntRange(1, 4).Draw(rt, "appends"); k > 0; k-- {
				first := m.nextIndex(rt)
				data := m.batch(rt, first)
				if err := m.w.Append(m.ctx(), first, data); err != nil {
					rt.Fatalf("Append under faults: %v", err)
				}
				m.appendTo(first)
				m.settle(rt)
				m.acked = append(m.acked, data...)
			}
			m.checkBounds(rt)
		},
		"Crash": func(rt *rapid.T) {
			// Crash with async appends possibly in flight.
			view := harness.Crash(rt, m.gm, m.fb)
			m.w.Close() // the dead process's writer: it fails, harmlessly
			m.client.Close()
			m.base = view
			m.recover(rt)
		},
		"Takeover": func(rt *rapid.T) {
			// A second writer opens the log while the first may have appends
			// in flight; the first is fenced.
			old, oldClient := m.w, m.client
			m.newProcess(rt, true)
			first := old.LastIndex() + 1
			if err := old.Append(m.ctx(), first, [][]byte{[]byte("zombie")}); !errors.Is(err, logstore.ErrFenced) {
				rt.Fatalf("fenced writer's Append = %v, want ErrFenced", err)
			}
			old.Close()
			oldClient.Close()
			m.resolvePending(rt, m.w.LastIndex())
			m.checkBounds(rt)
			m.checkRead(rt, false)
		},
	}
}

// recover opens a new process after a crash and reconciles the model: every
// acknowledged entry is there; of the outstanding ones, any prefix.
func (m *walMachine) recover(rt *rapid.T) {
	m.newProcess(rt, false)
	m.resolvePending(rt, m.w.LastIndex())
	m.checkBounds(rt)
	m.checkRead(rt, false)
}

// resolvePending folds outstanding appends into the model: those whose
// futures succeeded are acknowledged; of the rest, the log may hold any
// prefix, and it must be exactly the recovered log's extent.
func (m *walMachine) resolvePending(rt *rapid.T, recoveredLast uint64) {
	var maybe [][]byte
	for _, p := range m.pending {
		<-p.fut.Done()
		if p.fut.Err() == nil && len(maybe) == 0 {
			m.acked = append(m.acked, p.data...)
			continue
		}
		maybe = append(maybe, p.data...)
	}
	m.pending = nil
	if m.w.FirstIndex() == 0 { // recovered empty: the append that reset the log did not land
		if len(m.acked) > 0 {
			rt.Fatalf("recovery lost every acknowledged entry: log empty, acknowledged [%d, %d]", m.first, m.last())
		}
		m.empty, m.acked = true, nil
		m.gen++
		return
	}
	if m.empty {
		rt.Fatalf("recovered a non-empty log [%d, %d] where nothing was appended", m.w.FirstIndex(), recoveredLast)
	}
	if got := m.w.FirstIndex(); got != m.first {
		rt.Fatalf("recovered first index %d, model %d", got, m.first)
	}
	last := m.last()
	if recoveredLast < last {
		rt.Fatalf("recovery lost acknowledged entries: last index %d, acknowledged up to %d", recoveredLast, last)
	}
	extra := recoveredLast - last
	if extra > uint64(len(maybe)) {
		rt.Fatalf("recovered last index %d is beyond anything appended (%d)", recoveredLast, last+uint64(len(maybe)))
	}
	m.acked = append(m.acked, maybe[:extra]...)
	m.gen++ // the next appends overwrite what was not recovered
}

func (m *walMachine) checkBounds(rt *rapid.T) {
	wantFirst, wantLast := m.first, m.last()
	if m.empty {
		wantFirst, wantLast = 0, 0
	}
	if got := m.w.FirstIndex(); got != wantFirst {
		rt.Fatalf("FirstIndex = %d, model %d", got, wantFirst)
	}
	if len(m.pending) == 0 {
		if got := m.w.LastIndex(); got != wantLast {
			rt.Fatalf("LastIndex = %d, model %d", got, wantLast)
		}
		if got, err := m.log.LastIndex(m.ctx()); err != nil || got != wantLast {
			rt.Fatalf("Log.LastIndex = %d, %v; model %d", got, err, wantLast)
		}
	}
}

// checkRead reads the whole log back, by random access or with a reader,
// and checks the neighbours outside it.
func (m *walMachine) checkRead(rt *rapid.T, sequential bool) {
	ctx := m.ctx()
	if m.empty {
		return
	}
	if m.first > 1 {
		if _, err := m.log.Get(ctx, m.first-1); !errors.Is(err, logstore.ErrTruncated) {
			rt.Fatalf("Get(%d) below the first index = %v, want ErrTruncated", m.first-1, err)
		}
	}
	if _, err := m.log.Get(ctx, m.last()+1); !errors.Is(err, logstore.ErrOutOfRange) {
		rt.Fatalf("Get(%d) beyond the last index = %v, want ErrOutOfRange", m.last()+1, err)
	}
	if sequential {
		r, err := m.log.NewReader(ctx, m.first)
		if err != nil {
			rt.Fatalf("NewReader(%d): %v", m.first, err)
		}
		defer r.Close()
		for k, want := range m.acked {
			i, got, err := r.Next(ctx)
			if err != nil || i != m.first+uint64(k) || string(got) != string(want) {
				rt.Fatalf("Reader.Next = %d %q %v; want %d %q", i, got, err, m.first+uint64(k), want)
			}
		}
		return
	}
	for k, want := range m.acked {
		i := m.first + uint64(k)
		got, err := m.log.Get(ctx, i)
		if err != nil || string(got) != string(want) {
			rt.Fatalf("Get(%d) = %q, %v; want %q", i, got, err, want)
		}
	}
}
