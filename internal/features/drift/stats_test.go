package drift

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// Welford over a long stream against gonum's two-pass mean and sample
// standard deviation; exact min and max.
func TestStatsAgainstGonum(t *testing.T) {
	rng := newRand(1)
	x := make([]float64, 100000)
	for i := range x {
		x[i] = 1e6 + rng.NormFloat64()*3 // large offset: naive sum of squares would lose digits
	}
	s, err := StatsOf(x, StatsOptions{Rand: newRand(2)})
	if err != nil {
		t.Fatal(err)
	}
	sum := s.Summary()
	mean, std := stat.MeanStdDev(x, nil)
	if !relClose(sum.Mean, mean, 1e-13) {
		t.Errorf("mean: got %.17g; want %.17g", sum.Mean, mean)
	}
	if !relClose(sum.StdDev, std, 1e-9) {
		t.Errorf("std: got %.17g; want %.17g", sum.StdDev, std)
	}
	if sum.Min != slices.Min(x) || sum.Max != slices.Max(x) {
		t.Errorf("min/max: got %v/%v; want %v/%v", sum.Min, sum.Max, slices.Min(x), slices.Max(x))
	}
	if sum.SampleSize != DefaultSampleSize || sum.Count != int64(len(x)) {
		t.Errorf("sample size/count: got %d/%d; want %d/%d", sum.SampleSize, sum.Count, DefaultSampleSize, len(x))
	}
	// Reservoir quantiles: the rank of each estimate within the full data
	// must be within the documented DKW bound (0.03 at k=2048, 95%); the
	// seed is fixed, so this is deterministic.
	sorted := sortedCopy(x)
	for _, q := range []struct{ p, v float64 }{{P50, sum.P50}, {P90, sum.P90}, {P99, sum.P99}} {
		rank := float64(upperBound(sorted, q.v)) / float64(len(sorted))
		if math.Abs(rank-q.p) > 0.03 {
			t.Errorf("quantile %v: estimate %v has rank %v", q.p, q.v, rank)
		}
	}
}

func TestStatsNullsAndEmpty(t *testing.T) {
	s, _ := NewStats(StatsOptions{})
	sum := s.Summary()
	if sum.Count != 0 || sum.NullRate != 0 || !math.IsNaN(sum.Mean) || !math.IsNaN(sum.StdDev) || !math.IsNaN(sum.P50) {
		t.Errorf("empty summary: got %+v; want zero counts and NaN statistics", sum)
	}
	s.AddNull()
	_ = s.Add(4)
	s.AddNull()
	s.AddNull()
	sum = s.Summary()
	if sum.NullRate != 0.75 || sum.Mean != 4 || !math.IsNaN(sum.StdDev) || sum.P99 != 4 {
		t.Errorf("summary: got %+v; want null rate 0.75, mean 4, NaN std, p99 4", sum)
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := s.Add(bad); !errors.Is(err, ErrNotFinite) {
			t.Errorf("Add(%v): got %v; want ErrNotFinite", bad, err)
		}
	}
	if s.Count() != 1 {
		t.Errorf("count after rejected adds: got %d; want 1", s.Count())
	}
}

func TestStatsOptions(t *testing.T) {
	for _, o := range []StatsOptions{{SampleSize: -1}, {SampleSize: MaxSampleSize + 1}} {
		if _, err := NewStats(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("NewStats(%+v): got %v; want ErrInvalidOptions", o, err)
		}
	}
}

// Merging equals having seen the concatenation.
func TestStatsMerge(t *testing.T) {
	rng := newRand(3)
	a := make([]float64, 700)
	b := make([]float64, 900)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	for i := range b {
		b[i] = 5 + 2*rng.NormFloat64()
	}
	sa, _ := StatsOf(a, StatsOptions{Rand: newRand(4)})
	sb, _ := StatsOf(b, StatsOptions{Rand: newRand(5)})
	sb.AddNull()
	if err := sa.Merge(sb); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(a), b...)
	mean, std := stat.MeanStdDev(all, nil)
	sum := sa.Summary()
	if sum.Count != 1600 || sum.Nulls != 1 || !relClose(sum.Mean, mean, 1e-12) || !relClose(sum.StdDev, std, 1e-12) {
		t.Errorf("merged: got count %d nulls %d mean %v std %v; want 1600 1 %v %v", sum.Count, sum.Nulls, sum.Mean, sum.StdDev, mean, std)
	}
	// 1600 <= 2048: the merged reservoir is exactly the union.
	got := sortedCopy(sa.Sample())
	if !slices.Equal(got, sortedCopy(all)) {
		t.Errorf("merged reservoir is not the union of the inputs")
	}
	small, _ := NewStats(StatsOptions{SampleSize: 16})
	if err := sa.Merge(small); !errors.Is(err, ErrIncompatible) {
		t.Errorf("merge of different sample sizes: got %v; want ErrIncompatible", err)
	}
}

