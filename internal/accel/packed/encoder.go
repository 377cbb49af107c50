package packed

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/embedd/embedd/internal/accel"
)

// Encoder runs the packed forward pass on the CPU. It implements
// accel.Encoder; EncodeQuantized and Forward give the truncated and int8
// outputs of the pool kernel too. It is safe for concurrent use: each call
// takes its own scratch buffers from a pool, and the weights are only read.
type Encoder struct {
	w       *Weights
	mode    Mode
	checked sync.Once
	bad     error     // w.Validate's result, once checked
	scratch sync.Pool // *scratch
	closed  atomic.Bool
}

var _ accel.Encoder = (*Encoder)(nil)

// scratch holds one call's packed batch and activations.
type scratch struct {
	batch             Batch
	x, qkv, ctx, y, f []float32
	attn              [][]float32 // per worker: attention's key/value buffer
}

// NewEncoder returns an Encoder of w pooling with mode. w is checked (see
// Weights.Validate) on the first call that runs it, which fails, as every
// later call does, if w is malformed; w must not change afterwards.
func NewEncoder(w *Weights, mode Mode) *Encoder {
	return &Encoder{w: w, mode: mode}
}

// Weights returns the weights the encoder runs.
func (e *Encoder) Weights() *Weights { return e.w }

// Mode returns the encoder's pooling.
func (e *Encoder) Mode() Mode { return e.mode }

// Hidden is the width of the hidden states and of Encode's vectors.
func (e *Encoder) Hidden() int { return e.w.Hidden() }

// Device reports the CPU.
func (e *Encoder) Device() accel.Device {
	return accel.Device{Provider: accel.ProviderCPU, Requested: accel.ProviderCPU}
}

// Close marks the encoder closed; later calls fail with ErrClosed. It
// always returns nil.
func (e *Encoder) Close() error {
	e.closed.Store(true)
	return nil
}

// Encode runs the model on b and writes each row's pooled vector,
// L2-normalized, into vecs[i*Hidden() : (i+1)*Hidden()] and its norm before
// normalization into norms[i], as accel.Encoder says. A malformed batch
// fails with an error matching ErrBadBatch (and accel.ErrBadBatch) naming
// the row and position.
func (e *Encoder) Encode(ctx context.Context, b accel.Batch, vecs, norms []float32) error {
	return e.EncodeQuantized(ctx, b, e.Hidden(), vecs, norms, nil, nil)
}

// EncodeQuantized is Encode with the output truncated to its first dims
// values before normalization (Matryoshka), written to out[i*dims :
// (i+1)*dims], and, when codes is not nil, quantized to int8: codes[i*dims
// : (i+1)*dims] and scales[i] are exactly quant.QuantizeInt8 of row i of
// out. It returns ctx's error if ctx ends between layers.
func (e *Encoder) EncodeQuantized(ctx context.Context, b accel.Batch, dims int, out, norms []float32, codes []int8, scales []float32) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := e.getScratch()
	defer e.scratch.Put(s)
	if err := Pack(&s.batch, b, e.w.Config.MaxPositionEmbeddings); err != nil {
		return err
	}
	return e.forward(ctx, &s.batch, dims, out, norms, codes, scales, s)
}

// Forward runs the model on the packed batch b and pools it as
// EncodeQuantized does: out[i*dims : (i+1)*dims] and norms[i] for each text
// i, and codes and scales when codes is not nil. b is checked with
// Batch.Validate first.
func (e *Encoder) Forward(b *Batch, dims int, out, norms []float32, codes []int8, scales []float32) error {
	if e.closed.Load() {
		return ErrClosed
	}
	s := e.getScratch()
	defer e.scratch.Put(s)
	return e.forward(context.Background(), b, dims, out, norms, codes, scales, s)
}

func (e *Encoder) getScratch() *scratch {
	if s, ok := e.scratch.Get().(*scratch); ok {
		return s
	}
	return &scratch{}
}

// check validates the weights once, the mode, the batch and the outputs.
func (e *Encoder) check(b *Batch, dims int, out, norms []float32, codes []int8, scales []float32) error {
	e.checked.Do(func() { e.bad = e.w.Validate() })
	if e.bad != nil {
		return e.bad
	}
	if !e.mode.valid() {
		return fmt.Errorf("%w: %v; want %v or %v", ErrBadMode, e.mode, ModeMean, ModeCLS)
	}
	if err := b.Validate(e.w.Config); err != nil {
		return err
	}
	n, h := b.Texts(), e.w.Hidden()
	switch {
	case dims < 1 || dims > h:
		return fmt.Errorf("%w: dims %d; want 1..%d (hidden size)", ErrBadOutput, dims, h)
	case len(out) < n*dims || len(norms) < n:
		return fmt.Errorf("%w: %d texts of %d dims need %d values and %d norms; have %d and %d",
			ErrBadOutput, n, dims, n*dims, n, len(out), len(norms))
	case codes != nil && (len(codes) < n*dims || len(scales) < n):
		return fmt.Errorf("%w: %d texts of %d dims need %d codes and %d scales; have %d and %d",
			ErrBadOutput, n, dims, n*dims, n, len(codes), len(scales))
	}
	return nil
}

