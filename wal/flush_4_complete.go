package wal

// Stage 4 of the flush pipeline (see flush.go): complete.

// complete records a fragment's outcome and acknowledges, in order, every
// fragment at the front of the flight list that is done, resolving the
// futures whose last entry each holds; a failed fragment at the front
// fails the writer. It publishes the new durable index before resolving
// the futures, so an acknowledged entry is readable, and kicks the flush
// loop, which may be waiting for a slot or for the flight list to drain.
//
// It keeps the invariants written on Writer.mu: the futures of the flight
// list, concatenated in order, are a prefix of w.mu.waiting (the rest are
// of entries not yet fully cut), so acknowledging the front fragment
// resolves a prefix of waiting.
func (w *Writer) complete(fl *flight, err error) {
	w.mu.Lock()
	fl.done, fl.err = true, err
	durableBefore := w.mu.durable
	var acked []*Future
	for len(w.mu.inflight) > 0 && w.mu.inflight[0].done && w.mu.err == nil {
		head := w.mu.inflight[0]
		if head.err != nil {
			w.failLocked(head.err)
			break
		}
		w.mu.inflight = w.mu.inflight[1:]
		w.mu.durable = head.last
		w.mu.ackedFrags = head.seq + 1
		w.mu.unacked -= head.size
		for _, f := range head.futs {
			if len(w.mu.waiting) == 0 || w.mu.waiting[0] != f {
				panic("wal: append futures out of order")
			}
			w.mu.waiting = w.mu.waiting[1:]
			acked = append(acked, f)
		}
	}
	if w.mu.err != nil {
		w.mu.inflight = nil
	}
	advanced := w.mu.durable != durableBefore
	if advanced {
		w.publishLocked() // before the acks: an acknowledged entry is readable
		w.space.Broadcast()
	}
	for _, f := range acked {
		w.c.metrics.appendLatency.Observe(w.c.clock.Since(f.start).Seconds())
		f.resolve(nil)
	}
	w.mu.Unlock()
	if advanced {
		w.st.wake()
	}
	w.poke()
}
