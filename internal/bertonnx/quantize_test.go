package bertonnx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestQuantizeRows(t *testing.T) {
	tests := []struct {
		name   string
		row    []float32
		scale  float32
		codes  []int8
		errMsg string
	}{
		// 254/127 = 2 exactly, so every quotient below is exact and the
		// ties show: 1.5 -> 2, -2.5 -> -2, 0.5 -> 0, 126.5 -> 126.
		{"ties to even", []float32{254, 3, -5, 1, 253, -254}, 2, []int8{127, 2, -2, 0, 126, -127}, ""},
		{"largest magnitude negative", []float32{-127, 64, 0.25}, 1, []int8{-127, 64, 0}, ""},
		{"zeros", []float32{0, 0, 0}, 1, []int8{0, 0, 0}, ""},
		{"negative zero", []float32{float32(math.Copysign(0, -1)), 0}, 1, []int8{0, 0}, ""},
		{"nan", []float32{1, float32(math.NaN())}, 0, nil, "element 1 is NaN"},
		{"inf", []float32{float32(math.Inf(-1)), 1}, 0, nil, "element 0 is -Inf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, s, err := quantizeRows(tc.row, 1, len(tc.row))
			if tc.errMsg != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.errMsg) {
					t.Fatalf("got %v; want ErrUnsupported with %q", err, tc.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s[0] != tc.scale || !slices.Equal(q, tc.codes) {
				t.Errorf("got scale %g codes %v; want %g %v", s[0], q, tc.scale, tc.codes)
			}
		})
	}
}

