package accel_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/testassets"
)

// The native CUDA encoder's fallback chain, on the CPU: the factory
// (Options.Native) is a test function that fails, or one that returns an
// ONNX Runtime CPU encoder that calls itself native. ONNX Runtime's CUDA
// provider is marked unavailable (CUDAOptions.Unavailable), so the last
// resort, the CPU, is what the failing cases must land on; the real
// provider's failure is checked by cmd/embedd's TestServeCUDANativeWithoutTag.

// nativeCPU is an ONNX Runtime CPU encoder that reports the device a native
// CUDA encoder reports: real vectors, a native label.
type nativeCPU struct {
	accel.Encoder
	ordinal int
}

func (e nativeCPU) Device() accel.Device {
	return accel.Device{Provider: accel.ProviderCUDANative, Ordinal: e.ordinal, Requested: accel.ProviderCUDANative}
}

// factory records its calls and either fails with err or returns a
// nativeCPU on the given CUDA ordinal.
type factory struct {
	err   error
	calls int
	got   accel.ModelSpec
	opts  accel.Options
}

func (f *factory) new(spec accel.ModelSpec, opts accel.Options) (accel.Encoder, error) {
	f.calls++
	f.got, f.opts = spec, opts
	if f.err != nil {
		return nil, f.err
	}
	o := opts
	o.Provider, o.Native = accel.ProviderCPU, nil
	enc, err := accel.NewEncoder(spec, o)
	if err != nil {
		return nil, err
	}
	return nativeCPU{enc, opts.CUDA.DeviceID}, nil
}

// weightsSpec is spec with safetensors paths; the test factories never
// open them.
func weightsSpec(t *testing.T) accel.ModelSpec {
	s := spec(t)
	s.ConfigPath, s.WeightsPath, s.Precision = "/models/m/config.json", "/models/m/model.safetensors", accel.PrecisionFP16
	return s
}

// logs returns a logger that writes to a buffer, and the buffer.
func logs() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

func encodeOne(t *testing.T, enc accel.Encoder) {
	t.Helper()
	b := accel.Batch{Size: 1, SeqLen: 3, IDs: []int64{101, 7592, 102}, Mask: []int64{1, 1, 1}, TypeIDs: []int64{0, 0, 0}}
	vecs, norms := make([]float32, enc.Hidden()), make([]float32, 1)
	if err := enc.Encode(context.Background(), b, vecs, norms); err != nil {
		t.Fatal(err)
	}
	if norms[0] <= 0 {
		t.Errorf("norm %v; want > 0", norms[0])
	}
}

