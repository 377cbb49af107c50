package bertonnx

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// specFloats decodes an F32, F16 or BF16 spec with an independent decoder
// (widenSpec, not the package's converters).
func specFloats(t *testing.T, s stSpec) []float32 {
	t.Helper()
	w := widenSpec(s)
	if w.dtype != "F32" {
		t.Fatalf("spec of dtype %s", s.dtype)
	}
	out := make([]float32, len(w.data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(w.data[4*i:]))
	}
	return out
}

func openTestWeights(t *testing.T, m map[string]stSpec) *Weights {
	t.Helper()
	w, err := OpenWeights(writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

func TestWeightsFloat32(t *testing.T) {
	cfg := tinyConfig()
	h := int64(cfg.HiddenSize)
	for _, tc := range []struct {
		name, prefix string
		conv         func(stSpec) stSpec
	}{
		{"f32", "", func(s stSpec) stSpec { return s }},
		{"f32-prefixed", "bert.", func(s stSpec) stSpec { return s }},
		{"f16", "", halfSpec},
		{"bf16-prefixed", "bert.", bf16Spec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs := mapSpecs(tinyTensors(cfg, tc.prefix, 5), tc.conv)
			w := openTestWeights(t, specs)
			if w.Prefix() != tc.prefix {
				t.Errorf("Prefix() = %q; want %q", w.Prefix(), tc.prefix)
			}
			for _, c := range []struct {
				name  string
				shape []int64
			}{
				{"embeddings.word_embeddings.weight", []int64{int64(cfg.VocabSize), h}},
				{"encoder.layer.1.intermediate.dense.weight", []int64{int64(cfg.IntermediateSize), h}},
				{"encoder.layer.0.attention.self.key.bias", []int64{h}},
			} {
				got, err := w.Float32(c.name, c.shape...)
				if err != nil {
					t.Fatal(err)
				}
				want := specFloats(t, specs[tc.prefix+c.name])
				if len(got) != len(want) {
					t.Fatalf("%s: %d values; want %d", c.name, len(got), len(want))
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s[%d] = %g; want %g", c.name, i, got[i], want[i])
					}
				}
			}
		})
	}
}

func TestWeightsLayerNormGammaBeta(t *testing.T) {
	cfg := tinyConfig()
	h := int64(cfg.HiddenSize)
	specs := tinyTensors(cfg, "", 7)
	renamed := map[string]stSpec{}
	for name, s := range specs {
		name = strings.Replace(name, "LayerNorm.weight", "LayerNorm.gamma", 1)
		name = strings.Replace(name, "LayerNorm.bias", "LayerNorm.beta", 1)
		renamed[name] = s
	}
	a, b := openTestWeights(t, specs), openTestWeights(t, renamed)
	for _, base := range []string{"embeddings.LayerNorm", "encoder.layer.1.output.LayerNorm"} {
		sa, ba, err := a.LayerNorm(base, h)
		if err != nil {
			t.Fatal(err)
		}
		sb, bb, err := b.LayerNorm(base, h)
		if err != nil {
			t.Fatal(err)
		}
		want := specFloats(t, specs[base+".weight"])
		wantBias := specFloats(t, specs[base+".bias"])
		for i := range want {
			if sa[i] != want[i] || sb[i] != want[i] || ba[i] != wantBias[i] || bb[i] != wantBias[i] {
				t.Fatalf("%s element %d: weight/bias %g %g, gamma/beta %g %g; want %g %g",
					base, i, sa[i], ba[i], sb[i], bb[i], want[i], wantBias[i])
			}
		}
	}
}

func TestWeightsErrors(t *testing.T) {
	cfg := tinyConfig()
	w := openTestWeights(t, tinyTensors(cfg, "bert.", 9))
	h := int64(cfg.HiddenSize)
	for _, tc := range []struct {
		name    string
		tensor  string
		shape   []int64
		want    error
		mention string
	}{
		{"missing", "encoder.layer.7.output.dense.bias", []int64{h}, ErrMissingTensor, "bert.encoder.layer.7.output.dense.bias"},
		{"shape", "encoder.layer.0.output.dense.weight", []int64{h, h}, ErrTensorMismatch, "got F32 [8 16]; want F32 [8 8]"},
		{"rank", "embeddings.LayerNorm.weight", []int64{1, h}, ErrTensorMismatch, "bert.embeddings.LayerNorm.weight"},
		{"dtype", "embeddings.position_ids", []int64{1, int64(cfg.MaxPositionEmbeddings)}, ErrTensorMismatch, "got I64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Float32(tc.tensor, tc.shape...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Float32(%s, %v) = %v; want %v", tc.tensor, tc.shape, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) || !strings.Contains(err.Error(), "model.safetensors") {
				t.Errorf("error %q does not name %q and the file", err, tc.mention)
			}
		})
	}
	if _, _, err := w.LayerNorm("encoder.layer.0.attention.output.LayerNorm", h+1); !errors.Is(err, ErrTensorMismatch) {
		t.Errorf("LayerNorm with the wrong width = %v; want %v", err, ErrTensorMismatch)
	}

	noWord := tinyTensors(cfg, "", 9)
	delete(noWord, "embeddings.word_embeddings.weight")
	path := writeSafetensors(t, filepath.Join(t.TempDir(), "x.safetensors"), noWord)
	if _, err := OpenWeights(path); !errors.Is(err, ErrMissingTensor) || !strings.Contains(err.Error(), "bert.embeddings.word_embeddings.weight") {
		t.Errorf("OpenWeights without word embeddings = %v; want %v naming both names", err, ErrMissingTensor)
	}
	if _, err := OpenWeights(filepath.Join(t.TempDir(), "absent.safetensors")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenWeights of a missing file = %v; want %v", err, os.ErrNotExist)
	}
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(bad, rawSafetensors(`{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}`, 8), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWeights(bad); !errors.Is(err, ErrBadSafetensors) {
		t.Errorf("OpenWeights of a malformed file = %v; want %v", err, ErrBadSafetensors)
	}
}
