// Package accel owns the execution backends that run encoder models: ONNX
// Runtime on the CPU (always available), ONNX Runtime with the CUDA
// execution provider (tried when asked), and the native CUDA encoder of
// internal/accel/cuda (embedd's own kernels on packed batches; compiled in
// only with the `cuda` build tag and handed in as Options.Native). The ONNX
// Runtime library is loaded at run time (Init): the CPU build, or the GPU
// build that `embedd runtime pull --gpu` installs, whose libonnxruntime.so
// runs the CPU provider too.
//
// The engine hands a padded, tokenized Batch to an Encoder and gets one
// pooled sentence vector per row back, L2-normalized, with the norm of the
// pooled vector before normalization; it does not care which device ran
// them or where the pooling happened. A model whose graph pools (and
// normalizes) itself sends only [batch, hidden] values across the bus; for a
// graph whose output is the last hidden state, the Encoder pools in Go.
//
// The choice of device happens once, when an Encoder is created: if CUDA is
// asked for and cannot be used, the Encoder runs on the CPU and
// Device().Fallback says why (the reason names the missing library or the
// CUDA error, and is logged). ProviderAuto uses CUDA when it can and the CPU
// otherwise, without a warning. The fallback chain, first that works:
//
//	cuda-native: native CUDA encoder -> ONNX Runtime CUDA -> ONNX Runtime CPU (warning)
//	cuda:        ONNX Runtime CUDA -> ONNX Runtime CPU (warning)
//	auto:        native CUDA encoder (when Options.Native is set and the model
//	             has safetensors weights) -> ONNX Runtime CUDA -> CPU (no warning)
//	cpu:         ONNX Runtime CPU
//
// Invariants:
//   - Encode writes exactly b.Size vectors and norms, or returns an error and
//     leaves their contents unspecified.
//   - An allocation failure of the device (CUDA or CPU arena) is reported as
//     an error matching ErrOutOfMemory, so the caller can split the batch and
//     retry; Encode itself never retries.
//   - A zero pooled vector stays zero, with norm 0.
//
// Concurrency: an Encoder is safe for concurrent Encode calls (ONNX Runtime
// sessions are). The ONNX Runtime environment is process-wide; Init
// initializes it once and later calls with the same library path are no-ops.
package accel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Provider selects an execution provider.
type Provider string

const (
	// ProviderCPU runs on the CPU with ONNX Runtime's default provider.
	ProviderCPU Provider = "cpu"
	// ProviderCUDA asks for ONNX Runtime's CUDA execution provider and falls
	// back to the CPU, with the reason logged as a warning, when it is not
	// available.
	ProviderCUDA Provider = "cuda"
	// ProviderCUDANative asks for the native CUDA encoder (Options.Native:
	// embedd's own kernels and cuBLAS on packed batches, no ONNX Runtime).
	// When it cannot be used (a binary built without the `cuda` tag, a
	// model without safetensors weights, no GPU, a failed self-check) the
	// model runs as ProviderCUDA would, on ONNX Runtime's CUDA provider or
	// else the CPU, with the reasons in Device().Fallback and logged as a
	// warning.
	ProviderCUDANative Provider = "cuda-native"
	// ProviderAuto uses the best GPU path available and the CPU otherwise:
	// the native CUDA encoder when Options.Native is set and the model has
	// safetensors weights, then ONNX Runtime's CUDA provider. The reason no
	// GPU is used is reported in Device().Fallback but not logged as a
	// warning.
	ProviderAuto Provider = "auto"
)

// ParseProvider checks a provider name from a flag or a config file.
func ParseProvider(s string) (Provider, error) {
	switch p := Provider(s); p {
	case ProviderCPU, ProviderCUDA, ProviderCUDANative, ProviderAuto:
		return p, nil
	case "":
		return ProviderCPU, nil
	}
	return "", unknownProvider(s)
}

func unknownProvider(s string) error {
	return fmt.Errorf("%w %q (want %q, %q, %q or %q)", ErrUnknownProvider, s, ProviderCPU, ProviderCUDA, ProviderCUDANative, ProviderAuto)
}

// Errors of this package.
var (
	// ErrNotEnabled reports native GPU code in a binary built without the
	// `cuda` build tag.
	ErrNotEnabled = errors.New("accel: built without the cuda build tag")
	// ErrNotInitialized reports use of ONNX Runtime before Init.
	ErrNotInitialized = errors.New("accel: onnx runtime not initialized")
	// ErrBadBatch reports a Batch whose slices do not match its shape.
	ErrBadBatch = errors.New("accel: malformed batch")
	// ErrUnknownProvider reports a Provider value this package does not know.
	ErrUnknownProvider = errors.New("accel: unknown provider")
	// ErrOutOfMemory reports a run that failed because the device could not
	// allocate memory for it; a smaller batch may succeed.
	ErrOutOfMemory = errors.New("accel: out of memory")
)

var (
	initMu   sync.Mutex // guards initPath
	initPath string     // library path ONNX Runtime was initialized with; "" if not
)

