package drift

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// DefaultSampleSize is the default reservoir capacity.
const DefaultSampleSize = 2048

// Quantile probabilities reported in Summary and exported as
// embedd_feature_quantile{quantile="0.5"|"0.9"|"0.99"}.
const (
	P50 = 0.5
	P90 = 0.9
	P99 = 0.99
)

// StatsOptions configures a Stats.
type StatsOptions struct {
	// SampleSize is the reservoir capacity in values. Default
	// DefaultSampleSize (2048); at most MaxSampleSize; negative is an error.
	SampleSize int
	// Rand draws the reservoir's replacement slots. nil: a PCG seeded with
	// (1, 2), so a Stats built without one is still deterministic.
	Rand *rand.Rand
}

func (o StatsOptions) withDefaults() (StatsOptions, error) {
	switch {
	case o.SampleSize < 0:
		return o, fmt.Errorf("%w: SampleSize is %d; want >= 0", ErrInvalidOptions, o.SampleSize)
	case o.SampleSize > MaxSampleSize:
		return o, fmt.Errorf("%w: SampleSize is %d; limit MaxSampleSize=%d", ErrInvalidOptions, o.SampleSize, MaxSampleSize)
	case o.SampleSize == 0:
		o.SampleSize = DefaultSampleSize
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(1, 2))
	}
	return o, nil
}

// Stats is the streaming summary of one feature over some span of values,
// in O(SampleSize) memory however many values it has seen:
//
//   - count of non-null values and of nulls;
//   - mean and variance by Welford's update (numerically stable; the
//     variance is the sample variance, n-1 in the denominator);
//   - exact min and max;
//   - a uniform reservoir sample (Vitter's algorithm R) of at most
//     SampleSize values, from which quantiles, PSI bins and the KS test are
//     computed.
//
// Quantile error: while Count <= SampleSize the reservoir holds every value
// and quantiles are exact (NumPy's default "linear" definition). Beyond that
// they are the quantiles of a uniform sample of k = SampleSize values: the
// rank of the estimated p-quantile is off by about sqrt(p(1-p)/k) (0.011
// for the median, 0.0022 for p99 with k = 2048), and by the DKW inequality
// every quantile's rank is within 0.03 of its target with probability at
// least 0.95 at k = 2048. Min and max stay exact.
//
// A Stats is not safe for concurrent use; Monitor serialises access to the
// ones it owns.
type Stats struct {
	size   int
	rng    *rand.Rand
	n      int64 // non-null values seen
	nulls  int64
	mean   float64
	m2     float64 // sum of squared deviations from the mean
	min    float64
	max    float64
	sample []float64 // reservoir, len = min(n, size)
}

// NewStats returns an empty Stats.
func NewStats(opts StatsOptions) (*Stats, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Stats{size: o.SampleSize, rng: o.Rand}, nil
}

// StatsOf returns the Stats of values (nulls excluded) with the given
// options; a convenience for building a reference from a slice.
func StatsOf(values []float64, opts StatsOptions) (*Stats, error) {
	s, err := NewStats(opts)
	if err != nil {
		return nil, err
	}
	for i, v := range values {
		if err := s.Add(v); err != nil {
			return nil, fmt.Errorf("values[%d]: %w", i, err)
		}
	}
	return s, nil
}

// Add records a non-null value; NaN and ±Inf are rejected with ErrNotFinite
// and change nothing.
func (s *Stats) Add(x float64) error {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return fmt.Errorf("%w: %v", ErrNotFinite, x)
	}
	s.n++
	if s.n == 1 {
		s.min, s.max = x, x
	} else {
		s.min = math.Min(s.min, x)
		s.max = math.Max(s.max, x)
	}
	d := x - s.mean
	s.mean += d / float64(s.n)
	s.m2 += d * (x - s.mean)
	if len(s.sample) < s.size {
		s.sample = append(s.sample, x)
	} else if j := s.rng.Int64N(s.n); j < int64(s.size) {
		s.sample[j] = x
	}
	return nil
}

// AddNull records a missing value.
func (s *Stats) AddNull() { s.nulls++ }

// Count is the number of non-null values seen.
func (s *Stats) Count() int64 { return s.n }

// Nulls is the number of nulls seen.
func (s *Stats) Nulls() int64 { return s.nulls }

// SampleSize is the reservoir capacity.
func (s *Stats) SampleSize() int { return s.size }

// Sample returns a copy of the reservoir (unsorted).
func (s *Stats) Sample() []float64 { return slices.Clone(s.sample) }