func TestParseProviderNative(t *testing.T) {
	for in, want := range map[string]accel.Provider{"": accel.ProviderCPU, "cpu": accel.ProviderCPU, "cuda": accel.ProviderCUDA, "cuda-native": accel.ProviderCUDANative, "auto": accel.ProviderAuto} {
		if got, err := accel.ParseProvider(in); err != nil || got != want {
			t.Errorf("ParseProvider(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := accel.ParseProvider("native")
	if !errors.Is(err, accel.ErrUnknownProvider) || !strings.Contains(err.Error(), `"cuda-native"`) {
		t.Errorf("ParseProvider(native): %v; want ErrUnknownProvider listing cuda-native", err)
	}
}

func TestDeviceLabels(t *testing.T) {
	for _, tc := range []struct {
		d                accel.Device
		str, backend     string
		gpu              bool
		batch, batchToks int
	}{
		{accel.Device{Provider: accel.ProviderCPU}, "cpu", "onnxruntime/cpu", false, 32, 8192},
		{accel.Device{Provider: accel.ProviderCUDA, Ordinal: 1}, "cuda:1", "onnxruntime/cuda:1", true, 256, 65536},
		{accel.Device{Provider: accel.ProviderCUDANative}, "cuda-native:0", "native/cuda:0", true, 256, 65536},
		{accel.Device{Provider: accel.ProviderCUDANative, Ordinal: 3}, "cuda-native:3", "native/cuda:3", true, 256, 65536},
	} {
		def := accel.DefaultBatch(tc.d)
		if tc.d.String() != tc.str || tc.d.Backend() != tc.backend || tc.d.GPU() != tc.gpu || def.MaxBatchSize != tc.batch || def.MaxBatchTokens != tc.batchToks {
			t.Errorf("%+v: String %q Backend %q GPU %v batch %+v; want %q %q %v %d/%d",
				tc.d, tc.d.String(), tc.d.Backend(), tc.d.GPU(), def, tc.str, tc.backend, tc.gpu, tc.batch, tc.batchToks)
		}
	}
}

// TestNativeFallbackChain: cuda-native falls back to ONNX Runtime (here
// the CPU, the CPU build having no CUDA provider) with each reason in
// Fallback and a warning; auto tries native only when it can and falls back
// without a warning; cpu and cuda never call the factory.
func TestNativeFallbackChain(t *testing.T) {
	testassets.Runtime(t)
	const noTag, noWeights = "built without the cuda build tag (make build-cuda)", "model has no safetensors weights"
	for _, tc := range []struct {
		name       string
		provider   accel.Provider
		factory    *factory // nil: Options.Native unset
		weights    bool
		calls      int
		backend    string
		fallback   []string // substrings of Device().Fallback; nil: must be empty
		noFallback []string // must not be in Fallback
		warn       bool
	}{
		{name: "cuda-native without the cuda tag", provider: accel.ProviderCUDANative, weights: true,
			backend: "onnxruntime/cpu", fallback: []string{"native: " + noTag, "; onnxruntime cuda: test: no CUDA provider"}, warn: true},
		{name: "cuda-native, model without weights", provider: accel.ProviderCUDANative, factory: &factory{},
			backend: "onnxruntime/cpu", fallback: []string{"native: " + noWeights, "; onnxruntime cuda: test: no CUDA provider"}, warn: true},
		{name: "cuda-native, factory fails", provider: accel.ProviderCUDANative, factory: &factory{err: errors.New("cuda: no device\nat ordinal 0")}, weights: true, calls: 1,
			backend: "onnxruntime/cpu", fallback: []string{"native: cuda: no device at ordinal 0; onnxruntime cuda: test: no CUDA provider"}, warn: true},
		{name: "cuda-native, native works", provider: accel.ProviderCUDANative, factory: &factory{}, weights: true, calls: 1,
			backend: "native/cuda:0"},
		{name: "auto, native works", provider: accel.ProviderAuto, factory: &factory{}, weights: true, calls: 1,
			backend: "native/cuda:0"},
		{name: "auto, factory fails", provider: accel.ProviderAuto, factory: &factory{err: errors.New("self-check: min cosine 0.2")}, weights: true, calls: 1,
			backend: "onnxruntime/cpu", fallback: []string{"native: self-check: min cosine 0.2; onnxruntime cuda: test: no CUDA provider"}},
		{name: "auto without the cuda tag", provider: accel.ProviderAuto, weights: true,
			backend: "onnxruntime/cpu", fallback: []string{"test: no CUDA provider"}, noFallback: []string{"native"}},
		{name: "auto, model without weights", provider: accel.ProviderAuto, factory: &factory{},
			backend: "onnxruntime/cpu", fallback: []string{"test: no CUDA provider"}, noFallback: []string{"native"}},
		{name: "cuda does not try native", provider: accel.ProviderCUDA, factory: &factory{}, weights: true,
			backend: "onnxruntime/cpu", fallback: []string{"test: no CUDA provider"}, noFallback: []string{"native"}, warn: true},
		{name: "cpu does not try native", provider: accel.ProviderCPU, factory: &factory{}, weights: true,
			backend: "onnxruntime/cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(t)
			if tc.weights {
				s = weightsSpec(t)
			}
			logger, buf := logs()
			// ONNX Runtime's CUDA provider is never tried, whichever
			// runtime the tests loaded (EMBEDD_ORT_LIB may be a GPU build).
			opts := accel.Options{Provider: tc.provider, IntraOpThreads: 1, Logger: logger,
				CUDA: accel.CUDAOptions{Unavailable: "test: no CUDA provider"}}
			if tc.factory != nil {
				opts.Native = tc.factory.new
			}
			enc, err := accel.NewEncoder(s, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			d := enc.Device()
			calls := 0
			if tc.factory != nil {
				calls = tc.factory.calls
			}
			if calls != tc.calls {
				t.Errorf("factory called %d times; want %d", calls, tc.calls)
			}
			if d.Backend() != tc.backend || d.Requested != tc.provider {
				t.Errorf("backend %q requested %q; want %q %q", d.Backend(), d.Requested, tc.backend, tc.provider)
			}
			switch {
			case tc.fallback == nil && d.Fallback != "":
				t.Errorf("Fallback = %q; want none", d.Fallback)
			case tc.fallback != nil && d.Fallback == "":
				t.Errorf("no Fallback; want one containing %q", tc.fallback)
			}
			for _, want := range tc.fallback {
				if !strings.Contains(d.Fallback, want) {
					t.Errorf("Fallback = %q; want it to contain %q", d.Fallback, want)
				}
			}
			for _, not := range tc.noFallback {
				if strings.Contains(d.Fallback, not) {
					t.Errorf("Fallback = %q; want no %q", d.Fallback, not)
				}
			}
			if warned := strings.Contains(buf.String(), "level=WARN"); warned != tc.warn {
				t.Errorf("warning logged: %v; want %v\n%s", warned, tc.warn, buf)
			}
			if tc.calls > 0 && tc.factory.err == nil {
				// The factory gets the spec and options as given, with the
				// provider asked for.
				if tc.factory.got != s || tc.factory.opts.Provider != tc.provider || tc.factory.opts.Logger != logger {
					t.Errorf("factory got %+v, provider %q", tc.factory.got, tc.factory.opts.Provider)
				}
				if _, wrapped := enc.(interface{ Unwrap() accel.Encoder }); wrapped != (tc.provider != accel.ProviderCUDANative) {
					t.Errorf("wrapped %v; want a wrapper only where the factory's Requested differs", wrapped)
				}
			}
			encodeOne(t, enc)
		})
	}
}

// TestNativeCUDAUnavailable: when the GPU build of ONNX Runtime is missing
// (CUDAOptions.Unavailable) both reasons are kept.
func TestNativeCUDAUnavailable(t *testing.T) {
	testassets.Runtime(t)
	logger, _ := logs()
	f := &factory{err: errors.New("cuInit: no CUDA-capable device")}
	enc, err := accel.NewEncoder(weightsSpec(t), accel.Options{Provider: accel.ProviderCUDANative, Native: f.new, Logger: logger,
		CUDA: accel.CUDAOptions{Unavailable: "GPU build of ONNX Runtime not usable: not installed"}})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	want := "native: cuInit: no CUDA-capable device; onnxruntime cuda: GPU build of ONNX Runtime not usable: not installed"
	if d := enc.Device(); d.Provider != accel.ProviderCPU || d.Fallback != want {
		t.Errorf("device %+v; want cpu with fallback %q", d, want)
	}
}

func TestSpecPrecision(t *testing.T) {
	testassets.Runtime(t)
	s := weightsSpec(t)
	s.Precision = "bf16"
	if _, err := accel.NewEncoder(s, accel.DefaultOptions()); err == nil || !strings.Contains(err.Error(), `precision "bf16"`) {
		t.Errorf("precision bf16: got %v; want an error naming it", err)
	}
}
