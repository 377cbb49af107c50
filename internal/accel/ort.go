package accel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	ort "github.com/yalue/onnxruntime_go"
)

// ortEncoder runs a model with ONNX Runtime.
type ortEncoder struct {
	sess     *ort.DynamicAdvancedSession
	spec     ModelSpec
	device   Device
	hasTypes bool
}

var _ Encoder = (*ortEncoder)(nil)

// NewEncoder loads spec's model into an ONNX Runtime session. Init must have
// been called. If opts asks for CUDA and the CUDA provider cannot be
// attached, the session is created on the CPU and Device().Fallback says why.
func NewEncoder(spec ModelSpec, opts Options) (Encoder, error) {
	if RuntimeVersion() == "" {
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
	if spec.Hidden < 1 {
		return nil, fmt.Errorf("accel: model %s: hidden size %d must be positive", spec.Path, spec.Hidden)
	}
	dev := Device{Provider: opts.Provider, Requested: opts.Provider}
	so, err := newSessionOptions(opts)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	switch opts.Provider {
	case ProviderCPU:
	case ProviderCUDA:
		if reason := appendCUDA(so, opts.DeviceID); reason != "" {
			opts.Logger.Warn("CUDA unavailable, running on CPU", "model", spec.Path, "reason", reason)
			dev.Provider, dev.Fallback = ProviderCPU, reason
			so.Destroy()
			if so, err = newSessionOptions(opts); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w %q (want %q or %q)", ErrUnknownProvider, opts.Provider, ProviderCPU, ProviderCUDA)
	}
	inputs := []string{spec.InputIDs, spec.AttentionMask}
	if spec.TokenTypeIDs != "" {
		inputs = append(inputs, spec.TokenTypeIDs)
	}
	sess, err := ort.NewDynamicAdvancedSession(spec.Path, inputs, []string{spec.Output}, so)
	if err != nil {
		return nil, fmt.Errorf("accel: load model %s: %w", spec.Path, err)
	}
	return &ortEncoder{sess: sess, spec: spec, device: dev, hasTypes: spec.TokenTypeIDs != ""}, nil
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

// appendCUDA attaches the CUDA provider; it returns "" on success or the
// reason it could not.
func appendCUDA(so *ort.SessionOptions, deviceID int) string {
	cu, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Sprintf("cuda provider options: %v", err)
	}
	defer cu.Destroy()
	if err := cu.Update(map[string]string{"device_id": fmt.Sprint(deviceID)}); err != nil {
		return fmt.Sprintf("cuda provider options: %v", err)
	}
	if err := so.AppendExecutionProviderCUDA(cu); err != nil {
		return fmt.Sprintf("append cuda provider: %v", err)
	}
	return ""
}

func (e *ortEncoder) Hidden() int    { return e.spec.Hidden }
func (e *ortEncoder) Device() Device { return e.device }
func (e *ortEncoder) Close() error   { return e.sess.Destroy() }

func (e *ortEncoder) Encode(ctx context.Context, b Batch, out []float32) (err error) {
	if err := b.validate(); err != nil {
		return err
	}
	if !e.hasTypes {
		b.TypeIDs = nil
	} else if b.TypeIDs == nil {
		return fmt.Errorf("%w: model %s needs token type ids", ErrBadBatch, e.spec.Path)
	}
	n := b.Size * b.SeqLen
	if len(out) < n*e.spec.Hidden {
		return fmt.Errorf("%w: output buffer holds %d values; need %d", ErrBadBatch, len(out), n*e.spec.Hidden)
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
	outT, err := ort.NewTensor(ort.NewShape(int64(b.Size), int64(b.SeqLen), int64(e.spec.Hidden)), out[:n*e.spec.Hidden])
	if err != nil {
		return fmt.Errorf("accel: output tensor: %w", err)
	}
	inputs := values
	values = append(values, outT)

	ro, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("accel: run options: %w", err)
	}
	defer ro.Destroy()
	// Ask ONNX Runtime to stop between kernels if ctx ends mid-run.
	stop := context.AfterFunc(ctx, func() { _ = ro.Terminate() })
	defer stop()
	if err := e.sess.RunWithOptions(inputs, []ort.Value{outT}, ro); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fmt.Errorf("accel: run %s: %w", e.spec.Path, err)
	}
	return nil
}
