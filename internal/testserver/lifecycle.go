package testserver

// What the servers share about starting, stopping and restarting.

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// errPortClash marks a start that failed because a port was taken.
var errPortClash = errors.New("port already in use")

// restartAttempts and restartBackoff bound Restart's retries of a port that
// is briefly taken (by a connection attempt of a client that happened to
// get it as its local port, or the stopped server's socket not yet
// released).
const (
	restartAttempts = 10
	restartBackoff  = 100 * time.Millisecond
)

// running is whether a server is up: the function that stops it (and waits
// for it), nil while it is stopped. It is safe for concurrent use.
type running struct {
	mu   sync.Mutex
	stop func()
}

func (r *running) set(stop func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stop = stop
}

// down stops the server if it is up.
func (r *running) down() {
	r.mu.Lock()
	stop := r.stop
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (r *running) up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stop != nil
}

// restart stops the server and calls start (with the attempt number, from
// 1) until it succeeds or fails other than with errPortClash, at most
// restartAttempts times, waiting a little longer after each clash; start
// sets the new stop function. It fails t, naming what, if the server does
// not come back.
func (r *running) restart(t testing.TB, what string, start func(attempt int) error) {
	t.Helper()
	r.down()
	var err error
	for attempt := 1; attempt <= restartAttempts; attempt++ {
		if err = start(attempt); err == nil {
			return
		}
		if !errors.Is(err, errPortClash) {
			break
		}
		if attempt < restartAttempts {
			time.Sleep(time.Duration(attempt) * restartBackoff)
		}
	}
	t.Fatalf("testserver: %s: %v", what, err)
}