// Past capacity the merged reservoir takes each side in proportion to its
// population, not to its reservoir.
func TestStatsMergeProportions(t *testing.T) {
	zeros, _ := NewStats(StatsOptions{Rand: newRand(6)})
	ones, _ := NewStats(StatsOptions{Rand: newRand(7)})
	for range 10000 {
		_ = zeros.Add(0)
	}
	for range 30000 {
		_ = ones.Add(1)
	}
	if err := zeros.Merge(ones); err != nil {
		t.Fatal(err)
	}
	smp := zeros.Sample()
	if len(smp) != DefaultSampleSize {
		t.Fatalf("reservoir: got %d values; want %d", len(smp), DefaultSampleSize)
	}
	share := stat.Mean(smp, nil)
	sigma := math.Sqrt(0.75 * 0.25 / float64(DefaultSampleSize))
	if math.Abs(share-0.75) > 4*sigma {
		t.Errorf("share of the larger population: got %v; want 0.75 ± %v", share, 4*sigma)
	}
}

// Algorithm R keeps a uniform sample: the sample mean of 0..n-1 is close to
// (n-1)/2.
func TestReservoirUniform(t *testing.T) {
	const n = 200000
	s, _ := NewStats(StatsOptions{Rand: newRand(8)})
	for i := range n {
		_ = s.Add(float64(i))
	}
	got := stat.Mean(s.Sample(), nil)
	sd := n / math.Sqrt(12) / math.Sqrt(DefaultSampleSize)
	if math.Abs(got-(n-1)/2.0) > 4*sd {
		t.Errorf("reservoir mean: got %v; want %v ± %v", got, (n-1)/2.0, 4*sd)
	}
}

func TestQuantileHand(t *testing.T) {
	x := []float64{1, 2, 3, 4, 10}
	for _, c := range []struct{ p, want float64 }{
		{0, 1}, {0.5, 3}, {0.9, 7.6}, {0.99, 9.76}, {1, 10}, {0.25, 2}, {0.3, 2.2},
	} {
		if got := quantileSorted(x, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("quantile(%v): got %v; want %v", c.p, got, c.want)
		}
	}
}

func TestStatsJSONRoundTrip(t *testing.T) {
	s, _ := StatsOf([]float64{3, 1, 4, 1, 5, 9, 2, 6}, StatsOptions{SampleSize: 4, Rand: newRand(9)})
	s.AddNull()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Stats
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if a, b := s.Summary(), back.Summary(); a != b {
		t.Errorf("round trip: got %+v; want %+v", b, a)
	}

	for _, c := range []struct{ name, json, want string }{
		{"size", `{"sample_size":0,"count":0,"nulls":0,"mean":0,"m2":0,"min":0,"max":0,"sample":[]}`, "sample_size"},
		{"counts", `{"sample_size":4,"count":-1,"nulls":0,"mean":0,"m2":0,"min":0,"max":0,"sample":[]}`, "count"},
		{"sample length", `{"sample_size":4,"count":3,"nulls":0,"mean":1,"m2":0,"min":1,"max":1,"sample":[1,1]}`, "sample has 2"},
		{"m2", `{"sample_size":4,"count":1,"nulls":0,"mean":1,"m2":-1,"min":1,"max":1,"sample":[1]}`, "m2"},
		{"range", `{"sample_size":4,"count":1,"nulls":0,"mean":1,"m2":0,"min":1,"max":1,"sample":[7]}`, "sample[0]"},
	} {
		var x Stats
		err := json.Unmarshal([]byte(c.json), &x)
		if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v; want ErrSnapshot mentioning %q", c.name, err, c.want)
		}
	}
}

