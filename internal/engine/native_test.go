package engine_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/testassets"
)

// labelledNative is an ONNX Runtime CPU encoder that reports the device of
// the native CUDA encoder.
type labelledNative struct{ accel.Encoder }

func (labelledNative) Device() accel.Device {
	return accel.Device{Provider: accel.ProviderCUDANative, Requested: accel.ProviderCUDANative}
}

// TestNativeSpecAndBackend: the engine hands the native factory the
// model's safetensors files, precision and pooling (pooled graphs
// included), labels a native model "native/cuda:0" with GPU batch
// defaults, and a model without safetensors falls back to ONNX Runtime
// without calling the factory.
func TestNativeSpecAndBackend(t *testing.T) {
	var specs []accel.ModelSpec
	e := newEngine(t, func(o *engine.Options) {
		o.Accel.Provider = accel.ProviderCUDANative
		o.Accel.Native = func(spec accel.ModelSpec, ao accel.Options) (accel.Encoder, error) {
			specs = append(specs, spec)
			ao.Provider, ao.Native = accel.ProviderCPU, nil
			enc, err := accel.NewEncoder(spec, ao)
			if err != nil {
				return nil, err
			}
			return labelledNative{enc}, nil
		}
	})
	ctx := context.Background()
	for _, tc := range []struct {
		model, precision string
	}{{"all-minilm-l6-v2", "fp32"}, {"all-minilm-l6-v2-fp16", "fp16"}} {
		man := testassets.Model(t, tc.model)
		dir := manifest.Dir(testassets.CacheDir(), man)
		specs = nil
		m := loadModel(t, e, tc.model)
		if len(specs) != 1 {
			t.Fatalf("%s: factory called %d times; want 1", tc.model, len(specs))
		}
		s := specs[0]
		if filepath.Clean(s.ConfigPath) != filepath.Join(dir, "config.json") || filepath.Clean(s.WeightsPath) != filepath.Join(dir, "model.safetensors") ||
			s.Precision != tc.precision || s.Pooling != accel.PoolMean || !s.Pooled || s.Hidden != 384 {
			t.Errorf("%s: spec %+v; want %s/{config.json,model.safetensors}, %s, mean pooling, pooled graph", tc.model, s, dir, tc.precision)
		}
		if m.Backend() != "native/cuda:0" || m.Device().Requested != accel.ProviderCUDANative || m.Device().Fallback != "" {
			t.Errorf("%s: backend %q device %+v; want native/cuda:0 requested cuda-native", tc.model, m.Backend(), m.Device())
		}
		if b := m.BatchOptions(); b.MaxBatchSize != 256 || b.Workers != 2 {
			t.Errorf("%s: batch options %+v; want the GPU defaults (256 texts, 2 workers)", tc.model, b)
		}
		res, err := m.Embed(ctx, []string{"a native test"}, engine.EmbedOptions{})
		if err != nil || len(res.Vectors[0]) != 384 {
			t.Fatalf("%s: embed: %v", tc.model, err)
		}
	}
	specs = nil
	m := loadModel(t, e, "all-minilm-l6-v2-int8")
	if len(specs) != 0 {
		t.Errorf("int8: factory called for a model without safetensors")
	}
	if d := m.Device(); m.Backend() != "onnxruntime/cpu" || !strings.Contains(d.Fallback, "model has no safetensors weights") {
		t.Errorf("int8: backend %q fallback %q; want onnxruntime/cpu and the reason", m.Backend(), d.Fallback)
	}
}
