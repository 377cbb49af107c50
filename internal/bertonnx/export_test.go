package bertonnx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func exportBytes(t *testing.T, cfg Config, weights string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Export(&buf, cfg, weights); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return buf.Bytes()
}

func TestExportStructure(t *testing.T) {
	cfg := tinyConfig()
	tensors := tinyTensors(cfg, "", 1)
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tensors)
	m := decodeModel(t, exportBytes(t, cfg, weights))

	if m.irVersion != IRVersion {
		t.Errorf("ir_version = %d; want %d", m.irVersion, IRVersion)
	}
	if want := map[string]int64{"": Opset}; !maps.Equal(m.opsets, want) {
		t.Errorf("opset_import = %v; want %v", m.opsets, want)
	}
	if m.producerName != ProducerName || m.producerVersion != ProducerVersion {
		t.Errorf("producer = %q %q; want %q %q", m.producerName, m.producerVersion, ProducerName, ProducerVersion)
	}

	wantIn := []decodedValueInfo{
		{InputIDs, dataTypeInt64, []string{"batch", "sequence"}},
		{AttentionMask, dataTypeInt64, []string{"batch", "sequence"}},
		{TokenTypeIDs, dataTypeInt64, []string{"batch", "sequence"}},
	}
	wantOut := []decodedValueInfo{{Output, dataTypeFloat, []string{"batch", "sequence", "8"}}}
	if fmt.Sprint(m.inputs) != fmt.Sprint(wantIn) {
		t.Errorf("inputs = %v; want %v", m.inputs, wantIn)
	}
	if fmt.Sprint(m.outputs) != fmt.Sprint(wantOut) {
		t.Errorf("outputs = %v; want %v", m.outputs, wantOut)
	}

	// 7 embedding nodes, 5 mask nodes, 34 per layer.
	if got, want := len(m.nodes), 12+34*cfg.NumHiddenLayers; got != want {
		t.Errorf("node count = %d; want %d", got, want)
	}
	ops := map[string]int{}
	for _, n := range m.nodes {
		ops[n.opType]++
	}
	L := cfg.NumHiddenLayers
	wantOps := map[string]int{
		"Gather": 2, "Shape": 1, "Slice": 1, "Unsqueeze": 2, "Cast": 1, "Sub": 1,
		"LayerNormalization": 1 + 2*L, "MatMul": 8 * L, "Reshape": 4 * L, "Transpose": 4 * L,
		"Softmax": L, "Erf": L, "Div": 2 * L, "Mul": 1 + 2*L, "Add": 2 + 10*L,
	}
	if !maps.Equal(ops, wantOps) {
		t.Errorf("op counts = %v; want %v", ops, wantOps)
	}

	// Every node input is defined before use; every initializer is used;
	// the graph output is produced by the last LayerNormalization.
	defined := map[string]bool{InputIDs: true, AttentionMask: true, TokenTypeIDs: true}
	inits := map[string]decodedTensor{}
	for _, in := range m.inits {
		if _, dup := inits[in.name]; dup {
			t.Errorf("initializer %s appears twice", in.name)
		}
		inits[in.name] = in
		defined[in.name] = true
	}
	used := map[string]bool{}
	for _, n := range m.nodes {
		for _, in := range n.inputs {
			if !defined[in] {
				t.Errorf("node %s: input %s used before definition", n.name, in)
			}
			used[in] = true
		}
		for _, out := range n.outputs {
			if defined[out] {
				t.Errorf("node %s: output %s defined twice", n.name, out)
			}
			defined[out] = true
		}
	}
	for name := range inits {
		if !used[name] {
			t.Errorf("initializer %s is unused", name)
		}
	}
	last := m.nodes[len(m.nodes)-1]
	if last.opType != "LayerNormalization" || !slices.Equal(last.outputs, []string{Output}) {
		t.Errorf("last node = %s %v; want LayerNormalization [%s]", last.opType, last.outputs, Output)
	}

	// Initializers: shapes, and data copied or transposed from the source.
	checks := []struct {
		name      string
		dims      []int64
		src       string
		transpose bool
	}{
		{"embeddings.word_embeddings.weight", []int64{20, 8}, "embeddings.word_embeddings.weight", false},
		{"embeddings.position_embeddings.weight", []int64{16, 8}, "embeddings.position_embeddings.weight", false},
		{"embeddings.LayerNorm.bias", []int64{8}, "embeddings.LayerNorm.bias", false},
		{"encoder.layer.1.attention.self.key.weight", []int64{8, 8}, "encoder.layer.1.attention.self.key.weight", true},
		{"encoder.layer.0.intermediate.dense.weight", []int64{8, 16}, "encoder.layer.0.intermediate.dense.weight", true},
		{"encoder.layer.0.output.dense.weight", []int64{16, 8}, "encoder.layer.0.output.dense.weight", true},
		{"encoder.layer.1.output.LayerNorm.weight", []int64{8}, "encoder.layer.1.output.LayerNorm.weight", false},
	}
	for _, c := range checks {
		in, ok := inits[c.name]
		if !ok {
			t.Errorf("initializer %s missing", c.name)
			continue
		}
		if in.dataType != dataTypeFloat || !slices.Equal(in.dims, c.dims) {
			t.Errorf("%s: type %d dims %v; want %d %v", c.name, in.dataType, in.dims, dataTypeFloat, c.dims)
		}
		want := tensors[c.src].data
		if c.transpose {
			s := tensors[c.src].shape
			want = naiveTranspose(want, int(s[0]), int(s[1]))
		}
		if !bytes.Equal(in.raw, want) {
			t.Errorf("%s: raw data differs from source", c.name)
		}
	}
	for _, name := range []string{"pooler.dense.weight", "embeddings.position_ids"} {
		if _, ok := inits[name]; ok {
			t.Errorf("initializer %s present; want it ignored", name)
		}
	}

	// Constants that fix the semantics.
	wantF32 := map[string]float32{
		"const_f32_mask":           -math.MaxFloat32,
		"const_f32_sqrt_head_size": 2, // head size 4
		"const_f32_sqrt_2":         math.Sqrt2,
		"const_f32_1":              1,
		"const_f32_0.5":            0.5,
	}
	for name, want := range wantF32 {
		in := inits[name]
		if len(in.raw) != 4 || len(in.dims) != 0 {
			t.Errorf("%s: %d bytes, dims %v; want a float32 scalar", name, len(in.raw), in.dims)
			continue
		}
		if got := math.Float32frombits(binary.LittleEndian.Uint32(in.raw)); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	if got := int64sOf(inits["const_shape_split_heads"].raw); !slices.Equal(got, []int64{0, 0, 2, 4}) {
		t.Errorf("const_shape_split_heads = %v; want [0 0 2 4]", got)
	}
	for _, n := range m.nodes {
		if n.opType == "LayerNormalization" {
			if eps := n.attrs["epsilon"].GetF(); eps != float32(1e-12) {
				t.Errorf("%s: epsilon = %g; want 1e-12", n.name, eps)
			}
		}
		if n.opType == "Transpose" && strings.Contains(n.name, "/key/") {
			if got := n.attrs["perm"].GetInts(); !slices.Equal(got, []int64{0, 2, 3, 1}) {
				t.Errorf("%s: perm = %v; want [0 2 3 1]", n.name, got)
			}
		}
	}
}

