package accel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ortEncoder runs a model with ONNX Runtime.
type ortEncoder struct {
	sess     *ort.DynamicAdvancedSession
	spec     ModelSpec
	device   Device
	hasTypes bool
	binding  bool
	scratch  sync.Pool // *[]float32: token states of a token-output graph
}

var _ Encoder = (*ortEncoder)(nil)

// NewEncoder loads spec's model into an ONNX Runtime session. Init must have
// been called. If opts asks for CUDA and the CUDA provider cannot be
// attached, the session is created on the CPU and Device().Fallback says why.
//
// For ProviderCUDANative, and for ProviderAuto when opts.Native is set and
// the spec has safetensors weights, the native CUDA encoder (opts.Native) is
// tried first; Init is then needed only if it cannot be used. When it
// cannot, the model runs as with ProviderCUDA (ONNX Runtime CUDA, else the
// CPU) and Device().Fallback says why native is not used.
func NewEncoder(spec ModelSpec, opts Options) (Encoder, error) {
	tryNative := opts.Provider == ProviderCUDANative ||
		opts.Provider == ProviderAuto && opts.Native != nil && spec.HasWeights()
	if !tryNative && RuntimeVersion() == "" {
		return nil, ErrNotInitialized
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Provider == "" {
		opts.Provider = ProviderCPU
	}
	if opts.IntraOpThreads < 0 || opts.InterOpThreads < 0 {
		return nil, fmt.Errorf("accel: thread counts must be >= 0; got intra %d, inter %d", opts.IntraOpThreads, opts.InterOpThreads)
	}
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if err := opts.CUDA.validate(); err != nil {
		return nil, err
	}
	nativeReason := ""
	if tryNative {
		enc, reason := newNative(spec, opts)
		if enc != nil {
			return enc, nil
		}
		nativeReason = reason
		if RuntimeVersion() == "" {
			return nil, fmt.Errorf("%w (and the native CUDA encoder cannot be used: %s)", ErrNotInitialized, reason)
		}
	}
	dev := Device{Provider: ProviderCPU, Requested: opts.Provider}
	so, err := newSessionOptions(sessionThreads(opts))
	if err != nil {
		return nil, err
	}
	defer func() { so.Destroy() }()
	switch opts.Provider {
	case ProviderCPU:
	case ProviderCUDA, ProviderCUDANative, ProviderAuto:
		reason := opts.CUDA.Unavailable
		if reason == "" {
			reason = appendCUDA(so, opts.CUDA)
		}
		if reason == "" {
			dev.Provider, dev.Ordinal = ProviderCUDA, opts.CUDA.DeviceID
			switch {
			case nativeReason == "":
			case opts.Provider == ProviderCUDANative:
				dev.Fallback = fallbackReason(nativeReason, "")
				opts.Logger.Warn("native CUDA encoder unavailable, running on ONNX Runtime CUDA", "model", spec.Path, "reason", dev.Fallback)
			default:
				opts.Logger.Info("native CUDA encoder not used, running on ONNX Runtime CUDA", "model", spec.Path, "reason", nativeReason)
			}
			break
		}
		dev.Fallback = fallbackReason(nativeReason, reason)
		if opts.Provider != ProviderAuto {
			opts.Logger.Warn("CUDA unavailable, running on CPU", "model", spec.Path, "reason", dev.Fallback)
		} else {
			opts.Logger.Info("CUDA not used, running on CPU", "model", spec.Path, "reason", dev.Fallback)
		}
		so.Destroy()
		if so, err = newSessionOptions(opts); err != nil {
			return nil, err
		}
	default:
		return nil, unknownProvider(string(opts.Provider))
	}
	inputs := []string{spec.InputIDs, spec.AttentionMask}
	if spec.TokenTypeIDs != "" {
		inputs = append(inputs, spec.TokenTypeIDs)
	}
	outputs := []string{spec.Output}
	if spec.NormOutput != "" {
		outputs = append(outputs, spec.NormOutput)
	}
	sess, err := ort.NewDynamicAdvancedSession(spec.Path, inputs, outputs, so)
	if err != nil && dev.Provider == ProviderCUDA {
		// The provider attached but the session could not be placed on
		// the device (no device, driver too old, out of memory at load).
		reason := fallbackReason(nativeReason, "cuda session: "+oneLine(err.Error()))
		opts.Logger.Warn("CUDA session failed, running on CPU", "model", spec.Path, "reason", reason)
		dev = Device{Provider: ProviderCPU, Requested: opts.Provider, Fallback: reason}
		so.Destroy()
		if so, err = newSessionOptions(opts); err != nil {
			return nil, err
		}
		sess, err = ort.NewDynamicAdvancedSession(spec.Path, inputs, outputs, so)
	}
	if err != nil {
		return nil, fmt.Errorf("accel: load model %s: %w", spec.Path, err)
	}
	return &ortEncoder{
		sess: sess, spec: spec, device: dev, hasTypes: spec.TokenTypeIDs != "",
		binding: opts.CUDA.IOBinding && dev.Provider == ProviderCUDA,
	}, nil
}

// newNative creates the native CUDA encoder with opts.Native; it returns the
// encoder, or nil and the reason it cannot be used.
func newNative(spec ModelSpec, opts Options) (Encoder, string) {
	switch {
	case opts.Native == nil:
		return nil, "built without the cuda build tag (make build-cuda)"
	case !spec.HasWeights():
		return nil, "model has no safetensors weights"
	}
	enc, err := opts.Native(spec, opts)
	if err != nil {
		return nil, oneLine(err.Error())
	}
	if enc == nil {
		return nil, "native encoder factory returned no encoder"
	}
	if enc.Device().Requested != opts.Provider {
		enc = requestedAs{enc, opts.Provider}
	}
	return enc, ""
}

// requestedAs reports the provider asked for (cuda-native or auto) in the
// Device of an encoder made by Options.Native, which does not know it.
type requestedAs struct {
	Encoder
	requested Provider
}

func (e requestedAs) Device() Device {
	d := e.Encoder.Device()
	d.Requested = e.requested
	return d
}

// Unwrap returns the encoder the factory made.
func (e requestedAs) Unwrap() Encoder { return e.Encoder }

// fallbackReason joins why the native encoder is not used (may be empty)
// and why ONNX Runtime's CUDA provider is not (may be empty).
func fallbackReason(native, ortCUDA string) string {
	switch {
	case native == "":
		return ortCUDA
	case ortCUDA == "":
		return "native: " + native
	}
	return "native: " + native + "; onnxruntime cuda: " + ortCUDA
}

func (s ModelSpec) validate() error {
	if s.Hidden < 1 {
		return fmt.Errorf("accel: model %s: hidden size %d must be positive", s.Path, s.Hidden)
	}
	if s.NormOutput != "" && !s.Pooled {
		return fmt.Errorf("accel: model %s: a norm output (%s) needs a pooled graph", s.Path, s.NormOutput)
	}
	switch s.Pooling {
	case "", PoolMean, PoolCLS:
	default:
		return fmt.Errorf("accel: model %s: pooling %q (want %q or %q)", s.Path, s.Pooling, PoolMean, PoolCLS)
	}
	switch s.Precision {
	case "", PrecisionFP32, PrecisionFP16:
	default:
		return fmt.Errorf("accel: model %s: precision %q (want %q or %q)", s.Path, s.Precision, PrecisionFP32, PrecisionFP16)
	}
	return nil
}

func (c CUDAOptions) validate() error {
	switch c.ConvAlgoSearch {
	case "", "DEFAULT", "HEURISTIC", "EXHAUSTIVE":
	default:
		return fmt.Errorf("accel: cuda conv algo search %q (want DEFAULT, HEURISTIC or EXHAUSTIVE)", c.ConvAlgoSearch)
	}
	if c.DeviceID < 0 || c.MemLimit < 0 {
		return fmt.Errorf("accel: cuda device id %d and memory limit %d must be >= 0", c.DeviceID, c.MemLimit)
	}
	return nil
}

// sessionThreads returns opts with the CPU thread settings of the session
// that is tried first. With CUDA the CPU runs only shape computations, so
// unless the caller chose a thread count the session gets one intra-op
// thread and no spinning: a pool of spinning threads would take the cores
// the gRPC server and the tokenizer need between runs. A session that falls
// back to the CPU is made again with the caller's settings.
func sessionThreads(opts Options) Options {
	if (opts.Provider == ProviderCUDA || opts.Provider == ProviderCUDANative || opts.Provider == ProviderAuto) && opts.CUDA.Unavailable == "" && opts.IntraOpThreads == 0 {
		opts.IntraOpThreads, opts.NoSpin = 1, true
	}
	return opts
}

func newSessionOptions(opts Options) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("accel: session options: %w", err)
	}
	err = so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll)
	if err == nil && opts.IntraOpThreads > 0 {
		err = so.SetIntraOpNumThreads(opts.IntraOpThreads)
	}
	if err == nil && opts.InterOpThreads > 0 {
		err = so.SetInterOpNumThreads(opts.InterOpThreads)
	}
	if err == nil && opts.NoSpin {
		err = so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
		if err == nil {
			err = so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0")
		}
	}
	if err != nil {
		so.Destroy()
		return nil, fmt.Errorf("accel: session options: %w", err)
	}
	return so, nil
}

