package packed_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/bertonnx"
)

// tinyConfig is a small BERT: H=8, 2 heads of 4, I=16, 2 layers, and
// enough positions for texts of 70 tokens.
func tinyConfig() packed.Config {
	c := bertonnx.DefaultConfig()
	c.VocabSize = 50
	c.HiddenSize = 8
	c.NumHiddenLayers = 2
	c.NumAttentionHeads = 2
	c.IntermediateSize = 16
	c.MaxPositionEmbeddings = 128
	c.TypeVocabSize = 2
	c.LayerNormEps = 1e-5
	return c
}

func randSlice(rng *rand.Rand, n int, mean, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + sd*rng.NormFloat64())
	}
	return v
}

// randWeights returns random weights of the shapes c gives, scaled like a
// trained model's (unit-ish LayerNorm scales, small biases).
func randWeights(c packed.Config, seed uint64) *packed.Weights {
	rng := rand.New(rand.NewPCG(seed, 7))
	h, in := c.HiddenSize, c.IntermediateSize
	ws := 1 / math.Sqrt(float64(h))
	w := &packed.Weights{
		Config:     c,
		Word:       randSlice(rng, c.VocabSize*h, 0, 1),
		PosEmb:     randSlice(rng, c.MaxPositionEmbeddings*h, 0, 0.5),
		TypeEmb:    randSlice(rng, c.TypeVocabSize*h, 0, 0.5),
		EmbLNGamma: randSlice(rng, h, 1, 0.1),
		EmbLNBeta:  randSlice(rng, h, 0, 0.1),
		Layers:     make([]packed.Layer, c.NumHiddenLayers),
	}
	for i := range w.Layers {
		w.Layers[i] = packed.Layer{
			QKV: randSlice(rng, 3*h*h, 0, 2*ws), QKVBias: randSlice(rng, 3*h, 0, 0.1),
			Out: randSlice(rng, h*h, 0, ws), OutBias: randSlice(rng, h, 0, 0.1),
			LN1Gamma: randSlice(rng, h, 1, 0.1), LN1Beta: randSlice(rng, h, 0, 0.1),
			FF1: randSlice(rng, in*h, 0, ws), FF1Bias: randSlice(rng, in, 0, 0.1),
			FF2: randSlice(rng, h*in, 0, 1/math.Sqrt(float64(in))), FF2Bias: randSlice(rng, h, 0, 0.1),
			LN2Gamma: randSlice(rng, h, 1, 0.1), LN2Beta: randSlice(rng, h, 0, 0.1),
		}
	}
	return w
}

// text is one tokenized text of a test batch.
type text struct{ ids, types []int64 }

// randTexts returns texts of the given lengths with random ids and types.
func randTexts(c packed.Config, seed uint64, lengths ...int) []text {
	rng := rand.New(rand.NewPCG(seed, 11))
	out := make([]text, len(lengths))
	for i, n := range lengths {
		out[i] = text{make([]int64, n), make([]int64, n)}
		for j := range n {
			out[i].ids[j] = int64(rng.IntN(c.VocabSize))
			out[i].types[j] = int64(rng.IntN(c.TypeVocabSize))
		}
	}
	return out
}

// padded returns texts as a right-padded accel.Batch (pad id 3, so that a
// packing bug that reads padding changes the result).
func padded(texts []text) accel.Batch {
	seq := 0
	for _, t := range texts {
		seq = max(seq, len(t.ids))
	}
	b := accel.Batch{Size: len(texts), SeqLen: seq}
	n := len(texts) * seq
	b.IDs, b.Mask, b.TypeIDs = make([]int64, n), make([]int64, n), make([]int64, n)
	for i := range b.IDs {
		b.IDs[i], b.TypeIDs[i] = 3, 1
	}
	for r, t := range texts {
		for j := range t.ids {
			b.IDs[r*seq+j], b.Mask[r*seq+j], b.TypeIDs[r*seq+j] = t.ids[j], 1, t.types[j]
		}
	}
	return b
}

// The reference: the BertModel forward pass on the padded batch, in
// float64, with a masked full softmax, as straightforward as it gets.

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// refLinear returns x·wᵀ + bias for x [rows][in], w [out, in].
func refLinear(x [][]float64, w, bias []float32, out int) [][]float64 {
	in := len(x[0])
	y := make([][]float64, len(x))
	for r, row := range x {
		y[r] = make([]float64, out)
		for o := range out {
			s := float64(bias[o])
			for k := range in {
				s += row[k] * float64(w[o*in+k])
			}
			y[r][o] = s
		}
	}
	return y
}

func refLN(x []float64, gamma, beta []float32, eps float64) []float64 {
	var mean, v float64
	for _, a := range x {
		mean += a
	}
	mean /= float64(len(x))
	for _, a := range x {
		v += (a - mean) * (a - mean)
	}
	v /= float64(len(x))
	out := make([]float64, len(x))
	for k, a := range x {
		out[k] = (a-mean)/math.Sqrt(v+eps)*float64(gamma[k]) + float64(beta[k])
	}
	return out
}

