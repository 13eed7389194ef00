package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// kvInput and kvOutput are one operation of the history.
type kvInput struct {
	put   bool
	key   string
	value string // put
}

type kvOutput struct {
	value   string // get: "" when absent (puts never write "")
	unknown bool   // put whose outcome is unknown
}

// kvModel is a register per key: the history is partitioned by key.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out := input.(kvInput), output.(kvOutput)
		if in.put {
			return true, in.value
		}
		return out.value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case in.put && out.unknown:
			return fmt.Sprintf("put(%s, %s) -> ?", in.key, in.value)
		case in.put:
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		default:
			return fmt.Sprintf("get(%s) -> %q", in.key, out.value)
		}
	},
}

// TestLinearizable: concurrent clients put and read (linearizable=true)
// through random nodes while the leader is killed (SIGKILL) and restarted,
// and then the next leader is frozen (SIGSTOP) long enough to be deposed and
// resumed — the classic way to catch a stale leader serving reads; porcupine
// checks the recorded history, partitioned by key.
func TestLinearizable(t *testing.T) {
	for i, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			linearizable(t, engine, uint64(time.Now().UnixNano())+uint64(i))
		})
	}
}

func linearizable(t *testing.T, engine string, seed uint64) {
	const (
		clients  = 6
		keys     = 8
		duration = 9 * time.Second
		think    = 8 * time.Millisecond // keeps each key's history near 1k operations
	)
	t.Logf("seed %d", seed)
	tc := startCluster(t, engine)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		counts  = map[string]int{}
	)
	count := func(what string) {
		mu.Lock()
		counts[what]++
		mu.Unlock()
	}
	begin := time.Now()
	now := func() int64 { return int64(time.Since(begin)) }
	stopAt := begin.Add(duration)
	var nodesMu sync.Mutex // guards the running set against the killer
	pick := func(rng *rand.Rand) string {
		nodesMu.Lock()
		defer nodesMu.Unlock()
		ns := tc.running()
		return ns[rng.IntN(len(ns))].HTTP
	}

	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for n := 0; time.Now().Before(stopAt); n++ {
				key := fmt.Sprintf("k%d", rng.IntN(keys))
				addr := pick(rng)
				in := kvInput{key: key}
				var out kvOutput
				call := now()
				ret := int64(0)
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				if rng.IntN(2) == 0 {
					in.put, in.value = true, fmt.Sprintf("c%d-%d", c, n)
					err := put(rctx, addr, key, in.value)
					ret = now()
					switch {
					case err == nil:
						count("put ok")
					case errors.Is(err, errDefinite):
						count("put refused")
						rcancel()
						time.Sleep(think)
						continue // nothing happened: not part of the history
					default:
						// Maybe applied, maybe not, maybe later: it may take
						// effect any time after its call.
						count("put unknown")
						out.unknown, ret = true, math.MaxInt64
					}
				} else {
					v, _, err := get(rctx, addr, key, true)
					ret = now()
					if err != nil {
						count("get failed")
						rcancel()
						time.Sleep(think)
						continue // a read that failed observed nothing
					}
					count("get ok")
					out.value = v
				}
				rcancel()
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
				time.Sleep(think)
			}
		}()
	}

	// The fault: kill the leader at 1.5s, restart it at 3.5s.
	time.Sleep(1500 * time.Millisecond)
	l := tc.leader(ctx)
	nodesMu.Lock()
	err := l.Kill()
	nodesMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader node %d at %v", l.ID, time.Since(begin).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	nodesMu.Lock()
	err = l.Start()
	nodesMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted node %d at %v", l.ID, time.Since(begin).Round(time.Millisecond))

	time.Sleep(time.Second)
	p := tc.leader(ctx)
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Logf("froze leader node %d at %v", p.ID, time.Since(begin).Round(time.Millisecond))
	time.Sleep(2500 * time.Millisecond)
	// By now another node leads and has taken writes. Reads sent to the
	// frozen node wait in its sockets and run the moment it resumes, while
	// it may still believe it leads: each must still see the latest write.
	for k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", k)
			call := now()
			v, _, err := get(ctx, p.HTTP, key, true)
			if err != nil {
				count("stale-leader get failed")
				t.Logf("read at the frozen leader: %.150s", strings.Join(strings.Fields(err.Error()), " "))
				return
			}
			count("stale-leader get ok")
			mu.Lock()
			history = append(history, porcupine.Operation{ClientId: clients + k, Input: kvInput{key: key},
				Call: call, Output: kvOutput{value: v}, Return: now()})
			mu.Unlock()
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Logf("resumed node %d at %v", p.ID, time.Since(begin).Round(time.Millisecond))
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("history: %d operations %v", len(history), counts)
	if counts["put ok"] < 100 || counts["get ok"] < 100 {
		t.Fatalf("too few successful operations to mean anything: %v", counts)
	}
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, history, 30*time.Second)
	t.Logf("porcupine: %s in %v", res, time.Since(start).Round(time.Millisecond))
	if res != porcupine.Ok {
		p := filepath.Join(os.TempDir(), fmt.Sprintf("kvstore-%s-linearizability-%d.html", engine, seed))
		if err := porcupine.VisualizePath(kvModel, info, p); err == nil {
			t.Logf("visualization: %s", p)
		}
		t.Fatalf("history is %s", res)
	}
}

// TestKVModel: the checker rejects a stale read (so a passing
// TestLinearizable means something).
func TestKVModel(t *testing.T) {
	op := func(c int, in kvInput, out kvOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: in, Output: out, Call: call, Return: ret}
	}
	ok := []porcupine.Operation{
		op(0, kvInput{put: true, key: "a", value: "1"}, kvOutput{}, 0, 10),
		op(1, kvInput{key: "a"}, kvOutput{value: ""}, 5, 15), // concurrent with the put
		op(1, kvInput{key: "a"}, kvOutput{value: "1"}, 20, 30),
		op(0, kvInput{put: true, key: "a", value: "2"}, kvOutput{unknown: true}, 40, math.MaxInt64),
		op(1, kvInput{key: "a"}, kvOutput{value: "1"}, 50, 60), // the unknown put not applied yet
		op(1, kvInput{key: "a"}, kvOutput{value: "2"}, 70, 80), // now it is
	}
	if res := porcupine.CheckOperationsTimeout(kvModel, ok, time.Second); res != porcupine.Ok {
		t.Fatalf("linearizable history judged %s", res)
	}
	stale := append(ok[:3:3], op(1, kvInput{key: "a"}, kvOutput{value: ""}, 35, 38)) // after the put returned
	if res := porcupine.CheckOperationsTimeout(kvModel, stale, time.Second); res != porcupine.Illegal {
		t.Fatalf("stale read judged %s", res)
	}
	unread := append(ok[:6:6], op(1, kvInput{key: "a"}, kvOutput{value: "1"}, 90, 95)) // "2" was read: "1" is gone
	if res := porcupine.CheckOperationsTimeout(kvModel, unread, time.Second); res != porcupine.Illegal {
		t.Fatalf("read of an overwritten value judged %s", res)
	}
}
