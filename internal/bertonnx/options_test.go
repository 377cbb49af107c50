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

	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
)

func exportWith(t *testing.T, cfg Config, weights string, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := ExportWith(&buf, cfg, weights, opts); err != nil {
		t.Fatalf("ExportWith(%+v): %v", opts, err)
	}
	return buf.Bytes()
}

// variants are the option sets the tests export, keyed by a short name.
var variants = map[string]Options{
	"fp32":               {},
	"fp32-mean":          {Pooling: PoolMean},
	"fp32-mean-norm":     {Pooling: PoolMean, Normalize: true},
	"fp32-cls":           {Pooling: PoolCLS},
	"fp32-cls-norm":      {Pooling: PoolCLS, Normalize: true},
	"fp16":               {Precision: FP16},
	"fp16-mean-norm":     {Precision: FP16, Pooling: PoolMean, Normalize: true},
	"fp16-cls":           {Precision: FP16, Pooling: PoolCLS},
	"fp32-explicit-none": {Precision: FP32, Pooling: PoolNone},
	"q8":                 {Precision: Q8},
	"q8-mean-norm":       {Precision: Q8, Pooling: PoolMean, Normalize: true},
	"q8-cls":             {Precision: Q8, Pooling: PoolCLS},
}

// TestExportDefaultOptionsUnchanged: the zero Options, and the defaults
// spelled out, give exactly what Export gives (whose bytes the real model's
// pinned sha256 holds).
func TestExportDefaultOptionsUnchanged(t *testing.T) {
	cfg := tinyConfig()
	dir := t.TempDir()
	weights := writeSafetensors(t, filepath.Join(dir, "model.safetensors"), tinyTensors(cfg, "", 1))
	want := exportBytes(t, cfg, weights)
	for _, opts := range []Options{{}, {Precision: FP32}, {Pooling: PoolNone}, {Precision: FP32, Pooling: PoolNone}} {
		if got := exportWith(t, cfg, weights, opts); !bytes.Equal(got, want) {
			t.Errorf("ExportWith(%+v) differs from Export", opts)
		}
	}
	dst := filepath.Join(dir, "model.onnx")
	if err := ExportFileWith(dst, writeConfig(t, dir, cfg), weights, Options{Precision: FP32}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ExportFileWith(fp32) differs from Export (err %v)", err)
	}
}

// TestExportOptionsDeterministic: every variant gives the same bytes twice,
// and no two variants give the same bytes (except the default spelled out).
func TestExportOptionsDeterministic(t *testing.T) {
	cfg := tinyConfig()
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tinyTensors(cfg, "", 5))
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		a := exportWith(t, cfg, weights, variants[name])
		if b := exportWith(t, cfg, weights, variants[name]); !bytes.Equal(a, b) {
			t.Errorf("%s: two exports differ", name)
		}
		if other, ok := seen[string(a)]; ok && !(name == "fp32-explicit-none" && other == "fp32") {
			t.Errorf("%s: same bytes as %s", name, other)
		}
		seen[string(a)] = name
	}
}

// TestExportIsProtoMarshal: for every variant, the streamed output is
// exactly what proto.Marshal (deterministic) gives for the ModelProto it
// decodes to, so splicing the weights in around the marshaled messages (see
// graph.encode) changes no byte, and the output is canonical protobuf, as
// onnx.load(...).SerializeToString() gives back.
func TestExportIsProtoMarshal(t *testing.T) {
	cfg := tinyConfig()
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tinyTensors(cfg, "", 6))
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		got := exportWith(t, cfg, weights, variants[name])
		var m onnxpb.ModelProto
		if err := proto.Unmarshal(got, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(m.GetGraph().GetInitializer()) == 0 || len(m.GetGraph().GetInitializer()[0].GetRawData()) == 0 {
			t.Fatalf("%s: no initializer data decoded", name)
		}
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Errorf("%s: export (%d bytes) differs from proto.Marshal (%d bytes) from byte %d", name, len(got), len(want), i)
		}
	}
}

// halfSpec returns s with every float32 rounded to float16 by refF16, the
// test's own rounding (numpy's astype(np.float16)), stored as dtype F16;
// other dtypes are returned unchanged.
func halfSpec(s stSpec) stSpec {
	if s.dtype != "F32" {
		return s
	}
	out := stSpec{dtype: "F16", shape: s.shape}
	for i := 0; i < len(s.data); i += 4 {
		out.data = binary.LittleEndian.AppendUint16(out.data, refF16(math.Float32frombits(binary.LittleEndian.Uint32(s.data[i:]))))
	}
	return out
}