func refGELU(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) }

// refAttention is masked multi-head attention on one padded row: q, k, v
// [seq][H] with biases already added; mask[j] says key j is real.
func refAttention(q, k, v [][]float64, mask []bool, heads int) [][]float64 {
	h := len(q[0])
	d := h / heads
	scale := 1 / math.Sqrt(float64(d))
	out := make([][]float64, len(q))
	for i := range q {
		out[i] = make([]float64, h)
		for hd := range heads {
			scores := make([]float64, len(k))
			m := math.Inf(-1)
			for j := range k {
				if !mask[j] {
					continue
				}
				var s float64
				for c := hd * d; c < (hd+1)*d; c++ {
					s += q[i][c] * k[j][c]
				}
				scores[j] = s * scale
				m = math.Max(m, scores[j])
			}
			var sum float64
			for j := range k {
				if mask[j] {
					scores[j] = math.Exp(scores[j] - m)
					sum += scores[j]
				}
			}
			for j := range k {
				if !mask[j] {
					continue
				}
				for c := hd * d; c < (hd+1)*d; c++ {
					out[i][c] += scores[j] / sum * v[j][c]
				}
			}
		}
	}
	return out
}

// refStates returns the last hidden states of each row of the padded batch
// b, [B][seq][H], padding included.
func refStates(w *packed.Weights, b accel.Batch) [][][]float64 {
	c := w.Config
	h, eps := c.HiddenSize, float64(w.Eps())
	out := make([][][]float64, b.Size)
	for r := range b.Size {
		mask := make([]bool, b.SeqLen)
		x := make([][]float64, b.SeqLen)
		for j := range b.SeqLen {
			i := r*b.SeqLen + j
			mask[j] = b.Mask[i] == 1
			id, typ := int(b.IDs[i]), int(b.TypeIDs[i])
			e := make([]float64, h)
			for k := range e {
				e[k] = float64(w.Word[id*h+k]) + float64(w.TypeEmb[typ*h+k]) + float64(w.PosEmb[j*h+k])
			}
			x[j] = refLN(e, w.EmbLNGamma, w.EmbLNBeta, eps)
		}
		for _, l := range w.Layers {
			qkv := refLinear(x, l.QKV, l.QKVBias, 3*h)
			q, k, v := make([][]float64, len(x)), make([][]float64, len(x)), make([][]float64, len(x))
			for j := range qkv {
				q[j], k[j], v[j] = qkv[j][:h], qkv[j][h:2*h], qkv[j][2*h:]
			}
			a := refLinear(refAttention(q, k, v, mask, c.NumAttentionHeads), l.Out, l.OutBias, h)
			for j := range x {
				for kk := range a[j] {
					a[j][kk] += x[j][kk]
				}
				x[j] = refLN(a[j], l.LN1Gamma, l.LN1Beta, eps)
			}
			f := refLinear(x, l.FF1, l.FF1Bias, c.IntermediateSize)
			for _, row := range f {
				for kk := range row {
					row[kk] = refGELU(row[kk])
				}
			}
			y := refLinear(f, l.FF2, l.FF2Bias, h)
			for j := range x {
				for kk := range y[j] {
					y[j][kk] += x[j][kk]
				}
				x[j] = refLN(y[j], l.LN2Gamma, l.LN2Beta, eps)
			}
		}
		out[r] = x
	}
	return out
}

// refPool pools and normalizes the reference states: the first dims values
// of each row's unit vector, and the norm of the truncated pooled vector.
func refPool(states [][][]float64, b accel.Batch, mode packed.Mode, dims int) ([][]float64, []float64) {
	vecs, norms := make([][]float64, b.Size), make([]float64, b.Size)
	for r, x := range states {
		p := make([]float64, dims)
		if mode == packed.ModeCLS {
			copy(p, x[0][:dims])
		} else {
			n := 0
			for j := range x {
				if b.Mask[r*b.SeqLen+j] == 1 {
					n++
					for k := range p {
						p[k] += x[j][k]
					}
				}
			}
			for k := range p {
				p[k] /= float64(n)
			}
		}
		var ss float64
		for _, a := range p {
			ss += a * a
		}
		norms[r] = math.Sqrt(ss)
		for k := range p {
			p[k] /= norms[r]
		}
		vecs[r] = p
	}
	return vecs, norms
}

func cosine(a []float32, b []float64) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * b[i]
		na += float64(a[i]) * float64(a[i])
		nb += b[i] * b[i]
	}
	return dot / math.Sqrt(na*nb)
}

// maxDiff returns max |a[i] - b[i]|.
func maxDiff(a []float32, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-b[i]))
	}
	return m
}

func mustPack(t testing.TB, b accel.Batch, maxPos int) *packed.Batch {
	t.Helper()
	var p packed.Batch
	if err := packed.Pack(&p, b, maxPos); err != nil {
		t.Fatal(err)
	}
	return &p
}
