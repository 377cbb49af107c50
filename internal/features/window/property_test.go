package window

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// naive computes the aggregates of the window [asOf-w, asOf] by scanning
// every accepted point, straight from the definitions; of points equal in
// (TS, Seq) the one later in all counts as the later arrival.
func naive(all []Point, asOf int64, w time.Duration) Aggregates {
	a := Aggregates{AsOf: asOf, Window: w}
	var in []float64
	latest, found := Point{}, false
	for _, p := range all { // equal keys: the later wins
		if p.TS < asOf-int64(w) || p.TS > asOf {
			continue
		}
		in = append(in, p.V)
		if !found || !p.less(latest) {
			latest, found = p, true
		}
	}
	a.Count = len(in)
	if len(in) == 0 {
		return a
	}
	lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
	for _, x := range in {
		lo, hi, sum = math.Min(lo, x), math.Max(hi, x), sum+x
	}
	mean := sum / float64(len(in))
	a.Sum, a.Avg, a.Min, a.Max = sum, v(mean), v(lo), v(hi)
	if len(in) < 2 {
		return a
	}
	sd := 0.0
	if lo != hi { // equal values have stddev exactly 0
		ss := 0.0
		for _, x := range in {
			ss += (x - mean) * (x - mean)
		}
		sd = math.Sqrt(ss / float64(len(in)-1))
	}
	a.Stddev = v(sd)
	if sd > 0 {
		a.ZScore = v((latest.V - mean) / sd)
	}
	return a
}

// TestAggregateMatchesNaive drives random series (random limits, events in
// order, late, too late and tied, values from a small set so that equal
// values are common, periodic Trim and encode/decode round trips) and
// checks every Insert decision, the retained points and every read against
// a model that keeps all accepted points.
func TestAggregateMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	iters := 300
	if testing.Short() {
		iters = 50
	}
	var reads, beyond, tooLate, lateAccepted int
	for it := range iters {
		windows := []time.Duration{time.Duration(1+rng.IntN(60)) * time.Second, time.Duration(1+rng.IntN(600)) * time.Second}
		cfg := Config{
			Windows:         windows,
			AllowedLateness: time.Duration(rng.IntN(120)) * time.Second,
			MaxPoints:       1 + rng.IntN(300),
		}
		if rng.IntN(2) == 0 {
			cfg.MaxPoints = 2000 // only the horizon trims
		}
		if rng.IntN(2) == 0 {
			cfg.Horizon = max(windows[0], windows[1]) + cfg.AllowedLateness + time.Duration(rng.IntN(300))*time.Second
		}
		s := mustSeries(t, cfg)
		full := cfg.WithDefaults()
		var all []Point // every accepted point, sorted by (TS, Seq), equal keys in insertion order
		wm, from := noTime, noTime
		ts := t0
		for i := range 1500 {
			ts += int64(rng.IntN(4)) * int64(time.Second) / 2 // many ties
			p := Point{TS: ts, Seq: uint64(i + 1)}
			if rng.IntN(4) == 0 { // late, sometimes too late
				p.TS -= int64(rng.IntN(200)) * int64(time.Second)
			}
			if rng.IntN(3) == 0 {
				p.V = float64(rng.IntN(4)) / 4
			} else {
				p.V = rng.NormFloat64()*100 + 1e3
			}
			wantLate := wm != noTime && p.TS < wm-int64(full.AllowedLateness) || p.TS < from
			err := s.Insert(p)
			if wantLate != errors.Is(err, ErrTooLate) || (err != nil && !errors.Is(err, ErrTooLate)) {
				t.Fatalf("iter %d insert %d %+v: got %v; want too late %v", it, i, p, err, wantLate)
			}
			if err == nil {
				j, _ := slices.BinarySearchFunc(all, p, func(q, p Point) int {
					if p.less(q) {
						return 1
					}
					return -1 // q <= p: p goes after it
				})
				all = slices.Insert(all, j, p)
				if wm != noTime && p.TS < wm {
					lateAccepted++
				}
			} else {
				tooLate++
			}
			wm, _ = s.Watermark()
			from, _ = s.RetainedFrom()
			if rng.IntN(200) == 0 {
				if err := s.Trim(wm + int64(rng.IntN(600))*int64(time.Second)); err != nil {
					t.Fatal(err)
				}
				from, _ = s.RetainedFrom()
			}
			if rng.IntN(100) == 0 { // resume on another replica
				b, err := s.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				s = mustSeries(t, cfg)
				if err := s.UnmarshalBinary(b); err != nil {
					t.Fatalf("iter %d: UnmarshalBinary: %v", it, err)
				}
			}
			if i%10 != 0 {
				continue
			}
			if err := checkInvariants(s); err != nil {
				t.Fatalf("iter %d insert %d: %v", it, i, err)
			}
			// The retained points are exactly the accepted ones since the
			// horizon, in (TS, Seq) order, ties in insertion order.
			k := slices.IndexFunc(all, func(q Point) bool { return q.TS >= from })
			if k < 0 {
				k = len(all)
			}
			kept := all[k:]
			got := s.Points(nil)
			if len(got) != len(kept) {
				t.Fatalf("iter %d insert %d: %d points kept; model has %d", it, i, len(got), len(kept))
			}
			for j := range got {
				if got[j] != kept[j] {
					t.Fatalf("iter %d insert %d: point %d is %+v; model %+v", it, i, j, got[j], kept[j])
				}
			}
			for range 3 {
				w := windows[rng.IntN(2)]
				if rng.IntN(4) == 0 {
					w = time.Duration(1 + rng.Int64N(int64(20*time.Minute)))
				}
				asOf := wm - rng.Int64N(int64(full.Horizon)) + rng.Int64N(int64(time.Minute))
				if rng.IntN(2) == 0 { // near the watermark
					asOf = wm - rng.Int64N(2*int64(w)+1) + rng.Int64N(int64(time.Minute))
				}
				if rng.IntN(5) == 0 && len(all) > 0 {
					asOf = all[rng.IntN(len(all))].TS // exactly at an event
				}
				a, err := s.Aggregate(asOf, w)
				if asOf-int64(w) < from {
					if !errors.Is(err, ErrBeyondHorizon) {
						t.Fatalf("iter %d: Aggregate(%d, %v) with horizon %d: got %v; want ErrBeyondHorizon", it, asOf, w, from, err)
					}
					beyond++
					continue
				}
				if err != nil {
					t.Fatalf("iter %d: Aggregate(%d, %v): %v", it, asOf, w, err)
				}
				if d := diffAggregates(a, naive(all, asOf, w), true); d != "" {
					t.Fatalf("iter %d: Aggregate(%s, %v): %s", it, fmtTS(asOf), w, d)
				}
				reads++
			}
		}
	}
	t.Logf("%d reads, %d beyond the horizon, %d too late, %d late accepted", reads, beyond, tooLate, lateAccepted)
	if reads < 1000 || beyond == 0 || tooLate == 0 || lateAccepted < 1000 {
		t.Errorf("coverage: %d reads, %d beyond the horizon, %d too late, %d late accepted", reads, beyond, tooLate, lateAccepted)
	}
}
