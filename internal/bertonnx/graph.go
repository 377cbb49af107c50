package bertonnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
)

// Names of the graph inputs and outputs; they are part of the graph contract.
const (
	InputIDs      = "input_ids"
	AttentionMask = "attention_mask"
	TokenTypeIDs  = "token_type_ids"
	// Output is the [batch, sequence, hidden] output of a graph without
	// pooling.
	Output = "last_hidden_state"
	// SentenceEmbedding is the [batch, hidden] output of a pooled graph:
	// the pooled vector, divided by its L2 norm when Options.Normalize is
	// set.
	SentenceEmbedding = "sentence_embedding"
	// SentenceNorm is the [batch, 1] output of a normalized graph: the L2
	// norm of the pooled vector before normalization, so that
	// SentenceEmbedding·SentenceNorm gives back the raw pooled vector.
	SentenceNorm = "sentence_norm"
)

// Symbolic dimension names of the graph inputs and output.
const (
	DimBatch    = "batch"
	DimSequence = "sequence"
)

// ONNX versions the exporter targets; see the package doc.
const (
	IRVersion = 8
	Opset     = 17
)

// ProducerName and ProducerVersion are written to every model.
// ProducerVersion changes whenever the graph for a given input changes, so a
// pinned checksum can be traced to the exporter that made it.
const (
	ProducerName    = "embedd-bertonnx"
	ProducerVersion = "1"
)

// maskValue is added to the scores of masked keys; see the package doc.
const maskValue = -math.MaxFloat32

// initializer is a graph initializer whose raw_data is produced on demand, so
// that weights stream from the safetensors file to the output.
type initializer struct {
	name     string
	dataType onnxpb.TensorProto_DataType
	dims     []int64
	doc      string
	nbytes   int64
	write    func(w io.Writer) error
}

// graph is a fully resolved model: every node, and every initializer with its
// size known, ready to be encoded.
type graph struct {
	cfg     Config
	opts    Options
	nodes   []*onnxpb.NodeProto
	inits   []initializer
	outputs []*onnxpb.ValueInfoProto
	// hidden names intermediate tensors of shape [batch, sequence, hidden]
	// that shape inference cannot name by itself; see embeddings.
	hidden []string
}

// builder assembles the graph for cfg against the tensors in st. Tensor
// problems are collected in errs so that one run reports all of them.
type builder struct {
	cfg    Config
	opts   Options
	st     *safetensors
	prefix string // "" or "bert."
	g      graph
	consts map[string]string // constant key -> initializer name, to share constants
	errs   []error
	// quantizedInputs holds, in a Q8 graph, each float tensor already
	// quantized for the linears that read it.
	quantizedInputs map[string]quantizedInput
	// fp32 is, in a Q8 graph, Options.FP32Linears resolved:
	// [layer][index in linearKinds].
	fp32 [][]bool
}

// floatDtypes lists the safetensors dtypes accepted for weights, as error
// messages print them.
const floatDtypes = "F32, F16 or BF16"

// buildGraph builds the graph for cfg and opts, which the caller has
// validated.
func buildGraph(cfg Config, st *safetensors, opts Options) (*graph, error) {
	b := &builder{cfg: cfg, opts: opts, st: st, g: graph{cfg: cfg, opts: opts}, consts: map[string]string{},
		quantizedInputs: map[string]quantizedInput{}, fp32: opts.fp32Linears(cfg.NumHiddenLayers)}
	prefix, ok := st.namePrefix()
	if !ok {
		return nil, fmt.Errorf("%w: %s (or %s%s): want %s [%d %d]", ErrMissingTensor, wordEmbeddings, bertPrefix, wordEmbeddings, floatDtypes, cfg.VocabSize, cfg.HiddenSize)
	}
	b.prefix = prefix
	h := b.embeddings()
	mask := b.extendedMask()
	for i := range cfg.NumHiddenLayers {
		out := ""
		if i == cfg.NumHiddenLayers-1 {
			out = Output
		}
		h = b.layer(i, h, mask, out)
	}
	hidden := int64(cfg.HiddenSize)
	if !opts.pooled() {
		b.g.outputs = []*onnxpb.ValueInfoProto{valueInfo(Output, dataTypeFloat, dimParam(DimBatch), dimParam(DimSequence), dimValue(hidden))}
	} else {
		b.pool(h)
		b.g.outputs = []*onnxpb.ValueInfoProto{valueInfo(SentenceEmbedding, dataTypeFloat, dimParam(DimBatch), dimValue(hidden))}
		if opts.Normalize {
			b.g.outputs = append(b.g.outputs, valueInfo(SentenceNorm, dataTypeFloat, dimParam(DimBatch), dimValue(1)))
		}
	}
	if err := errors.Join(b.errs...); err != nil {
		return nil, err
	}
	return &b.g, nil
}

