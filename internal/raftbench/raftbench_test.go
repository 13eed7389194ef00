package raftbench_test

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/woodpecker-wal/woodpecker/internal/raftbench"
)

func TestLogsAndFill(t *testing.T) {
	logs := raftbench.Logs(5, 3, 16)
	if len(logs) != 3 || logs[0].Index != 5 || logs[2].Index != 7 || len(logs[1].Data) != 16 || bytes.Equal(logs[0].Data, logs[1].Data) {
		t.Fatalf("Logs(5, 3, 16) = %+v", logs)
	}
	s := raft.NewInmemStore()
	raftbench.Fill(t, s, 130, 8)
	if last, _ := s.LastIndex(); last != 130 {
		t.Fatalf("after Fill(130): last index %d", last)
	}
}

// The loops run on raft's in-memory store (no durability): a floor, and a
// check that they work.
func BenchmarkInmem(b *testing.B) {
	b.Run("StoreLogs", func(b *testing.B) { raftbench.StoreLogs(b, raft.NewInmemStore(), 64, 128) })
	b.Run("ScanCold", func(b *testing.B) {
		s := raft.NewInmemStore()
		raftbench.Fill(b, s, 1024, 128)
		raftbench.ScanCold(b, 1024, func() (raft.LogStore, func() error, error) {
			return s, func() error { return nil }, nil
		})
	})
}