// Init loads the ONNX Runtime shared library at libPath and initializes the
// process-wide environment. Calling it again with the same path is a no-op;
// with another path it is an error (one process, one runtime).
func Init(libPath string) error {
	initMu.Lock()
	defer initMu.Unlock()
	if initPath != "" {
		if initPath != libPath {
			return fmt.Errorf("accel: onnx runtime already loaded from %s; cannot load %s", initPath, libPath)
		}
		return nil
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("accel: load onnx runtime %s: %w", libPath, err)
	}
	initPath = libPath
	return nil
}

// RuntimeVersion reports the loaded ONNX Runtime version, or "" before Init.
func RuntimeVersion() string {
	initMu.Lock()
	defer initMu.Unlock()
	if initPath == "" {
		return ""
	}
	return ort.GetVersion()
}

// Batch is a padded, tokenized batch in row-major [Size, SeqLen] layout.
// TypeIDs may be nil for models without token type input.
type Batch struct {
	Size    int
	SeqLen  int
	IDs     []int64
	Mask    []int64
	TypeIDs []int64
}

func (b Batch) validate() error {
	n := b.Size * b.SeqLen
	switch {
	case b.Size < 1 || b.SeqLen < 1:
		return fmt.Errorf("%w: shape [%d, %d]", ErrBadBatch, b.Size, b.SeqLen)
	case len(b.IDs) < n || len(b.Mask) < n:
		return fmt.Errorf("%w: shape [%d, %d] needs %d ids and mask values; have %d and %d", ErrBadBatch, b.Size, b.SeqLen, n, len(b.IDs), len(b.Mask))
	case b.TypeIDs != nil && len(b.TypeIDs) < n:
		return fmt.Errorf("%w: shape [%d, %d] needs %d type ids; have %d", ErrBadBatch, b.Size, b.SeqLen, n, len(b.TypeIDs))
	}
	return nil
}

// Device describes where an Encoder runs.
type Device struct {
	// Provider is the provider actually in use: ProviderCPU, ProviderCUDA
	// (ONNX Runtime's CUDA provider) or ProviderCUDANative (the native
	// CUDA encoder).
	Provider Provider
	// Ordinal is the CUDA device id when Provider is ProviderCUDA or
	// ProviderCUDANative.
	Ordinal int
	// Requested is the provider that was asked for.
	Requested Provider
	// Fallback is empty when the requested device is in use; otherwise it
	// says why not (for ProviderAuto: why no GPU is used; for
	// ProviderCUDANative: why the native encoder is not used, and, on the
	// CPU, why ONNX Runtime's CUDA provider is not either).
	Fallback string
}

// String is a short label for logs and metrics ("cpu", "cuda:0",
// "cuda-native:0").
func (d Device) String() string {
	switch d.Provider {
	case ProviderCUDA, ProviderCUDANative:
		return fmt.Sprintf("%s:%d", d.Provider, d.Ordinal)
	}
	return string(d.Provider)
}

// GPU reports whether the encoder runs on a GPU.
func (d Device) GPU() bool { return d.Provider == ProviderCUDA || d.Provider == ProviderCUDANative }

// Backend is the runtime and device label of metrics and ListModels:
// "onnxruntime/cpu", "onnxruntime/cuda:0", or "native/cuda:0" for the
// native CUDA encoder.
func (d Device) Backend() string {
	if d.Provider == ProviderCUDANative {
		return fmt.Sprintf("native/cuda:%d", d.Ordinal)
	}
	return "onnxruntime/" + d.String()
}

// Encoder runs an encoder model on batches.
type Encoder interface {
	// Encode runs the model on b and writes, for each row i, the row's pooled
	// sentence vector, L2-normalized, into vecs[i*Hidden() : (i+1)*Hidden()]
	// and the L2 norm of the pooled vector before normalization into
	// norms[i] (so vecs*norms is the raw pooled vector). vecs must hold at
	// least b.Size*Hidden() values and norms b.Size. It returns early with
	// ctx's error if ctx ends mid-run, and an error matching ErrOutOfMemory
	// when the device ran out of memory.
	Encode(ctx context.Context, b Batch, vecs, norms []float32) error
	// Hidden is the width of the hidden states.
	Hidden() int
	// Device reports where the model runs.
	Device() Device
	// Close releases the model. Encode must not be called after Close.
	Close() error
}

// Pooling is how an Encoder turns token states into one vector when the
// graph does not pool itself.
type Pooling string

const (
	// PoolMean averages the token states over the attention mask.
	PoolMean Pooling = "mean"
	// PoolCLS takes the state of the first token.
	PoolCLS Pooling = "cls"
)

