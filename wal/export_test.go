package wal

import "errors"

// Crash stops a tiered writer as a process crash would: nothing more is
// written locally or uploaded, the local tier's files and lock are
// released, and the record is left as it is.
func Crash(w *Writer) {
	t := w.tier
	if t == nil {
		panic("wal.Crash: not a tiered writer")
	}
	t.mu.Lock()
	t.failLocked(errors.New("wal: crashed (test)"))
	t.mu.Unlock()
	<-t.localDone
	<-t.upDone
	_ = t.lt.Close()
}

// UploadedIndex exposes the uploader's acknowledged index.
func UploadedIndex(w *Writer) uint64 { return w.UploadedIndex() }

// WaitSpare waits until a tiered writer's next local segment is prepared.
func WaitSpare(w *Writer) { w.tier.lt.WaitSpare() }