// forward runs the pass of the package doc with s's buffers.
func (e *Encoder) forward(ctx context.Context, b *Batch, dims int, out, norms []float32, codes []int8, scales []float32, s *scratch) error {
	if err := e.check(b, dims, out, norms, codes, scales); err != nil {
		return err
	}
	w := e.w
	t, h, inter := b.Tokens(), w.Hidden(), w.Config.IntermediateSize
	heads, hd, eps := w.Heads(), w.HeadDim(), w.Eps()
	scale := float32(1 / math.Sqrt(float64(hd)))
	s.x, s.qkv, s.ctx = grow(s.x, t*h), grow(s.qkv, t*3*h), grow(s.ctx, t*h)
	s.y, s.f = grow(s.y, t*h), grow(s.f, t*inter)
	x, qkv, cx, y, f := s.x, s.qkv, s.ctx, s.y, s.f

	// The row-wise kernels run on ranges of tokens in parallel: each row
	// is computed on its own, so the split does not change the result.
	parallel(t, h, func(lo, hi int) { EmbedLN(b.IDs[lo:hi], b.Types[lo:hi], b.Pos[lo:hi], w, x[lo*h:hi*h]) })
	for i := range w.Layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		l := &w.Layers[i]
		Linear(x, t, l.QKV, 3*h, h, qkv)
		e.attention(s, qkv, l.QKVBias, b.Start, heads, hd, scale, cx)
		Linear(cx, t, l.Out, h, h, y)
		parallel(t, h, func(lo, hi int) {
			BiasResidualLN(y[lo*h:hi*h], l.OutBias, x[lo*h:hi*h], l.LN1Gamma, l.LN1Beta, eps, h)
		})
		Linear(x, t, l.FF1, inter, h, f)
		parallel(t, inter, func(lo, hi int) { BiasGELU(f[lo*inter:hi*inter], l.FF1Bias, hi-lo, inter) })
		Linear(f, t, l.FF2, h, inter, y)
		parallel(t, h, func(lo, hi int) {
			BiasResidualLN(y[lo*h:hi*h], l.FF2Bias, x[lo*h:hi*h], l.LN2Gamma, l.LN2Beta, eps, h)
		})
	}
	Pool(x, b.Start, h, e.mode, dims, out, norms, codes, scales)
	for i, nv := range norms[:b.Texts()] {
		if math.IsNaN(float64(nv)) || math.IsInf(float64(nv), 0) {
			return fmt.Errorf("%w: row %d: pooled vector has norm %g", ErrNonFinite, i, nv)
		}
	}
	return nil
}

// attention runs Attention over the (text, head) pairs, split between up to
// GOMAXPROCS goroutines when there is enough work.
func (e *Encoder) attention(s *scratch, qkv, bias []float32, start []int32, heads, hd int, scale float32, ctx []float32) {
	jobs := heads * (len(start) - 1)
	workers := min(runtime.GOMAXPROCS(0), jobs)
	if tokens := int(start[len(start)-1]); tokens*hd < 1<<12 {
		workers = 1 // too little work to be worth a goroutine
	}
	for len(s.attn) < workers {
		s.attn = append(s.attn, nil)
	}
	if workers <= 1 {
		s.attn[0] = attention(qkv, bias, start, heads, hd, scale, ctx, s.attn[0], 0, jobs)
		return
	}
	var wg sync.WaitGroup
	for k := range workers {
		wg.Go(func() {
			s.attn[k] = attention(qkv, bias, start, heads, hd, scale, ctx, s.attn[k], k*jobs/workers, (k+1)*jobs/workers)
		})
	}
	wg.Wait()
}

// parallel calls fn on ranges covering rows 0..rows-1, on up to GOMAXPROCS
// goroutines when rows·width is worth splitting.
func parallel(rows, width int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), rows)
	if rows*width < minParallelWork/16 {
		workers = 1
	}
	if workers <= 1 {
		fn(0, rows)
		return
	}
	var wg sync.WaitGroup
	for k := 1; k < workers; k++ {
		wg.Go(func() { fn(k*rows/workers, (k+1)*rows/workers) })
	}
	fn(0, rows/workers)
	wg.Wait()
}
