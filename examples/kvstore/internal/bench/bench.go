// Package bench is kvstore's load generator: concurrent clients PUT values
// to the leader for a while and it reports writes per second and the
// latency distribution of acknowledged writes.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/woodpecker-wal/woodpecker/internal/latency"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// Options of a run.
type Options struct {
	Addrs     []string      // HTTP addresses of cluster members; the leader is found through them
	Clients   int           // concurrent writers (default 16)
	Duration  time.Duration // measured period (default 10s)
	Warmup    time.Duration // unmeasured period before it (default 1s)
	ValueSize int           // bytes per value (default 128)
	Keys      int           // key space (default 100000)
	Seed      uint64
}

// Result of a run.
type Result struct {
	Writes     int           `json:"writes"`
	Errors     int           `json:"errors"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	PerSecond  float64       `json:"writes_per_second"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	Clients    int           `json:"clients"`
	ValueSize  int           `json:"value_size"`
	Leader     string        `json:"leader"`
	FirstError string        `json:"first_error,omitempty"`
}

func (r Result) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }
	s := fmt.Sprintf("%d writes in %.1fs: %.0f writes/s  p50 %s  p90 %s  p99 %s  max %s  (%d clients, %d-byte values, leader %s, %d errors)",
		r.Writes, r.Elapsed.Seconds(), r.PerSecond, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.Clients, r.ValueSize, r.Leader, r.Errors)
	if r.FirstError != "" {
		s += "\n  first error: " + r.FirstError
	}
	return s
}

// FindLeader returns the leader's HTTP address, asking each of addrs.
func FindLeader(ctx context.Context, cli *http.Client, addrs []string) (string, error) {
	var lastErr error
	for _, a := range addrs {
		resp, err := call(ctx, cli, http.MethodGet, a, "/status", nil)
		if err != nil {
			lastErr = err
			continue
		}
		var s struct {
			LeaderHTTP string `json:"leader_http"`
		}
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err == nil && s.LeaderHTTP != "" {
			return s.LeaderHTTP, nil
		}
		lastErr = fmt.Errorf("%s knows no leader yet", a)
	}
	return "", fmt.Errorf("no leader found via %s: %v", strings.Join(addrs, ", "), lastErr)
}

// Run runs the load.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Clients <= 0 {
		o.Clients = 16
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.ValueSize <= 0 {
		o.ValueSize = 128
	}
	if o.Keys <= 0 {
		o.Keys = 100000
	}
	if len(o.Addrs) == 0 {
		return Result{}, errors.New("bench: no addresses")
	}
	cli := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.Clients * 2},
	}
	defer cli.CloseIdleConnections()
	var leader string
	for {
		var err error
		if leader, err = FindLeader(ctx, cli, o.Addrs); err == nil {
			break
		}
		if retry.Sleep(ctx, 100*time.Millisecond) != nil {
			return Result{}, err
		}
	}
	value := bytes.Repeat([]byte("v"), o.ValueSize)
	start := time.Now()
	measureFrom, end := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)

	var mu sync.Mutex
	var lat []time.Duration
	res := Result{Clients: o.Clients, ValueSize: o.ValueSize, Leader: leader}
	var wg sync.WaitGroup
	for c := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(c)))
			var mine []time.Duration
			errs := 0
			var firstErr error
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				key := fmt.Sprintf("bench-%d", rng.IntN(o.Keys))
				err := put(ctx, cli, leader, key, value)
				d := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			res.Errors += errs
			if firstErr != nil && res.FirstError == "" {
				res.FirstError = firstErr.Error()
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(measureFrom)
	if res.Elapsed > o.Duration {
		res.Elapsed = o.Duration
	}
	if len(lat) == 0 {
		return res, fmt.Errorf("bench: no write succeeded (%d errors; first: %s)", res.Errors, res.FirstError)
	}
	st := latency.Summarize(lat)
	res.Writes = st.N
	res.PerSecond = float64(st.N) / res.Elapsed.Seconds()
	res.P50, res.P90, res.P99, res.Max = st.P50, st.P90, st.P99, st.Max
	return res, ctx.Err()
}

func put(ctx context.Context, cli *http.Client, addr, key string, value []byte) error {
	resp, err := call(ctx, cli, http.MethodPut, addr, "/kv/"+key, bytes.NewReader(value))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// call sends one request to the member at addr and returns the response
// if it is 200 OK; otherwise an error with the start of the answer.
func call(ctx context.Context, cli *http.Client, method, addr, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}
