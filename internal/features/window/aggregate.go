package window

import (
	"fmt"
	"math"
	"time"
)

// NullFloat is a value that may be undefined. The zero NullFloat is null.
type NullFloat struct {
	V     float64
	Valid bool // false: undefined (SQL NULL); V is then 0
}

func valid(v float64) NullFloat { return NullFloat{V: v, Valid: true} }

// Aggregates are the aggregates of one window at one as_of time: over the
// points with AsOf-Window <= TS <= AsOf.
type Aggregates struct {
	AsOf   int64 // unix nanoseconds
	Window time.Duration
	Count  int
	// Sum is 0 for an empty window (unlike SQL's NULL): no events sum to 0.
	Sum float64
	// Avg, Min and Max are null for an empty window.
	Avg, Min, Max NullFloat
	// Stddev is the sample standard deviation (divisor n-1); null when
	// Count < 2.
	Stddev NullFloat
	// ZScore is (v - Avg) / Stddev for the latest point at or before AsOf
	// (greatest TS, then greatest Seq), which is in the window whenever the
	// window is not empty; null when Stddev is null or 0.
	ZScore NullFloat
}

// Aggregate computes the aggregates of the window of length w ending at
// asOf (unix nanoseconds), both ends included: the points with
// asOf-w <= TS <= asOf, ties at either end included, as SQL's
// RANGE BETWEEN w PRECEDING AND CURRENT ROW. It fails with
// ErrBeyondHorizon when asOf-w is before RetainedFrom, and with ErrInvalid
// when asOf is outside [MinTS, MaxTS] or w outside (0, MaxDuration]. It
// does not modify s and allocates nothing; its cost is two binary searches
// and two passes over the window's points.
func (s *Series) Aggregate(asOf int64, w time.Duration) (Aggregates, error) {
	a := Aggregates{AsOf: asOf, Window: w}
	if asOf < MinTS || asOf > MaxTS {
		return a, fmt.Errorf("%w: as_of %d ns is outside [%d, %d]", ErrInvalid, asOf, MinTS, MaxTS)
	}
	if w <= 0 || w > MaxDuration {
		return a, fmt.Errorf("%w: window %v; want > 0 and <= %v", ErrInvalid, w, MaxDuration)
	}
	start := asOf - int64(w)
	if from := s.retained(); start < from {
		return a, fmt.Errorf("%w: as_of %s with window %v starts at %s, before the retained horizon %s",
			ErrBeyondHorizon, fmtTS(asOf), w, fmtTS(start), fmtTS(from))
	}
	pts := s.buf[s.off:]
	lo := searchTS(pts, start)
	hi := lo + searchTS(pts[lo:], asOf+1) // asOf <= MaxTS, no overflow
	aggregate(&a, pts[lo:hi])
	return a, nil
}

// aggregate fills a from win, the window's points in (TS, Seq) order.
// The variance is the corrected two-pass one (Chan, Golub and LeVeque
// 1983): sum (x-mean)^2 minus the rounding error of the mean, (sum
// (x-mean))^2/n; it is exactly 0 when all values are equal.
func aggregate(a *Aggregates, win []Point) {
	n := len(win)
	a.Count = n
	if n == 0 {
		return
	}
	sum, lo, hi := 0.0, win[0].V, win[0].V
	for _, p := range win {
		sum += p.V
		lo = min(lo, p.V)
		hi = max(hi, p.V)
	}
	mean := sum / float64(n)
	a.Sum, a.Avg, a.Min, a.Max = sum, valid(mean), valid(lo), valid(hi)
	if n < 2 {
		return
	}
	sd := 0.0
	if lo != hi {
		var ss, c float64
		for _, p := range win {
			d := p.V - mean
			ss += d * d
			c += d
		}
		sd = math.Sqrt(max(ss-c*c/float64(n), 0) / float64(n-1))
	}
	a.Stddev = valid(sd)
	if sd > 0 {
		a.ZScore = valid((win[n-1].V - mean) / sd)
	}
}