// TestQuantizeRowsBounds: on random rows of many magnitudes, every code is
// in [-127, 127], the largest magnitude of a row maps to ±127, and
// code·scale is within half a step of the element.
func TestQuantizeRowsBounds(t *testing.T) {
	rng := newRand()
	const rows, cols = 64, 37
	x := make([]float32, rows*cols)
	for r := range rows {
		mag := math.Pow(10, float64(r%12-6))
		for c := range cols {
			x[r*cols+c] = float32(rng.NormFloat64() * mag)
		}
	}
	q, s, err := quantizeRows(x, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	for r := range rows {
		top := 0
		for c := range cols {
			i := r*cols + c
			if q[i] < -qmax {
				t.Fatalf("row %d: code %d; want >= -%d", r, q[i], qmax)
			}
			top = max(top, int(math.Abs(float64(q[i]))))
			if d := math.Abs(float64(q[i])*float64(s[r]) - float64(x[i])); d > float64(s[r])*(0.5+1e-6) {
				t.Errorf("row %d col %d: |code·scale - x| = %g; want <= %g", r, c, d, s[r]/2)
			}
		}
		if top != qmax {
			t.Errorf("row %d: largest |code| %d; want %d", r, top, qmax)
		}
	}
}

// TestExportQ8Structure checks a Q8 graph: that every linear is int8 and
// its codes and scales give the checkpoint's weights back, the per-token
// quantization of each linear input (shared by query, key and value), the
// int8 word table, the contrib domain, and the op counts against the
// float32 graph's.
func TestExportQ8Structure(t *testing.T) {
	cfg := tinyConfig()
	tensors := tinyTensors(cfg, "", 4)
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tensors)
	L := cfg.NumHiddenLayers
	for _, name := range []string{"q8", "q8-mean-norm", "q8-cls"} {
		t.Run(name, func(t *testing.T) {
			opts := variants[name]
			m := decodeModel(t, exportWith(t, cfg, weights, opts))
			checkWellFormed(t, m)
			types := elemTypes(t, m)
			if types[m.outputs[0].name] != dataTypeFloat {
				t.Errorf("output %s is type %d; want float", m.outputs[0].name, types[m.outputs[0].name])
			}
			if want := map[string]int64{"": Opset, msDomain: 1}; !maps.Equal(m.opsets, want) {
				t.Errorf("opset_import = %v; want %v", m.opsets, want)
			}

			got := map[string]int{}
			for _, n := range m.nodes {
				got[n.opType]++
				if want := map[bool]string{true: msDomain, false: ""}[n.opType == "MatMulIntegerToFloat"]; n.domain != want {
					t.Errorf("%s: domain %q; want %q", n.name, n.domain, want)
				}
			}
			// Against the float32 encoder (TestExportPoolingStructure):
			// the 6 linears per layer become MatMulIntegerToFloat (the
			// bias Add stays); each of the 4 inputs they read per layer
			// (query, key and value share one) is quantized by Abs,
			// ReduceMax, Div, Max, 3 Reshapes, 2 Shapes, ConstantOfShape
			// and QuantizeLinear; the word table adds a Gather of the
			// scales, a Cast and a Mul.
			want := map[string]int{
				"Gather": 2 + 1, "Shape": 1 + 8*L, "Slice": 1, "Unsqueeze": 2, "Cast": 1 + 1, "Sub": 1,
				"LayerNormalization": 1 + 2*L, "MatMul": 2 * L, "Reshape": 4*L + 12*L, "Transpose": 4 * L,
				"Softmax": L, "Erf": L, "Div": 2*L + 4*L, "Mul": 1 + 2*L + 1, "Add": 2 + 10*L,
				"MatMulIntegerToFloat": 6 * L, "Abs": 4 * L, "ReduceMax": 4 * L, "Max": 4 * L,
				"ConstantOfShape": 4 * L, "QuantizeLinear": 4 * L,
			}
			switch opts.Pooling {
			case PoolMean:
				for op, n := range map[string]int{"Cast": 1, "Unsqueeze": 1, "Mul": 1, "ReduceSum": 2, "Max": 2, "Div": 2, "ReduceL2": 1} {
					want[op] += n
				}
			case PoolCLS:
				want["Gather"]++
			}
			if !maps.Equal(got, want) {
				t.Errorf("op counts = %v; want %v", got, want)
			}

			inits := map[string]decodedTensor{}
			for _, in := range m.inits {
				inits[in.name] = in
			}
			for i := range L {
				for _, lin := range []struct {
					hf      string
					in, out int64
				}{
					{"attention.self.query", 8, 8}, {"attention.self.key", 8, 8}, {"attention.self.value", 8, 8},
					{"attention.output.dense", 8, 8}, {"intermediate.dense", 8, 16}, {"output.dense", 16, 8},
				} {
					hf := fmt.Sprintf("encoder.layer.%d.%s.weight", i, lin.hf)
					if _, ok := inits[hf]; ok {
						t.Errorf("%s: float32 weight present; want int8 only", hf)
					}
					checkQ8Weight(t, hf, inits, tensors[hf], lin.out, lin.in, true)
				}
			}
			checkQ8Weight(t, "embeddings.word_embeddings.weight", inits, tensors["embeddings.word_embeddings.weight"], int64(cfg.VocabSize), int64(cfg.HiddenSize), false)
			if in := inits["embeddings.position_embeddings.weight"]; in.dataType != dataTypeFloat {
				t.Errorf("position table type %d; want float", in.dataType)
			}

			// Per layer, the query, key and value read the codes and the
			// scales of one quantization of the layer input; the zero
			// points are 128.
			producer := map[string]decodedNode{}
			for _, n := range m.nodes {
				producer[n.outputs[0]] = n
				switch n.opType {
				case "ConstantOfShape":
					if v := n.attrs["value"].GetT(); !bytes.Equal(v.GetRawData(), []byte{128}) || v.GetDataType() != int32(dataTypeUint8) {
						t.Errorf("%s: value %v type %d; want uint8 128", n.name, v.GetRawData(), v.GetDataType())
					}
				case "QuantizeLinear":
					if n.attrs["axis"].GetI() != 0 {
						t.Errorf("%s: axis %d; want 0 (per token)", n.name, n.attrs["axis"].GetI())
					}
				case "ReduceMax":
					if !slices.Equal(n.attrs["axes"].GetInts(), []int64{-1}) || n.attrs["keepdims"].GetI() != 1 {
						t.Errorf("%s: axes %v keepdims %d; want [-1] 1", n.name, n.attrs["axes"].GetInts(), n.attrs["keepdims"].GetI())
					}
				}
			}
			for i := range L {
				var codes, scales []string
				for _, p := range []string{"query", "key", "value"} {
					for _, n := range m.nodes {
						if n.name == fmt.Sprintf("/encoder/layer.%d/attention/self/%s/MatMulIntegerToFloat", i, p) {
							codes = append(codes, producer[n.inputs[0]].name)
							scales = append(scales, producer[n.inputs[2]].name)
							if zp := inits[n.inputs[4]]; !bytes.Equal(zp.raw, []byte{128}) || len(zp.dims) != 0 {
								t.Errorf("%s: zero point %v dims %v; want scalar 128", n.name, zp.raw, zp.dims)
							}
						}
					}
				}
				q := fmt.Sprintf("/encoder/layer.%d/attention/self/query/quantize/", i)
				if want := []string{q + "Reshape_codes", q + "Reshape_codes", q + "Reshape_codes"}; !slices.Equal(codes, want) {
					t.Errorf("layer %d: codes from %v; want %v", i, codes, want)
				}
				if want := []string{q + "Max", q + "Max", q + "Max"}; !slices.Equal(scales, want) {
					t.Errorf("layer %d: scales from %v; want %v", i, scales, want)
				}
			}
		})
	}
}

