package drift

import (
	"fmt"
	"math"
	"sort"
)

// Bins are PSI bins fixed from a reference sample.
//
// Rule: the cut points are the reference quantiles k/B for k = 1..B-1
// (NumPy's default "linear" quantile, see Quantile), sorted and
// deduplicated, so a reference with heavy ties gets fewer, wider bins
// instead of empty ones. Bin i holds the values x with
// Cuts[i-1] < x <= Cuts[i]; the first bin is (-inf, Cuts[0]] and the last
// (Cuts[len-1], +inf), so every finite value falls in exactly one bin. This
// is np.searchsorted(cuts, x, side="left").
type Bins struct {
	Cuts []float64
}

// NewBins fixes bins from a reference sample (any order; not modified).
// bins is the number of quantile bins before deduplication, in
// [2, MaxBins].
func NewBins(reference []float64, bins int) (Bins, error) {
	if bins < 2 || bins > MaxBins {
		return Bins{}, fmt.Errorf("%w: bins is %d; want 2..MaxBins=%d", ErrInvalidInput, bins, MaxBins)
	}
	if err := checkSample("reference", reference); err != nil {
		return Bins{}, err
	}
	return binsSorted(sortedCopy(reference), bins), nil
}

func binsSorted(ref []float64, bins int) Bins {
	cuts := make([]float64, 0, bins-1)
	for k := 1; k < bins; k++ {
		q := quantileSorted(ref, float64(k)/float64(bins))
		if len(cuts) == 0 || q != cuts[len(cuts)-1] {
			cuts = append(cuts, q)
		}
	}
	return Bins{Cuts: cuts}
}

// Len is the number of bins, len(Cuts)+1.
func (b Bins) Len() int { return len(b.Cuts) + 1 }

// Index is the bin of x.
func (b Bins) Index(x float64) int {
	return sort.SearchFloat64s(b.Cuts, x) // first cut >= x: side="left"
}

// Proportions returns the share of values in each bin, each count divided by
// len(x).
func (b Bins) Proportions(x []float64) []float64 {
	p := make([]float64, b.Len())
	for _, v := range x {
		p[b.Index(v)]++
	}
	for i := range p {
		p[i] /= float64(len(x))
	}
	return p
}

// PSI is the population stability index of the current proportions against
// the reference proportions (same bins):
//
//	PSI = sum_i (cur_i - ref_i) * ln(cur_i / ref_i)
//
// where a proportion below eps is raised to eps first, so an empty bin on
// either side contributes a large but finite term instead of +Inf. With the
// default eps = 1e-4 a bin that is empty in the reference and holds 10% of
// the current window adds (0.1-1e-4)*ln(1000) ~ 0.69, "significant" on its
// own, which is the intent. The proportions are not renormalised after the
// clamp. PSI is symmetric in its arguments and 0 only for equal
// proportions.
func PSI(ref, cur []float64, eps float64) (float64, error) {
	if len(ref) != len(cur) {
		return 0, fmt.Errorf("%w: %d reference proportions, %d current", ErrInvalidInput, len(ref), len(cur))
	}
	if !(eps > 0 && eps < 1) {
		return 0, fmt.Errorf("%w: eps is %v; want 0 < eps < 1", ErrInvalidInput, eps)
	}
	s := 0.0
	for i := range ref {
		r, c := math.Max(ref[i], eps), math.Max(cur[i], eps)
		s += (c - r) * math.Log(c/r)
	}
	return s, nil
}

// PSISamples computes the PSI of a current sample against a reference
// sample with bins (the number before deduplication) fixed from the
// reference as described on Bins.
func PSISamples(reference, current []float64, bins int, eps float64) (float64, Bins, error) {
	b, err := NewBins(reference, bins)
	if err != nil {
		return 0, Bins{}, err
	}
	if err := checkSample("current", current); err != nil {
		return 0, Bins{}, err
	}
	psi, err := PSI(b.Proportions(reference), b.Proportions(current), eps)
	return psi, b, err
}

// Status is the drift verdict of a feature.
type Status int

// Statuses; the numeric values are exported as embedd_feature_drift_status.
const (
	// StatusUnknown: not enough data in the reference or the current window
	// (see Options.MinCount), or no reference yet. Not exported as a metric.
	StatusUnknown     Status = -1
	StatusStable      Status = 0 // PSI < moderate threshold
	StatusModerate    Status = 1 // moderate <= PSI < significant
	StatusSignificant Status = 2 // PSI >= significant threshold
)

func (s Status) String() string {
	switch s {
	case StatusStable:
		return "stable"
	case StatusModerate:
		return "moderate"
	case StatusSignificant:
		return "significant"
	case StatusUnknown:
		return "unknown"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Classify maps a PSI value to a Status with the given thresholds
// (moderate <= significant).
func Classify(psi, moderate, significant float64) Status {
	switch {
	case math.IsNaN(psi):
		return StatusUnknown
	case psi >= significant:
		return StatusSignificant
	case psi >= moderate:
		return StatusModerate
	}
	return StatusStable
}
