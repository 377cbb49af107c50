package batch

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestRunTimeout: a RunFunc that is still running RunTimeout after it
// started sees its ctx end; when it returns that ctx's error, the batch's
// items fail with ErrRunTimeout (a deadline for a transport), and the
// worker goes on with the next batch.
func TestRunTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		obs := &counter{}
		b := newBatcher(t, f, Options{MaxQueueDelay: hour, RunTimeout: 50 * time.Millisecond, Observer: obs})
		start := time.Now()
		g := submit(b, context.Background(), gateID, gateTokens, Online) // blocks until its ctx ends
		queued := submit(b, context.Background(), 7, 1, Online)
		settle(50 * time.Millisecond)
		r := recv(t, g)
		if !errors.Is(r.err, ErrRunTimeout) || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("stuck run: got %v; want ErrRunTimeout matching context.DeadlineExceeded", r.err)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Errorf("stuck run failed after %v; want RunTimeout, 50ms", d)
		}
		// The next batch runs with a fresh deadline (the queue is draining
		// when the test ends, so it does not wait for MaxQueueDelay).
		go b.Shutdown(context.Background())
		synctest.Wait()
		if r := recv(t, queued); r.err != nil || r.out != 70 {
			t.Errorf("next item: got %d, %v; want 70, nil", r.out, r.err)
		}
		if obs.runErrs != 1 {
			t.Errorf("failed runs reported: %d; want 1", obs.runErrs)
		}
	})
}

// TestRunTimeoutKeepsResults: a RunFunc that completes past its deadline
// without returning the ctx's error keeps its results; only RunFunc can
// stop its work.
func TestRunTimeoutKeepsResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.compute = 80 * time.Millisecond // ignores ctx
		b := newBatcher(t, f, Options{RunTimeout: 50 * time.Millisecond})
		if out, err := b.Submit(context.Background(), 3, 1, Online); err != nil || out != 30 {
			t.Errorf("got %d, %v; want 30, nil", out, err)
		}
	})
}

// TestAbort: a forced shutdown cancels the ctx of the batch in flight, whose
// items fail with ErrAborted (matching ErrClosed), fails every queued item
// with ErrAborted without computing it, and lets Shutdown return as soon as
// the RunFunc has returned.
func TestAbort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		obs := &counter{}
		b := newBatcher(t, f, Options{MaxBatchSize: 2, MaxQueueDelay: hour, Observer: obs})
		g := submit(b, context.Background(), gateID, gateTokens, Online) // in flight until its ctx ends
		var queued []<-chan res
		for i := range 3 {
			queued = append(queued, submit(b, context.Background(), i, 1, Priority(i%2)))
		}
		queued = append(queued, submitAll(b, context.Background(), seq(10, 3), fill(3, 1), Bulk))

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: got %v; want context.DeadlineExceeded", err)
		}
		start := time.Now()
		b.Abort()
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown after Abort: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Shutdown after Abort took %v; want 0", d)
		}
		synctest.Wait()
		if r := recv(t, g); !errors.Is(r.err, ErrAborted) || !errors.Is(r.err, ErrClosed) {
			t.Errorf("batch in flight: got %v; want ErrAborted matching ErrClosed", r.err)
		}
		for i, ch := range queued {
			if r := recv(t, ch); !errors.Is(r.err, ErrAborted) {
				t.Errorf("queued %d: got %v; want ErrAborted", i, r.err)
			}
		}
		if ins := f.inputs(); len(ins) != 0 {
			t.Errorf("computed after Abort: %v", ins)
		}
		if n := obs.droppedCount(ErrAborted); n < 3 {
			t.Errorf("aborted items reported dropped: %d; want every queued item that reached a worker", n)
		}
		if _, err := b.Submit(context.Background(), 1, 1, Online); !errors.Is(err, ErrClosed) {
			t.Errorf("Submit after Abort: got %v; want ErrClosed", err)
		}
		b.Abort() // again: a no-op
	})
}
