package main

// The write workload of the end-to-end tests.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// pick returns the HTTP address of a node running now chosen with rng, ""
// if none runs.
func (tc *testCluster) pick(rng *rand.Rand) string {
	nodes := tc.running()
	if len(nodes) == 0 {
		return ""
	}
	return nodes[rng.IntN(len(nodes))].HTTP
}

// writer writes keys through random running nodes, retrying each until it
// is acknowledged, and remembers what it wrote.
type writer struct {
	tc  *testCluster
	mu  sync.Mutex
	rng *rand.Rand
	exp map[string]string
}

func newWriter(tc *testCluster, seed uint64) *writer {
	tc.t.Logf("writer seed %d", seed)
	return &writer{tc: tc, rng: rand.New(rand.NewPCG(seed, 1)), exp: map[string]string{}}
}

func (w *writer) pick() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tc.pick(w.rng)
}

// writeRange writes keys [from, to) with `workers` concurrent clients.
func (w *writer) writeRange(ctx context.Context, from, to, workers int) {
	t := w.tc.t
	t.Helper()
	keys := make(chan int)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				k, v := fmt.Sprintf("key-%05d", i), fmt.Sprintf("value-%05d", i)
				if err := w.putRetry(ctx, k, v); err != nil {
					errc <- err
					return
				}
				w.mu.Lock()
				w.exp[k] = v
				w.mu.Unlock()
			}
		}()
	}
	for i := from; i < to; i++ {
		select {
		case keys <- i:
		case err := <-errc:
			close(keys)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(keys)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

func (w *writer) putRetry(ctx context.Context, k, v string) error {
	var last error
	for ctx.Err() == nil {
		addr := w.pick()
		if addr == "" {
			return errors.New("no node running")
		}
		if last = put(ctx, addr, k, v); last == nil {
			return nil
		}
		retry.Sleep(ctx, 20*time.Millisecond)
	}
	return fmt.Errorf("write %s: %v (last error: %v)", k, ctx.Err(), last)
}

func (w *writer) expected() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]string, len(w.exp))
	for k, v := range w.exp {
		m[k] = v
	}
	return m
}