func TestExportDeterministic(t *testing.T) {
	cfg := tinyConfig()
	dir := t.TempDir()
	plain := writeSafetensors(t, filepath.Join(dir, "plain.safetensors"), tinyTensors(cfg, "", 7))
	prefixed := writeSafetensors(t, filepath.Join(dir, "prefixed.safetensors"), tinyTensors(cfg, "bert.", 7))
	other := writeSafetensors(t, filepath.Join(dir, "other.safetensors"), tinyTensors(cfg, "", 8))

	a := exportBytes(t, cfg, plain)
	b := exportBytes(t, cfg, plain)
	if !bytes.Equal(a, b) {
		t.Fatalf("two exports of the same input differ")
	}
	// The checkpoint prefix does not reach the output.
	if c := exportBytes(t, cfg, prefixed); !bytes.Equal(a, c) {
		t.Errorf("export of bert.-prefixed checkpoint differs from unprefixed one")
	}
	if d := exportBytes(t, cfg, other); bytes.Equal(a, d) {
		t.Errorf("exports of different weights are identical")
	}
}

func TestExportGammaBeta(t *testing.T) {
	cfg := tinyConfig()
	tensors := tinyTensors(cfg, "", 3)
	renamed := map[string]stSpec{}
	for name, s := range tensors {
		name = strings.Replace(name, "LayerNorm.weight", "LayerNorm.gamma", 1)
		name = strings.Replace(name, "LayerNorm.bias", "LayerNorm.beta", 1)
		renamed[name] = s
	}
	dir := t.TempDir()
	a := exportBytes(t, cfg, writeSafetensors(t, filepath.Join(dir, "a.safetensors"), tensors))
	b := exportBytes(t, cfg, writeSafetensors(t, filepath.Join(dir, "b.safetensors"), renamed))
	if !bytes.Equal(a, b) {
		t.Errorf("export with LayerNorm gamma/beta differs from weight/bias")
	}
}

