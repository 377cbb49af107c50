package bertonnx

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
)

// TestFP32LinearsValidate: FP32Linears entries are kinds, layer.N or
// layer.N.KIND, need precision Q8 as FP32WordEmbeddings does, and name
// layers the config has.
func TestFP32LinearsValidate(t *testing.T) {
	for _, o := range []Options{
		{Precision: Q8, FP32Linears: slices.Clone(linearKinds)},
		{Precision: Q8, FP32Linears: []string{"layer.0", "layer.1.output", "output", "output"}},
		{Precision: Q8, FP32WordEmbeddings: true},
		{Precision: Q8, FP32Linears: []string{}},
	} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: Validate = %v", o, err)
		}
		if err := o.validateFor(tinyConfig()); err != nil {
			t.Errorf("%+v: validateFor = %v", o, err)
		}
	}
	for _, tc := range []struct {
		opts Options
		msg  string
	}{
		{Options{Precision: Q8, FP32Linears: []string{"Query"}}, `fp32 linear "Query"`},
		{Options{Precision: Q8, FP32Linears: []string{"dense"}}, `want a kind (query, key, value, attention_output, intermediate, output), layer.N or layer.N.KIND`},
		{Options{Precision: Q8, FP32Linears: []string{""}}, `fp32 linear ""`},
		{Options{Precision: Q8, FP32Linears: []string{"layer."}}, `fp32 linear "layer."`},
		{Options{Precision: Q8, FP32Linears: []string{"layer.x"}}, `fp32 linear "layer.x"`},
		{Options{Precision: Q8, FP32Linears: []string{"layer.-1"}}, `fp32 linear "layer.-1"`},
		{Options{Precision: Q8, FP32Linears: []string{"layer.01"}}, `fp32 linear "layer.01"`},
		{Options{Precision: Q8, FP32Linears: []string{"layer.+1"}}, `fp32 linear "layer.+1"`},
		{Options{Precision: Q8, FP32Linears: []string{"layer.1."}}, `fp32 linear "layer.1."`},
		{Options{Precision: Q8, FP32Linears: []string{"layer.1.dense"}}, `fp32 linear "layer.1.dense"`},
		{Options{Precision: Q8, FP32Linears: []string{"1"}}, `fp32 linear "1"`},
		{Options{FP32Linears: []string{"output"}}, `need precision "q8"`},
		{Options{Precision: FP16, FP32WordEmbeddings: true}, `need precision "q8"`},
	} {
		if err := tc.opts.Validate(); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: Validate = %v; want ErrInvalidOptions mentioning %q", tc.opts, err, tc.msg)
		}
	}
	// Layers are checked against the config at export, before the weights
	// are opened.
	cfg := tinyConfig()
	o := Options{Precision: Q8, FP32Linears: []string{"layer.1", "layer.2.query", "layer.7"}}
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	err := ExportWith(&bytes.Buffer{}, cfg, filepath.Join(t.TempDir(), "missing.safetensors"), o)
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("ExportWith = %v; want ErrInvalidOptions", err)
	}
	for _, s := range []string{`fp32 linear "layer.2.query": the model has 2 layers (0 to 1)`, `"layer.7"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("ExportWith error %q does not mention %q", err, s)
		}
	}
	if strings.Contains(err.Error(), `"layer.1"`) {
		t.Errorf("ExportWith error %q names layer.1, which the model has", err)
	}
}

func TestDescribeFP32Linears(t *testing.T) {
	for _, tc := range []struct {
		entries []string
		want    string
	}{
		{nil, ""},
		{[]string{"output"}, "output"},
		{[]string{"layer.1.output", "layer.0.output", "layer.2.output"}, "output"},
		{[]string{"layer.2", "output", "layer.0.query"}, "output, layer.0.query, layer.2"},
		{[]string{"layer.0", "layer.1", "layer.2"}, "query, key, value, attention_output, intermediate, output"},
		{[]string{"value", "key", "query", "layer.1.intermediate", "layer.1.intermediate"}, "query, key, value, layer.1.intermediate"},
	} {
		o := Options{Precision: Q8, FP32Linears: tc.entries}
		if got := describeFP32Linears(o.fp32Linears(3)); got != tc.want {
			t.Errorf("%q: describeFP32Linears = %q; want %q", tc.entries, got, tc.want)
		}
	}
}

// TestExportQ8FP32Linears checks Q8 graphs that keep some linears and the
// word embeddings float32: each selected linear is the FP32 graph's MatMul
// on the checkpoint's float32 weight, each other one stays int8, inputs
// are quantized only for int8 linears, the word table is float32; spellings
// of the same selection give the same bytes; a selection of everything
// gives the FP32 graph's nodes and initializers; and no selection gives the
// plain Q8 graph.
func TestExportQ8FP32Linears(t *testing.T) {
	cfg := tinyConfig()
	tensors := tinyTensors(cfg, "", 5)
	weights := writeSafetensors(t, filepath.Join(t.TempDir(), "model.safetensors"), tensors)
	base := Options{Precision: Q8, Pooling: PoolMean, Normalize: true}
	with := func(words bool, entries ...string) Options {
		o := base
		o.FP32Linears, o.FP32WordEmbeddings = entries, words
		return o
	}
	plain := exportWith(t, cfg, weights, base)
	if got := exportWith(t, cfg, weights, with(false)); !bytes.Equal(got, plain) {
		t.Error("empty FP32Linears differs from the plain Q8 graph")
	}

	opts := with(true, "output", "layer.1.query")
	got := exportWith(t, cfg, weights, opts)
	for _, same := range []Options{
		with(true, "layer.1.query", "layer.0.output", "layer.1.output", "output"),
		with(true, "layer.1.query", "output", "layer.1.query"),
	} {
		if !bytes.Equal(exportWith(t, cfg, weights, same), got) {
			t.Errorf("%q differs from %q", same.FP32Linears, opts.FP32Linears)
		}
	}
	m := decodeModel(t, got)
	checkWellFormed(t, m)
	nodes := map[string]decodedNode{}
	ops := map[string]int{}
	for _, n := range m.nodes {
		nodes[n.name] = n
		ops[n.opType]++
	}
	inits := map[string]decodedTensor{}
	for _, in := range m.inits {
		inits[in.name] = in
	}
	paths := map[string]string{
		"query": "attention/self/query", "key": "attention/self/key", "value": "attention/self/value",
		"attention_output": "attention/output/dense", "intermediate": "intermediate/dense", "output": "output/dense",
	}
	hfs := map[string]string{
		"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
		"attention_output": "attention.output.dense", "intermediate": "intermediate.dense", "output": "output.dense",
	}
	dims := map[string][2]int64{ // out, in
		"query": {8, 8}, "key": {8, 8}, "value": {8, 8}, "attention_output": {8, 8}, "intermediate": {16, 8}, "output": {8, 16},
	}
	for i := range cfg.NumHiddenLayers {
		for _, kind := range linearKinds {
			fp32 := kind == "output" || i == 1 && kind == "query"
			p := fmt.Sprintf("/encoder/layer.%d/%s/", i, paths[kind])
			hf := fmt.Sprintf("encoder.layer.%d.%s.weight", i, hfs[kind])
			_, isMatMul := nodes[p+"MatMul"]
			_, isQ8 := nodes[p+"MatMulIntegerToFloat"]
			if isMatMul != fp32 || isQ8 == fp32 {
				t.Errorf("layer %d %s: MatMul %v, MatMulIntegerToFloat %v; want float32 %v", i, kind, isMatMul, isQ8, fp32)
			}
			if !fp32 {
				checkQ8Weight(t, hf, inits, tensors[hf], dims[kind][0], dims[kind][1], true)
				continue
			}
			w, ok := inits[hf]
			src := tensors[hf]
			want := transpose(src.data, int(dims[kind][0]), int(dims[kind][1]), 4)
			if !ok || w.dataType != dataTypeFloat || !slices.Equal(w.dims, []int64{dims[kind][1], dims[kind][0]}) || !bytes.Equal(w.raw, want) {
				t.Errorf("%s: float32 weight missing or not the transposed checkpoint (present %v, type %d, dims %v)", hf, ok, w.dataType, w.dims)
			}
			if _, ok := inits[hf+"_quantized"]; ok {
				t.Errorf("%s: int8 codes present for a float32 linear", hf)
			}
			if n := nodes[p+"MatMul"]; n.inputs[1] != hf {
				t.Errorf("%s reads %v; want %s", p+"MatMul", n.inputs, hf)
			}
		}
	}
	// Inputs quantized: per layer the query/key/value input (layer 1: for
	// key and value), the attention output's and the intermediate's; the
	// FFN output reads float32 everywhere.
	if want := 3 * cfg.NumHiddenLayers; ops["QuantizeLinear"] != want || ops["MatMulIntegerToFloat"] != 5*cfg.NumHiddenLayers-1 {
		t.Errorf("QuantizeLinear %d, MatMulIntegerToFloat %d; want %d, %d", ops["QuantizeLinear"], ops["MatMulIntegerToFloat"], want, 5*cfg.NumHiddenLayers-1)
	}
	if nodes["/encoder/layer.1/attention/self/key/MatMulIntegerToFloat"].inputs[0] != "/encoder/layer.1/attention/self/key/quantize/Reshape_codes_output_0" {
		t.Errorf("layer 1 key reads %v; want the quantization named after it, the first int8 linear of the input", nodes["/encoder/layer.1/attention/self/key/MatMulIntegerToFloat"].inputs)
	}
	word := "embeddings.word_embeddings.weight"
	if w := inits[word]; w.dataType != dataTypeFloat || !bytes.Equal(w.raw, tensors[word].data) {
		t.Errorf("%s: type %d; want the checkpoint's float32 table", word, w.dataType)
	}
	if _, ok := inits[word+"_quantized"]; ok || ops["Cast"] != 1+1 /* mask, mean pooling */ {
		t.Errorf("word table: int8 codes present %v, Cast count %d; want none and 2", ok, ops["Cast"])
	}
	if _, ok := nodes["/embeddings/word_embeddings/Gather"]; !ok {
		t.Error("no /embeddings/word_embeddings/Gather")
	}
	doc := docString(t, got)
	for _, s := range []string{"except float32 linears: output, layer.1.query", "except float32 word embeddings"} {
		if !strings.Contains(doc, s) {
			t.Errorf("doc string %q does not say %q", doc, s)
		}
	}

	// Everything float32: the FP32 graph's nodes and initializers.
	all := graphOf(t, exportWith(t, cfg, weights, with(true, "layer.0", "layer.1")))
	fp32 := graphOf(t, exportWith(t, cfg, weights, Options{Pooling: PoolMean, Normalize: true}))
	if !proto.Equal(&onnxpb.GraphProto{Node: all.Node, Initializer: all.Initializer}, &onnxpb.GraphProto{Node: fp32.Node, Initializer: fp32.Initializer}) {
		t.Error("a Q8 graph with every linear and the word table float32 has other nodes or initializers than the FP32 graph")
	}
}

// graphOf returns the graph of the encoded model b.
func graphOf(t *testing.T, b []byte) *onnxpb.GraphProto {
	t.Helper()
	var pb onnxpb.ModelProto
	if err := proto.Unmarshal(b, &pb); err != nil {
		t.Fatalf("decode model: %v", err)
	}
	return pb.GetGraph()
}

// docString returns the doc string of the encoded model b.
func docString(t *testing.T, b []byte) string {
	t.Helper()
	var pb onnxpb.ModelProto
	if err := proto.Unmarshal(b, &pb); err != nil {
		t.Fatalf("decode model: %v", err)
	}
	return pb.GetDocString()
}
