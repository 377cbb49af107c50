package cudafallback_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/testassets"
)

func TestGPURuntimeCUDAOrFallback(t *testing.T) {
	dir := testassets.GPURuntime(t)
	if err := accel.Init(pull.GPURuntimePath(testassets.CacheDir())); err != nil {
		t.Fatal(err)
	}
	if v := accel.RuntimeVersion(); v != pull.GPURuntime.Version {
		t.Errorf("GPU runtime reports version %s; want %s", v, pull.GPURuntime.Version)
	}
	m := testassets.Model(t, "all-minilm-l6-v2")
	spec := accel.ModelSpec{
		Path:     filepath.Join(manifest.Dir(testassets.CacheDir(), m), m.ONNX),
		InputIDs: "input_ids", AttentionMask: "attention_mask", TokenTypeIDs: "token_type_ids",
		Output: m.Output, Pooled: m.Pooled, NormOutput: m.NormOutput, Hidden: m.Dims,
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cuda, err := accel.NewEncoder(spec, accel.Options{Provider: accel.ProviderCUDA, IntraOpThreads: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer cuda.Close()
	d := cuda.Device()
	missing, _ := pull.MissingCUDALibs(dir)
	t.Logf("device %s, fallback %q; CUDA libraries the loader lacks: %v", d, d.Fallback, missing)
	switch {
	case d.Provider == accel.ProviderCPU && d.Fallback == "":
		t.Fatal("fell back to the CPU without a reason")
	case d.Provider == accel.ProviderCPU && len(missing) > 0:
		// The reason must name a CUDA library that did not load, as ONNX
		// Runtime's loader reports it.
		named := false
		for _, lib := range missing {
			named = named || strings.Contains(d.Fallback, lib)
		}
		if !named {
			t.Errorf("fallback %q names none of the missing libraries %v", d.Fallback, missing)
		}
	case d.Provider == accel.ProviderCUDA && d.Fallback != "":
		t.Errorf("on CUDA but fallback %q", d.Fallback)
	}

	cpu, err := accel.NewEncoder(spec, accel.Options{Provider: accel.ProviderCPU, IntraOpThreads: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	// [CLS] hello world [SEP], and a padded second row.
	b := accel.Batch{Size: 2, SeqLen: 4,
		IDs:     []int64{101, 7592, 2088, 102, 101, 7592, 102, 0},
		Mask:    []int64{1, 1, 1, 1, 1, 1, 1, 0},
		TypeIDs: make([]int64, 8)}
	v1, n1 := make([]float32, 2*384), make([]float32, 2)
	v2, n2 := make([]float32, 2*384), make([]float32, 2)
	if err := cuda.Encode(context.Background(), b, v1, n1); err != nil {
		t.Fatal(err)
	}
	if err := cpu.Encode(context.Background(), b, v2, n2); err != nil {
		t.Fatal(err)
	}
	for r := range 2 {
		var dot float64
		for k := range 384 {
			dot += float64(v1[r*384+k]) * float64(v2[r*384+k])
		}
		if dot < 0.9999 || math.Abs(float64(n1[r]-n2[r])) > 1e-3*float64(n2[r]) {
			t.Errorf("row %d: %s vs cpu cosine %.7f, norms %g vs %g", r, d, dot, n1[r], n2[r])
		}
	}
}
