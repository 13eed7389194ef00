// Package testserver starts real S3-compatible servers for tests, in
// process where possible (Versitygw, a child process; FakeS3, gofakes3 in
// process); internal/testserver/etcdserver starts an embedded etcd. They
// listen on 127.0.0.1 only and are torn down by t.Cleanup. It is the one way
// tests, benchmarks, the bench module and the woodpecker bench command get
// a real store: Servers shares one server of each kind between
// sub-benchmarks, OpenBucket opens a fresh bucket on a server, and
// ProgramTB runs all of it outside a test.
package testserver
