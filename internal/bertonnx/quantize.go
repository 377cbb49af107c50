package bertonnx

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
)

// This file builds the Q8 graph's quantized parts: int8 linear weights with
// one scale per output channel, their inputs quantized per token at run time,
// and int8 word embeddings with one scale per row (see the package doc).

// qmax is the largest int8 code a symmetric quantization uses: codes are in
// [-qmax, qmax], so that negating a value negates its code.
const qmax = 127

// minScale is the floor of a token's activation scale, the smallest normal
// float32, so that a row of zeros divides into zeros rather than NaN.
const minScale = 0x1p-126

// quantizedInput is a float tensor x [batch, sequence, k] quantized per
// token: codes, uint8 of x's shape holding round(x / scale) + 128, and
// scale, float32 [batch, sequence, 1], each token's largest magnitude over
// 127.
type quantizedInput struct {
	codes, scale string
}

// linearQ8 builds x·Wᵀ + bias for the nn.Linear at hf with the int8 codes
// of x (quantizeInput) and of W: MatMulIntegerToFloat (onnxruntime's
// com.microsoft domain) multiplies them in int32, subtracting the zero
// point 128 of x, and scales each output by the token's scale times the
// channel's; then the bias is added. The bias stays a separate Add, which
// onnxruntime fuses into the SkipLayerNormalization or BiasGelu that
// follows: MatMulIntegerToFloat adds its own bias input before applying a
// per-token scale, which would scale the bias too.
func (b *builder) linearQ8(x, hf, path string, in, out int64) string {
	w, scale := b.quantizedLinearWeight(hf+".weight", out, in)
	bias := b.weight(hf+".bias", storeF32, out)
	xq := b.quantizeInput(x, path, in)
	zp := b.constant("const_u8_128", dataTypeUint8, nil, []byte{128})
	name, opType, y := path+"/MatMulIntegerToFloat", "MatMulIntegerToFloat", path+"/MatMulIntegerToFloat_output_0"
	b.g.nodes = append(b.g.nodes, &onnxpb.NodeProto{
		Input: []string{xq.codes, w, xq.scale, scale, zp}, Output: []string{y},
		Name: &name, OpType: &opType, Domain: proto.String(msDomain),
	})
	return b.op(path+"/Add", "Add", "", []string{y, bias})
}

// quantizeInput returns x [batch, sequence, k] quantized per token, adding
// the nodes, named under path, the first time x is asked for: the query,
// key and value projections share them. Each token's scale is
// max(max|x|/127, minScale) (Abs, ReduceMax, Div, Max); the codes come from
// one per-axis QuantizeLinear, with the scales and a zero point of 128 per
// token, over x viewed as [tokens, k], then viewed back in x's shape.
func (b *builder) quantizeInput(x, path string, k int64) quantizedInput {
	if q, ok := b.quantizedInputs[x]; ok {
		return q
	}
	p := path + "/quantize"
	a := b.op(p+"/Abs", "Abs", "", []string{x})
	a = b.op(p+"/ReduceMax", "ReduceMax", "", []string{a}, intsAttr("axes", -1), intAttr("keepdims", 1))
	a = b.op(p+"/Div", "Div", "", []string{a, b.constF32("const_f32_127", qmax)})
	scale := b.op(p+"/Max", "Max", "", []string{a, b.constF32("const_f32_min_scale", minScale)})
	flat := b.op(p+"/Reshape_scale", "Reshape", "", []string{scale, b.constI64("const_i64_-1", -1)})
	rows := b.op(p+"/Shape_scale", "Shape", "", []string{flat})
	zp := b.op(p+"/ConstantOfShape", "ConstantOfShape", "", []string{rows},
		tensorAttr("value", dataTypeUint8, []int64{1}, []byte{128}))
	x2 := b.op(p+"/Reshape", "Reshape", "", []string{x, b.constI64(fmt.Sprintf("const_shape_rows_%d", k), -1, k)})
	codes := b.op(p+"/QuantizeLinear", "QuantizeLinear", "", []string{x2, flat, zp}, intAttr("axis", 0))
	shape := b.op(p+"/Shape", "Shape", "", []string{x})
	codes = b.op(p+"/Reshape_codes", "Reshape", "", []string{codes, shape})
	q := quantizedInput{codes: codes, scale: scale}
	b.quantizedInputs[x] = q
	return q
}

// quantizedLinearWeight adds the [out, in] weight of an nn.Linear as two
// initializers: name_quantized, its int8 codes transposed to [in, out], and
// name_scale, the float32 scale of each of the out columns. It returns
// their names.
func (b *builder) quantizedLinearWeight(name string, out, in int64) (codes, scale string) {
	return b.quantizedMatrix(name, out, in, true,
		"int8 codes of the [out, in] nn.Linear weight, symmetric with one scale per output channel, transposed to [in, out]", out)
}