// ModelSpec says which ONNX file to load and how its graph is named, and,
// for the native CUDA encoder, where the weights it was derived from are.
type ModelSpec struct {
	// Path of the .onnx file.
	Path string
	// ConfigPath and WeightsPath are the model's Hugging Face config.json
	// and model.safetensors, when the model has them (for a derived
	// graph: the files it is exported from). The native CUDA encoder loads
	// these instead of Path; without them it is not used.
	ConfigPath, WeightsPath string
	// Precision is what the native CUDA encoder computes in: "fp32"
	// (default, also empty) or "fp16" (weights and activations in fp16,
	// fp32 accumulation), the precision of the model's exported graph.
	Precision string
	// Input names; TokenTypeIDs may be empty for graphs without that input.
	InputIDs, AttentionMask, TokenTypeIDs string
	// Output is the name of the [batch, seq, hidden] token-state output, or,
	// when Pooled, of the [batch, hidden] pooled output.
	Output string
	// Pooled says the graph pools: Output is one vector per row.
	Pooled bool
	// NormOutput, for a pooled graph that L2-normalizes, names its
	// [batch, 1] output holding each pooled vector's norm before
	// normalization. Empty: Output holds raw pooled vectors.
	NormOutput string
	// Pooling is how the model pools. A token-state output (Pooled false)
	// is pooled in Go with it; a pooled graph pools inside, and Pooling
	// must then say how it does, for encoders that run the weights rather
	// than the graph (the native CUDA encoder). Default mean.
	Pooling Pooling
	// Hidden is the width of Output's last axis.
	Hidden int
}

// Values of ModelSpec.Precision besides the empty default (fp32).
const (
	PrecisionFP32 = "fp32"
	PrecisionFP16 = "fp16"
)

// HasWeights reports whether the spec names the config.json and safetensors
// files the native CUDA encoder loads.
func (s ModelSpec) HasWeights() bool { return s.ConfigPath != "" && s.WeightsPath != "" }

// NativeFunc creates a native CUDA encoder (internal/accel/cuda.NewFromSpec
// in a binary built with the `cuda` tag). It is called with the spec and
// the options NewEncoder got; it returns an error when the encoder cannot
// be used (no GPU, no cuBLAS, a failed self-check).
type NativeFunc func(ModelSpec, Options) (Encoder, error)

// CUDAOptions configures ONNX Runtime's CUDA execution provider.
type CUDAOptions struct {
	// DeviceID is the CUDA device ordinal. Default 0.
	DeviceID int
	// MemLimit bounds the provider's memory arena, in bytes (gpu_mem_limit);
	// a batch that does not fit fails with ErrOutOfMemory. 0: no limit.
	MemLimit int64
	// ConvAlgoSearch is cuDNN's convolution algorithm search:
	// "DEFAULT" (off: no search), "HEURISTIC" or "EXHAUSTIVE". Default
	// "DEFAULT"; BERT encoders have no convolutions, so a search would only
	// cost start-up time.
	ConvAlgoSearch string
	// TF32 lets fp32 matmuls use TF32 tensor cores (use_tf32): faster, with
	// a 10-bit mantissa. Default false, so an fp32 model on a GPU matches
	// the CPU; the fp16 models are the fast path.
	TF32 bool
	// IOBinding runs through an ONNX Runtime IoBinding instead of Run.
	IOBinding bool
	// Unavailable, when not empty, says why the CUDA provider cannot be used
	// (for example: the GPU build of ONNX Runtime is not installed); CUDA is
	// then not tried and this is the fallback reason.
	Unavailable string
}

// Options configures an Encoder.
type Options struct {
	// Provider to ask for. Default (""): ProviderCPU.
	Provider Provider
	// CUDA configures the CUDA provider when Provider is cuda or auto.
	CUDA CUDAOptions
	// IntraOpThreads bounds the threads one Encode call uses. 0 lets ONNX
	// Runtime choose (one per physical core); negative is an error.
	IntraOpThreads int
	// InterOpThreads bounds threads across independent graph nodes. 0 lets
	// ONNX Runtime choose.
	InterOpThreads int
	// NoSpin stops ONNX Runtime's worker threads from busy-waiting for work
	// after a run. Spinning helps back-to-back runs of one process that owns
	// the cores; without it the cores are free for the gRPC and tokenizer
	// goroutines between runs. Default false (ONNX Runtime's default: spin).
	NoSpin bool
	// Native creates the native CUDA encoder for ProviderCUDANative and
	// ProviderAuto. nil (a binary built without the `cuda` tag): the native
	// encoder is not available; cuda-native then falls back, saying so, and
	// auto does not try it. cmd/embedd sets it from a `cuda`-tagged file.
	// The CUDA device is CUDA.DeviceID.
	Native NativeFunc
	// Logger receives the fallback reason. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultOptions runs on the CPU with ONNX Runtime's default thread counts.
func DefaultOptions() Options {
	return Options{Provider: ProviderCPU, CUDA: CUDAOptions{ConvAlgoSearch: DefaultConvAlgoSearch}}
}

// DefaultConvAlgoSearch is cuDNN's convolution algorithm search when none
// is set: off (BERT-family models have no convolutions).
const DefaultConvAlgoSearch = "DEFAULT"
