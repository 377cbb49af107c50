//go:build cuda

package cuda

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
)

// NewFromSpec is the accel.NativeFunc of a `cuda` binary: it loads the
// model's config.json and model.safetensors (spec.ConfigPath,
// spec.WeightsPath) and starts an Encoder on device opts.CUDA.DeviceID in
// spec.Precision ("fp32" or empty, "fp16") pooling with spec.Pooling
// (mean, the default, or cls), with the self-check on and the default
// workers and chunk size. A spec without weights fails with ErrUnavailable.
func NewFromSpec(spec accel.ModelSpec, opts accel.Options) (accel.Encoder, error) {
	if !spec.HasWeights() {
		return nil, fmt.Errorf("%w: the model has no config.json and model.safetensors", ErrUnavailable)
	}
	o := Options{Device: opts.CUDA.DeviceID, SelfCheck: true}
	switch spec.Precision {
	case "", accel.PrecisionFP32:
	case accel.PrecisionFP16:
		o.FP16 = true
	default:
		return nil, fmt.Errorf("cuda: precision %q; want %q or %q", spec.Precision, accel.PrecisionFP32, accel.PrecisionFP16)
	}
	switch spec.Pooling {
	case "", accel.PoolMean:
		o.Mode = packed.ModeMean
	case accel.PoolCLS:
		o.Mode = packed.ModeCLS
	default:
		return nil, fmt.Errorf("cuda: pooling %q; want %q or %q", spec.Pooling, accel.PoolMean, accel.PoolCLS)
	}
	w, err := packed.LoadWeights(spec.ConfigPath, spec.WeightsPath)
	if err != nil {
		return nil, fmt.Errorf("cuda: %w", err)
	}
	if spec.Hidden != 0 && spec.Hidden != w.Hidden() {
		return nil, fmt.Errorf("cuda: %s has hidden size %d; the model spec says %d", spec.ConfigPath, w.Hidden(), spec.Hidden)
	}
	e, err := New(w, o)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	prec := accel.PrecisionFP32
	if o.FP16 {
		prec = accel.PrecisionFP16
	}
	log.Info("native cuda encoder ready", "device", e.Device().String(), "cublas", e.CUBLAS(),
		"precision", prec, "pooling", o.Mode.String(), "weights", spec.WeightsPath)
	return e, nil
}

// Devices lists the CUDA devices (accel.CUDADevices).
func Devices() ([]accel.GPU, error) { return accel.CUDADevices() }

// memInfoCtx holds, per device ordinal, the primary context MemInfo
// retained on its first call for that device; it is kept for the life of
// the process, so that a metrics scrape does not create and destroy a
// context each time.
var (
	memInfoMu  sync.Mutex
	memInfoCtx = map[int]cu.CUContext{}
)

// MemInfo reports the free and total memory of CUDA device `device`, as the
// driver sees them in its primary context (cuMemGetInfo). The first call
// for a device retains that context for the life of the process (creating
// it if no one holds it, which costs the context's own memory once), so
// that later calls, such as one per metrics scrape, are cheap. It restores
// the calling thread's current context.
func MemInfo(device int) (free, total int64, err error) {
	dev, err := cu.GetDevice(device)
	if err != nil {
		return 0, 0, cuErr(fmt.Sprintf("device %d", device), err)
	}
	memInfoMu.Lock()
	ctx, ok := memInfoCtx[device]
	if !ok {
		if ctx, err = dev.RetainPrimaryCtx(); err != nil {
			memInfoMu.Unlock()
			return 0, 0, cuErr(fmt.Sprintf("device %d: retain primary context", device), err)
		}
		memInfoCtx[device] = ctx
	}
	memInfoMu.Unlock()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := cu.CurrentContext()
	if err != nil {
		return 0, 0, cuErr("cuCtxGetCurrent", err)
	}
	if err := cu.SetCurrentContext(ctx); err != nil {
		return 0, 0, cuErr("cuCtxSetCurrent", err)
	}
	free, total, err = cu.MemInfo()
	if err != nil {
		err = cuErr("cuMemGetInfo", err)
	}
	if rerr := cu.SetCurrentContext(prev); rerr != nil && err == nil {
		err = cuErr("restore current context", rerr)
	}
	if err != nil {
		return 0, 0, err
	}
	return free, total, nil
}
