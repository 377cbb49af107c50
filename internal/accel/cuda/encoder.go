//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/cudakernels"
	"github.com/embedd/embedd/internal/accel/packed"
)

// Errors of this package, besides those of accel and packed it wraps
// (accel.ErrOutOfMemory, packed.ErrBadBatch, packed.ErrBadOutput, ...).
var (
	// ErrUnavailable reports that the native encoder cannot run here: no
	// such CUDA device, a device older than the kernels' PTX target, no
	// cuBLAS that loads (the reason names both sonames and dlerror()), or
	// a model spec without safetensors weights.
	ErrUnavailable = errors.New("cuda: native encoder unavailable")
	// ErrSelfCheck reports a GPU result that disagrees with the CPU twin at
	// load (Options.SelfCheck).
	ErrSelfCheck = errors.New("cuda: self-check against the CPU twin failed")
	// ErrClosed reports use of an Encoder after Close.
	ErrClosed = errors.New("cuda: encoder closed")
)

// Defaults of Options.
const (
	DefaultWorkers   = 2
	DefaultMaxTokens = 16384 // a quarter of the engine's GPU token budget per run (accel.DefaultBatch)
)

// maxGridYZ is the largest y or z dimension of a grid: attention's grid is
// (blocks, heads, texts), so a chunk holds at most this many texts.
const maxGridYZ = 65535

// Options configures New.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// FP16 stores weights and activations in fp16 (weights rounded to
	// nearest even on the host) with float32 accumulation in every kernel
	// and GEMM. false: float32 throughout, TF32 off.
	FP16 bool
	// Mode is the pooling: packed.ModeMean or packed.ModeCLS.
	Mode packed.Mode
	// Workers is the number of Encode calls that run at once, each on its
	// own stream with its own cuBLAS handle and buffers. Default
	// DefaultWorkers.
	Workers int
	// MaxTokens is the number of packed tokens the buffers of a worker
	// hold; a batch with more is run in chunks of whole texts. Default
	// DefaultMaxTokens; never less than the model's max_position_embeddings
	// (so that any text fits), to which a smaller value is raised.
	MaxTokens int
	// SelfCheck, at load, runs four fixed token sequences of different
	// lengths on the GPU and with the CPU twin (packed.Encoder, float32)
	// and fails New with ErrSelfCheck if a cosine is below 0.999 (FP16) or
	// 0.9999 (float32).
	SelfCheck bool
}

// kernelSet holds the entries of one storage type.
type kernelSet struct {
	fp16                                               bool
	embedLN, biasGELU, biasResidualLN, attention, pool cu.Function
}

// ks returns the entries of the encoder's storage type.
func (e *Encoder) ks() *kernelSet {
	if e.o.FP16 {
		return &e.k[1]
	}
	return &e.k[0]
}

// devLayer holds one layer's weights on the device (storage type).
type devLayer struct {
	qkv, qkvBias, out, outBias, ln1Gamma, ln1Beta cu.DevicePtr
	ff1, ff1Bias, ff2, ff2Bias, ln2Gamma, ln2Beta cu.DevicePtr
}

// Encoder runs a BERT encoder on one CUDA device. It implements
// accel.Encoder, and EncodeQuantized. It is safe for concurrent use: each
// call takes one of Options.Workers workers (stream, cuBLAS handle, device
// and pinned host buffers) and waits, or returns its context's error, while
// all are busy.
type Encoder struct {
	o   Options
	cfg packed.Config

	hidden, heads, headDim, inter int
	eps, scale                    float32
	maxTexts                      int   // texts per chunk
	elem                          int64 // bytes per stored element: 4 or 2
	dtype                         int   // cudaR32F or cudaR16F
	mathMode                      int   // cuBLAS math mode of every handle

	dev      cu.Device
	ctx      cu.CUContext // the device's primary context, retained
	retained bool
	mod      cu.Module
	loaded   bool
	k        [2]kernelSet // [0]: _f32 entries, [1]: _f16
	blas     *cublasLib
	blasInfo string // "libcublas.so.12 12.9.1"

	weights                                  arena
	word, posEmb, typeEmb, embGamma, embBeta cu.DevicePtr
	layers                                   []devLayer

	all  []*worker
	free chan *worker
	done chan struct{}

	closeOnce sync.Once
	closeErr  error
}

