package hybrid

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/floats"
)

// DefaultClip is the default bound c on |z|.
const DefaultClip = 5

// Spec says how a hybrid vector is built (see the package documentation for
// the formula).
type Spec struct {
	// Features are the numeric features appended after the embedding, in
	// this order: 1 to MaxFeatures distinct names, each known to the
	// Standardizer.
	Features []string
	// Weights are per-feature weights w_i, finite and >= 0; a feature
	// without an entry weighs 1. A key that is not in Features is an error.
	Weights map[string]float64
	// Alpha in [0, 1] is the weight of the feature similarity in the hybrid
	// score: dot(h_a, h_b) = (1-Alpha) cos(e_a, e_b) + Alpha cos(f_a, f_b).
	// 0 gives plain embedding search (features ignored).
	Alpha float64
	// Dims is the embedding dimension d; Dims + len(Features) is at most
	// MaxDims.
	Dims int
	// Clip is the bound c on |z|. 0 means DefaultClip (5); otherwise it
	// must be positive and finite.
	Clip float64
}

// Merger builds hybrid vectors for one Spec from a Standardizer's
// statistics. It holds no mutable state of its own; it is safe for
// concurrent use.
type Merger struct {
	spec     Spec
	std      *Standardizer
	idx      []int     // position of each spec feature in std
	w        []float64 // weight of each spec feature
	clip     float64
	sqrtA    float64 // sqrt(Alpha)
	sqrt1mA  float64 // sqrt(1 - Alpha)
	outDims  int
	features []string
}

// New validates spec against std and returns a Merger.
func New(spec Spec, std *Standardizer) (*Merger, error) {
	if std == nil {
		return nil, fmt.Errorf("%w: standardizer is nil", ErrInvalidSpec)
	}
	if !(spec.Alpha >= 0 && spec.Alpha <= 1) {
		return nil, fmt.Errorf("%w: Alpha is %v; want 0 <= Alpha <= 1", ErrInvalidSpec, spec.Alpha)
	}
	if len(spec.Features) == 0 || len(spec.Features) > MaxFeatures {
		return nil, fmt.Errorf("%w: %d features; want 1..MaxFeatures=%d", ErrInvalidSpec, len(spec.Features), MaxFeatures)
	}
	if spec.Dims < 1 || spec.Dims+len(spec.Features) > MaxDims {
		return nil, fmt.Errorf("%w: Dims is %d with %d features; want Dims >= 1 and Dims+features <= MaxDims=%d",
			ErrInvalidSpec, spec.Dims, len(spec.Features), MaxDims)
	}
	clip := spec.Clip
	switch {
	case clip == 0:
		clip = DefaultClip
	case !(clip > 0) || math.IsInf(clip, 0):
		return nil, fmt.Errorf("%w: Clip is %v; want 0 (default %d) or positive and finite", ErrInvalidSpec, clip, DefaultClip)
	}
	m := &Merger{std: std, clip: clip, sqrtA: math.Sqrt(spec.Alpha), sqrt1mA: math.Sqrt(1 - spec.Alpha),
		outDims: spec.Dims + len(spec.Features), features: slices.Clone(spec.Features),
		idx: make([]int, len(spec.Features)), w: make([]float64, len(spec.Features))}
	pos := make(map[string]int, len(spec.Features))
	for i, name := range spec.Features {
		if j, dup := pos[name]; dup {
			return nil, fmt.Errorf("%w: Features[%d] %q repeats Features[%d]", ErrInvalidSpec, i, name, j)
		}
		pos[name] = i
		k, ok := std.index[name]
		if !ok {
			return nil, fmt.Errorf("%w: Features[%d] %q is not standardized (standardizer features: %v)", ErrUnknownFeature, i, name, std.names)
		}
		m.idx[i] = k
		m.w[i] = 1
	}
	for name, w := range spec.Weights {
		i, ok := pos[name]
		if !ok {
			return nil, fmt.Errorf("%w: Weights[%q] is not in Features", ErrUnknownFeature, name)
		}
		if !(w >= 0) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("%w: Weights[%q] (Features[%d]) is %v; want finite and >= 0", ErrInvalidSpec, name, i, w)
		}
		m.w[i] = w
	}
	spec.Features = m.features
	spec.Weights = make(map[string]float64, len(m.features))
	for i, name := range m.features {
		spec.Weights[name] = m.w[i]
	}
	spec.Clip = clip
	m.spec = spec
	return m, nil
}