func TestExportFile(t *testing.T) {
	cfg := tinyConfig()
	dir := t.TempDir()
	weights := writeSafetensors(t, filepath.Join(dir, "model.safetensors"), tinyTensors(cfg, "", 1))
	configPath := writeConfig(t, dir, cfg)
	dst := filepath.Join(dir, "out", "model.onnx")
	if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ExportFile(dst, configPath, weights); err != nil {
		t.Fatalf("ExportFile: %v", err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if want := exportBytes(t, cfg, weights); !bytes.Equal(got, want) {
		t.Errorf("ExportFile output differs from Export")
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v; want 0644", fi.Mode().Perm())
	}

	// A failed export leaves dst as it was and no temporary file behind.
	bad := writeSafetensors(t, filepath.Join(dir, "bad.safetensors"), map[string]stSpec{})
	if err := ExportFile(dst, configPath, bad); !errors.Is(err, ErrMissingTensor) {
		t.Errorf("ExportFile(bad weights) = %v; want %v", err, ErrMissingTensor)
	}
	after, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(after, got) {
		t.Errorf("dst changed by a failed export (err %v)", err)
	}
	entries, err := os.ReadDir(filepath.Dir(dst))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("output dir holds %v; want only model.onnx", names)
	}
}

func TestExportErrors(t *testing.T) {
	cfg := tinyConfig()
	base := tinyTensors(cfg, "", 1)
	with := func(edit func(m map[string]stSpec)) map[string]stSpec {
		m := map[string]stSpec{}
		for k, v := range base {
			m[k] = v
		}
		edit(m)
		return m
	}
	cases := []struct {
		name    string
		cfg     func(*Config)
		tensors map[string]stSpec
		raw     []byte // written instead of tensors when set
		want    error
		msg     []string // substrings the error must contain
	}{
		{
			name:    "missing tensor",
			tensors: with(func(m map[string]stSpec) { delete(m, "encoder.layer.1.attention.self.value.bias") }),
			want:    ErrMissingTensor,
			msg:     []string{"encoder.layer.1.attention.self.value.bias", "[8]"},
		},
		{
			name:    "missing embeddings",
			tensors: with(func(m map[string]stSpec) { delete(m, "embeddings.word_embeddings.weight") }),
			want:    ErrMissingTensor,
			msg:     []string{"embeddings.word_embeddings.weight", "[20 8]"},
		},
		{
			name: "wrong shape",
			tensors: with(func(m map[string]stSpec) {
				m["encoder.layer.0.intermediate.dense.weight"] = f32Tensor(newRand(), 8, 16)
			}),
			want: ErrTensorMismatch,
			msg:  []string{"encoder.layer.0.intermediate.dense.weight", "got F32 [8 16]", "want F32 [16 8]"},
		},
		{
			name: "wrong dtype",
			tensors: with(func(m map[string]stSpec) {
				m["embeddings.LayerNorm.weight"] = stSpec{dtype: "F64", shape: []int64{8}, data: make([]byte, 64)}
			}),
			want: ErrTensorMismatch,
			msg:  []string{"embeddings.LayerNorm.weight", "got F64 [8]", "want F32, F16 or BF16 [8]"},
		},
		{
			name:    "config disagrees with weights",
			cfg:     func(c *Config) { c.VocabSize = 21 },
			tensors: base,
			want:    ErrTensorMismatch,
			msg:     []string{"embeddings.word_embeddings.weight", "want F32 [21 8]"},
		},
		{
			name:    "tanh gelu",
			cfg:     func(c *Config) { c.HiddenAct = "gelu_new" },
			tensors: base,
			want:    ErrUnsupported,
			msg:     []string{"hidden_act", "gelu_new"},
		},
		{
			name:    "heads do not divide hidden",
			cfg:     func(c *Config) { c.NumAttentionHeads = 3 },
			tensors: base,
			want:    ErrInvalidConfig,
			msg:     []string{"not a multiple"},
		},
		{
			name: "header too large",
			raw:  binary.LittleEndian.AppendUint64(nil, MaxSafetensorsHeader+1),
			want: ErrBadSafetensors,
			msg:  []string{"exceeds limit"},
		},
		{
			name: "header beyond file",
			raw:  append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...),
			want: ErrBadSafetensors,
			msg:  []string{"exceeds file size"},
		},
		{
			name: "offsets beyond data",
			raw:  rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4),
			want: ErrBadSafetensors,
			msg:  []string{`"a"`, "outside data section"},
		},
		{
			name: "size disagrees with shape",
			raw:  rawSafetensors(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8),
			want: ErrBadSafetensors,
			msg:  []string{`"a"`, "needs 12 bytes"},
		},
		{
			name: "not JSON",
			raw:  rawSafetensors(`not json`, 0),
			want: ErrBadSafetensors,
		},
		{
			name: "short file",
			raw:  []byte{1, 2, 3},
			want: ErrBadSafetensors,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tinyConfig()
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			path := filepath.Join(t.TempDir(), "model.safetensors")
			if tc.raw != nil {
				if err := os.WriteFile(path, tc.raw, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				writeSafetensors(t, path, tc.tensors)
			}
			var buf bytes.Buffer
			err := Export(&buf, c, path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Export error = %v; want %v", err, tc.want)
			}
			for _, s := range tc.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestExportReportsAllTensorErrors(t *testing.T) {
	cfg := tinyConfig()
	m := tinyTensors(cfg, "", 1)
	delete(m, "encoder.layer.0.attention.self.query.weight")
	delete(m, "encoder.layer.1.output.LayerNorm.bias")
	path := writeSafetensors(t, filepath.Join(t.TempDir(), "m.safetensors"), m)
	err := Export(&bytes.Buffer{}, cfg, path)
	for _, name := range []string{"encoder.layer.0.attention.self.query.weight", "encoder.layer.1.output.LayerNorm.bias"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestExportMissingFile(t *testing.T) {
	err := Export(&bytes.Buffer{}, tinyConfig(), filepath.Join(t.TempDir(), "nope.safetensors"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Export(missing file) = %v; want %v", err, os.ErrNotExist)
	}
}

func rawSafetensors(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

func naiveTranspose(src []byte, rows, cols int) []byte {
	dst := make([]byte, len(src))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			copy(dst[(c*rows+r)*4:(c*rows+r)*4+4], src[(r*cols+c)*4:(r*cols+c)*4+4])
		}
	}
	return dst
}

func int64sOf(b []byte) []int64 {
	var out []int64
	for i := 0; i+8 <= len(b); i += 8 {
		out = append(out, int64(binary.LittleEndian.Uint64(b[i:])))
	}
	return out
}

// benchWeights writes a BERT of about 1.6 MB of weights for the benchmarks.
func benchWeights(b *testing.B) (Config, string) {
	cfg := tinyConfig()
	cfg.HiddenSize, cfg.NumAttentionHeads, cfg.IntermediateSize, cfg.VocabSize = 128, 4, 512, 1000
	cfg.NumHiddenLayers = 4
	weights := writeSafetensors(b, filepath.Join(b.TempDir(), "model.safetensors"), tinyTensors(cfg, "", 1))
	var buf bytes.Buffer
	if err := Export(&buf, cfg, weights); err != nil { // warm the page cache
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	return cfg, weights
}

func BenchmarkExport(b *testing.B) {
	cfg, weights := benchWeights(b)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := Export(&buf, cfg, weights); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExportParallel(b *testing.B) {
	cfg, weights := benchWeights(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf bytes.Buffer
		for pb.Next() {
			buf.Reset()
			if err := Export(&buf, cfg, weights); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
