//go:build cuda

package cuda

import (
	"context"
	"fmt"
	"math"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
)

// Self-check thresholds: the least cosine between a GPU vector and the CPU
// twin's, and the largest relative difference of their norms.
const (
	selfCheckCosFP32 = 0.9999
	selfCheckCosFP16 = 0.999
	selfCheckNormTol = 0.01
)

// selfCheckLengths are the token counts of the self-check's texts: within
// one key tile of attention, just past one, and across several tiles and
// query blocks (256 tokens in all, so that the CPU side stays quick for
// large models).
var selfCheckLengths = []int{3, 33, 77, 143}

// selfCheckBatch returns the self-check's padded batch for a model of
// vocab tokens and maxPos positions: fixed, spread-out token ids, type 0.
func selfCheckBatch(vocab, maxPos int) accel.Batch {
	seq := 0
	for _, n := range selfCheckLengths {
		seq = max(seq, min(n, maxPos))
	}
	b := accel.Batch{Size: len(selfCheckLengths), SeqLen: seq}
	b.IDs = make([]int64, b.Size*seq)
	b.Mask = make([]int64, b.Size*seq)
	for r, n := range selfCheckLengths {
		for j := range min(n, maxPos) {
			b.IDs[r*seq+j] = int64((r*104729 + j*7919 + 1) % vocab)
			b.Mask[r*seq+j] = 1
		}
	}
	return b
}

// selfCheck runs selfCheckBatch on the GPU and with the CPU twin on the
// same weights (float32) and fails with ErrSelfCheck naming the first text
// whose vectors disagree.
func (e *Encoder) selfCheck(w *packed.Weights) error {
	b := selfCheckBatch(e.cfg.VocabSize, e.cfg.MaxPositionEmbeddings)
	h := e.hidden
	gv, gn := make([]float32, b.Size*h), make([]float32, b.Size)
	cv, cn := make([]float32, b.Size*h), make([]float32, b.Size)
	ctx := context.Background()
	if err := e.Encode(ctx, b, gv, gn); err != nil {
		return fmt.Errorf("%w: GPU run: %w", ErrSelfCheck, err)
	}
	if err := packed.NewEncoder(w, e.o.Mode).Encode(ctx, b, cv, cn); err != nil {
		return fmt.Errorf("%w: CPU run: %w", ErrSelfCheck, err)
	}
	want, prec := selfCheckCosFP32, "fp32"
	if e.o.FP16 {
		want, prec = selfCheckCosFP16, "fp16"
	}
	for r := range b.Size {
		c := cosine(gv[r*h:(r+1)*h], cv[r*h:(r+1)*h])
		if !(c >= want) { // also NaN
			return fmt.Errorf("%w: %s, text %d (%d tokens): cosine %.6f with the CPU twin; want >= %g",
				ErrSelfCheck, prec, r, min(selfCheckLengths[r], e.cfg.MaxPositionEmbeddings), c, want)
		}
		if d := math.Abs(float64(gn[r]) - float64(cn[r])); !(d <= selfCheckNormTol*math.Abs(float64(cn[r]))+1e-6) {
			return fmt.Errorf("%w: %s, text %d: pooled norm %g on the GPU, %g on the CPU twin",
				ErrSelfCheck, prec, r, gn[r], cn[r])
		}
	}
	return nil
}

// cosine is the cosine of a and b in float64; two zero vectors give 1.
func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 && bb == 0 {
		return 1
	}
	return ab / math.Sqrt(aa*bb)
}