// Dims is the hybrid vector's dimension, Spec.Dims + len(Spec.Features).
func (m *Merger) Dims() int { return m.outDims }

// Spec returns the spec in effect: defaults filled in, every weight
// explicit. The result is a copy.
func (m *Merger) Spec() Spec {
	s := m.spec
	s.Features = slices.Clone(s.Features)
	s.Weights = make(map[string]float64, len(m.spec.Weights))
	for k, v := range m.spec.Weights {
		s.Weights[k] = v
	}
	return s
}

// Vector is one hybrid vector.
type Vector struct {
	// Values is h, unit length, Dims() long.
	Values []float32
	// Missing lists the Spec features absent from the values given, in Spec
	// order; their z-score was taken as 0 (the mean).
	Missing []string
	// StatsVersion is the Standardizer version the z-scores came from.
	StatsVersion string
}

// Merge builds an entity's hybrid vector from its embedding (Spec.Dims
// values, any non-zero norm; it is L2-normalized here) and its feature
// values. Keys of values that are not Spec features are ignored; Spec
// features absent from values are reported in Vector.Missing. Errors name
// the offending index or feature.
func (m *Merger) Merge(embedding []float32, values map[string]float64) (Vector, error) {
	return m.build(embedding, values)
}

// Query builds the vector to search a hybrid collection with: the same
// transform as Merge, from a query embedding and optional feature values
// (nil is fine). With no values the feature part is zero, so after
// renormalisation the query is the embedding padded with zeros and ranks
// stored vectors by cos(e_q, e_b) alone; with values it ranks by
// (1-Alpha) cos(e_q, e_b) + Alpha cos(f_q, f_b).
func (m *Merger) Query(embedding []float32, values map[string]float64) (Vector, error) {
	return m.build(embedding, values)
}

func (m *Merger) build(embedding []float32, values map[string]float64) (Vector, error) {
	d := m.spec.Dims
	if len(embedding) != d {
		return Vector{}, fmt.Errorf("%w: embedding has %d dims; want Spec.Dims=%d", ErrInvalidInput, len(embedding), d)
	}
	h := make([]float64, m.outDims)
	e := h[:d]
	for i, x := range embedding {
		v := float64(x)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Vector{}, fmt.Errorf("%w: embedding[%d] is %v", ErrInvalidInput, i, x)
		}
		e[i] = v
	}
	en := norm(e)
	if en == 0 {
		return Vector{}, fmt.Errorf("%w: embedding has zero norm", ErrInvalidInput)
	}
	floats.Scale(m.sqrt1mA/en, e)

	nf := len(m.features)
	u := h[d:]
	mean := make([]float64, nf)
	std := make([]float64, nf)
	version := m.std.view(m.idx, mean, std)
	var missing []string
	for i, name := range m.features {
		x, ok := values[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return Vector{}, fmt.Errorf("%w: feature %q (Features[%d]) is %v", ErrInvalidInput, name, i, x)
		}
		z := 0.0
		if std[i] > 0 {
			z = math.Max(-m.clip, math.Min(m.clip, (x-mean[i])/std[i]))
		}
		u[i] = m.w[i] * z
	}
	if un := norm(u); un > 0 {
		floats.Scale(m.sqrtA/un, u)
	}
	hn := norm(h)
	if hn == 0 {
		return Vector{}, fmt.Errorf("%w: hybrid vector is zero: Alpha is 1 and every feature is missing, at its mean, constant or weighted 0", ErrInvalidInput)
	}
	out := make([]float32, m.outDims)
	for i, v := range h {
		out[i] = float32(v / hn)
	}
	return Vector{Values: out, Missing: missing, StatsVersion: version}, nil
}

// norm is the L2 norm as sqrt(x·x) with gonum's vectorised dot product.
// No overflow is possible here: embedding values come from float32 (|x| <
// 3.5e38, so x² < 1.2e77) and at most MaxDims of them are summed; z-scores
// are clipped.
func norm(x []float64) float64 { return math.Sqrt(floats.Dot(x, x)) }
