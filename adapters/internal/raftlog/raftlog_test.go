package raftlog_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woodpecker-wal/woodpecker/adapters/internal/raftlog"
	"github.com/woodpecker-wal/woodpecker/internal/retry"
	"github.com/woodpecker-wal/woodpecker/logstore"
	metamem "github.com/woodpecker-wal/woodpecker/meta/mem"
	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/objstore/fault"
	objmem "github.com/woodpecker-wal/woodpecker/objstore/mem"
	"github.com/woodpecker-wal/woodpecker/wal"
)

func client(t *testing.T) logstore.Client {
	t.Helper()
	c, err := wal.Open(context.Background(), wal.Config{Bucket: objmem.New(), Meta: metamem.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LogStore()
}

// Processes racing to open a log that does not exist yet all get it.
func TestOpenOrCreateRace(t *testing.T) {
	c := client(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			l, err := raftlog.OpenOrCreate(context.Background(), c, "raft")
			if err == nil && l.Name() != "raft" {
				err = errors.New("wrong log " + l.Name())
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestCallTimeout(t *testing.T) {
	l := client(t).Limits()
	if d, err := raftlog.CallTimeout("x", 0, l); err != nil || d != l.OperationBound {
		t.Errorf("CallTimeout(0) = %v, %v; want the OperationBound %v", d, err, l.OperationBound)
	}
	if d, err := raftlog.CallTimeout("x", l.RetryWindow, l); err != nil || d != l.RetryWindow {
		t.Errorf("CallTimeout(RetryWindow) = %v, %v", d, err)
	}
	_, err := raftlog.CallTimeout("x", l.RetryWindow-time.Millisecond, l)
	if err == nil || !strings.Contains(err.Error(), "x: Options.CallTimeout") || !strings.Contains(err.Error(), "RetryBudget") {
		t.Errorf("CallTimeout below the retry window = %v, want an error naming the option and the budget", err)
	}
	if _, err := raftlog.CallTimeout("x", -time.Second, l); err == nil {
		t.Error("a negative CallTimeout was accepted")
	}
}

// Do stops at a permanent failure, retries a transient one, and gives up
// when the policy does.
func TestRetryDo(t *testing.T) {
	ctx := context.Background()
	errTransient, errPermanent := errors.New("transient"), errors.New("permanent")
	r := raftlog.Retry{Policy: retry.Policy{MaxRetries: 3}, Permanent: func(err error) bool { return err == errPermanent }}
	calls := 0
	n, err := r.Do(ctx, func(context.Context) error {
		if calls++; calls < 3 {
			return errTransient
		}
		return nil
	})
	if err != nil || n != 3 || calls != 3 {
		t.Errorf("Do with two transient failures = %d attempts, %v (calls %d); want 3, nil", n, err, calls)
	}
	calls = 0
	n, err = r.Do(ctx, func(context.Context) error { calls++; return errPermanent })
	if err != errPermanent || n != 1 || calls != 1 {
		t.Errorf("Do with a permanent failure = %d attempts, %v (calls %d); want 1 and the error", n, err, calls)
	}
	calls = 0
	n, err = r.Do(ctx, func(context.Context) error { calls++; return errTransient })
	if err != errTransient || n != 4 || calls != 4 {
		t.Errorf("Do failing for ever with 3 retries = %d attempts, %v (calls %d); want 4", n, err, calls)
	}
	var deadline bool
	_, err = raftlog.Retry{AttemptTimeout: time.Millisecond, Permanent: func(error) bool { return true }}.Do(ctx,
		func(ctx context.Context) error { _, deadline = ctx.Deadline(); return errTransient })
	if !deadline || err != errTransient {
		t.Errorf("AttemptTimeout: attempt had a deadline %v, err %v", deadline, err)
	}
}

// A blob reads back only with the sum it was written with; a flipped bit,
// a truncation or the wrong sum is ErrCorrupt, and no data comes back.
func TestBlobsAreChecked(t *testing.T) {
	ctx := context.Background()
	b := objmem.New()
	data := []byte("snapshot state")
	sum, n, err := raftlog.WriteBlob(ctx, raftlog.Retry{}, b, "snap/1", data)
	if err != nil || n != 1 || sum != raftlog.SumOf(data) {
		t.Fatalf("WriteBlob = %v, %d, %v", sum, n, err)
	}
	got, err := raftlog.ReadBlob(ctx, raftlog.Retry{}, b, "snap/1", sum)
	if err != nil || string(got) != string(data) {
		t.Fatalf("ReadBlob = %q, %v", got, err)
	}
	for name, put := range map[string][]byte{"flipped": []byte("snapshot statf"), "truncated": data[:5]} {
		if _, err := b.Put(ctx, "snap/"+name, strings.NewReader(string(put)), int64(len(put))); err != nil {
			t.Fatal(err)
		}
		got, err := raftlog.ReadBlob(ctx, raftlog.Retry{}, b, "snap/"+name, sum)
		if !errors.Is(err, logstore.ErrCorrupt) || got != nil || !strings.Contains(err.Error(), "snap/"+name) {
			t.Errorf("%s blob: ReadBlob = %q, %v; want nil and ErrCorrupt naming the key", name, got, err)
		}
	}
	if _, err := raftlog.ReadBlob(ctx, raftlog.Retry{}, b, "snap/missing", sum); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("missing blob: %v, want ErrNotFound at once", err)
	}
}

// A failed PUT is retried by the policy until it lands.
func TestWriteBlobRetries(t *testing.T) {
	ctx := context.Background()
	fb := fault.Wrap(objmem.New(), 1)
	fails := 2
	fb.SetHook(func(op fault.Op, _ string) fault.Action {
		if op&fault.OpWrite != 0 && fails > 0 {
			fails--
			return fault.Fail
		}
		return fault.Pass
	})
	_, n, err := raftlog.WriteBlob(ctx, raftlog.Retry{Policy: retry.Policy{Initial: time.Millisecond, MaxRetries: 5}}, fb, "snap/1", []byte("x"))
	if err != nil || n != 3 {
		t.Fatalf("WriteBlob through two failed PUTs = %d attempts, %v; want 3, nil", n, err)
	}
}

// hangOnce hangs its first PUT until the request's context ends.
type hangOnce struct {
	*objmem.Bucket
	puts atomic.Int32
}

func (h *hangOnce) Put(ctx context.Context, key string, r io.Reader, size int64) (objstore.ObjectInfo, error) {
	if h.puts.Add(1) == 1 {
		<-ctx.Done()
		return objstore.ObjectInfo{}, ctx.Err()
	}
	return h.Bucket.Put(ctx, key, r, size)
}

// An attempt cut short by AttemptTimeout is retried, though its error is
// context.DeadlineExceeded, which a permanent-error test may name.
func TestWriteBlobRetriesATimedOutAttempt(t *testing.T) {
	b := &hangOnce{Bucket: objmem.New()}
	r := raftlog.Retry{Policy: retry.Policy{Initial: time.Millisecond, Budget: 5 * time.Second}, AttemptTimeout: 20 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, n, err := raftlog.WriteBlob(ctx, r, b, "snap/x", []byte("data")); err != nil || n != 2 {
		t.Fatalf("WriteBlob with a first PUT that hangs = %d attempts (%d PUTs), %v; want 2, nil", n, b.puts.Load(), err)
	}
}

// OnRetry is called before each retry, not after the last failure.
func TestRetryOnRetryOnlyBeforeARetry(t *testing.T) {
	var calls []int
	r := raftlog.Retry{Policy: retry.Policy{MaxRetries: 1}, OnRetry: func(attempt int, _ error) { calls = append(calls, attempt) }}
	n, _ := r.Do(context.Background(), func(context.Context) error { return errors.New("down") })
	if n != 2 || len(calls) != 1 || calls[0] != 1 {
		t.Errorf("Do with one retry allowed: %d attempts, OnRetry called for %v; want 2 attempts, OnRetry for [1]", n, calls)
	}
}
