package wal

import "github.com/woodpecker-wal/woodpecker/wal/codec"

// Stage 2 of the flush pipeline (see flush.go): encode.

// upload is the goroutine of one cut fragment: it encodes the fragment,
// writes it (put, stage 3), counts it and keeps the decoded fragment in the
// cache once written, and hands the outcome to complete (stage 4).
func (w *Writer) upload(fl *flight, hdr codec.Header, entries [][]byte) {
	data, err := codec.AppendFragment(nil, hdr, entries)
	if err == nil {
		err = w.put(fl.key, data)
	}
	if err == nil {
		m := w.c.metrics
		m.fragments.Inc()
		m.fragmentBytes.Observe(float64(len(data)))
		m.flushedEnts.Add(float64(len(entries)))
		w.c.stats.puts.Add(1)
		if f, derr := codec.DecodeTrusted(data); derr == nil { // our own bytes, just encoded
			w.c.frags.Add(fl.key, f, int64(len(data))+256)
		}
		var n int
		for _, e := range entries {
			n += len(e)
		}
		m.flushedBytes.Add(float64(n))
	}
	w.complete(fl, err)
}
