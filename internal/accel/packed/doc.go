// Package packed runs BERT encoders on packed batches: the tokens of all
// texts of a batch side by side, without padding or an attention mask. It
// defines the layout the native encoders share (docs/native-cuda.md): the
// Weights (Q, K and V fused), the packing of a padded accel.Batch, and a CPU
// twin of each GPU kernel (EmbedLN, BiasGELU, BiasResidualLN, Attention,
// Pool, and Linear for the cuBLAS GEMMs) with the kernel's name, argument
// order and arithmetic. Encoder chains the twins into the whole forward pass
// in pure Go (gonum BLAS); it is the reference the GPU encoder is tested
// against, and is itself tested against ONNX Runtime.
//
// # Invariants
//
// A packed Batch of B texts and T tokens has Start[0] = 0, Start[b] <
// Start[b+1] (every text has a token), Start[B] = T = len(IDs) = len(Types)
// = len(Pos); Pos[t] = t - Start[b] for each token t of text b, and is below
// max_position_embeddings; MaxLen = max_b (Start[b+1] - Start[b]). Pack
// makes only such batches, from the leading run of 1s of each mask row
// (right padding); it rejects a row without tokens and a row with a 1 after
// a 0. Batch.Validate checks all of it, and the ids against the model's
// tables, and every entry point that runs the model calls it, so the
// kernels never index out of their tables.
//
// Weights hold float32, row-major matrices; linear weights keep PyTorch's
// [out, in] layout, and Layer.QKV is [3H, H] with the query rows first, then
// the key rows, then the value rows (QKVBias alike).
//
// Every kernel twin computes in float32, except where its doc says double
// (the pooled vector's norm, the int8 scale). Attention takes keys in tiles
// of AttentionTile with a running-max (online) softmax, as the GPU kernel
// does, so that the twin rounds like it.
//
// Encode writes exactly b.Size vectors and norms, or returns an error and
// leaves them unspecified. A pooled vector whose norm is below 1e-12 is
// left as it is (a zero vector stays zero, with norm 0, codes 0 and scale
// 0). The int8 output of EncodeQuantized and Pool is exactly
// quant.QuantizeInt8 of the float output. A pooled vector that is not
// finite fails the call with ErrNonFinite naming the row.
//
// # Concurrency
//
// The kernel twins and Pack hold no state. An Encoder is safe for concurrent
// use; each call takes its scratch buffers from a sync.Pool, and one call
// uses up to GOMAXPROCS goroutines (gonum's GEMM and the attention). The
// Weights must not change while an Encoder uses them.
package packed
