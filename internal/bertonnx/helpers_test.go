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

// Minimal protobuf decoding, enough to read back what the exporter writes.

type pbField struct {
	num    int
	wire   int
	varint uint64
	bytes  []byte
}

func pbParse(t testing.TB, b []byte) []pbField {
	t.Helper()
	var out []pbField
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			t.Fatalf("bad key varint")
		}
		b = b[n:]
		f := pbField{num: int(key >> 3), wire: int(key & 7)}
		switch f.wire {
		case wireVarint:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				t.Fatalf("field %d: bad varint", f.num)
			}
			f.varint, b = v, b[n:]
		case wireFixed32:
			if len(b) < 4 {
				t.Fatalf("field %d: short fixed32", f.num)
			}
			f.varint, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireLengthDelimited:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				t.Fatalf("field %d: bad length", f.num)
			}
			f.bytes, b = b[n:n+int(l)], b[n+int(l):]
		default:
			t.Fatalf("field %d: unexpected wire type %d", f.num, f.wire)
		}
		out = append(out, f)
	}
	return out
}

type decodedTensor struct {
	name     string
	dataType int
	dims     []int64
	raw      []byte
}

type decodedNode struct {
	name, opType    string
	inputs, outputs []string
	attrs           map[string]pbField // by name: the value field (i, f or last ints)
	ints            map[string][]int64
}

type decodedValueInfo struct {
	name     string
	elemType int
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
	m := decodedModel{opsets: map[string]int64{}}
	for _, f := range pbParse(t, b) {
		switch f.num {
		case modelIRVersion:
			m.irVersion = int64(f.varint)
		case modelProducerName:
			m.producerName = string(f.bytes)
		case modelProducerVersion:
			m.producerVersion = string(f.bytes)
		case modelOpsetImport:
			var dom string
			var ver int64
			for _, g := range pbParse(t, f.bytes) {
				switch g.num {
				case opsetDomain:
					dom = string(g.bytes)
				case opsetVersion:
					ver = int64(g.varint)
				}
			}
			m.opsets[dom] = ver
		case modelGraph:
			decodeGraph(t, f.bytes, &m)
		}
	}
	return m
}

func decodeGraph(t testing.TB, b []byte, m *decodedModel) {
	for _, f := range pbParse(t, b) {
		switch f.num {
		case graphNode:
			n := decodedNode{attrs: map[string]pbField{}, ints: map[string][]int64{}}
			for _, g := range pbParse(t, f.bytes) {
				switch g.num {
				case nodeInput:
					n.inputs = append(n.inputs, string(g.bytes))
				case nodeOutput:
					n.outputs = append(n.outputs, string(g.bytes))
				case nodeName:
					n.name = string(g.bytes)
				case nodeOpType:
					n.opType = string(g.bytes)
				case nodeAttribute:
					var name string
					var val pbField
					var ints []int64
					for _, a := range pbParse(t, g.bytes) {
						switch a.num {
						case attrName:
							name = string(a.bytes)
						case attrI, attrF:
							val = a
						case attrInts:
							ints = append(ints, int64(a.varint))
						}
					}
					n.attrs[name] = val
					if ints != nil {
						n.ints[name] = ints
					}
				}
			}
			m.nodes = append(m.nodes, n)
		case graphInitializer:
			var d decodedTensor
			for _, g := range pbParse(t, f.bytes) {
				switch g.num {
				case tensorDims:
					d.dims = append(d.dims, int64(g.varint))
				case tensorDataType:
					d.dataType = int(g.varint)
				case tensorName:
					d.name = string(g.bytes)
				case tensorRawData:
					d.raw = g.bytes
				}
			}
			m.inits = append(m.inits, d)
		case graphInput, graphOutput:
			vi := decodeValueInfo(t, f.bytes)
			if f.num == graphInput {
				m.inputs = append(m.inputs, vi)
			} else {
				m.outputs = append(m.outputs, vi)
			}
		}
	}
}

func decodeValueInfo(t testing.TB, b []byte) decodedValueInfo {
	var vi decodedValueInfo
	for _, f := range pbParse(t, b) {
		switch f.num {
		case valueInfoName:
			vi.name = string(f.bytes)
		case valueInfoType:
			for _, tt := range pbParse(t, f.bytes) { // TypeProto
				for _, g := range pbParse(t, tt.bytes) { // TypeProto.Tensor
					switch g.num {
					case typeTensorElemType:
						vi.elemType = int(g.varint)
					case typeTensorShape:
						for _, d := range pbParse(t, g.bytes) {
							for _, dv := range pbParse(t, d.bytes) {
								if dv.num == dimParam {
									vi.dims = append(vi.dims, string(dv.bytes))
								} else {
									vi.dims = append(vi.dims, fmt.Sprint(int64(dv.varint)))
								}
							}
						}
					}
				}
			}
		}
	}
	return vi
}
