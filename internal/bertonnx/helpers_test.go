package bertonnx

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
)

// stSpec is one tensor of a safetensors file written by a test.
type stSpec struct {
	dtype string
	shape []int64
	data  []byte
}

// writeSafetensors writes tensors as a safetensors file at path, in sorted
// name order, and returns path.
func writeSafetensors(t testing.TB, path string, tensors map[string]stSpec) string {
	t.Helper()
	type entry struct {
		Dtype       string  `json:"dtype"`
		Shape       []int64 `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	names := slices.Sorted(maps.Keys(tensors))
	var data []byte
	for _, n := range names {
		s := tensors[n]
		hdr[n] = entry{s.dtype, s.shape, []int64{int64(len(data)), int64(len(data) + len(s.data))}}
		data = append(data, s.data...)
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(out, h...)
	out = append(out, data...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(42, 42)) }

func f32Tensor(rng *rand.Rand, shape ...int64) stSpec {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	data := make([]byte, 0, 4*n)
	for range n {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(rng.NormFloat64()*0.5)))
	}
	return stSpec{dtype: "F32", shape: shape, data: data}
}

// tinyConfig is a small BERT that exercises every part of the graph.
func tinyConfig() Config {
	c := DefaultConfig()
	c.VocabSize = 20
	c.HiddenSize = 8
	c.NumHiddenLayers = 2
	c.NumAttentionHeads = 2
	c.IntermediateSize = 16
	c.MaxPositionEmbeddings = 16
	c.TypeVocabSize = 2
	return c
}

// tinyTensors returns random BertModel weights for c, named with prefix
// ("" or "bert."), plus the pooler and position_ids buffer that real
// checkpoints carry and the exporter must ignore.
func tinyTensors(c Config, prefix string, seed uint64) map[string]stSpec {
	rng := rand.New(rand.NewPCG(seed, 1))
	h, in := int64(c.HiddenSize), int64(c.IntermediateSize)
	m := map[string]stSpec{}
	add := func(name string, shape ...int64) { m[prefix+name] = f32Tensor(rng, shape...) }
	add("embeddings.word_embeddings.weight", int64(c.VocabSize), h)
	add("embeddings.position_embeddings.weight", int64(c.MaxPositionEmbeddings), h)
	add("embeddings.token_type_embeddings.weight", int64(c.TypeVocabSize), h)
	add("embeddings.LayerNorm.weight", h)
	add("embeddings.LayerNorm.bias", h)
	for i := range c.NumHiddenLayers {
		l := fmt.Sprintf("encoder.layer.%d.", i)
		for _, n := range []string{"query", "key", "value"} {
			add(l+"attention.self."+n+".weight", h, h)
			add(l+"attention.self."+n+".bias", h)
		}
		add(l+"attention.output.dense.weight", h, h)
		add(l+"attention.output.dense.bias", h)
		add(l+"attention.output.LayerNorm.weight", h)
		add(l+"attention.output.LayerNorm.bias", h)
		add(l+"intermediate.dense.weight", in, h)
		add(l+"intermediate.dense.bias", in)
		add(l+"output.dense.weight", h, in)
		add(l+"output.dense.bias", h)
		add(l+"output.LayerNorm.weight", h)
		add(l+"output.LayerNorm.bias", h)
	}
	add("pooler.dense.weight", h, h)
	add("pooler.dense.bias", h)
	pos := make([]byte, 0, 8*c.MaxPositionEmbeddings)
	for i := range c.MaxPositionEmbeddings {
		pos = binary.LittleEndian.AppendUint64(pos, uint64(i))
	}
	m[prefix+"embeddings.position_ids"] = stSpec{dtype: "I64", shape: []int64{1, int64(c.MaxPositionEmbeddings)}, data: pos}
	return m
}

func writeConfig(t testing.TB, dir string, c Config) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// decodeModel reads an exported model back with proto.Unmarshal and
// flattens what the tests look at; it fails the test on a model that is not
// a valid ModelProto or whose every value and dimension is not a tensor type.

type decodedTensor struct {
	name     string
	dataType onnxpb.TensorProto_DataType
	dims     []int64
	raw      []byte
}

type decodedNode struct {
	name, opType    string
	domain          string
	inputs, outputs []string
	attrs           map[string]*onnxpb.AttributeProto
}

type decodedValueInfo struct {
	name     string
	elemType onnxpb.TensorProto_DataType
	dims     []string // dim_param, or dim_value formatted as a number
}

type decodedModel struct {
	irVersion       int64
	producerName    string
	producerVersion string
	opsets          map[string]int64
	nodes           []decodedNode
	inits           []decodedTensor
	inputs, outputs []decodedValueInfo
}

func decodeModel(t testing.TB, b []byte) decodedModel {
	t.Helper()
	var pb onnxpb.ModelProto
	if err := proto.Unmarshal(b, &pb); err != nil {
		t.Fatalf("decode model: %v", err)
	}
	m := decodedModel{
		irVersion:       pb.GetIrVersion(),
		producerName:    pb.GetProducerName(),
		producerVersion: pb.GetProducerVersion(),
		opsets:          map[string]int64{},
	}
	for _, o := range pb.GetOpsetImport() {
		m.opsets[o.GetDomain()] = o.GetVersion()
	}
	g := pb.GetGraph()
	for _, n := range g.GetNode() {
		d := decodedNode{name: n.GetName(), opType: n.GetOpType(), domain: n.GetDomain(), inputs: n.GetInput(), outputs: n.GetOutput(),
			attrs: map[string]*onnxpb.AttributeProto{}}
		for _, a := range n.GetAttribute() {
			d.attrs[a.GetName()] = a
		}
		m.nodes = append(m.nodes, d)
	}
	for _, in := range g.GetInitializer() {
		m.inits = append(m.inits, decodedTensor{in.GetName(), onnxpb.TensorProto_DataType(in.GetDataType()), in.GetDims(), in.GetRawData()})
	}
	for _, vi := range g.GetInput() {
		m.inputs = append(m.inputs, decodeValueInfo(t, vi))
	}
	for _, vi := range g.GetOutput() {
		m.outputs = append(m.outputs, decodeValueInfo(t, vi))
	}
	return m
}

func decodeValueInfo(t testing.TB, vi *onnxpb.ValueInfoProto) decodedValueInfo {
	t.Helper()
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		t.Fatalf("value %s: not a tensor", vi.GetName())
	}
	d := decodedValueInfo{name: vi.GetName(), elemType: onnxpb.TensorProto_DataType(tt.GetElemType())}
	for _, dim := range tt.GetShape().GetDim() {
		switch v := dim.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			d.dims = append(d.dims, v.DimParam)
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			d.dims = append(d.dims, fmt.Sprint(v.DimValue))
		default:
			t.Fatalf("value %s: dimension without value", vi.GetName())
		}
	}
	return d
}