// widenSpec returns an F16 or BF16 spec as F32 holding the same values.
func widenSpec(s stSpec) stSpec {
	if s.dtype != "F16" && s.dtype != "BF16" {
		return s
	}
	out := stSpec{dtype: "F32", shape: s.shape}
	for i := 0; i < len(s.data); i += 2 {
		h := binary.LittleEndian.Uint16(s.data[i:])
		var v float32
		if s.dtype == "F16" {
			e, f := float64(h>>10&0x1f), float64(h&0x3ff)
			if e == 0 {
				v = float32(math.Ldexp(f, -24))
			} else {
				v = float32(math.Ldexp(1+f/1024, int(e)-15))
			}
			if h&0x8000 != 0 {
				v = -v
			}
		} else {
			v = math.Float32frombits(uint32(h) << 16)
		}
		out.data = binary.LittleEndian.AppendUint32(out.data, math.Float32bits(v))
	}
	return out
}

// bf16Spec truncates every float32 of s to bfloat16.
func bf16Spec(s stSpec) stSpec {
	if s.dtype != "F32" {
		return s
	}
	out := stSpec{dtype: "BF16", shape: s.shape}
	for i := 0; i < len(s.data); i += 4 {
		out.data = binary.LittleEndian.AppendUint16(out.data, uint16(binary.LittleEndian.Uint32(s.data[i:])>>16))
	}
	return out
}

func mapSpecs(m map[string]stSpec, f func(stSpec) stSpec) map[string]stSpec {
	out := make(map[string]stSpec, len(m))
	for k, v := range m {
		out[k] = f(v)
	}
	return out
}

// TestExportHalfCheckpoints: an FP16 graph depends on the weights only
// through their float16 values, so the F32 checkpoint and its float16
// rounding (an F16 checkpoint, as numpy's astype(np.float16) writes it) give
// the same bytes; an FP32 graph from an F16 or BF16 checkpoint is the one
// from an F32 checkpoint holding the same values.
func TestExportHalfCheckpoints(t *testing.T) {
	cfg := tinyConfig()
	dir := t.TempDir()
	f32 := tinyTensors(cfg, "", 11)
	write := func(name string, m map[string]stSpec) string {
		return writeSafetensors(t, filepath.Join(dir, name+".safetensors"), m)
	}
	src := write("f32", f32)
	half := mapSpecs(f32, halfSpec)
	f16 := write("f16", half)
	f16Prefixed := write("f16-prefixed", tinyTensors(cfg, "bert.", 11))
	f16Prefixed = write("f16-prefixed", mapSpecs(readSpecs(t, f16Prefixed), halfSpec))
	widened := write("f16-widened", mapSpecs(half, widenSpec))
	bf := mapSpecs(f32, bf16Spec)
	bf16 := write("bf16", bf)
	bfWidened := write("bf16-widened", mapSpecs(bf, widenSpec))

	for _, name := range []string{"fp16", "fp16-mean-norm", "fp16-cls"} {
		opts := variants[name]
		want := exportWith(t, cfg, src, opts)
		if got := exportWith(t, cfg, f16, opts); !bytes.Equal(got, want) {
			t.Errorf("%s: export of the F16 checkpoint differs from the F32 one", name)
		}
		if got := exportWith(t, cfg, f16Prefixed, opts); !bytes.Equal(got, want) {
			t.Errorf("%s: export of the bert.-prefixed F16 checkpoint differs from the F32 one", name)
		}
	}
	for _, name := range []string{"fp32", "fp32-mean-norm"} {
		opts := variants[name]
		if got, want := exportWith(t, cfg, f16, opts), exportWith(t, cfg, widened, opts); !bytes.Equal(got, want) {
			t.Errorf("%s: export of the F16 checkpoint differs from F32 holding its values", name)
		}
		if got, want := exportWith(t, cfg, bf16, opts), exportWith(t, cfg, bfWidened, opts); !bytes.Equal(got, want) {
			t.Errorf("%s: export of the BF16 checkpoint differs from F32 holding its values", name)
		}
		if got, other := exportWith(t, cfg, f16, opts), exportWith(t, cfg, src, opts); bytes.Equal(got, other) {
			t.Errorf("%s: export of the F16 checkpoint equals that of the unrounded F32 one", name)
		}
	}
}

// readSpecs reads back a safetensors file written by writeSafetensors.
func readSpecs(t *testing.T, path string) map[string]stSpec {
	t.Helper()
	st, err := openSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]stSpec{}
	for name, tt := range st.tensors {
		data, err := st.readAll(name, tt)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = stSpec{dtype: tt.dtype, shape: tt.shape, data: data}
	}
	return out
}