// checkQ8Weight checks the int8 codes and scales of the rows×cols
// checkpoint tensor name (transposed to [cols, rows] when transposed): the
// dtypes and dims, and that code·scale is within half a step of each
// element.
func checkQ8Weight(t *testing.T, name string, inits map[string]decodedTensor, src stSpec, rows, cols int64, transposed bool) {
	t.Helper()
	codes, scales := inits[name+"_quantized"], inits[name+"_scale"]
	wantDims, scaleDims := []int64{rows, cols}, []int64{rows, 1}
	if transposed {
		wantDims, scaleDims = []int64{cols, rows}, []int64{rows}
	}
	if codes.dataType != dataTypeInt8 || !slices.Equal(codes.dims, wantDims) {
		t.Fatalf("%s_quantized: type %d dims %v; want int8 %v", name, codes.dataType, codes.dims, wantDims)
	}
	if scales.dataType != dataTypeFloat || !slices.Equal(scales.dims, scaleDims) {
		t.Fatalf("%s_scale: type %d dims %v; want float %v", name, scales.dataType, scales.dims, scaleDims)
	}
	worst := 0.0
	for r := range rows {
		s := float64(math.Float32frombits(binary.LittleEndian.Uint32(scales.raw[4*r:])))
		for c := range cols {
			i := r*cols + c
			if transposed {
				i = c*rows + r
			}
			x := float64(math.Float32frombits(binary.LittleEndian.Uint32(src.data[4*(r*cols+c):])))
			worst = max(worst, math.Abs(float64(int8(codes.raw[i]))*s-x)/s)
		}
	}
	if worst > 0.5+1e-6 {
		t.Errorf("%s: |code·scale - weight| up to %.4g steps; want <= 0.5", name, worst)
	}
}

// TestExportQ8NonFinite: a non-finite weight fails a Q8 export, naming the
// tensor and the element.
func TestExportQ8NonFinite(t *testing.T) {
	cfg := tinyConfig()
	for _, tensor := range []string{"bert.encoder.layer.1.intermediate.dense.weight", "bert.embeddings.word_embeddings.weight"} {
		t.Run(tensor, func(t *testing.T) {
			tensors := tinyTensors(cfg, "bert.", 1)
			bad := tensors[tensor]
			bad.data = slices.Clone(bad.data)
			binary.LittleEndian.PutUint32(bad.data[4*11:], math.Float32bits(float32(math.Inf(1))))
			tensors[tensor] = bad
			weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tensors)
			err := ExportWith(&bytes.Buffer{}, cfg, weights, Options{Precision: Q8})
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "tensor "+tensor+": ") || !strings.Contains(err.Error(), "element 11 is +Inf") {
				t.Errorf("ExportWith(q8) = %v; want ErrUnsupported naming %s and element 11", err, tensor)
			}
		})
	}
}

// TestExportQ8HalfCheckpoint: F16 and BF16 checkpoints are widened exactly
// before quantizing, so a Q8 export of an F16 checkpoint equals that of its
// exact F32 widening.
func TestExportQ8HalfCheckpoint(t *testing.T) {
	cfg := tinyConfig()
	half := mapSpecs(tinyTensors(cfg, "", 7), halfSpec)
	dir := t.TempDir()
	a := writeSafetensors(t, filepath.Join(dir, "f16.safetensors"), half)
	b := writeSafetensors(t, filepath.Join(dir, "f32.safetensors"), mapSpecs(half, widenSpec))
	opts := Options{Precision: Q8, Pooling: PoolMean, Normalize: true}
	if !bytes.Equal(exportWith(t, cfg, a, opts), exportWith(t, cfg, b, opts)) {
		t.Error("q8 export of an F16 checkpoint differs from that of its F32 widening")
	}
}
