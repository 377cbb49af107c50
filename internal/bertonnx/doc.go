// Package bertonnx builds an ONNX model of a BERT encoder (Hugging Face
// BertModel in eval mode, without the pooler) from a Hugging Face config.json
// and a model.safetensors file, in pure Go: no Python, no PyTorch, no protobuf
// library.
//
// # Graph contract
//
// The model uses the default ONNX domain at opset 17 and IR version 8. Its
// inputs are input_ids, attention_mask and token_type_ids, each int64 with
// symbolic dims ["batch", "sequence"]; its one output is last_hidden_state,
// float32 ["batch", "sequence", hidden_size]. The graph computes exactly what
// BertModel computes:
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
// num_attention_heads, and float32 ("F32") tensors whose names carry an
// optional "bert." prefix; LayerNorm parameters may be named weight/bias or
// gamma/beta. Pooler and head tensors are ignored. Anything else is rejected
// with an error that names the field or the tensor and the expected shape.
//
// # Invariants
//
// Export is deterministic: the same config and weights give the same bytes,
// whatever the machine, since the output holds no paths, times or versions of
// the toolchain. Changing the graph changes [ProducerVersion]. The output is
// a single self-contained ModelProto and so must stay under protobuf's 2 GiB
// limit; larger models are rejected with [ErrTooLarge].
//
// # Concurrency
//
// The package holds no mutable state. Export and ExportFile may be called
// concurrently; each call opens its own handle on the weights file and holds
// at most one weight matrix in memory at a time.
package bertonnx
