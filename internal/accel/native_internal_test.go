package accel

import (
	"context"
	"errors"
	"testing"
)

// fakeNative is a native encoder that needs nothing: unit vectors along the
// first axis.
type fakeNative struct{ hidden int }

func (f fakeNative) Encode(_ context.Context, b Batch, vecs, norms []float32) error {
	for i := range b.Size {
		clear(vecs[i*f.hidden : (i+1)*f.hidden])
		vecs[i*f.hidden], norms[i] = 1, 1
	}
	return nil
}
func (f fakeNative) Hidden() int { return f.hidden }
func (f fakeNative) Device() Device {
	return Device{Provider: ProviderCUDANative, Requested: ProviderCUDANative}
}
func (f fakeNative) Close() error { return nil }

// withoutRuntime runs fn as if ONNX Runtime had not been initialized.
func withoutRuntime(t *testing.T, fn func()) {
	initMu.Lock()
	saved := initPath
	initPath = ""
	initMu.Unlock()
	defer func() {
		initMu.Lock()
		initPath = saved
		initMu.Unlock()
	}()
	fn()
}

// TestNativeWithoutONNXRuntime: the native encoder needs no ONNX Runtime;
// only its fallback does.
func TestNativeWithoutONNXRuntime(t *testing.T) {
	spec := ModelSpec{Path: "m.onnx", ConfigPath: "config.json", WeightsPath: "model.safetensors", Hidden: 4, Pooled: true}
	ok := func(ModelSpec, Options) (Encoder, error) { return fakeNative{4}, nil }
	fail := func(ModelSpec, Options) (Encoder, error) { return nil, errors.New("no GPU") }
	withoutRuntime(t, func() {
		for _, p := range []Provider{ProviderCUDANative, ProviderAuto} {
			enc, err := NewEncoder(spec, Options{Provider: p, Native: ok})
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if d := enc.Device(); d.Requested != p || d.Backend() != "native/cuda:0" {
				t.Errorf("%s: device %+v", p, d)
			}
		}
		if _, err := NewEncoder(spec, Options{Provider: ProviderCUDANative, Native: fail}); !errors.Is(err, ErrNotInitialized) {
			t.Errorf("native fails, no runtime: got %v; want ErrNotInitialized", err)
		}
		for _, p := range []Provider{ProviderCPU, ProviderCUDA} {
			if _, err := NewEncoder(spec, Options{Provider: p, Native: ok}); !errors.Is(err, ErrNotInitialized) {
				t.Errorf("%s: got %v; want ErrNotInitialized", p, err)
			}
		}
		noWeights := spec
		noWeights.WeightsPath = ""
		if _, err := NewEncoder(noWeights, Options{Provider: ProviderAuto, Native: ok}); !errors.Is(err, ErrNotInitialized) {
			t.Errorf("auto without weights: got %v; want ErrNotInitialized (ONNX Runtime needed)", err)
		}
	})
}
