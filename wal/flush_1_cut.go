package wal

import "github.com/woodpecker-wal/woodpecker/wal/codec"

// Stage 1 of the flush pipeline (see flush.go): cut.

// cutLocked takes the next fragment's worth of entries off the queue: up
// to MaxEntries of them and MaxFlushSize bytes (one entry at least), from
// entry items before the first control item. It gives the fragment the
// open segment's next sequence number, appends it to the flight list and
// returns it with its header and entries, for upload. The futures of the
// items it cut to the end go with the fragment; an item cut only in part
// leaves its future to a later fragment. REQUIRES: w.mu held, and an
// uncut entry at the head of the queue.
func (w *Writer) cutLocked() (*flight, codec.Header, [][]byte) {
	cfg := &w.c.cfg
	var entries [][]byte
	var futs []*Future
	size := 0
	var first uint64
	for _, it := range w.mu.queue {
		if it.op != opEntries {
			break
		}
		if len(entries) == 0 {
			first = it.first + uint64(it.off)
		}
		for it.off < len(it.entries) && len(entries) < cfg.MaxEntries {
			e := it.entries[it.off]
			if len(entries) > 0 && size+len(e) > cfg.MaxFlushSize {
				break
			}
			entries = append(entries, e)
			size += len(e)
			it.off++
		}
		if it.off < len(it.entries) {
			break
		}
		futs = append(futs, it.fut)
	}
	w.mu.queueBytes -= size
	w.mu.queueSince = w.c.clock.Now()
	fl := &flight{seq: w.mu.nextSeq, first: first, last: first + uint64(len(entries)) - 1, size: size,
		key: codec.FragmentKey(w.prefix, w.mu.seg, w.mu.nextSeq), futs: futs}
	hdr := codec.Header{
		Kind: codec.KindData, Compression: cfg.Compression, LogID: w.logID, Segment: w.mu.seg,
		Seq: w.mu.nextSeq, Epoch: w.epoch, Nonce: w.nonce, FirstIndex: first, Count: uint32(len(entries)),
	}
	w.mu.nextSeq++
	w.mu.segBytes += int64(size)
	w.mu.inflight = append(w.mu.inflight, fl)
	return fl, hdr, entries
}
