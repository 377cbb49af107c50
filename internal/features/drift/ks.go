package drift

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// KSResult is a two-sample Kolmogorov-Smirnov test.
type KSResult struct {
	// D is sup_x |F_a(x) - F_b(x)| over the two empirical CDFs, in [0, 1].
	D float64
	// PValue is the two-sided p-value of SciPy's ks_2samp(method="asymp"):
	// kstwo.sf(D, round(n*m/(n+m))), the exact one-sample Kolmogorov
	// distribution at the effective sample size. NaN when that size rounds
	// to 0 (both samples of size 1), as in SciPy.
	PValue float64
	// N1 and N2 are the sample sizes.
	N1, N2 int
}

// KSTest is the two-sample two-sided Kolmogorov-Smirnov test of a against b,
// matching scipy.stats.ks_2samp(a, b, method="asymp") (SciPy 1.16): D is
// computed from the empirical CDFs with ties handled as SciPy does (right
// continuous CDFs, evaluated at every observed value), and the p-value is
// described on KSResult.
//
// The asymptotic mode is used at every size: it is O((n+m) log(n+m)) plus a
// size-bounded p-value computation, where SciPy's exact mode is O(n*m).
// Neither input is modified. Both must be non-empty, at most MaxKSSample
// values, and finite.
func KSTest(a, b []float64) (KSResult, error) {
	if err := checkSample("a", a); err != nil {
		return KSResult{}, err
	}
	if err := checkSample("b", b); err != nil {
		return KSResult{}, err
	}
	return ksSorted(sortedCopy(a), sortedCopy(b)), nil
}

func checkSample(which string, x []float64) error {
	if len(x) == 0 {
		return fmt.Errorf("%w: sample %s is empty", ErrInsufficientData, which)
	}
	if len(x) > MaxKSSample {
		return fmt.Errorf("%w: sample %s has %d values; limit MaxKSSample=%d", ErrInvalidInput, which, len(x), MaxKSSample)
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: sample %s[%d] is %v", ErrNotFinite, which, i, v)
		}
	}
	return nil
}

func sortedCopy(x []float64) []float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s
}

// upperBound is np.searchsorted(s, v, side="right").
func upperBound(s []float64, v float64) int {
	return sort.Search(len(s), func(i int) bool { return s[i] > v })
}

// ksSorted runs the test on sorted, validated, non-empty samples.
func ksSorted(a, b []float64) KSResult {
	n1, n2 := len(a), len(b)
	fn1, fn2 := float64(n1), float64(n2)
	// SciPy evaluates cdf1 - cdf2 at every value of the concatenation; the
	// arithmetic here is the same (count/n in float64, then the
	// difference) at each distinct value, so D agrees to the last bit.
	maxS, minS := math.Inf(-1), math.Inf(1)
	// Walk the distinct values of the union in order; i and j are then
	// searchsorted(a, v, "right") and searchsorted(b, v, "right").
	i, j := 0, 0
	for i < n1 || j < n2 {
		var v float64
		if j >= n2 || (i < n1 && a[i] <= b[j]) {
			v = a[i]
		} else {
			v = b[j]
		}
		for i < n1 && a[i] <= v {
			i++
		}
		for j < n2 && b[j] <= v {
			j++
		}
		d := float64(i)/fn1 - float64(j)/fn2
		maxS = math.Max(maxS, d)
		minS = math.Min(minS, d)
	}
	neg := clip01(-minS)
	d := maxS
	if neg > maxS {
		d = neg
	}
	m, n := math.Max(fn1, fn2), math.Min(fn1, fn2)
	en := m * n / (m + n)
	return KSResult{D: d, PValue: kstwoSF(int(math.RoundToEven(en)), d), N1: n1, N2: n2}
}
