package kv

import (
	"context"
	"testing"
	"time"
)

func TestApplySnapshotRestore(t *testing.T) {
	s := New()
	steps := []struct {
		c    Command
		want Result
	}{
		{Command{Op: OpPut, Key: "a", Value: "1"}, Result{Index: 1}},
		{Command{Op: OpPut, Key: "b", Value: "2"}, Result{Index: 2}},
		{Command{Op: OpDelete, Key: "a"}, Result{Index: 3, Existed: true}},
		{Command{Op: OpDelete, Key: "zz"}, Result{Index: 4}},
		{Command{Op: OpMember, Member: &Member{ID: 7, Raft: "h:1"}}, Result{Index: 5}},
		{Command{Op: OpMember, Member: &Member{ID: 7, HTTP: "h:2"}}, Result{Index: 6}},
		{Command{Op: "bogus"}, Result{Index: 7, Err: `unknown op "bogus"`}},
	}
	for i, st := range steps {
		c, err := DecodeCommand(st.c.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Apply(uint64(i+1), c); got != st.want {
			t.Fatalf("step %d: %+v, want %+v", i, got, st.want)
		}
	}
	if v, ok := s.Get("b"); !ok || v != "2" {
		t.Fatalf("b = %q %v", v, ok)
	}
	if _, ok := s.Get("a"); ok {
		t.Fatal("a survived its delete")
	}
	if m, _ := s.Member(7); m != (Member{ID: 7, Raft: "h:1", HTTP: "h:2"}) {
		t.Fatalf("member 7 = %+v", m)
	}
	snap := s.Snapshot()
	r := New()
	if err := r.Restore(0, snap); err != nil {
		t.Fatal(err)
	}
	if r.Applied() != 7 || r.Digest() != s.Digest() || r.Len() != 1 || len(r.Members()) != 1 {
		t.Fatalf("restored applied %d digest %x len %d members %v; want 7 %x 1 1",
			r.Applied(), r.Digest(), r.Len(), r.Members(), s.Digest())
	}
	if string(r.Snapshot()) != string(snap) {
		t.Fatal("snapshot of a restored state differs")
	}
	if err := r.Restore(0, []byte("{")); err == nil {
		t.Fatal("restored garbage")
	}
}

func TestEncodeInitialDeterministic(t *testing.T) {
	peers := map[uint64]string{3: "c:1", 1: "a:1", 2: "b:1"}
	a, b := EncodeInitial(peers), EncodeInitial(map[uint64]string{2: "b:1", 1: "a:1", 3: "c:1"})
	if string(a) != string(b) {
		t.Fatalf("initial snapshots differ:\n%s\n%s", a, b)
	}
}

func TestWaitApplied(t *testing.T) {
	s := New()
	done := make(chan error)
	go func() { done <- s.WaitApplied(context.Background(), 2) }()
	s.SetApplied(1)
	select {
	case <-done:
		t.Fatal("returned before entry 2 was applied")
	case <-time.After(20 * time.Millisecond):
	}
	s.Apply(2, Command{Op: OpPut, Key: "k", Value: "v"})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.WaitApplied(ctx, 9); err == nil {
		t.Fatal("waited for an entry that never comes without error")
	}
}
