package testserver

import (
	"sync"
	"testing"
)

// Servers starts each kind of server on first use and keeps it as long as
// owner: the way a benchmark shares one server between its sub-benchmarks
// (so that `-bench X/file` starts none). owner is a top-level *testing.B,
// or a ProgramTB for servers that outlive one benchmark. Servers is safe
// for concurrent use.
type Servers struct {
	owner testing.TB
	mu    sync.Mutex
	vgw   *S3Server
	fake  *S3Server
}

// NewServers returns a Servers whose servers live as long as owner.
func NewServers(owner testing.TB) *Servers { return &Servers{owner: owner} }

// Versitygw returns the versitygw server, starting it first (Versitygw).
func (s *Servers) Versitygw() *S3Server { return once(s, &s.vgw, Versitygw) }

// FakeS3 returns the gofakes3 server, starting it first (FakeS3).
func (s *Servers) FakeS3() *S3Server { return once(s, &s.fake, FakeS3) }

// once returns *srv, starting it with start(s.owner) if it is not yet.
func once[T any](s *Servers, srv **T, start func(testing.TB) *T) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *srv == nil {
		*srv = start(s.owner)
	}
	return *srv
}
