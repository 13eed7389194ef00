// Package lifecycle is what the test servers share about starting,
// stopping and restarting.
package lifecycle

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"
)

// ErrPortClash marks a start that failed because a port was taken.
var ErrPortClash = errors.New("port already in use")

// restartAttempts and restartBackoff bound Restart's retries of a port that
// is briefly taken (by a connection attempt of a client that happened to
// get it as its local port, or the stopped server's socket not yet
// released).
const (
	restartAttempts = 10
	restartBackoff  = 100 * time.Millisecond
)

// Running is whether a server is up: the function that stops it (and waits
// for it), nil while it is stopped. It is safe for concurrent use.
type Running struct {
	mu   sync.Mutex
	stop func()
}

// Set records the function that stops the running server.
func (r *Running) Set(stop func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stop = stop
}

// Down stops the server if it is up.
func (r *Running) Down() {
	r.mu.Lock()
	stop := r.stop
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Up reports whether the server is up.
func (r *Running) Up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stop != nil
}

// Restart stops the server and calls start (with the attempt number, from
// 1) until it succeeds or fails other than with ErrPortClash, at most
// restartAttempts times, waiting a little longer after each clash; start
// sets the new stop function. It fails t, naming what, if the server does
// not come back.
func (r *Running) Restart(t testing.TB, what string, start func(attempt int) error) {
	t.Helper()
	r.Down()
	var err error
	for attempt := 1; attempt <= restartAttempts; attempt++ {
		if err = start(attempt); err == nil {
			return
		}
		if !errors.Is(err, ErrPortClash) {
			break
		}
		if attempt < restartAttempts {
			time.Sleep(time.Duration(attempt) * restartBackoff)
		}
	}
	t.Fatalf("testserver: %s: %v", what, err)
}

// RandHex returns n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
