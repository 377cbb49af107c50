// Package accel owns the execution backends that run encoder models: ONNX
// Runtime on the CPU (always available), ONNX Runtime with the CUDA execution
// provider (tried when asked), and native CUDA code behind the `cuda` build tag.
//
// The engine hands a padded, tokenized Batch to an Encoder and gets the last
// hidden states back; it does not care which device ran them. The choice of
// device happens once, when an Encoder is created: if CUDA is asked for and
// cannot be used, the Encoder runs on the CPU and Device().Fallback says why
// (and the reason is logged).
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
	// back to the CPU, with the reason logged, when it is not available.
	ProviderCUDA Provider = "cuda"
)

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
	// Provider is the provider actually in use.
	Provider Provider
	// Requested is the provider that was asked for.
	Requested Provider
	// Fallback is empty when Requested is in use; otherwise it says why not.
	Fallback string
}

// String is a short label for logs and metrics ("cpu", "cuda:0", ...).
func (d Device) String() string { return string(d.Provider) }

// Encoder runs an encoder model on batches.
type Encoder interface {
	// Encode runs the model on b and writes the last hidden states, row-major
	// [b.Size, b.SeqLen, Hidden()], into out, which must hold at least that
	// many values. It returns early with ctx's error if ctx ends mid-run.
	Encode(ctx context.Context, b Batch, out []float32) error
	// Hidden is the width of the hidden states.
	Hidden() int
	// Device reports where the model runs.
	Device() Device
	// Close releases the model. Encode must not be called after Close.
	Close() error
}

// ModelSpec says which ONNX file to load and how its graph is named.
type ModelSpec struct {
	// Path of the .onnx file.
	Path string
	// Input names; TokenTypeIDs may be empty for graphs without that input.
	InputIDs, AttentionMask, TokenTypeIDs string
	// Output is the name of the [batch, seq, hidden] output.
	Output string
	// Hidden is the width of Output's last axis.
	Hidden int
}

// Options configures an Encoder.
type Options struct {
	// Provider to ask for. Default (""): ProviderCPU.
	Provider Provider
	// DeviceID is the CUDA device ordinal. Default 0.
	DeviceID int
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
	// Logger receives the fallback reason. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultOptions runs on the CPU with ONNX Runtime's default thread counts.
func DefaultOptions() Options { return Options{Provider: ProviderCPU} }
