//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/bertonnx"
)

// tinyConfig is a small BERT for the kernel tests' fixture.
func tinyConfig() packed.Config {
	c := bertonnx.DefaultConfig()
	c.VocabSize = 97
	c.HiddenSize = 64
	c.NumHiddenLayers = 2
	c.NumAttentionHeads = 2
	c.IntermediateSize = 128
	c.MaxPositionEmbeddings = 512
	c.TypeVocabSize = 2
	return c
}

// randSlice returns n values drawn from N(mean, sd²).
func randSlice(rng *rand.Rand, n int, mean, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + sd*rng.NormFloat64())
	}
	return v
}

// randWeights returns random weights of config c, scaled like a trained
// BERT's (unit-ish hidden states, gammas near 1).
func randWeights(c packed.Config, seed uint64) *packed.Weights {
	rng := rand.New(rand.NewPCG(seed, 7))
	h, in := c.HiddenSize, c.IntermediateSize
	w := &packed.Weights{
		Config:     c,
		Word:       randSlice(rng, c.VocabSize*h, 0, 0.5),
		PosEmb:     randSlice(rng, c.MaxPositionEmbeddings*h, 0, 0.2),
		TypeEmb:    randSlice(rng, c.TypeVocabSize*h, 0, 0.2),
		EmbLNGamma: randSlice(rng, h, 1, 0.1),
		EmbLNBeta:  randSlice(rng, h, 0, 0.1),
		Layers:     make([]packed.Layer, c.NumHiddenLayers),
	}
	ws := 1 / math.Sqrt(float64(h))
	for i := range w.Layers {
		w.Layers[i] = packed.Layer{
			QKV: randSlice(rng, 3*h*h, 0, ws), QKVBias: randSlice(rng, 3*h, 0, 0.1),
			Out: randSlice(rng, h*h, 0, ws), OutBias: randSlice(rng, h, 0, 0.1),
			LN1Gamma: randSlice(rng, h, 1, 0.1), LN1Beta: randSlice(rng, h, 0, 0.1),
			FF1: randSlice(rng, in*h, 0, ws), FF1Bias: randSlice(rng, in, 0, 0.1),
			FF2: randSlice(rng, h*in, 0, 1/math.Sqrt(float64(in))), FF2Bias: randSlice(rng, h, 0, 0.1),
			LN2Gamma: randSlice(rng, h, 1, 0.1), LN2Beta: randSlice(rng, h, 0, 0.1),
		}
	}
	return w
}

// fixture is an Encoder of tiny random weights whose context, module and
// first worker the kernel tests launch single kernels with.
type fixture struct {
	e  *Encoder
	wk *worker
}

var (
	fixtureOnce sync.Once
	fixtureEnc  *Encoder
	fixtureErr  error
)

// gpu returns the shared fixture, or fails the test.
func gpu(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureEnc, fixtureErr = New(randWeights(tinyConfig(), 1), Options{Workers: 1})
	})
	if fixtureErr != nil {
		t.Fatalf("fixture: New(tiny random weights): %v", fixtureErr)
	}
	return &fixture{e: fixtureEnc, wk: fixtureEnc.all[0]}
}

// kernels returns the entries of one storage type.
func (g *fixture) kernels(fp16 bool) *kernelSet {
	if fp16 {
		return &g.e.k[1]
	}
	return &g.e.k[0]
}

// onGPU runs fn with the OS thread locked and the fixture's context
// current, then frees the device buffers fn allocated with dev.
func (g *fixture) onGPU(t *testing.T, fn func(d *devAlloc)) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(g.e.ctx); err != nil {
		t.Fatalf("cuCtxSetCurrent: %v", err)
	}
	d := &devAlloc{t: t, wk: g.wk}
	defer d.freeAll()
	fn(d)
}

// devAlloc allocates and copies test buffers; the context must be current.
type devAlloc struct {
	t    *testing.T
	wk   *worker
	ptrs []cu.DevicePtr
}

func (d *devAlloc) freeAll() {
	// Nothing may still be running on them.
	if err := d.wk.stream.Synchronize(); err != nil {
		d.t.Errorf("cuStreamSynchronize: %v", err)
	}
	for _, p := range d.ptrs {
		if err := cu.MemFree(p); err != nil {
			d.t.Errorf("cuMemFree: %v", err)
		}
	}
	d.ptrs = nil
}

// alloc returns bytes of device memory, filled with 0xff bytes (NaN as
// float32 and fp16) so that a value a kernel fails to write shows.
func (d *devAlloc) alloc(bytes int64) cu.DevicePtr {
	d.t.Helper()
	p, err := cu.MemAlloc(max(bytes, 1))
	if err != nil {
		d.t.Fatalf("cuMemAlloc(%d): %v", bytes, err)
	}
	d.ptrs = append(d.ptrs, p)
	if err := cu.MemsetD8(p, 0xff, max(bytes, 1)); err != nil {
		d.t.Fatalf("cuMemsetD8: %v", err)
	}
	// The memset runs on the legacy stream, asynchronously; the worker's
	// non-blocking stream would not wait for it.
	if err := cu.Synchronize(); err != nil {
		d.t.Fatalf("cuCtxSynchronize: %v", err)
	}
	return p
}