// cudaProviderOptions maps c to the CUDA provider's option names.
func cudaProviderOptions(c CUDAOptions) map[string]string {
	search := cmp.Or(c.ConvAlgoSearch, DefaultConvAlgoSearch)
	m := map[string]string{
		"device_id":              fmt.Sprint(c.DeviceID),
		"cudnn_conv_algo_search": search,
		"use_tf32":               "0",
		// Grow the arena by what a request needs, not by powers of two, so
		// that a memory limit is met as closely as possible.
		"arena_extend_strategy": "kSameAsRequested",
	}
	if c.TF32 {
		m["use_tf32"] = "1"
	}
	if c.MemLimit > 0 {
		m["gpu_mem_limit"] = fmt.Sprint(c.MemLimit)
	}
	return m
}

// appendCUDA attaches the CUDA provider; it returns "" on success or the
// reason it could not (ONNX Runtime's message names a library that did not
// load, such as libcublasLt.so.13).
func appendCUDA(so *ort.SessionOptions, c CUDAOptions) string {
	cu, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return "cuda provider options: " + oneLine(err.Error())
	}
	defer cu.Destroy()
	if err := cu.Update(cudaProviderOptions(c)); err != nil {
		return "cuda provider options: " + oneLine(err.Error())
	}
	if err := so.AppendExecutionProviderCUDA(cu); err != nil {
		return "append cuda provider: " + oneLine(err.Error())
	}
	return ""
}

