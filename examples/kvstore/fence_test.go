package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/cluster"
)

// A node whose log another process opened (the same --id on the same
// storage) stops with the fenced exit code, which the supervisor does not
// restart, whichever Raft engine it runs — also when raft's next call is
// one it would panic on a failure of (hashicorp/raft storing its term).
func TestFencedNodeExitsWithTheFencedCode(t *testing.T) {
	for _, engine := range []string{"hashicorp", "etcd"} {
		t.Run(engine, func(t *testing.T) {
			bucket := "file://" + t.TempDir() + "/b"
			a := startSingle(t, engine, bucket)
			putKV(t, a.http, "x", "1")
			b := startSingle(t, engine, bucket) // takes the log over
			putKV(t, b.http, "x", "2")
			// A's next write (or its next election) meets the fence.
			client := &http.Client{Timeout: 5 * time.Second}
			req, _ := http.NewRequest(http.MethodPut, "http://"+a.http+"/kv/x", strings.NewReader("3"))
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
			select {
			case <-a.exited:
				var ee *exec.ExitError
				if !errors.As(a.err, &ee) || ee.ExitCode() != exitFenced {
					t.Fatalf("the fenced node exited with %v, want exit code %d; output:\n%s", a.err, exitFenced, a.out)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("the fenced node still runs a minute after the takeover; output:\n%s", a.out)
			}
			putKV(t, b.http, "x", "4") // the new owner goes on
		})
	}
}

type single struct {
	http   string
	exited chan struct{} // closed when the process has exited, with err
	err    error
	out    *strings.Builder
}

// startSingle starts a one-node cluster of engine on bucket and waits
// until it serves.
func startSingle(t *testing.T, engine, bucket string) *single {
	t.Helper()
	httpAddr, err := cluster.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr, err := cluster.FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &single{http: httpAddr, exited: make(chan struct{}), out: &strings.Builder{}}
	cmd := exec.CommandContext(ctx, kvstoreBin, "--engine", engine, "--id", "1", "--http", httpAddr, "--raft", raftAddr,
		"--peers", "1="+raftAddr, "--bucket", bucket, "--data-dir", t.TempDir())
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/status")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK && strings.Contains(fmt.Sprint(resp.Header), "json")
			resp.Body.Close()
			if ok {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node on %s not serving after 30s: %v", httpAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// putKV writes key through the node at httpAddr, retrying while it elects
// itself leader.
func putKV(t *testing.T, httpAddr, key, value string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPut, "http://"+httpAddr+"/kv/"+key, strings.NewReader(value))
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT %s on %s: %v", key, httpAddr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
