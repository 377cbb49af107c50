package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
)

// longTexts returns n texts that each fill the model's 256 tokens when
// truncated: 32 of them are one full CPU batch (8192 padded tokens).
func longTexts(n int) []string {
	texts := make([]string, n)
	for i := range texts {
		var sb strings.Builder
		for k := range 300 {
			fmt.Fprintf(&sb, "word%d ", (i*7919+k*104729)%5000)
		}
		texts[i] = sb.String()
	}
	return texts
}

// watched is the real encoder, telling the test when a run starts and how
// it ended.
type watched struct {
	accel.Encoder
	started chan struct{}
	ended   chan error
}

func (w *watched) Encode(ctx context.Context, b accel.Batch, vecs, norms []float32) error {
	select {
	case w.started <- struct{}{}:
	default:
	}
	err := w.Encoder.Encode(ctx, b, vecs, norms)
	select {
	case w.ended <- err:
	default:
	}
	return err
}

// watch makes the engine's encoders report to w.
func watch(w *watched) func(*engine.Options) {
	return func(o *engine.Options) {
		o.NewEncoder = func(spec accel.ModelSpec, opts accel.Options) (accel.Encoder, error) {
			enc, err := accel.NewEncoder(spec, opts)
			if err != nil {
				return nil, err
			}
			w.Encoder = enc
			return w, nil
		}
	}
}

// TestRunsStop shows that a model run does not hold its worker past its own
// deadline (Options.RunTimeout) or past a forced shutdown: ONNX Runtime is
// stopped mid-run, Encode returns the run ctx's error, and the texts fail
// at once. A full run of the same batch is timed first.
func TestRunsStop(t *testing.T) {
	const name = "all-minilm-l6-v2"
	texts := longTexts(32)
	trunc := engine.EmbedOptions{Truncate: true}
	w := &watched{started: make(chan struct{}, 1), ended: make(chan error, 1)}
	e := newEngine(t, watch(w))
	m := loadModel(t, e, name)
	if got := m.BatchOptions().RunTimeout; got != 2*time.Minute {
		t.Errorf("default RunTimeout = %v; want 2m", got)
	}
	start := time.Now()
	res, err := m.Embed(context.Background(), texts, trunc)
	if err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	if res.Tokens[0] != 256 {
		t.Fatalf("texts have %d tokens; want 256", res.Tokens[0])
	}
	<-w.started
	<-w.ended
	t.Logf("full run of %d x %d tokens: %v", len(texts), res.Tokens[0], full)

	t.Run("RunTimeout", func(t *testing.T) {
		const timeout = 100 * time.Millisecond
		w := &watched{started: make(chan struct{}, 1), ended: make(chan error, 1)}
		e := newEngine(t, func(o *engine.Options) { o.RunTimeout = timeout; watch(w)(o) })
		m := loadModel(t, e, name)
		start := time.Now()
		_, err := m.Embed(context.Background(), texts, trunc)
		took := time.Since(start)
		t.Logf("RunTimeout %v: returned after %v (%v)", timeout, took, err)
		if !errors.Is(err, batch.ErrRunTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v; want batch.ErrRunTimeout matching context.DeadlineExceeded", err)
		}
		if err := <-w.ended; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Encode returned %v; want the run ctx's context.DeadlineExceeded", err)
		}
		if took > full/4 {
			t.Errorf("returned after %v; the full run takes %v, so the run was not stopped", took, full)
		}
		// The worker is free again.
		if _, err := m.Embed(context.Background(), []string{"short"}, trunc); err != nil {
			t.Errorf("after a timed-out run: %v", err)
		}
	})

	t.Run("ForcedShutdown", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, err := m.Embed(context.Background(), texts, trunc)
			done <- err
		}()
		<-w.started
		time.Sleep(20 * time.Millisecond) // well into the run
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		serr := e.Shutdown(expired)
		shut := time.Since(start)
		err := <-done
		t.Logf("forced shutdown returned after %v (%v); the caller got %v", shut, serr, err)
		if !errors.Is(serr, context.Canceled) {
			t.Errorf("Shutdown: got %v; want context.Canceled", serr)
		}
		if err := <-w.ended; !errors.Is(err, context.Canceled) {
			t.Errorf("Encode returned %v; want the run ctx's context.Canceled", err)
		}
		if !errors.Is(err, batch.ErrAborted) || !errors.Is(err, batch.ErrClosed) {
			t.Errorf("text of the stopped run: got %v; want batch.ErrAborted", err)
		}
		if shut > full/4 {
			t.Errorf("run stopped after %v; the full run takes %v, so it was not stopped", shut, full)
		}
		if _, err := e.Embed(context.Background(), name, []string{"late"}, trunc); !errors.Is(err, engine.ErrClosed) {
			t.Errorf("after Shutdown: got %v; want ErrClosed", err)
		}
	})
}