// oneLine folds a multi-line runtime message into one log-friendly line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (e *ortEncoder) Hidden() int    { return e.spec.Hidden }
func (e *ortEncoder) Device() Device { return e.device }
func (e *ortEncoder) Close() error   { return e.sess.Destroy() }

func (e *ortEncoder) Encode(ctx context.Context, b Batch, vecs, norms []float32) (err error) {
	if err := b.validate(); err != nil {
		return err
	}
	if !e.hasTypes {
		b.TypeIDs = nil
	} else if b.TypeIDs == nil {
		return fmt.Errorf("%w: model %s needs token type ids", ErrBadBatch, e.spec.Path)
	}
	n, hid := b.Size*b.SeqLen, e.spec.Hidden
	if len(vecs) < b.Size*hid || len(norms) < b.Size {
		return fmt.Errorf("%w: output buffers hold %d values and %d norms; need %d and %d", ErrBadBatch, len(vecs), len(norms), b.Size*hid, b.Size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	shape := ort.NewShape(int64(b.Size), int64(b.SeqLen))
	var values []ort.Value
	defer func() {
		for _, v := range values {
			err = errors.Join(err, v.Destroy())
		}
	}()
	for _, data := range [][]int64{b.IDs[:n], b.Mask[:n], b.TypeIDs} {
		if data == nil {
			continue
		}
		t, err := ort.NewTensor(shape, data[:n])
		if err != nil {
			return fmt.Errorf("accel: input tensor: %w", err)
		}
		values = append(values, t)
	}
	inputs := values

	var states []float32 // token states of a graph that does not pool
	if e.spec.Pooled {
		states = vecs[:b.Size*hid]
	} else {
		buf, _ := e.scratch.Get().(*[]float32)
		if buf == nil {
			buf = new([]float32)
		}
		defer e.scratch.Put(buf)
		*buf = grow(*buf, n*hid)
		states = *buf
	}
	outShape := ort.NewShape(int64(b.Size), int64(hid))
	if !e.spec.Pooled {
		outShape = ort.NewShape(int64(b.Size), int64(b.SeqLen), int64(hid))
	}
	outT, err := ort.NewTensor(outShape, states)
	if err != nil {
		return fmt.Errorf("accel: output tensor: %w", err)
	}
	values = append(values, outT)
	outputs := []ort.Value{outT}
	if e.spec.NormOutput != "" {
		normT, err := ort.NewTensor(ort.NewShape(int64(b.Size), 1), norms[:b.Size])
		if err != nil {
			return fmt.Errorf("accel: output tensor: %w", err)
		}
		values = append(values, normT)
		outputs = append(outputs, normT)
	}
	if err := e.run(ctx, inputs, outputs); err != nil {
		return err
	}
	switch {
	case !e.spec.Pooled:
		for i := range b.Size {
			valid := 0
			for _, m := range b.Mask[i*b.SeqLen : (i+1)*b.SeqLen] {
				if m != 0 {
					valid++
				}
			}
			pool(e.spec.Pooling, states[i*b.SeqLen*hid:(i+1)*b.SeqLen*hid], valid, hid, vecs[i*hid:(i+1)*hid])
		}
		normalizeRows(vecs[:b.Size*hid], norms[:b.Size], hid)
	case e.spec.NormOutput == "":
		normalizeRows(vecs[:b.Size*hid], norms[:b.Size], hid)
	default:
		// The graph divides by max(norm, 1e-12); a row below that floor is
		// kept raw, as normalizeRows keeps it.
		for i, nv := range norms[:b.Size] {
			if nv < 1e-12 {
				for k := range vecs[i*hid : (i+1)*hid] {
					vecs[i*hid+k] *= 1e-12
				}
			}
		}
	}
	return nil
}

// run runs the session, through an IoBinding when asked, and classifies
// failures. If ctx ends mid-run, ONNX Runtime is told to stop (it does so
// between kernels) and run returns ctx.Err(); the outputs are then
// unspecified. A run through an IoBinding cannot be stopped that way
// (onnxruntime_go passes no run options to RunWithBinding), so it runs to
// the end and ctx is checked only before it.
func (e *ortEncoder) run(ctx context.Context, inputs, outputs []ort.Value) error {
	var err error
	if e.binding {
		err = e.runBinding(inputs, outputs)
	} else {
		err = e.runTerminable(ctx, inputs, outputs)
	}
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if isOutOfMemory(err.Error()) {
		return fmt.Errorf("%w: run %s on %s: %s", ErrOutOfMemory, e.spec.Path, e.device, oneLine(err.Error()))
	}
	return fmt.Errorf("accel: run %s: %w", e.spec.Path, err)
}

// runTerminable runs the session with run options whose terminate flag is
// set when ctx ends.
func (e *ortEncoder) runTerminable(ctx context.Context, inputs, outputs []ort.Value) error {
	ro, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("accel: run options: %w", err)
	}
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		_ = ro.Terminate()
	})
	defer func() {
		// The run options must outlive a Terminate already under way.
		if !stop() {
			<-terminated
		}
		_ = ro.Destroy()
	}()
	return e.sess.RunWithOptions(inputs, outputs, ro)
}

func (e *ortEncoder) runBinding(inputs, outputs []ort.Value) error {
	io, err := e.sess.CreateIoBinding()
	if err != nil {
		return fmt.Errorf("accel: io binding: %w", err)
	}
	defer io.Destroy()
	names := []string{e.spec.InputIDs, e.spec.AttentionMask, e.spec.TokenTypeIDs}
	for i, v := range inputs {
		if err := io.BindInput(names[i], v); err != nil {
			return fmt.Errorf("accel: io binding: %w", err)
		}
	}
	outNames := []string{e.spec.Output, e.spec.NormOutput}
	for i, v := range outputs {
		if err := io.BindOutput(outNames[i], v); err != nil {
			return fmt.Errorf("accel: io binding: %w", err)
		}
	}
	return e.sess.RunWithBinding(io)
}

// isOutOfMemory recognises ONNX Runtime's messages for a failed device or
// arena allocation: the BFC arena's, CUDA's and cuBLAS's.
func isOutOfMemory(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{
		"out of memory", "failed to allocate memory", "cudaerrormemoryallocation",
		"cublas_status_alloc_failed", "cudnn_status_alloc_failed", "bad_alloc",
		"available memory of", // BFCArena: "... exceeds the max available memory of ..."
	} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
