package accel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/testassets"
)

func spec(t *testing.T) accel.ModelSpec {
	m := testassets.Model(t, "all-minilm-l6-v2-int8")
	return accel.ModelSpec{
		Path:     filepath.Join(manifest.Dir(testassets.CacheDir(), m), m.ONNX),
		InputIDs: "input_ids", AttentionMask: "attention_mask", TokenTypeIDs: "token_type_ids",
		Output: "last_hidden_state", Hidden: 384,
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestCUDAFallback asks for CUDA. Where CUDA cannot be used (no GPU, or a
// runtime without the CUDA provider) the encoder must still work, on the CPU,
// and say why.
func TestCUDAFallback(t *testing.T) {
	testassets.Runtime(t)
	enc, err := accel.NewEncoder(spec(t), accel.Options{Provider: accel.ProviderCUDA, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	d := enc.Device()
	if d.Requested != accel.ProviderCUDA {
		t.Errorf("Requested = %q; want cuda", d.Requested)
	}
	switch d.Provider {
	case accel.ProviderCPU:
		if d.Fallback == "" {
			t.Error("fell back to cpu without a reason")
		}
	case accel.ProviderCUDA:
		if d.Fallback != "" {
			t.Errorf("on cuda but Fallback = %q", d.Fallback)
		}
	default:
		t.Errorf("Provider = %q", d.Provider)
	}
	b := accel.Batch{Size: 1, SeqLen: 3, IDs: []int64{101, 7592, 102}, Mask: []int64{1, 1, 1}, TypeIDs: []int64{0, 0, 0}}
	vecs, norms := make([]float32, 384), make([]float32, 1)
	if err := enc.Encode(context.Background(), b, vecs, norms); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeErrors(t *testing.T) {
	testassets.Runtime(t)
	enc, err := accel.NewEncoder(spec(t), accel.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ctx := context.Background()
	ok := accel.Batch{Size: 1, SeqLen: 2, IDs: []int64{101, 102}, Mask: []int64{1, 1}, TypeIDs: []int64{0, 0}}
	tests := []struct {
		name string
		b    accel.Batch
		out  int
	}{
		{"short ids", accel.Batch{Size: 2, SeqLen: 2, IDs: []int64{1}, Mask: []int64{1, 1, 1, 1}, TypeIDs: []int64{0, 0, 0, 0}}, 2 * 384},
		{"empty", accel.Batch{}, 0},
		{"small output", ok, 10},
		{"missing types", accel.Batch{Size: 1, SeqLen: 2, IDs: []int64{101, 102}, Mask: []int64{1, 1}}, 384},
	}
	for _, tc := range tests {
		if err := enc.Encode(ctx, tc.b, make([]float32, tc.out), make([]float32, max(tc.b.Size, 1))); !errors.Is(err, accel.ErrBadBatch) {
			t.Errorf("%s: got %v; want ErrBadBatch", tc.name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := enc.Encode(cctx, ok, make([]float32, 384), make([]float32, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v; want context.Canceled", err)
	}
	if _, err := accel.NewEncoder(spec(t), accel.Options{Provider: "tpu"}); !errors.Is(err, accel.ErrUnknownProvider) {
		t.Errorf("got %v; want ErrUnknownProvider", err)
	}
	bad := spec(t)
	bad.Path = "/nonexistent/model.onnx"
	if _, err := accel.NewEncoder(bad, accel.DefaultOptions()); err == nil {
		t.Error("loading a missing file: got nil error")
	}
}