func TestPSIHand(t *testing.T) {
	// Two bins, ref 50/50, current 25/75:
	// (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5) = 0.25 ln 3.
	got, err := PSI([]float64{0.5, 0.5}, []float64{0.25, 0.75}, 1e-4)
	if err != nil || math.Abs(got-0.25*math.Log(3)) > 1e-15 {
		t.Errorf("PSI: got %v, %v; want %v", got, err, 0.25*math.Log(3))
	}
	// Empty reference bin: its proportion is floored at eps.
	got, _ = PSI([]float64{0.5, 0.5, 0}, []float64{0.4, 0.4, 0.2}, 1e-4)
	want := 2*(-0.1)*math.Log(0.8) + (0.2-1e-4)*math.Log(0.2/1e-4)
	if math.Abs(got-want) > 1e-15 {
		t.Errorf("PSI with empty bin: got %v; want %v", got, want)
	}
	// From samples: ref 1..10 in two bins cut at the median 5.5; current
	// has 3 of 8 values <= 5.5: 0.125 ln(0.625/0.375) + ... = 0.125 ln(5/3).
	ref := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	cur := []float64{1, 2, 3, 7, 8, 9, 10, 11}
	got, bins, err := PSISamples(ref, cur, 2, 1e-4)
	if err != nil || len(bins.Cuts) != 1 || bins.Cuts[0] != 5.5 {
		t.Fatalf("bins: got %v, %v; want cut 5.5", bins, err)
	}
	if want := 0.125 * math.Log(5.0/3); math.Abs(got-want) > 1e-15 {
		t.Errorf("PSISamples: got %v; want %v", got, want)
	}
	// A value equal to a cut falls in the lower bin (right-closed bins).
	if i := bins.Index(5.5); i != 0 {
		t.Errorf("Index(5.5): got %d; want 0", i)
	}
	// Ties collapse cut points.
	b, _ := NewBins([]float64{1, 1, 1, 1, 1, 1, 1, 1, 2, 3}, 10)
	// Quantiles k/10 of eight 1s, a 2 and a 3: seven of them are 1, then
	// 1.2 (k=8) and 2.1 (k=9).
	if len(b.Cuts) != 3 || b.Cuts[0] != 1 || math.Abs(b.Cuts[1]-1.2) > 1e-12 || math.Abs(b.Cuts[2]-2.1) > 1e-12 {
		t.Errorf("tied cuts: got %v; want [1 1.2 2.1]", b.Cuts)
	}
	for _, bad := range []struct {
		r, c []float64
		eps  float64
	}{{[]float64{1}, []float64{0.5, 0.5}, 1e-4}, {[]float64{1}, []float64{1}, 0}} {
		if _, err := PSI(bad.r, bad.c, bad.eps); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("PSI(%v, %v, %v): got %v; want ErrInvalidInput", bad.r, bad.c, bad.eps, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		psi  float64
		want Status
	}{{0, StatusStable}, {0.0999, StatusStable}, {0.1, StatusModerate}, {0.1999, StatusModerate}, {0.2, StatusSignificant}, {3, StatusSignificant}, {math.NaN(), StatusUnknown}} {
		if got := Classify(c.psi, 0.1, 0.2); got != c.want {
			t.Errorf("Classify(%v): got %v; want %v", c.psi, got, c.want)
		}
	}
}

func TestKSHand(t *testing.T) {
	r, err := KSTest([]float64{1, 2, 3}, []float64{4, 5, 6})
	if err != nil || r.D != 1 || r.PValue != kstwoSF(2, 1) {
		t.Errorf("disjoint: got %+v, %v; want D=1", r, err)
	}
	// a = 1..4, b = 3..6: at x=2 the CDFs are 2/4 and 0: D = 0.5.
	r, _ = KSTest([]float64{4, 3, 2, 1}, []float64{3, 4, 5, 6})
	if r.D != 0.5 {
		t.Errorf("overlap: got D=%v; want 0.5", r.D)
	}
	r, _ = KSTest([]float64{1, 2}, []float64{2, 1})
	if r.D != 0 || r.PValue != 1 {
		t.Errorf("identical: got %+v; want D=0 p=1", r)
	}
	// n1 = n2 = 1: effective size round(0.5) = 0, NaN as in SciPy.
	if r, _ = KSTest([]float64{1}, []float64{2}); !math.IsNaN(r.PValue) {
		t.Errorf("n=1: got p=%v; want NaN", r.PValue)
	}
	if _, err := KSTest(nil, []float64{1}); !errors.Is(err, ErrInsufficientData) {
		t.Errorf("empty: got %v; want ErrInsufficientData", err)
	}
	if _, err := KSTest([]float64{1, math.NaN()}, []float64{1}); !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), "a[1]") {
		t.Errorf("NaN: got %v; want ErrNotFinite naming a[1]", err)
	}
}
