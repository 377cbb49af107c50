// Package quant quantizes float32 embeddings to int8 and to packed sign bits,
// computes distances over every representation, searches small collections
// by brute force, rescores quantized candidates with the float query, and
// measures how much retrieval quality a quantization scheme costs.
//
// Three schemes are offered:
//
//   - Per-vector symmetric int8 ([QuantizeInt8]): x[i] ≈ q[i]·scale with
//     scale = max|x|/127. Self-contained, no calibration, and the dot product
//     of two quantized vectors is DotInt8(qa, qb)·scaleA·scaleB.
//   - Per-dimension calibrated int8 ([Calibration]), the scheme of
//     sentence-transformers' quantize_embeddings(precision="int8"): each
//     dimension's calibrated [min, max] is cut into 255 equal steps. It needs a
//     calibration set and the Calibration stored beside the collection.
//   - Binary ([PackBinary], [PackBinaryWords]): one sign bit per dimension
//     (x > 0 → 1), packed most significant bit first exactly as numpy's
//     np.packbits and sentence-transformers' "ubinary" precision. Searched
//     by [Hamming] distance ([BinaryMatrix.Search]) or, keeping the query in
//     float, by [BinaryMatrix.SearchAsymmetric], and followed by rescoring a
//     few times k candidates ([RescoreFloat]).
//
// [Evaluate] measures what each scheme costs in reconstruction cosine and
// recall@k on a caller's own embeddings.
//
// Invariants:
//
//   - Quantizers reject NaN and ±Inf with [ErrNonFinite] and never produce
//     NaN or Inf themselves: a zero vector has scale 0 and dequantizes to
//     zeros, and a degenerate calibrated dimension (max == min) has step 0
//     and dequantizes to its min.
//   - Dimensions are checked at every API boundary and reported with
//     [ErrLengthMismatch]. The hot kernels ([DotInt8], [DotFloat32],
//     [Hamming], [HammingBytes], [Cosine]) instead document the precondition
//     len(a) == len(b) and panic when it is broken, like an out-of-range
//     index, so that they stay branch-free in search loops.
//   - Every ranked result list is ordered by Score descending and, on equal
//     scores, by ID ascending, so results are deterministic.
//
// Concurrency: the package has no state. Every function is safe for
// concurrent use provided that no goroutine writes a slice another one reads;
// functions that take a dst slice write only to it. A [Calibration] is
// immutable after construction and may be shared freely. [Int8Matrix] and
// [BinaryMatrix] may be searched concurrently, but Append must not run
// concurrently with any other method on the same matrix.
package quant
