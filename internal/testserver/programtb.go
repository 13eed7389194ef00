package testserver

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// ProgramTB lets a program that is not a test (the woodpecker bench
// command, a TestMain sharing servers between benchmarks) start this
// package's servers, which take a testing.TB. It implements the methods
// those use: Fatal and Fatalf panic, and Run turns that panic back into an
// error; Cleanup functions run on Close, in reverse order; TempDir makes
// directories under one root that Close removes; Log, Logf and Errorf go to
// the log function. Any other testing.TB method panics (nil embedded TB).
type ProgramTB struct {
	testing.TB
	name string
	root string
	keep bool
	log  func(format string, args ...any)

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

type programFatal struct{ msg string }

// NewProgramTB returns a ProgramTB called name whose temporary directories
// are under a new directory of os.TempDir(), kept after Close when keep is
// set. logf receives what the servers log; nil drops it.
func NewProgramTB(name string, keep bool, logf func(format string, args ...any)) (*ProgramTB, error) {
	root, err := os.MkdirTemp("", name+"-servers-")
	if err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &ProgramTB{name: name, root: root, keep: keep, log: logf}, nil
}

// Run calls fn, returning the message of a Fatal inside it as an error.
// Call the servers' functions (Versitygw, Etcd, NewBucket, Restart...) with
// t only inside Run, from its goroutine.
func (t *ProgramTB) Run(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(programFatal)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
	}()
	fn()
	return nil
}

// Close runs the cleanups (stopping the servers) and removes the
// temporary directories unless they are kept.
func (t *ProgramTB) Close() {
	t.mu.Lock()
	fns := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	if !t.keep {
		os.RemoveAll(t.root)
	}
}

func (t *ProgramTB) Helper()      {}
func (t *ProgramTB) Name() string { return t.name }
func (t *ProgramTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *ProgramTB) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}

func (t *ProgramTB) TempDir() string {
	d, err := os.MkdirTemp(t.root, "srv-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	return d
}

func (t *ProgramTB) Logf(format string, args ...any) { t.log(format, args...) }
func (t *ProgramTB) Log(args ...any)                 { t.log("%s", fmt.Sprint(args...)) }

func (t *ProgramTB) Errorf(format string, args ...any) {
	t.fail()
	t.log(format, args...)
}

func (t *ProgramTB) Fatalf(format string, args ...any) {
	t.fail()
	panic(programFatal{fmt.Sprintf(format, args...)})
}

func (t *ProgramTB) Fatal(args ...any) { t.Fatalf("%s", fmt.Sprint(args...)) }

func (t *ProgramTB) fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}