// op appends a node and returns the name of its single output, which is
// out when given and otherwise derived from the node name.
func (b *builder) op(name, opType, out string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	if out == "" {
		out = name + "_output_0"
	}
	b.g.nodes = append(b.g.nodes, &onnxpb.NodeProto{
		Input: inputs, Output: []string{out}, Name: &name, OpType: &opType, Attribute: attrs,
	})
	return out
}

// tensor looks up name (without the checkpoint prefix) and checks that it is
// F32, F16 or BF16 of the wanted shape. It returns false, after recording an
// error, when it is not.
func (b *builder) tensor(name string, want ...int64) (stTensor, bool) {
	t, err := b.st.floatTensor(b.prefix, name, want)
	if err != nil {
		b.errs = append(b.errs, err)
		return stTensor{}, false
	}
	return t, true
}

// matmulStorage is how linear weights and biases and the embedding tables
// are stored: float16 in an FP16 graph.
func (b *builder) matmulStorage() storage {
	if b.opts.fp16() {
		return storeF16
	}
	return storeF32
}

// normStorage is how LayerNorm scales and biases are stored: float32 always,
// holding float16 values in an FP16 graph (see the package doc).
func (b *builder) normStorage() storage {
	if b.opts.fp16() {
		return storeF32ViaF16
	}
	return storeF32
}

// weight adds the tensor name as an initializer of the same name in storage s.
func (b *builder) weight(name string, s storage, shape ...int64) string {
	return b.weightAs(name, name, s, shape...)
}

func (b *builder) weightAs(name, initName string, s storage, shape ...int64) string {
	if t, ok := b.tensor(name, shape...); ok {
		b.addInit(b.prefix+name, t, initName, s, shape, "", 0, 0)
	}
	return initName
}

// linearWeight adds the [out, in] weight of an nn.Linear as an [in, out]
// initializer, so that x·W needs no Transpose at run time.
func (b *builder) linearWeight(name string, out, in int64) string {
	if t, ok := b.tensor(name, out, in); ok {
		b.addInit(b.prefix+name, t, name, b.matmulStorage(), []int64{in, out},
			"transposed to [in, out] from the [out, in] nn.Linear weight", int(out), int(in))
	}
	return name
}

// addInit adds the checkpoint tensor full, described by t, as initializer
// initName of dims in storage s. When rows is non-zero the tensor is a
// rows×cols matrix written transposed. An F32 tensor stored as float32
// untransposed is streamed; any other is read whole, converted and written.
func (b *builder) addInit(full string, t stTensor, initName string, s storage, dims []int64, doc string, rows, cols int) {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	b.g.inits = append(b.g.inits, initializer{
		name: initName, dataType: s.dataType(), dims: dims, nbytes: n * s.elemSize(), doc: doc,
		write: func(w io.Writer) error {
			same := t.dtype == "F32" && s == storeF32
			if same && rows == 0 {
				return b.st.copyTo(w, full, t)
			}
			data, err := b.st.readAll(full, t)
			if err != nil {
				return err
			}
			if !same {
				if data, err = convert(full, t.dtype, data, s); err != nil {
					return err
				}
			}
			if rows != 0 {
				data = transpose(data, rows, cols, int(s.elemSize()))
			}
			_, err = w.Write(data)
			return err
		},
	})
}

// layerNorm adds the scale and bias of the LayerNorm at base. Checkpoints
// converted from TensorFlow name them gamma and beta; the initializers are
// always named weight and bias.
func (b *builder) layerNorm(base string, n int64) (scale, bias string) {
	scaleName, biasName := b.st.layerNormNames(b.prefix, base)
	s := b.normStorage()
	return b.weightAs(scaleName, base+".weight", s, n), b.weightAs(biasName, base+".bias", s, n)
}

