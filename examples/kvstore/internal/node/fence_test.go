package node

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/adapters/hashiraft"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// A term write that finds the log taken over reports the fence and never
// returns to raft (which would panic on the error): the raft goroutine
// waits until the node stops and then ends.
func TestFencedTermWriteNeverReturnsToRaft(t *testing.T) {
	ctx := context.Background()
	b, m := objmem.New(), metamem.New()
	process := func() *wal.Client { // a client of its own, as another process has
		c, err := wal.Open(ctx, wal.Config{Bucket: b, Meta: m, GCInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	zombie, err := hashiraft.New(ctx, process().LogStore(), "raft", hashiraft.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	owner, err := hashiraft.New(ctx, process().LogStore(), "raft", hashiraft.Options{}) // takes the log over
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()

	nodeCtx, stop := context.WithCancel(ctx)
	fenced := make(chan error, 1)
	f := &fencedStore{Store: zombie, lg: slog.New(slog.DiscardHandler), ctx: nodeCtx,
		onFenced: func(err error) { fenced <- err }}
	f.riding.Store(true)
	returned, ended := make(chan error, 1), make(chan struct{})
	go func() { // as raft's goroutine storing a new term
		defer close(ended)
		returned <- f.SetUint64([]byte("CurrentTerm"), 7)
	}()
	select {
	case err := <-fenced:
		if !errors.Is(err, wal.ErrFenced) {
			t.Fatalf("onFenced(%v), want ErrFenced", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the fence was not reported")
	}
	select {
	case err := <-returned:
		t.Fatalf("SetUint64 on a fenced store returned %v to raft", err)
	case <-time.After(100 * time.Millisecond):
	}
	stop()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the parked goroutine did not end when the node stopped")
	}
	select {
	case err := <-returned:
		t.Fatalf("SetUint64 returned %v to raft after the node stopped", err)
	default:
	}
}
