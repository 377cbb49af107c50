// Package bertonnx builds an ONNX model of a BERT encoder (Hugging Face
// BertModel in eval mode, without the pooler) from a Hugging Face config.json
// and a model.safetensors file, in pure Go: no Python, no PyTorch. The
// ONNX messages are the types generated from onnx.proto into package
// [github.com/embedd/embedd/internal/bertonnx/onnxpb], encoded by
// proto.Marshal.
//
// [Export] writes the default graph: float32, outputting the last hidden
// states. [ExportWith] takes [Options] for variants: Precision FP16 (mixed
// precision for GPUs) or Q8 (dynamic int8 for CPUs), Pooling PoolMean or
// PoolCLS (the graph outputs one vector per text) and Normalize (L2
// normalization in the graph). The zero
// Options is the default graph, unchanged byte for byte by the options'
// existence, so checksums pinned for it still hold.
//
// # Graph contract
//
// The model uses the default ONNX domain at opset 17 and IR version 8 (a Q8
// model also onnxruntime's com.microsoft domain, version 1). Its inputs are
// input_ids, attention_mask and token_type_ids, each int64 with symbolic dims
// ["batch", "sequence"]. Without pooling its one output is
// last_hidden_state, float32 ["batch", "sequence", hidden_size], in either
// precision. The graph computes exactly what BertModel computes:
//
//   - word, token-type and absolute position (0..sequence-1) embeddings,
//     summed in Hugging Face order, then LayerNormalization;
//   - per layer: Q/K/V projections, scores QKᵀ/√head_size plus the additive
//     mask (1-mask)·min(float32), Softmax, context, output projection, residual
//     and LayerNormalization; then the intermediate projection, exact (erf)
//     GELU, output projection, residual and LayerNormalization.
//
// The mask value is the float32 minimum, as current Hugging Face uses; it keeps
// Softmax finite (a masked score becomes exactly min(float32) and exp of it
// less the row maximum is 0) and, unlike -10000, gives the same uniform
// distribution as Hugging Face for a row whose keys are all masked.
//
// With Pooling PoolMean or PoolCLS the outputs are, instead of
// last_hidden_state (float32 throughout, whatever the precision):
//
//   - sentence_embedding ["batch", hidden_size]: for PoolMean the sum over
//     tokens of last hidden state × attention_mask divided by
//     max(sum(attention_mask), 1), so a row of padding only gives zeros; for
//     PoolCLS the last hidden state of token 0. With Normalize it is then
//     divided by max(its L2 norm, 1e-12), as torch.nn.functional.normalize
//     (and sentence-transformers' Normalize) does;
//   - with Normalize only, sentence_norm ["batch", 1]: the L2 norm of the
//     pooled vector before normalization, so that a caller can get the raw
//     vector back as sentence_embedding × sentence_norm.
//
// # FP16 precision
//
// Precision FP16 is mixed precision, laid out for GPUs. Stored as float16:
// the word, position and token-type embedding tables and every linear
// weight and bias; computed in float16: those matmuls and bias adds, the
// scaling of q by 1/√head_size (before QKᵀ, so that the scores stay inside
// float16 range), the attention context, and GELU. Everything else is
// float32: the residual stream (embeddings are cast up as they are looked
// up), every LayerNormalization with float32 scale and bias, the scores from
// QKᵀ on (cast up, mask added, Softmax, cast down for the context), pooling,
// normalization and every output. A Cast to float16 feeds each group of
// matmuls and a Cast to float32 leaves it before the residual Add, so that
// the node patterns are those of the float32 graph: onnxruntime (1.32, CPU)
// still fuses every residual Add+LayerNormalization into
// SkipLayerNormalization; the bias Add+GELU (BiasGelu) and the q scale
// (FusedMatMul) are float16 patterns, which onnxruntime fuses only for
// providers with float16 kernels, such as CUDA. The CPU provider, which
// lacks most float16 kernels, runs the graph through Casts it inserts itself.
//
// An FP16 graph depends on the weights only through their float16 values:
// float32 and bfloat16 weights are rounded to nearest, ties to even (as
// numpy's astype(np.float16) does), and LayerNorm parameters, though stored as
// float32, hold their float16 rounding too. So an F32 checkpoint and an F16
// one made from it give the same bytes, and one pinned checksum serves both.
// A weight that is not finite in float16 (beyond ±65504, inf or NaN) fails
// the export with an error naming the tensor and the element, rather than
// give a model whose every output is NaN.
//
// # Q8 precision
//
// Precision Q8 is dynamic int8 quantization, laid out for CPUs whose integer
// dot-product instructions (x86 AVX-512 VNNI or AVX-VNNI, Arm dot product)
// onnxruntime's u8s8 GEMMs use. Each linear x·Wᵀ + b becomes
//
//	s := max(ReduceMax(|x|, last axis) / 127, 2⁻¹²⁶)   // [batch, sequence, 1]
//	q := QuantizeLinear(x as [tokens, in], s, 128, axis 0) as x's shape
//	y := MatMulIntegerToFloat(q, W8, s, w_scale, 128) + b
//
// W8 is the int8 weight, stored [in, out], symmetric with one float32 scale
// per output channel (w_scale: the channel's largest magnitude over 127; the
// codes are the weights over it, rounded to nearest with ties to even in
// float32, so they lie in [-127, 127]). The input is quantized symmetrically
// per token: its codes, round(x/s) + 128, are uint8 with the zero point 128
// (QuantizeLinear, per axis over x viewed as [tokens, in], with the zero
// points from ConstantOfShape). MatMulIntegerToFloat, of onnxruntime's
// com.microsoft domain (imported at version 1), multiplies the codes in
// int32 and scales each output by the token's scale times the channel's;
// the bias stays a separate Add, which onnxruntime (1.30, 1.32) fuses into
// the SkipLayerNormalization or BiasGelu that follows. Linears that read the
// same tensor (query, key and value) share its quantization. The word
// embedding table is int8 too, with one scale per row (a [vocab, 1] float32
// tensor gathered with the same ids; Gather, Cast, Mul), which takes the
// model to about a quarter of its float32 size. Everything else is float32:
// the position and token-type tables, LayerNorm, the attention scores and
// context (their matmuls have no constant operand), softmax, GELU, pooling
// and normalization.
//
// Per-token scales, rather than the one scale per tensor of
// DynamicQuantizeLinear (what onnxruntime's quantize_dynamic emits), make a
// token's codes depend on that token alone, so a text's vector does not
// depend on the texts batched with it or on their padding, and quantize
// short rows beside long ones more finely. On the CPUs above they cost about
// 5% of throughput against DynamicQuantizeMatMul. The u8s8 kernels of x86
// CPUs without VNNI (AVX2, AVX-512 without VNNI) multiply with vpmaddubsw,
// which saturates pairs of products to int16: there, large codes clip (as
// with any u8s8 model not quantized to 7 bits, quantize_dynamic's
// reduce_range), which costs all-MiniLM-L6-v2 about 0.002 of mean cosine to
// float32 in a simulation. A non-finite weight fails the export with an
// error naming the tensor and the element.
//
// Options.FP32Linears keeps chosen linears of a Q8 graph in float32, by
// kind ("query", "key", "value", "attention_output", "intermediate",
// "output"), by layer ("layer.N") or both ("layer.N.KIND"): each is then
// the FP32 graph's MatMul on the float32 weight and bias Add, and its input
// is quantized only if an int8 linear reads it too.
// Options.FP32WordEmbeddings keeps the word table float32 (the FP32
// graph's Gather). Selecting every linear and the word table gives the
// FP32 graph's nodes and initializers; selecting none, the plain Q8 graph,
// byte for byte. bench/quantquality/q8variants.sh measures what each
// selection costs in speed and gains in fidelity to float32
// (bench/results/q8-variants.md).
//
// Weights are stored as float32 raw_data initializers; linear weights are
// stored pre-transposed to [in, out] so the graph has no runtime Transpose of
// a weight. Node patterns follow what the PyTorch exporter emits (MatMul then
// bias Add, Div/Erf/Add/Mul GELU, Unsqueeze/Unsqueeze/Cast/Sub/Mul mask), the
// shapes onnxruntime knows how to fuse: its session optimizer (1.32) turns
// each residual Add+LayerNormalization into SkipLayerNormalization, each GELU
// into BiasGelu and each scaled QKᵀ into FusedMatMul. It does not fuse
// Attention, whose matcher only accepts pre-opset-14 Add and Reshape; the
// offline onnxruntime.transformers optimizer does.
//
// # Accepted models
//
// model_type "bert" (or absent), hidden_act "gelu" (exact erf GELU),
// position_embedding_type "absolute", hidden_size divisible by
// num_attention_heads, and F32, F16 or BF16 tensors (mixed freely) whose
// names carry an optional "bert." prefix; LayerNorm parameters may be named
// weight/bias or gamma/beta. F16 and BF16 tensors are widened exactly in a
// float32 graph. Pooler and head tensors are ignored. Anything else is
// rejected with an error that names the field or the tensor and the expected
// shape.
//
// # Reading weights
//
// [OpenWeights] gives code that runs the model itself (the native encoders
// of internal/accel) the checkpoint's tensors as float32, with the same name
// resolution as the exporter: the optional "bert." prefix, LayerNorm
// weight/bias or gamma/beta, F32, F16 or BF16 widened exactly, and the same
// errors for a missing tensor or a wrong dtype or shape.
//
// # Invariants
//
// Export is deterministic: the same config, weights and options give the
// same bytes, whatever the machine, since the output holds no paths, times or
// versions of the toolchain. The bytes are those of deterministic
// proto.Marshal of the ModelProto (fields in field-number order, repeated
// scalars unpacked as proto2 onnx.proto declares them), but the weights are
// streamed into them, never all held in memory: see graph.encode. Changing the graph for given inputs and options
// changes [ProducerVersion]; adding options did not change the default
// graph, so it stays at "1". The output is
// a single self-contained ModelProto and so must stay under protobuf's 2 GiB
// limit; larger models are rejected with [ErrTooLarge].
//
// # Concurrency
//
// The package holds no mutable state. The Export functions may be called
// concurrently; each call opens its own handle on the weights file and holds
// at most one weight matrix in memory at a time (with its converted copy
// when it changes precision or layout). The methods of a [Weights] other
// than Close may be called concurrently too.
package bertonnx