// upload copies v to new device memory and waits until it is there (a copy
// from pageable memory may return before its DMA has finished, and the
// worker's non-blocking stream does not wait for the legacy stream).
func upload[T any](d *devAlloc, v []T) cu.DevicePtr {
	d.t.Helper()
	var z T
	bytes := int64(len(v)) * int64(unsafe.Sizeof(z))
	p := d.alloc(bytes)
	if len(v) > 0 {
		if err := cu.MemcpyHtoD(p, unsafe.Pointer(&v[0]), bytes); err != nil {
			d.t.Fatalf("cuMemcpyHtoD: %v", err)
		}
	}
	if err := cu.Synchronize(); err != nil {
		d.t.Fatalf("cuCtxSynchronize: %v", err)
	}
	return p
}

// download waits for the worker's stream and copies n values back.
func download[T any](d *devAlloc, p cu.DevicePtr, n int) []T {
	d.t.Helper()
	if err := d.wk.stream.Synchronize(); err != nil {
		d.t.Fatalf("run: cuStreamSynchronize: %v", err)
	}
	v := make([]T, n)
	if n > 0 {
		var z T
		if err := cu.MemcpyDtoH(unsafe.Pointer(&v[0]), p, int64(n)*int64(unsafe.Sizeof(z))); err != nil {
			d.t.Fatalf("cuMemcpyDtoH: %v", err)
		}
	}
	return v
}

// store uploads v in the storage type: float32, or fp16 bits.
func store(d *devAlloc, v []float32, fp16 bool) cu.DevicePtr {
	if !fp16 {
		return upload(d, v)
	}
	h := make([]uint16, len(v))
	for i, x := range v {
		h[i] = F32ToF16(x)
	}
	return upload(d, h)
}

// load downloads n values of the storage type as float32.
func load(d *devAlloc, p cu.DevicePtr, n int, fp16 bool) []float32 {
	if !fp16 {
		return download[float32](d, p, n)
	}
	h := download[uint16](d, p, n)
	v := make([]float32, n)
	for i, x := range h {
		v[i] = F16ToF32(x)
	}
	return v
}

// rounded returns v as the kernels see it in the storage type: v itself,
// or each value rounded to fp16.
func rounded(v []float32, fp16 bool) []float32 {
	if !fp16 {
		return v
	}
	r := make([]float32, len(v))
	for i, x := range v {
		r[i] = roundF16(x)
	}
	return r
}

func precName(fp16 bool) string {
	if fp16 {
		return "f16"
	}
	return "f32"
}

// tol is a comparison tolerance: |got - want| <= abs + rel·|want|.
type tol struct{ abs, rel float64 }

// compare fails the test if got and want differ beyond tl anywhere (a NaN
// always differs), naming the kernel, the count, the first and the worst
// element as [row, col] of cols-wide rows, with got and want.
func compare(t *testing.T, what string, got, want []float32, cols int, tl tol) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	bad, first, worst := 0, -1, -1
	worstX := 0.0
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		lim := tl.abs + tl.rel*math.Abs(float64(want[i]))
		if d <= lim {
			continue
		}
		bad++
		if first < 0 {
			first = i
		}
		x := d / lim
		if math.IsNaN(d) {
			x = math.Inf(1)
		}
		if worst < 0 || x > worstX {
			worst, worstX = i, x
		}
	}
	if bad == 0 {
		return
	}
	at := func(i int) string { return fmt.Sprintf("index %d [%d, %d]", i, i/cols, i%cols) }
	t.Errorf("%s: %d of %d values differ beyond abs %g + rel %g; first at %s: got %v, want %v; worst at %s: got %v, want %v",
		what, bad, len(want), tl.abs, tl.rel, at(first), got[first], want[first], at(worst), got[worst], want[worst])
}

// startOf returns the packed offsets of texts of the given lengths.
func startOf(lengths ...int) []int32 {
	s := make([]int32, len(lengths)+1)
	for i, n := range lengths {
		s[i+1] = s[i] + int32(n)
	}
	return s
}

// padded builds a right-padded batch of token id rows (type ids 0).
func padded(rows [][]int32) accel.Batch {
	seq := 0
	for _, r := range rows {
		seq = max(seq, len(r))
	}
	b := accel.Batch{Size: len(rows), SeqLen: seq, IDs: make([]int64, len(rows)*seq), Mask: make([]int64, len(rows)*seq)}
	for i, r := range rows {
		for j, id := range r {
			b.IDs[i*seq+j] = int64(id)
			b.Mask[i*seq+j] = 1
		}
	}
	return b
}