// elemTypes infers the element type of every tensor of m, failing the test
// on a node whose inputs disagree where ONNX requires one type.
func elemTypes(t *testing.T, m decodedModel) map[string]onnxpb.TensorProto_DataType {
	t.Helper()
	types := map[string]onnxpb.TensorProto_DataType{}
	for _, in := range m.inputs {
		types[in.name] = in.elemType
	}
	for _, in := range m.inits {
		types[in.name] = in.dataType
	}
	for _, n := range m.nodes {
		var out onnxpb.TensorProto_DataType
		switch n.opType {
		case "ConstantOfShape":
			out = onnxpb.TensorProto_DataType(n.attrs["value"].GetT().GetDataType())
		case "QuantizeLinear":
			out = types[n.inputs[2]] // the zero point's
		case "MatMulIntegerToFloat":
			// uint8 activations and zero point, int8 weights, float
			// scales.
			for i, want := range []onnxpb.TensorProto_DataType{dataTypeUint8, dataTypeInt8, dataTypeFloat, dataTypeFloat, dataTypeUint8} {
				if types[n.inputs[i]] != want {
					t.Errorf("%s: input %s is type %d; want %d", n.name, n.inputs[i], types[n.inputs[i]], want)
				}
			}
			out = dataTypeFloat
		case "Cast":
			out = onnxpb.TensorProto_DataType(n.attrs["to"].GetI())
		case "Shape":
			out = dataTypeInt64
		case "Gather":
			out = types[n.inputs[0]]
		case "MatMul", "Add", "Sub", "Mul", "Div", "Max", "LayerNormalization":
			out = types[n.inputs[0]]
			for _, in := range n.inputs[1:] {
				if types[in] != out {
					t.Errorf("%s: input %s is type %d; want %d like %s", n.name, in, types[in], out, n.inputs[0])
				}
			}
		default: // Unsqueeze, Slice, Reshape, Transpose, Softmax, Erf, Reduce*
			out = types[n.inputs[0]]
		}
		types[n.outputs[0]] = out
	}
	return types
}

// TestExportFP16Layout checks where an FP16 graph is float16 and where it
// is float32, and that q is scaled before QKᵀ.
func TestExportFP16Layout(t *testing.T) {
	cfg := tinyConfig()
	tensors := tinyTensors(cfg, "", 2)
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tensors)
	for _, name := range []string{"fp16", "fp16-mean-norm"} {
		t.Run(name, func(t *testing.T) {
			m := decodeModel(t, exportWith(t, cfg, weights, variants[name]))
			checkWellFormed(t, m)
			types := elemTypes(t, m)
			producer := map[string]decodedNode{}
			for _, n := range m.nodes {
				producer[n.outputs[0]] = n
				want := dataTypeFloat
				switch {
				case n.opType == "Cast":
					want = onnxpb.TensorProto_DataType(n.attrs["to"].GetI())
				case n.opType == "Shape", strings.HasPrefix(n.name, "/mask/Unsqueeze"):
					want = dataTypeInt64
				case n.opType == "MatMul",
					n.opType == "Add" && producer[n.inputs[0]].opType == "MatMul", // linear bias
					strings.Contains(n.name, "/intermediate/"),                    // GELU
					strings.Contains(n.name, "/attention/self/") && n.opType != "Add" && n.opType != "Softmax",
					strings.HasPrefix(n.name, "/embeddings/") && (n.opType == "Gather" || n.opType == "Slice"):
					want = dataTypeFloat16
				}
				if got := types[n.outputs[0]]; got != want {
					t.Errorf("%s (%s): output type %d; want %d", n.name, n.opType, got, want)
				}
			}
			// float16 matmul weights and embedding tables, float32
			// LayerNorm holding float16 values.
			inits := map[string]decodedTensor{}
			for _, in := range m.inits {
				inits[in.name] = in
			}
			for _, c := range []struct {
				name      string
				dataType  onnxpb.TensorProto_DataType
				transpose bool
			}{
				{"embeddings.word_embeddings.weight", dataTypeFloat16, false},
				{"embeddings.position_embeddings.weight", dataTypeFloat16, false},
				{"embeddings.token_type_embeddings.weight", dataTypeFloat16, false},
				{"encoder.layer.1.attention.self.key.weight", dataTypeFloat16, true},
				{"encoder.layer.0.intermediate.dense.weight", dataTypeFloat16, true},
				{"encoder.layer.0.intermediate.dense.bias", dataTypeFloat16, false},
				{"encoder.layer.1.output.dense.bias", dataTypeFloat16, false},
				{"embeddings.LayerNorm.weight", dataTypeFloat, false},
				{"encoder.layer.1.output.LayerNorm.bias", dataTypeFloat, false},
			} {
				in := inits[c.name]
				src := halfSpec(tensors[c.name])
				if c.dataType == dataTypeFloat {
					src = widenSpec(src)
				}
				want := src.data
				if c.transpose {
					want = transpose(want, int(src.shape[0]), int(src.shape[1]), len(want)/int(src.shape[0]*src.shape[1]))
				}
				if in.dataType != c.dataType || !bytes.Equal(in.raw, want) {
					t.Errorf("%s: type %d, data equal %v; want type %d holding the float16 values", c.name, in.dataType, bytes.Equal(in.raw, want), c.dataType)
				}
			}
			// q·(1/√head) feeds every QKᵀ.
			for _, n := range m.nodes {
				if !strings.HasSuffix(n.name, "/attention/self/MatMul") {
					continue
				}
				q := producer[n.inputs[0]]
				if q.opType != "Mul" || q.inputs[1] != "const_f16_inv_sqrt_head_size" {
					t.Errorf("%s: first input from %s %v; want Mul by const_f16_inv_sqrt_head_size", n.name, q.opType, q.inputs)
				}
			}
			if got := inits["const_f16_inv_sqrt_head_size"].raw; !bytes.Equal(got, []byte{0x00, 0x38}) { // 0.5: head size 4
				t.Errorf("const_f16_inv_sqrt_head_size = %x; want 0038 (0.5)", got)
			}
			for _, o := range m.outputs {
				if o.elemType != dataTypeFloat {
					t.Errorf("output %s: type %d; want float32", o.name, o.elemType)
				}
			}
		})
	}
}