// constF32 returns a shared float32 scalar initializer.
func (b *builder) constF32(name string, v float32) string {
	data := binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))
	return b.constant(name, dataTypeFloat, nil, data)
}

// constF16 returns a shared float16 scalar initializer holding v rounded to
// float16.
func (b *builder) constF16(name string, v float32) string {
	data := binary.LittleEndian.AppendUint16(nil, f32ToF16(math.Float32bits(v)))
	return b.constant(name, dataTypeFloat16, nil, data)
}

// constMatmul returns the shared scalar key in the precision of the matmuls:
// const_f32_<key>, or const_f16_<key> in an FP16 graph.
func (b *builder) constMatmul(key string, v float32) string {
	if b.opts.fp16() {
		return b.constF16("const_f16_"+key, v)
	}
	return b.constF32("const_f32_"+key, v)
}

// cast converts x to dataType with a Cast node called name.
func (b *builder) cast(name, x string, dataType onnxpb.TensorProto_DataType) string {
	return b.op(name, "Cast", "", []string{x}, intAttr("to", int64(dataType)))
}

// constI64 returns a shared 1-D int64 initializer.
func (b *builder) constI64(name string, v ...int64) string {
	var data []byte
	for _, x := range v {
		data = binary.LittleEndian.AppendUint64(data, uint64(x))
	}
	return b.constant(name, dataTypeInt64, []int64{int64(len(v))}, data)
}

func (b *builder) constant(name string, dataType onnxpb.TensorProto_DataType, dims []int64, data []byte) string {
	if n, ok := b.consts[name]; ok {
		return n
	}
	b.consts[name] = name
	b.g.inits = append(b.g.inits, initializer{
		name: name, dataType: dataType, dims: dims, nbytes: int64(len(data)),
		write: func(w io.Writer) error { _, err := w.Write(data); return err },
	})
	return name
}

// embeddings builds LayerNorm(word[input_ids] + type[token_type_ids] +
// position[0:sequence]), adding in the order BertEmbeddings does.
func (b *builder) embeddings() string {
	c := b.cfg
	hid := int64(c.HiddenSize)
	s := b.matmulStorage()
	var word, wordScale string
	q8Words := b.opts.q8() && !b.opts.FP32WordEmbeddings
	if q8Words {
		// The word table is most of the model's weights; int8 rows
		// quarter it. The small position and token-type tables stay
		// float32.
		word, wordScale = b.quantizedTable("embeddings.word_embeddings.weight", int64(c.VocabSize), hid)
	} else {
		word = b.weight("embeddings.word_embeddings.weight", s, int64(c.VocabSize), hid)
	}
	pos := b.weight("embeddings.position_embeddings.weight", s, int64(c.MaxPositionEmbeddings), hid)
	typ := b.weight("embeddings.token_type_embeddings.weight", s, int64(c.TypeVocabSize), hid)
	lnScale, lnBias := b.layerNorm("embeddings.LayerNorm", hid)

	var we string
	if q8Words {
		we = b.gatherQ8("/embeddings/word_embeddings", word, wordScale, InputIDs)
	} else {
		we = b.op("/embeddings/word_embeddings/Gather", "Gather", "", []string{word, InputIDs})
	}
	te := b.op("/embeddings/token_type_embeddings/Gather", "Gather", "", []string{typ, TokenTypeIDs})
	if b.opts.fp16() {
		// The tables are float16 to halve their memory; the sum starts
		// the float32 residual stream.
		we = b.cast("/embeddings/word_embeddings/Cast", we, dataTypeFloat)
		te = b.cast("/embeddings/token_type_embeddings/Cast", te, dataTypeFloat)
	}
	sum := b.op("/embeddings/Add", "Add", "", []string{we, te})
	// Position ids are 0..sequence-1, so the position embeddings are the
	// first sequence rows of the table: a Slice, not a Gather. A sequence
	// longer than the table makes the following Add fail to broadcast
	// rather than read out of bounds.
	seq := b.op("/embeddings/Shape", "Shape", "", []string{InputIDs}, intAttr("start", 1), intAttr("end", 2))
	zero := b.constI64("const_i64_0", 0)
	pe := b.op("/embeddings/position_embeddings/Slice", "Slice", "", []string{pos, zero, seq, zero})
	if b.opts.fp16() {
		pe = b.cast("/embeddings/position_embeddings/Cast", pe, dataTypeFloat)
	}
	sum = b.op("/embeddings/Add_1", "Add", "", []string{sum, pe})
	// Shape inference cannot tell that the Slice yields "sequence" rows, so
	// without this annotation every later tensor would have an unknown
	// sequence dim, and onnxruntime fuses Add+LayerNormalization into
	// SkipLayerNormalization only when it can see the shapes of both sides
	// are equal.
	b.g.hidden = append(b.g.hidden, sum)
	return b.op("/embeddings/LayerNorm/LayerNormalization", "LayerNormalization", "",
		[]string{sum, lnScale, lnBias}, intAttr("axis", -1), floatAttr("epsilon", float32(c.LayerNormEps)))
}

