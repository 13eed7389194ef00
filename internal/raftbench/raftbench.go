// Package raftbench holds the hashicorp/raft LogStore benchmark bodies that
// adapters/hashiraft's benchmarks and the bench module's comparison with
// raft-wal and raft-boltdb share, so that every store is measured by the
// same loop and reports the same metrics.
package raftbench

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/internal/latency"
)

// Logs returns n command entries of size random (incompressible) bytes,
// with indexes first, first+1, ... and term 1.
func Logs(first uint64, n, size int) []*raft.Log {
	out := make([]*raft.Log, n)
	for k := range out {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		out[k] = &raft.Log{Index: first + uint64(k), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	}
	return out
}

// Fill stores entries 1..n of size bytes in s, 64 per StoreLogs call.
func Fill(b testing.TB, s raft.LogStore, n, size int) {
	b.Helper()
	for i := 1; i <= n; i += 64 {
		if err := s.StoreLogs(Logs(uint64(i), min(64, n-i+1), size)); err != nil {
			b.Fatal(err)
		}
	}
}

// StoreLogs makes b.N synchronous StoreLogs calls of n entries of size
// bytes on an empty s, back to back, as raft's leader loop and a
// follower's AppendEntries handler make them, and reports payload MB/s,
// entries/s and the calls' p50 and p99.
func StoreLogs(b *testing.B, s raft.LogStore, n, size int) {
	batch := Logs(1, n, size)
	next := uint64(1)
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(n * size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for k, l := range batch {
			l.Index = next + uint64(k)
		}
		t0 := time.Now()
		if err := s.StoreLogs(batch); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		next += uint64(n)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
	latency.Report(b, "", lat)
}

// ScanCold reads entries 1..n (stored before) front to back with GetLog on
// a store freshly opened by open each iteration, as NewRaft's startup scan
// does: the store's own caches are empty. Opening and closing are not
// timed; it reports entries/s and the mean open time (open-µs).
func ScanCold(b *testing.B, n int, open func() (raft.LogStore, func() error, error)) {
	var opening time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		t0 := time.Now()
		s, closeStore, err := open()
		if err != nil {
			b.Fatal(err)
		}
		opening += time.Since(t0)
		b.StartTimer()
		var l raft.Log
		for i := uint64(1); i <= uint64(n); i++ {
			if err := s.GetLog(i, &l); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if err := closeStore(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(opening.Microseconds())/float64(b.N), "open-µs")
}