// checkWellFormed checks that every node input is defined before use, no
// name is defined twice, every initializer is used and every graph output
// is produced.
func checkWellFormed(t *testing.T, m decodedModel) {
	t.Helper()
	defined := map[string]bool{}
	for _, in := range m.inputs {
		defined[in.name] = true
	}
	for _, in := range m.inits {
		if defined[in.name] {
			t.Errorf("initializer %s defined twice", in.name)
		}
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
	for _, in := range m.inits {
		if !used[in.name] {
			t.Errorf("initializer %s is unused", in.name)
		}
	}
	for _, o := range m.outputs {
		if !defined[o.name] {
			t.Errorf("output %s is not produced", o.name)
		}
	}
}

// TestExportPoolingStructure checks the outputs and the pooling nodes of
// each variant.
func TestExportPoolingStructure(t *testing.T) {
	cfg := tinyConfig()
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tinyTensors(cfg, "", 3))
	emb := decodedValueInfo{SentenceEmbedding, dataTypeFloat, []string{"batch", "8"}}
	norm := decodedValueInfo{SentenceNorm, dataTypeFloat, []string{"batch", "1"}}
	hidden := decodedValueInfo{Output, dataTypeFloat, []string{"batch", "sequence", "8"}}
	L := cfg.NumHiddenLayers
	tests := []struct {
		name    string
		outputs []decodedValueInfo
		extra   map[string]int // op counts beyond the fp32 encoder's
	}{
		{"fp32", []decodedValueInfo{hidden}, nil},
		{"fp32-mean", []decodedValueInfo{emb}, map[string]int{"Cast": 1, "Unsqueeze": 1, "Mul": 1, "ReduceSum": 2, "Max": 1, "Div": 1}},
		{"fp32-mean-norm", []decodedValueInfo{emb, norm}, map[string]int{"Cast": 1, "Unsqueeze": 1, "Mul": 1, "ReduceSum": 2, "Max": 2, "Div": 2, "ReduceL2": 1}},
		{"fp32-cls", []decodedValueInfo{emb}, map[string]int{"Gather": 1}},
		{"fp32-cls-norm", []decodedValueInfo{emb, norm}, map[string]int{"Gather": 1, "ReduceL2": 1, "Max": 1, "Div": 1}},
		// Per layer: casts into Q/K/V, of the scores to and from float32,
		// into the intermediate layer and out of both dense outputs; the
		// q scale replaces the Div of the scores.
		{"fp16", []decodedValueInfo{hidden}, map[string]int{"Cast": 3 + 6*L, "Mul": L, "Div": -L}},
		{"fp16-mean-norm", []decodedValueInfo{emb, norm}, map[string]int{"Cast": 3 + 6*L + 1, "Mul": L + 1, "Div": -L + 2, "Unsqueeze": 1, "ReduceSum": 2, "Max": 2, "ReduceL2": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := decodeModel(t, exportWith(t, cfg, weights, variants[tc.name]))
			checkWellFormed(t, m)
			elemTypes(t, m)
			if fmt.Sprint(m.outputs) != fmt.Sprint(tc.outputs) {
				t.Errorf("outputs = %v; want %v", m.outputs, tc.outputs)
			}
			want := map[string]int{
				"Gather": 2, "Shape": 1, "Slice": 1, "Unsqueeze": 2, "Cast": 1, "Sub": 1,
				"LayerNormalization": 1 + 2*L, "MatMul": 8 * L, "Reshape": 4 * L, "Transpose": 4 * L,
				"Softmax": L, "Erf": L, "Div": 2 * L, "Mul": 1 + 2*L, "Add": 2 + 10*L,
			}
			for op, n := range tc.extra {
				want[op] += n
			}
			got := map[string]int{}
			for _, n := range m.nodes {
				got[n.opType]++
			}
			if !maps.Equal(got, want) {
				t.Errorf("op counts = %v; want %v", got, want)
			}
			for _, n := range m.nodes {
				switch n.opType {
				case "ReduceL2":
					if !slices.Equal(n.attrs["axes"].GetInts(), []int64{1}) || n.attrs["keepdims"].GetI() != 1 {
						t.Errorf("%s: axes %v keepdims %d; want [1] 1", n.name, n.attrs["axes"].GetInts(), n.attrs["keepdims"].GetI())
					}
				case "Gather":
					if strings.HasPrefix(n.name, "/pooling/") && (n.attrs["axis"].GetI() != 1 || n.inputs[0] != Output) {
						t.Errorf("%s: gathers axis %d of %s; want axis 1 of %s", n.name, n.attrs["axis"].GetI(), n.inputs[0], Output)
					}
				}
			}
		})
	}
}