// extendedMask builds the [batch, 1, 1, sequence] additive mask
// (1 - mask) * maskValue that every layer adds to its attention scores.
func (b *builder) extendedMask() string {
	// Two Unsqueezes rather than one with axes [1, 2]: the
	// Unsqueeze/Unsqueeze/Cast/Sub/Mul chain is what onnxruntime's attention
	// fusions look for.
	m := b.op("/mask/Unsqueeze", "Unsqueeze", "", []string{AttentionMask, b.constI64("const_i64_1", 1)})
	m = b.op("/mask/Unsqueeze_1", "Unsqueeze", "", []string{m, b.constI64("const_i64_2", 2)})
	m = b.op("/mask/Cast", "Cast", "", []string{m}, intAttr("to", int64(dataTypeFloat)))
	m = b.op("/mask/Sub", "Sub", "", []string{b.constF32("const_f32_1", 1), m})
	return b.op("/mask/Mul", "Mul", "", []string{m, b.constF32("const_f32_mask", maskValue)})
}

// linear builds x·Wᵀ + bias for the nn.Linear at hf (weights "hf.weight" and
// "hf.bias"), the linear kind (one of linearKinds) of layer, with nodes
// named under path, in the precision of the matmuls (linearQ8 in a Q8
// graph, unless Options.FP32Linears keeps it float32).
func (b *builder) linear(x, hf, path string, layer int, kind string, in, out int64) string {
	if b.opts.q8() && !b.fp32[layer][slices.Index(linearKinds, kind)] {
		return b.linearQ8(x, hf, path, in, out)
	}
	w := b.linearWeight(hf+".weight", out, in)
	bias := b.weight(hf+".bias", b.matmulStorage(), out)
	mm := b.op(path+"/MatMul", "MatMul", "", []string{x, w})
	return b.op(path+"/Add", "Add", "", []string{mm, bias})
}