// quantizedTable adds the rows×cols embedding table name as name_quantized,
// its int8 codes with one scale per row, and name_scale, those scales as a
// float32 [rows, 1] tensor, so that gathering the scales with the same ids
// gives one per looked-up vector, ready to broadcast. It returns their
// names.
func (b *builder) quantizedTable(name string, rows, cols int64) (codes, scale string) {
	return b.quantizedMatrix(name, rows, cols, false, "int8 codes, symmetric with one scale per row", rows, 1)
}

// quantizedMatrix adds the rows×cols checkpoint tensor name, quantized row
// by row (quantizeRows), as name_quantized, its int8 codes (transposed to
// [cols, rows] when transposed is set; described by doc), and name_scale,
// the scales as a float32 tensor of scaleDims. Each initializer reads and
// quantizes the tensor when written, so that no more than one matrix is
// held at a time.
func (b *builder) quantizedMatrix(name string, rows, cols int64, transposed bool, doc string, scaleDims ...int64) (codes, scale string) {
	codes, scale = name+"_quantized", name+"_scale"
	t, ok := b.tensor(name, rows, cols)
	if !ok {
		return codes, scale
	}
	full := b.prefix + name
	dims := []int64{rows, cols}
	if transposed {
		dims = []int64{cols, rows}
	}
	write := func(w io.Writer, scales bool) error {
		q, s, err := b.quantizedRows(full, t, int(rows), int(cols))
		switch {
		case err != nil:
			return err
		case scales:
			_, err = w.Write(s)
		case transposed:
			_, err = w.Write(transpose(q, int(rows), int(cols), 1))
		default:
			_, err = w.Write(q)
		}
		return err
	}
	b.g.inits = append(b.g.inits,
		initializer{name: codes, dataType: dataTypeInt8, dims: dims, nbytes: rows * cols, doc: doc,
			write: func(w io.Writer) error { return write(w, false) }},
		initializer{name: scale, dataType: dataTypeFloat, dims: scaleDims, nbytes: 4 * rows,
			write: func(w io.Writer) error { return write(w, true) }})
	return codes, scale
}

// gatherQ8 looks ids up in a table added by quantizedTable and dequantizes
// the vectors found: Gather of the codes and of the scales, Cast, Mul.
func (b *builder) gatherQ8(path, codes, scale, ids string) string {
	q := b.op(path+"/Gather", "Gather", "", []string{codes, ids})
	s := b.op(path+"/Gather_scale", "Gather", "", []string{scale, ids})
	f := b.cast(path+"/Cast", q, dataTypeFloat)
	return b.op(path+"/Mul", "Mul", "", []string{f, s})
}

// quantizedRows reads the rows×cols checkpoint tensor full, described by
// t, and quantizes it row by row (see quantizeRows). It returns the codes
// as bytes (int8, row-major) and the scales as little-endian float32
// bytes.
func (b *builder) quantizedRows(full string, t stTensor, rows, cols int) (codes, scales []byte, err error) {
	data, err := b.st.readAll(full, t)
	if err != nil {
		return nil, nil, err
	}
	if t.dtype != "F32" {
		if data, err = convert(full, t.dtype, data, storeF32); err != nil {
			return nil, nil, err
		}
	}
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	q, s, err := quantizeRows(x, rows, cols)
	if err != nil {
		return nil, nil, fmt.Errorf("tensor %s: %w", full, err)
	}
	codes = make([]byte, len(q))
	for i, v := range q {
		codes[i] = byte(v)
	}
	scales = make([]byte, 0, 4*rows)
	for _, v := range s {
		scales = binary.LittleEndian.AppendUint32(scales, math.Float32bits(v))
	}
	return codes, scales, nil
}

// quantizeRows quantizes a rows×cols row-major matrix symmetrically, one
// scale per row: the scale is the row's largest magnitude divided by 127
// and each code is the element divided by the scale, rounded to nearest
// with ties to even, all in float32 (as numpy does it for float32 arrays:
// np.rint(w / (np.abs(w).max() / 127))), so that codes lie in [-127, 127]
// and code·scale gives the element back to within half a step. A row of
// zeros gets scale 1 and zero codes. A non-finite element is an error that
// wraps ErrUnsupported and names it.
func quantizeRows(x []float32, rows, cols int) ([]int8, []float32, error) {
	q := make([]int8, rows*cols)
	scales := make([]float32, rows)
	for r := range rows {
		row := x[r*cols : (r+1)*cols]
		var m float32
		for c, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("%w: element %d is %g; int8 weights must be finite", ErrUnsupported, r*cols+c, v)
			}
			m = max(m, float32(math.Abs(float64(v))))
		}
		if m == 0 {
			scales[r] = 1
			continue
		}
		s := m / qmax
		scales[r] = s
		for c, v := range row {
			code := math.RoundToEven(float64(v / s))
			q[r*cols+c] = int8(min(max(code, -qmax), qmax))
		}
	}
	return q, scales, nil
}
