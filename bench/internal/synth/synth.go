// Package synth generates benchmark vectors that behave like text
// embeddings for ANN recall: low intrinsic dimension (Factors latent
// Gaussian factors mapped through a fixed random basis) plus isotropic
// noise. I.i.d. Gaussian vectors in 384 dimensions have no neighbourhood
// structure (every point is nearly equidistant), which makes every ANN
// index look broken; real embeddings are far from that.
package synth

import (
	"math"
	"math/rand/v2"
)

// Gen is a seeded, reproducible generator; not safe for concurrent use.
type Gen struct {
	r     *rand.Rand
	dims  int
	noise float32
	basis [][]float32
}

// New returns a generator of dims-dimensional vectors from factors latent
// factors with noise standard deviation noise (32 and 0.5 are the
// benchmarks' defaults).
func New(seed uint64, dims, factors int, noise float32) *Gen {
	g := &Gen{r: rand.New(rand.NewPCG(seed, 7)), dims: dims, noise: noise}
	for range factors {
		v := make([]float32, dims)
		for j := range v {
			v[j] = float32(g.r.NormFloat64())
		}
		g.basis = append(g.basis, v)
	}
	return g
}

// Vec returns the next vector (not normalized).
func (g *Gen) Vec() []float32 {
	v := make([]float32, g.dims)
	for _, b := range g.basis {
		z := float32(g.r.NormFloat64())
		for j := range v {
			v[j] += z * b[j]
		}
	}
	for j := range v {
		v[j] += g.noise * float32(g.r.NormFloat64())
	}
	return v
}

// Unit returns the next vector scaled to unit length.
func (g *Gen) Unit() []float32 {
	v := g.Vec()
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}