// Reset empties s, keeping its capacity and random source.
func (s *Stats) Reset() {
	s.n, s.nulls, s.mean, s.m2, s.min, s.max = 0, 0, 0, 0, 0, 0
	s.sample = s.sample[:0]
}

// Clone returns a deep copy of s that draws from rng (nil: a fresh PCG
// seeded with (1, 2)).
func (s *Stats) Clone(rng *rand.Rand) *Stats {
	c := *s
	c.sample = slices.Clone(s.sample)
	if rng == nil {
		rng = rand.New(rand.NewPCG(1, 2))
	}
	c.rng = rng
	return &c
}

// Merge folds o into s, as if s had also seen o's values: counts add, mean
// and variance combine exactly (Chan et al.), min and max combine, and the
// reservoir becomes a uniform sample of the union. The reservoir step draws
// from s's random source: the number of values taken from each side is
// hypergeometric (sequential draws without replacement from the two
// populations), and each side contributes a uniformly chosen subset of its
// own reservoir. Both must have the same SampleSize (ErrIncompatible).
func (s *Stats) Merge(o *Stats) error {
	if s.size != o.size {
		return fmt.Errorf("%w: sample sizes %d and %d", ErrIncompatible, s.size, o.size)
	}
	s.nulls += o.nulls
	if o.n == 0 {
		return nil
	}
	if s.n == 0 {
		s.n, s.mean, s.m2, s.min, s.max = o.n, o.mean, o.m2, o.min, o.max
		s.sample = append(s.sample[:0], o.sample...)
		return nil
	}
	na, nb := float64(s.n), float64(o.n)
	n := na + nb
	delta := o.mean - s.mean
	s.mean += delta * nb / n
	s.m2 += o.m2 + delta*delta*na*nb/n
	s.min = math.Min(s.min, o.min)
	s.max = math.Max(s.max, o.max)
	total := s.n + o.n

	if total <= int64(s.size) { // both reservoirs hold every value
		s.sample = append(s.sample, o.sample...)
		s.n = total
		return nil
	}
	a := slices.Clone(s.sample)
	b := o.sample
	bi := make([]int, len(b)) // a partial Fisher-Yates shuffle of b's indexes
	for i := range bi {
		bi[i] = i
	}
	remA, remB := s.n, o.n
	takenA, takenB := 0, 0
	out := s.sample[:0]
	for len(out) < s.size {
		if s.rng.Int64N(remA+remB) < remA {
			j := takenA + s.rng.IntN(len(a)-takenA)
			a[takenA], a[j] = a[j], a[takenA]
			out = append(out, a[takenA])
			takenA++
			remA--
		} else {
			j := takenB + s.rng.IntN(len(bi)-takenB)
			bi[takenB], bi[j] = bi[j], bi[takenB]
			out = append(out, b[bi[takenB]])
			takenB++
			remB--
		}
	}
	s.sample = out
	s.n = total
	return nil
}

// Summary is a snapshot of a Stats. Fields that are undefined for the data
// seen (the mean of no values, the standard deviation of fewer than two)
// are NaN.
type Summary struct {
	Count int64 // non-null values
	Nulls int64
	// NullRate is Nulls / (Count + Nulls); 0 when nothing was seen.
	NullRate float64
	Mean     float64
	StdDev   float64 // sample standard deviation (n-1)
	Min, Max float64
	// P50, P90 and P99 are quantiles of the reservoir (see Stats for their
	// error).
	P50, P90, P99 float64
	// SampleSize is the number of values in the reservoir.
	SampleSize int
	// Withheld is set on a sensitive feature's window with fewer than
	// Options.MinCount values: Mean, StdDev, Min, Max and the quantiles are
	// then NaN, as a few values would disclose individual ones. Every
	// reader (metrics, GetFeatureStats) gets the report with this applied.
	Withheld bool
}

// withhold hides the values that could disclose individual inputs.
func (s *Summary) withhold() {
	nan := math.NaN()
	s.Mean, s.StdDev, s.Min, s.Max, s.P50, s.P90, s.P99 = nan, nan, nan, nan, nan, nan, nan
	s.Withheld = true
}

// Summary returns the current summary.
func (s *Stats) Summary() Summary { return s.summarySorted(sortedCopy(s.sample)) }

