package wal_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/wal"
)

// janitors counts the running GC janitors of all clients.
func janitors() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "wal.(*Client).janitor")
}

// An Open that fails on its context leaves nothing running: the caller,
// who got no client, could never close it (with the janitor on by default,
// one would run for the life of the process).
func TestFailedOpenLeavesNoJanitor(t *testing.T) {
	before := janitors()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		if c, err := wal.OpenURL(ctx, "mem://", "mem://", wal.Config{}); err == nil || c != nil {
			t.Fatalf("OpenURL with a cancelled context = %v, %v; want no client and an error", c, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for janitors() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d janitors running after failed opens, %d before", janitors(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