var _ accel.Encoder = (*Encoder)(nil)

// New uploads w to the device o.Device (once: float32 as is, or rounded to
// fp16), JIT-loads the kernels, opens cuBLAS and allocates o.Workers
// workers; with o.SelfCheck it then compares the GPU with the CPU twin. w
// is not kept: the caller may drop it once New returns. An allocation the
// device cannot satisfy fails with an error matching accel.ErrOutOfMemory;
// no device, an unsupported one or no cuBLAS with one matching
// ErrUnavailable. On error everything New allocated is released.
func New(w *packed.Weights, o Options) (*Encoder, error) {
	if w == nil {
		return nil, fmt.Errorf("cuda: %w: nil weights", packed.ErrBadWeights)
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("cuda: %w", err)
	}
	c := w.Config
	// The kernels trap on larger sizes, which would poison the context:
	// refuse such a model before touching the device.
	if h, d := w.Hidden(), w.HeadDim(); h > cudakernels.MaxHidden || d > cudakernels.MaxHeadDim {
		return nil, fmt.Errorf("cuda: %w: hidden_size %d (limit %d), head size %d (limit %d)",
			ErrUnavailable, h, cudakernels.MaxHidden, d, cudakernels.MaxHeadDim)
	}
	if o.MaxTokens < 0 {
		return nil, fmt.Errorf("cuda: MaxTokens %d; want >= 0 (0: %d)", o.MaxTokens, DefaultMaxTokens)
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = DefaultMaxTokens
	}
	o.MaxTokens = max(o.MaxTokens, c.MaxPositionEmbeddings)
	switch {
	case o.Mode != packed.ModeMean && o.Mode != packed.ModeCLS:
		return nil, fmt.Errorf("cuda: %w: %v", packed.ErrBadMode, o.Mode)
	case o.Workers < 1:
		return nil, fmt.Errorf("cuda: Workers %d; want at least 1", o.Workers)
	case o.MaxTokens > math.MaxInt32/4:
		return nil, fmt.Errorf("cuda: MaxTokens %d; want 1..%d", o.MaxTokens, math.MaxInt32/4)
	case o.Device < 0:
		return nil, fmt.Errorf("cuda: %w: device %d", ErrUnavailable, o.Device)
	}
	e := &Encoder{
		o:        o,
		cfg:      c,
		hidden:   w.Hidden(),
		heads:    w.Heads(),
		headDim:  w.HeadDim(),
		inter:    c.IntermediateSize,
		eps:      w.Eps(),
		scale:    float32(1 / math.Sqrt(float64(w.HeadDim()))),
		maxTexts: min(o.MaxTokens, maxGridYZ),
		elem:     4,
		dtype:    cudaR32F,
		// float32: CUBLAS_COMPUTE_32F never uses TF32 (only the _FAST_TF32
		// compute type or CUBLAS_TF32_TENSOR_OP_MATH would).
		mathMode: cublasDefaultMath,
		done:     make(chan struct{}),
	}
	if o.FP16 {
		// fp16 inputs on tensor cores with float32 accumulation; split-K
		// partial sums reduced in float32 too, not in the fp16 output type.
		e.elem, e.dtype = 2, cudaR16F
		e.mathMode = cublasDefaultMath | cublasMathDisallowReducedPrecisionReduction
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := e.open(w); err != nil {
		return nil, errors.Join(err, e.release())
	}
	e.free = make(chan *worker, len(e.all))
	for _, wk := range e.all {
		e.free <- wk
	}
	if o.SelfCheck {
		if err := e.selfCheck(w); err != nil {
			return nil, errors.Join(err, e.Close())
		}
	}
	return e, nil
}

// open does New's work on the locked thread; release undoes whatever part
// of it was done.
func (e *Encoder) open(w *packed.Weights) error {
	n, err := cu.NumDevices()
	if err != nil {
		return cuErr("cuDeviceGetCount", err)
	}
	if e.o.Device >= n {
		return fmt.Errorf("cuda: %w: device %d; this machine has %d CUDA devices", ErrUnavailable, e.o.Device, n)
	}
	if e.dev, err = cu.GetDevice(e.o.Device); err != nil {
		return cuErr(fmt.Sprintf("device %d", e.o.Device), err)
	}
	if err := checkArch(e.dev, cudakernels.PTX); err != nil {
		return err
	}
	if e.ctx, err = e.dev.RetainPrimaryCtx(); err != nil {
		return cuErr(fmt.Sprintf("device %d: retain primary context", e.o.Device), err)
	}
	e.retained = true
	if err := cu.SetCurrentContext(e.ctx); err != nil {
		return cuErr("cuCtxSetCurrent", err)
	}
	if e.mod, err = loadPTX(cudakernels.PTX); err != nil {
		return err
	}
	e.loaded = true
	for i, fp16 := range []bool{false, true} {
		ks := &e.k[i]
		ks.fp16 = fp16
		for _, f := range []struct {
			kernel string
			fn     *cu.Function
		}{
			{cudakernels.EmbedLN, &ks.embedLN},
			{cudakernels.BiasGELU, &ks.biasGELU},
			{cudakernels.BiasResidualLN, &ks.biasResidualLN},
			{cudakernels.Attention, &ks.attention},
			{cudakernels.Pool, &ks.pool},
		} {
			name := cudakernels.Name(f.kernel, fp16)
			if *f.fn, err = e.mod.Function(name); err != nil {
				return cuErr("kernel "+name, err)
			}
		}
	}
	blas, handle, err := pickCublas()
	if err != nil {
		return err
	}
	e.blas = blas
	v, verr := blas.version(handle)
	if verr != nil {
		v = 0
	}
	e.blasInfo = blas.describe(v)
	if err := e.upload(w); err != nil {
		return errors.Join(err, blas.destroy(handle))
	}
	for i := range e.o.Workers {
		wk := &worker{}
		e.all = append(e.all, wk)
		if i == 0 {
			wk.blas = handle
		}
		if err := e.initWorker(wk); err != nil {
			return fmt.Errorf("worker %d of %d: %w", i+1, e.o.Workers, err)
		}
	}
	return nil
}

// checkArch fails with ErrUnavailable when the device's compute capability
// is below the PTX's target (".target sm_80"), which the driver cannot JIT
// for it.
func checkArch(dev cu.Device, ptx string) error {
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		return cuErr("compute capability", err)
	}
	_, rest, ok := strings.Cut(ptx, "\n.target sm_")
	if !ok {
		return nil // no target line: let the JIT decide
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	target, err := strconv.Atoi(rest[:end])
	if err != nil {
		return nil
	}
	if major*10+minor < target {
		name, _ := dev.Name()
		return fmt.Errorf("cuda: %w: device %s has compute capability %d.%d; the kernels need %d.%d or newer",
			ErrUnavailable, name, major, minor, target/10, target%10)
	}
	return nil
}

// release frees everything open made, in reverse order: workers (each
// stream synchronized first), weights, module, the primary context. The
// calling thread must be locked; the context is made current here.
func (e *Encoder) release() error {
	if !e.retained {
		return nil
	}
	var errs []error
	if err := cu.SetCurrentContext(e.ctx); err != nil {
		return cuErr("cuCtxSetCurrent", err)
	}
	for _, wk := range e.all {
		errs = append(errs, wk.release(e.blas))
	}
	e.all = nil
	errs = append(errs, e.weights.free("weights"))
	if e.loaded {
		errs = append(errs, cuErr("cuModuleUnload", e.mod.Unload()))
		e.loaded = false
	}
	errs = append(errs, cuErr("release primary context", e.dev.ReleasePrimaryCtx()))
	e.retained = false
	return errors.Join(errs...)
}

// Hidden is the width of the hidden states and of Encode's vectors.
func (e *Encoder) Hidden() int { return e.hidden }

// Device reports the native CUDA encoder on its device.
func (e *Encoder) Device() accel.Device {
	return accel.Device{Provider: accel.ProviderCUDANative, Ordinal: e.o.Device, Requested: accel.ProviderCUDANative}
}

// CUBLAS names the cuBLAS library in use and its version
// ("libcublas.so.12 12.9.1").
func (e *Encoder) CUBLAS() string { return e.blasInfo }

// Close waits for running Encode calls to return their workers, then frees
// the device memory, streams, cuBLAS handles, pinned buffers and module and
// releases the primary context. Later calls fail with ErrClosed; Close
// itself may be called again and returns the first result.
func (e *Encoder) Close() error {
	e.closeOnce.Do(func() {
		close(e.done)
		for range e.all {
			<-e.free
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		e.closeErr = e.release()
	})
	return e.closeErr
}

// acquire takes a worker, waiting while all are busy.
func (e *Encoder) acquire(ctx context.Context) (*worker, error) {
	select {
	case <-e.done:
		return nil, ErrClosed
	default:
	}
	select {
	case wk := <-e.free:
		select {
		case <-e.done: // Close is waiting for the workers
			e.free <- wk
			return nil, ErrClosed
		default:
			return wk, nil
		}
	case <-e.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Encode runs the model on b and writes each row's pooled vector,
// L2-normalized, into vecs[i*Hidden() : (i+1)*Hidden()] and its norm before
// normalization into norms[i], as accel.Encoder says. A malformed batch
// fails with an error matching accel.ErrBadBatch naming the row and
// position.
func (e *Encoder) Encode(ctx context.Context, b accel.Batch, vecs, norms []float32) error {
	return e.EncodeQuantized(ctx, b, e.hidden, vecs, norms, nil, nil)
}

// EncodeQuantized is Encode with each pooled vector truncated to its first
// dims values before normalization (Matryoshka), written to out[i*dims :
// (i+1)*dims] with its norm in norms[i], and, when codes is not nil,
// quantized on the GPU: codes[i*dims : (i+1)*dims] and scales[i] are
// exactly quant.QuantizeInt8 of row i of out. Only these values are copied
// back from the device. It returns ctx's error if ctx ends while it waits
// for a worker or between layers.
func (e *Encoder) EncodeQuantized(ctx context.Context, b accel.Batch, dims int, out, norms []float32, codes []int8, scales []float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dims < 1 || dims > e.hidden {
		return fmt.Errorf("cuda: %w: dims %d; want 1..%d (hidden size)", packed.ErrBadOutput, dims, e.hidden)
	}
	wk, err := e.acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { e.free <- wk }()

	pb := &wk.batch
	if err := packed.Pack(pb, b, e.cfg.MaxPositionEmbeddings); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	if err := pb.Validate(e.cfg); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	n := pb.Texts()
	switch {
	case len(out) < n*dims || len(norms) < n:
		return fmt.Errorf("cuda: %w: %d texts of %d dims need %d values and %d norms; have %d and %d",
			packed.ErrBadOutput, n, dims, n*dims, n, len(out), len(norms))
	case codes != nil && (len(codes) < n*dims || len(scales) < n):
		return fmt.Errorf("cuda: %w: %d texts of %d dims need %d codes and %d scales; have %d and %d",
			packed.ErrBadOutput, n, dims, n*dims, n, len(codes), len(scales))
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cu.SetCurrentContext(e.ctx); err != nil {
		return cuErr("cuCtxSetCurrent", err)
	}
	for r0 := 0; r0 < n; {
		// One text always fits: MaxTokens >= max_position_embeddings.
		r1 := nextChunk(pb.Start, r0, e.o.MaxTokens, e.maxTexts)
		if err := e.runChunk(ctx, wk, r0, r1, dims, out, norms, codes, scales); err != nil {
			return err
		}
		r0 = r1
	}
	return nil
}