// summarySorted is Summary given the reservoir sorted.
func (s *Stats) summarySorted(sorted []float64) Summary {
	nan := math.NaN()
	out := Summary{Count: s.n, Nulls: s.nulls, SampleSize: len(s.sample),
		Mean: nan, StdDev: nan, Min: nan, Max: nan, P50: nan, P90: nan, P99: nan}
	if total := s.n + s.nulls; total > 0 {
		out.NullRate = float64(s.nulls) / float64(total)
	}
	if s.n == 0 {
		return out
	}
	out.Mean, out.Min, out.Max = s.mean, s.min, s.max
	if s.n > 1 {
		out.StdDev = math.Sqrt(s.m2 / float64(s.n-1))
	}
	out.P50 = quantileSorted(sorted, P50)
	out.P90 = quantileSorted(sorted, P90)
	out.P99 = quantileSorted(sorted, P99)
	return out
}

// Quantile returns the p-quantile (0 <= p <= 1) of the reservoir, NaN when
// it is empty or p is out of range.
func (s *Stats) Quantile(p float64) float64 {
	if len(s.sample) == 0 || !(p >= 0 && p <= 1) {
		return math.NaN()
	}
	return quantileSorted(sortedCopy(s.sample), p)
}

// quantileSorted is np.quantile(x, p) with the default "linear" method
// (Hyndman & Fan type 7) on sorted, non-empty x, written as NumPy computes
// it: virtual index (n-1)p, and the lerp evaluated from the nearer end so
// that gamma >= 0.5 gives b - (b-a)(1-gamma).
func quantileSorted(x []float64, p float64) float64 {
	n := len(x)
	vi := float64(n-1) * p
	if vi >= float64(n-1) {
		return x[n-1]
	}
	if vi < 0 {
		return x[0]
	}
	prev := math.Floor(vi)
	i := int(prev)
	g := vi - prev
	a, b := x[i], x[i+1]
	d := b - a
	if g >= 0.5 {
		return b - d*(1-g)
	}
	return a + d*g
}

// statsJSON is the serialised form of a Stats (reference snapshots). The
// random source is not saved: a loaded Stats is a frozen reference.
type statsJSON struct {
	SampleSize int       `json:"sample_size"`
	Count      int64     `json:"count"`
	Nulls      int64     `json:"nulls"`
	Mean       float64   `json:"mean"`
	M2         float64   `json:"m2"`
	Min        float64   `json:"min"`
	Max        float64   `json:"max"`
	Sample     []float64 `json:"sample"`
}

// MarshalJSON encodes s (without its random source).
func (s *Stats) MarshalJSON() ([]byte, error) {
	return json.Marshal(statsJSON{SampleSize: s.size, Count: s.n, Nulls: s.nulls,
		Mean: s.mean, M2: s.m2, Min: s.min, Max: s.max, Sample: s.sample})
}

// UnmarshalJSON decodes and validates a Stats; it gets a PCG seeded with
// (1, 2) as its random source. Errors wrap ErrSnapshot.
func (s *Stats) UnmarshalJSON(data []byte) error {
	var j statsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("%w: %v", ErrSnapshot, err)
	}
	if err := j.validate(); err != nil {
		return err
	}
	*s = Stats{size: j.SampleSize, rng: rand.New(rand.NewPCG(1, 2)), n: j.Count, nulls: j.Nulls,
		mean: j.Mean, m2: j.M2, min: j.Min, max: j.Max, sample: j.Sample}
	if s.sample == nil {
		s.sample = []float64{}
	}
	return nil
}

func (j *statsJSON) validate() error {
	switch {
	case j.SampleSize < 1 || j.SampleSize > MaxSampleSize:
		return fmt.Errorf("%w: sample_size is %d; want 1..MaxSampleSize=%d", ErrSnapshot, j.SampleSize, MaxSampleSize)
	case j.Count < 0 || j.Nulls < 0:
		return fmt.Errorf("%w: count %d, nulls %d; want >= 0", ErrSnapshot, j.Count, j.Nulls)
	case int64(len(j.Sample)) != min(j.Count, int64(j.SampleSize)):
		return fmt.Errorf("%w: sample has %d values; want min(count=%d, sample_size=%d)", ErrSnapshot, len(j.Sample), j.Count, j.SampleSize)
	case j.M2 < 0:
		return fmt.Errorf("%w: m2 is %v; want >= 0", ErrSnapshot, j.M2)
	case j.Count > 0 && j.Min > j.Max:
		return fmt.Errorf("%w: min %v > max %v", ErrSnapshot, j.Min, j.Max)
	}
	for i, v := range j.Sample {
		if v < j.Min || v > j.Max {
			return fmt.Errorf("%w: sample[%d]=%v outside [min %v, max %v]", ErrSnapshot, i, v, j.Min, j.Max)
		}
	}
	return nil
}
