package bertonnx

// normEps is the floor of the L2 norm a pooled vector is divided by, as in
// torch.nn.functional.normalize (and so sentence-transformers' Normalize).
const normEps = 1e-12

// pool adds the nodes that turn the float32 last hidden state h
// [batch, sequence, hidden] into SentenceEmbedding [batch, hidden] and, when
// normalizing, SentenceNorm [batch, 1].
func (b *builder) pool(h string) {
	out := SentenceEmbedding // the pooled vector's name, unless normalized
	if b.opts.Normalize {
		out = ""
	}
	var pooled string
	if b.opts.Pooling == PoolCLS {
		// A scalar index drops the sequence axis.
		zero := b.constant("const_i64_scalar_0", dataTypeInt64, nil, make([]byte, 8))
		pooled = b.op("/pooling/Gather", "Gather", out, []string{h, zero}, intAttr("axis", 1))
	} else {
		// sum(h·mask) / max(sum(mask), 1): a row without tokens pools to
		// zeros rather than NaN. Padded positions hold finite values, so
		// multiplying them by 0 removes them exactly.
		m := b.cast("/pooling/Cast", AttentionMask, dataTypeFloat)
		m = b.op("/pooling/Unsqueeze", "Unsqueeze", "", []string{m, b.constI64("const_i64_2", 2)})
		axis1 := b.constI64("const_i64_1", 1)
		sum := b.op("/pooling/Mul", "Mul", "", []string{h, m})
		sum = b.op("/pooling/ReduceSum", "ReduceSum", "", []string{sum, axis1}, intAttr("keepdims", 0))
		n := b.op("/pooling/ReduceSum_1", "ReduceSum", "", []string{m, axis1}, intAttr("keepdims", 0))
		n = b.op("/pooling/Max", "Max", "", []string{n, b.constF32("const_f32_1", 1)})
		pooled = b.op("/pooling/Div", "Div", out, []string{sum, n})
	}
	if !b.opts.Normalize {
		return
	}
	// Opset 17's ReduceL2 takes its axes as an attribute (ReduceSum has
	// taken them as an input since opset 13).
	norm := b.op("/normalize/ReduceL2", "ReduceL2", SentenceNorm, []string{pooled}, intsAttr("axes", 1), intAttr("keepdims", 1))
	d := b.op("/normalize/Max", "Max", "", []string{norm, b.constF32("const_f32_norm_eps", normEps)})
	b.op("/normalize/Div", "Div", SentenceEmbedding, []string{pooled, d})
}