// layer builds encoder layer i on hidden state x; out names its output
// when non-empty.
func (b *builder) layer(i int, x, mask, out string) string {
	c := b.cfg
	hid, inter := int64(c.HiddenSize), int64(c.IntermediateSize)
	heads, head := int64(c.NumAttentionHeads), int64(c.headSize())
	hf := fmt.Sprintf("encoder.layer.%d", i)
	path := fmt.Sprintf("/encoder/layer.%d", i)
	splitShape := b.constI64("const_shape_split_heads", 0, 0, heads, head)
	mergeShape := b.constI64("const_shape_merge_heads", 0, 0, hid)
	fp16 := b.opts.fp16()

	// xm is x in the precision of the matmuls.
	xm := x
	if fp16 {
		xm = b.cast(path+"/attention/self/Cast", x, dataTypeFloat16)
	}
	// heads projects x and splits it into [batch, heads, sequence, head]
	// (perm 0,2,1,3) or, for keys, [batch, heads, head, sequence] (0,2,3,1).
	heads4 := func(name string, perm ...int64) string {
		p := path + "/attention/self/" + name
		y := b.linear(xm, hf+".attention.self."+name, p, i, name, hid, hid)
		y = b.op(p+"/Reshape", "Reshape", "", []string{y, splitShape})
		return b.op(p+"/Transpose", "Transpose", "", []string{y}, intsAttr("perm", perm...))
	}
	q := heads4("query", 0, 2, 1, 3)
	k := heads4("key", 0, 2, 3, 1)
	v := heads4("value", 0, 2, 1, 3)

	p := path + "/attention/self"
	var s string
	if fp16 {
		// Scaling q first keeps QKᵀ inside float16 range; the scores
		// are masked and normalized in float32.
		q = b.op(p+"/Mul", "Mul", "", []string{q, b.constF16("const_f16_inv_sqrt_head_size", float32(1/math.Sqrt(float64(head))))})
		s = b.op(p+"/MatMul", "MatMul", "", []string{q, k})
		s = b.cast(p+"/Cast_1", s, dataTypeFloat)
		s = b.op(p+"/Add", "Add", "", []string{s, mask})
		s = b.op(p+"/Softmax", "Softmax", "", []string{s}, intAttr("axis", -1))
		s = b.cast(p+"/Cast_2", s, dataTypeFloat16)
	} else {
		s = b.op(p+"/MatMul", "MatMul", "", []string{q, k})
		s = b.op(p+"/Div", "Div", "", []string{s, b.constF32("const_f32_sqrt_head_size", float32(math.Sqrt(float64(head))))})
		s = b.op(p+"/Add", "Add", "", []string{s, mask})
		s = b.op(p+"/Softmax", "Softmax", "", []string{s}, intAttr("axis", -1))
	}
	ctx := b.op(p+"/MatMul_1", "MatMul", "", []string{s, v})
	ctx = b.op(p+"/Transpose", "Transpose", "", []string{ctx}, intsAttr("perm", 0, 2, 1, 3))
	ctx = b.op(p+"/Reshape", "Reshape", "", []string{ctx, mergeShape})

	a := b.residualNorm(ctx, x, hf+".attention.output", path+"/attention/output", i, "attention_output", hid, hid, "")

	p = path + "/intermediate"
	am := a
	if fp16 {
		am = b.cast(p+"/Cast", a, dataTypeFloat16)
	}
	u := b.linear(am, hf+".intermediate.dense", p+"/dense", i, "intermediate", hid, inter)
	// GELU(u) = u * 0.5 * (1 + erf(u / sqrt 2)), in the Div/Erf/Add/Mul/Mul
	// form that onnxruntime fuses into Gelu (BiasGelu with the bias Add),
	// in the precision of the matmuls.
	g := b.op(p+"/Div", "Div", "", []string{u, b.constMatmul("sqrt_2", math.Sqrt2)})
	g = b.op(p+"/Erf", "Erf", "", []string{g})
	g = b.op(p+"/Add", "Add", "", []string{g, b.constMatmul("1", 1)})
	g = b.op(p+"/Mul", "Mul", "", []string{u, g})
	g = b.op(p+"/Mul_1", "Mul", "", []string{g, b.constMatmul("0.5", 0.5)})

	return b.residualNorm(g, a, hf+".output", path+"/output", i, "output", inter, hid, out)
}

// residualNorm builds LayerNorm(dense(x) + residual) for a BertSelfOutput
// or BertOutput block at hf, whose dense is the linear kind of layer; x is
// in the precision of the matmuls, residual and the result are float32.
func (b *builder) residualNorm(x, residual, hf, path string, layer int, kind string, in, out int64, name string) string {
	y := b.linear(x, hf+".dense", path+"/dense", layer, kind, in, out)
	if b.opts.fp16() {
		y = b.cast(path+"/Cast", y, dataTypeFloat)
	}
	y = b.op(path+"/Add", "Add", "", []string{y, residual})
	scale, bias := b.layerNorm(hf+".LayerNorm", out)
	return b.op(path+"/LayerNorm/LayerNormalization", "LayerNormalization", name,
		[]string{y, scale, bias}, intAttr("axis", -1), floatAttr("epsilon", float32(b.cfg.LayerNormEps)))
}

// transpose transposes a rows×cols matrix of size-byte elements.
func transpose(src []byte, rows, cols, size int) []byte {
	dst := make([]byte, len(src))
	for r := range rows {
		row := src[r*cols*size : (r+1)*cols*size]
		for c := range cols {
			o := (c*rows + r) * size
			copy(dst[o:o+size], row[c*size:c*size+size])
		}
	}
	return dst
}
