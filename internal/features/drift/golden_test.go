package drift

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// golden is testdata/golden.json, written by
// tools/features/drift/make_golden.py (NumPy 2.4 / SciPy 1.16).
type golden struct {
	QuantileProbs []float64 `json:"quantile_probs"`
	Bins          int       `json:"bins"`
	Eps           float64   `json:"eps"`
	Pairs         []struct {
		Name   string    `json:"name"`
		A      []float64 `json:"a"`
		B      []float64 `json:"b"`
		KSD    float64   `json:"ks_d"`
		KSP    float64   `json:"ks_p"`
		PSI    float64   `json:"psi"`
		Cuts   []float64 `json:"cuts"`
		StatsA describe  `json:"stats_a"`
		StatsB describe  `json:"stats_b"`
	} `json:"pairs"`
	KSTwo []struct {
		N  int     `json:"n"`
		X  float64 `json:"x"`
		SF float64 `json:"sf"`
	} `json:"kstwo"`
}

type describe struct {
	Count     int64     `json:"count"`
	Mean      float64   `json:"mean"`
	Std       *float64  `json:"std"`
	Min       float64   `json:"min"`
	Max       float64   `json:"max"`
	Quantiles []float64 `json:"quantiles"`
}

func loadGolden(t testing.TB) *golden {
	t.Helper()
	data, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Pairs) == 0 || len(g.KSTwo) == 0 {
		t.Fatal("golden file has no cases")
	}
	return &g
}

// relClose reports |got-want| <= tol*|want|, or exact equality for want 0.
func relClose(got, want, tol float64) bool {
	if want == 0 {
		return got == 0
	}
	return math.Abs(got-want) <= tol*math.Abs(want)
}

func TestGoldenKS(t *testing.T) {
	g := loadGolden(t)
	for _, p := range g.Pairs {
		t.Run(p.Name, func(t *testing.T) {
			got, err := KSTest(p.A, p.B)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got.D-p.KSD) > 1e-12 {
				t.Errorf("D: got %.17g; want %.17g", got.D, p.KSD)
			}
			if !relClose(got.PValue, p.KSP, 1e-6) {
				t.Errorf("p-value: got %.17g; want %.17g (n1=%d n2=%d)", got.PValue, p.KSP, got.N1, got.N2)
			}
		})
	}
}

func TestGoldenKSTwoSF(t *testing.T) {
	g := loadGolden(t)
	worst := 0.0
	for _, c := range g.KSTwo {
		got := kstwoSF(c.N, c.X)
		if !relClose(got, c.SF, 1e-6) {
			t.Errorf("kstwo.sf(%v, %d): got %.17g; want %.17g", c.X, c.N, got, c.SF)
		}
		if c.SF != 0 {
			worst = math.Max(worst, math.Abs(got-c.SF)/c.SF)
		}
	}
	t.Logf("%d points; worst relative error %.3g", len(g.KSTwo), worst)
}

func TestGoldenPSI(t *testing.T) {
	g := loadGolden(t)
	for _, p := range g.Pairs {
		t.Run(p.Name, func(t *testing.T) {
			psi, bins, err := PSISamples(p.A, p.B, g.Bins, g.Eps)
			if err != nil {
				t.Fatal(err)
			}
			if len(bins.Cuts) != len(p.Cuts) {
				t.Fatalf("cuts: got %v; want %v", bins.Cuts, p.Cuts)
			}
			for i := range p.Cuts {
				if math.Abs(bins.Cuts[i]-p.Cuts[i]) > 1e-12*math.Max(1, math.Abs(p.Cuts[i])) {
					t.Errorf("cuts[%d]: got %.17g; want %.17g", i, bins.Cuts[i], p.Cuts[i])
				}
			}
			if math.Abs(psi-p.PSI) > 1e-9 {
				t.Errorf("PSI: got %.17g; want %.17g", psi, p.PSI)
			}
		})
	}
}

func TestGoldenStats(t *testing.T) {
	g := loadGolden(t)
	check := func(t *testing.T, which string, x []float64, want describe) {
		s, err := StatsOf(x, StatsOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sum := s.Summary()
		if sum.Count != want.Count {
			t.Errorf("%s count: got %d; want %d", which, sum.Count, want.Count)
		}
		if math.Abs(sum.Mean-want.Mean) > 1e-12*math.Max(1, math.Abs(want.Mean)) {
			t.Errorf("%s mean: got %.17g; want %.17g", which, sum.Mean, want.Mean)
		}
		if want.Std != nil && !relClose(sum.StdDev, *want.Std, 1e-12) {
			t.Errorf("%s std: got %.17g; want %.17g", which, sum.StdDev, *want.Std)
		}
		if sum.Min != want.Min || sum.Max != want.Max {
			t.Errorf("%s min/max: got %v/%v; want %v/%v", which, sum.Min, sum.Max, want.Min, want.Max)
		}
		q := []float64{sum.P50, sum.P90, sum.P99}
		for i := range q {
			if math.Abs(q[i]-want.Quantiles[i]) > 1e-12*math.Max(1, math.Abs(want.Quantiles[i])) {
				t.Errorf("%s quantile %v: got %.17g; want %.17g", which, g.QuantileProbs[i], q[i], want.Quantiles[i])
			}
		}
	}
	for _, p := range g.Pairs {
		t.Run(p.Name, func(t *testing.T) {
			check(t, "a", p.A, p.StatsA)
			check(t, "b", p.B, p.StatsB)
		})
	}
}
