package wal_test

import (
	"testing"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/embedded"
	"github.com/woodpecker-wal/woodpecker/conformance/walsuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/internal/teststores"
	"github.com/woodpecker-wal/woodpecker/wal"
)

func TestConformanceMem(t *testing.T) {
	walsuite.TestWAL(t, teststores.Mem, suiteClient, conformance.Options{Checks: 100})
}

// suiteClient is the engine as the suite drives it: small fragments and
// segments, fast retries, up to eight of them.
var suiteClient = embedded.Client(func() wal.Config {
	cfg := embedded.Small()
	cfg.MaxFlushRetries = 8
	return cfg
}())

func TestConformanceFile(t *testing.T) {
	walsuite.TestWAL(t, teststores.File, suiteClient, conformance.Options{Checks: 30})
}

// TestConformanceVersitygwEtcd runs the suite on the real servers: S3 on
// versitygw, metadata in an embedded etcd.
func TestConformanceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), etcdserver.Start(t)
	walsuite.TestWAL(t, teststores.S3Etcd(s3, etcd, "case"), suiteClient, conformance.Options{Checks: 10})
}

func TestZombieRaceVersitygwEtcd(t *testing.T) {
	s3, etcd := testserver.Versitygw(t), etcdserver.Start(t)
	b, m := teststores.S3Etcd(s3, etcd, "zombie")(t)
	zombieRace(t, b, m, 8)
}
