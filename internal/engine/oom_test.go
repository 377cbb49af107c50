package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
)

// smallGPU wraps a real CPU encoder and pretends to be a GPU with little
// memory: a batch of more than maxRows rows, or with rows longer than
// maxSeq tokens, fails with accel.ErrOutOfMemory, as ONNX Runtime's CUDA
// arena does when a batch does not fit.
type smallGPU struct {
	accel.Encoder
	maxRows, maxSeq int
	runs, ooms      *atomic.Int64
}

func (g smallGPU) Device() accel.Device {
	return accel.Device{Provider: accel.ProviderCUDA, Requested: accel.ProviderCUDA}
}

func (g smallGPU) Encode(ctx context.Context, b accel.Batch, vecs, norms []float32) error {
	g.runs.Add(1)
	if b.Size > g.maxRows || b.SeqLen > g.maxSeq {
		g.ooms.Add(1)
		return fmt.Errorf("%w: Failed to allocate memory for requested buffer of size %d", accel.ErrOutOfMemory, b.Size*b.SeqLen*384*4)
	}
	return g.Encoder.Encode(ctx, b, vecs, norms)
}

// deviceEvents counts the engine's device events; it is the model's batch
// observer.
type deviceEvents struct {
	splits, cpu atomic.Int64
	failed      atomic.Int64
}

func (d *deviceEvents) BatchRun(_, _, _ int, _, _ time.Duration, err error) {
	if err != nil {
		d.failed.Add(1)
	}
}
func (d *deviceEvents) QueueDepth(int, int) {}
func (d *deviceEvents) Dropped(error)       {}
func (d *deviceEvents) OOMSplit()           { d.splits.Add(1) }
func (d *deviceEvents) CPURetry()           { d.cpu.Add(1) }

// TestOutOfMemorySplits checks the engine's answer to a device that runs
// out of memory: the batch is split in halves until it fits, a text that
// fits nowhere on the device runs on the CPU, no text fails, and the
// vectors equal those of an unconstrained run.
func TestOutOfMemorySplits(t *testing.T) {
	texts := []string{
		"a cat sits on the mat", "the stock market fell today", "a kitten rests on a rug",
		strings.Repeat("a long text that will not fit on the small device ", 6),
		"one", "two words", "three little words", "the quick brown fox jumps over the lazy dog",
	}
	want, err := newEngine(t, nil).Embed(context.Background(), "all-minilm-l6-v2", texts, engine.EmbedOptions{Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	var runs, ooms atomic.Int64
	ev := &deviceEvents{}
	var created []accel.Provider
	e := newEngine(t, func(o *engine.Options) {
		o.Batch.MaxBatchSize = 8
		o.Observer = func(string, string) batch.Observer { return ev }
		o.NewEncoder = func(spec accel.ModelSpec, ao accel.Options) (accel.Encoder, error) {
			created = append(created, ao.Provider)
			cpuOpts := ao
			cpuOpts.Provider = accel.ProviderCPU
			enc, err := accel.NewEncoder(spec, cpuOpts)
			if err != nil || ao.Provider == accel.ProviderCPU {
				return enc, err
			}
			return smallGPU{Encoder: enc, maxRows: 2, maxSeq: 32, runs: &runs, ooms: &ooms}, nil
		}
		o.Accel.Provider = accel.ProviderCUDA
	})
	m := loadModel(t, e, "all-minilm-l6-v2")
	got, err := m.Embed(context.Background(), texts, engine.EmbedOptions{Truncate: true})
	if err != nil {
		t.Fatalf("embed on a small device: %v", err)
	}
	for i := range texts {
		if c := cosine(got.Vectors[i], want.Vectors[i]); c < 0.99999 {
			t.Errorf("text %d: cos(split, whole) = %.7f; want >= 0.99999", i, c)
		}
	}
	if ooms.Load() == 0 || ev.splits.Load() == 0 {
		t.Errorf("out-of-memory runs %d, splits %d; want both > 0", ooms.Load(), ev.splits.Load())
	}
	if ev.cpu.Load() != 1 {
		t.Errorf("CPU retries = %d; want 1 (the one long text)", ev.cpu.Load())
	}
	if ev.failed.Load() != 0 {
		t.Errorf("%d batches failed; want 0", ev.failed.Load())
	}
	if len(created) != 2 || created[0] != accel.ProviderCUDA || created[1] != accel.ProviderCPU {
		t.Errorf("encoders created for %v; want [cuda cpu] (the CPU one on first need)", created)
	}
	t.Logf("%d device runs, %d out of memory, %d splits, %d CPU retries", runs.Load(), ooms.Load(), ev.splits.Load(), ev.cpu.Load())
}