func TestExportOptionsErrors(t *testing.T) {
	cfg := tinyConfig()
	dir := t.TempDir()
	weights := writeSafetensors(t, filepath.Join(dir, "model.safetensors"), tinyTensors(cfg, "", 1))
	configPath := writeConfig(t, dir, cfg)
	tests := []struct {
		opts Options
		msg  []string
	}{
		{Options{Precision: "fp8"}, []string{`precision "fp8"`, `want "fp32", "fp16" or "q8"`}},
		{Options{Precision: "int8"}, []string{`precision "int8"`}},
		{Options{Precision: "FP16"}, []string{`precision "FP16"`}},
		{Options{Pooling: "max"}, []string{`pooling "max"`, `want "none", "mean" or "cls"`}},
		{Options{Normalize: true}, []string{`normalize needs pooling "mean" or "cls"`}},
		{Options{Pooling: PoolNone, Normalize: true}, []string{"normalize needs pooling"}},
		{Options{Precision: "bf16", Pooling: "avg"}, []string{`precision "bf16"`, `pooling "avg"`}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%+v", tc.opts), func(t *testing.T) {
			// Checked before the weights are opened.
			err := ExportWith(&bytes.Buffer{}, cfg, filepath.Join(dir, "missing.safetensors"), tc.opts)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("ExportWith error = %v; want %v", err, ErrInvalidOptions)
			}
			for _, s := range tc.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			dst := filepath.Join(dir, "out.onnx")
			if err := ExportFileWith(dst, configPath, weights, tc.opts); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("ExportFileWith error = %v; want %v", err, ErrInvalidOptions)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("ExportFileWith left %s behind (stat err %v)", dst, err)
			}
		})
	}
}

// TestExportFP16Overflow: a weight beyond float16 range fails an FP16
// export, naming the tensor; the FP32 export of the same weights works.
func TestExportFP16Overflow(t *testing.T) {
	cfg := tinyConfig()
	tensors := tinyTensors(cfg, "bert.", 1)
	big := tensors["bert.encoder.layer.1.attention.output.dense.weight"]
	big.data = slices.Clone(big.data)
	binary.LittleEndian.PutUint32(big.data[4*9:], math.Float32bits(-1e5))
	tensors["bert.encoder.layer.1.attention.output.dense.weight"] = big
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tensors)
	exportWith(t, cfg, weights, Options{Pooling: PoolMean})
	err := ExportWith(&bytes.Buffer{}, cfg, weights, Options{Precision: FP16})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "tensor bert.encoder.layer.1.attention.output.dense.weight: element 9 is -100000") {
		t.Errorf("ExportWith(fp16) = %v; want ErrUnsupported naming the tensor and element 9", err)
	}
}
