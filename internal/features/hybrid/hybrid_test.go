package hybrid

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/stat"
)

// handStandardizer: a = {8, 10, 12} (mean 10, std 2), b = {-1, 0, 1}
// (mean 0, std 1), c = {3, 3, 3} (std 0).
func handStandardizer(t testing.TB) *Standardizer {
	t.Helper()
	s, err := NewStandardizer([]string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		name string
		xs   []float64
	}{{"a", []float64{8, 10, 12}}, {"b", []float64{-1, 0, 1}}, {"c", []float64{3, 3, 3}}} {
		if err := s.ObserveBatch(b.name, b.xs); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func close32(got []float32, want []float64, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > tol {
			return false
		}
	}
	return true
}

func TestMergeHand(t *testing.T) {
	std := handStandardizer(t)
	// alpha 0.36: sqrt(1-alpha) = 0.8, sqrt(alpha) = 0.6.
	m, err := New(Spec{Features: []string{"a", "b"}, Weights: map[string]float64{"b": 0.5}, Alpha: 0.36, Dims: 2}, std)
	if err != nil {
		t.Fatal(err)
	}
	if m.Dims() != 4 {
		t.Fatalf("Dims: got %d; want 4", m.Dims())
	}
	s5 := math.Sqrt(5)
	cases := []struct {
		name    string
		emb     []float32
		vals    map[string]float64
		want    []float64
		missing []string
	}{
		// e = (0.6, 0.8); z = (2, -2); w⊙z = (2, -1); f = (2, -1)/sqrt5.
		{"both", []float32{3, 4}, map[string]float64{"a": 14, "b": -2, "other": 1e9},
			[]float64{0.48, 0.64, 0.6 * 2 / s5, -0.6 / s5}, nil},
		// z_a = 45 clipped to 5; z_b = 0 (at the mean): f = (1, 0).
		{"clip", []float32{3, 4}, map[string]float64{"a": 100, "b": 0},
			[]float64{0.48, 0.64, 0.6, 0}, nil},
		// b missing: z_b = 0, f = (-1, 0) from z_a = -5 (clipped from -5.5).
		{"missing", []float32{0, -2}, map[string]float64{"a": -1},
			[]float64{0, -0.8, -0.6, 0}, []string{"b"}},
		// Nothing: feature part 0, h = (e, 0) after renormalisation.
		{"none", []float32{3, 4}, nil, []float64{0.6, 0.8, 0, 0}, []string{"a", "b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := m.Merge(c.emb, c.vals)
			if err != nil {
				t.Fatal(err)
			}
			if !close32(v.Values, c.want, 1e-7) {
				t.Errorf("h: got %v; want %v", v.Values, c.want)
			}
			if !slices.Equal(v.Missing, c.missing) {
				t.Errorf("missing: got %v; want %v", v.Missing, c.missing)
			}
			if v.StatsVersion != std.Version() || !strings.HasPrefix(v.StatsVersion, "s1-") {
				t.Errorf("version: got %q; want %q", v.StatsVersion, std.Version())
			}
			q, _ := m.Query(c.emb, c.vals)
			if !slices.Equal(q.Values, v.Values) {
				t.Errorf("Query differs from Merge: %v vs %v", q.Values, v.Values)
			}
		})
	}
	// A constant feature (std 0) contributes z = 0.
	mc, _ := New(Spec{Features: []string{"c", "a"}, Alpha: 0.36, Dims: 2}, std)
	v, _ := mc.Merge([]float32{3, 4}, map[string]float64{"c": 1000, "a": 12})
	if !close32(v.Values, []float64{0.48, 0.64, 0, 0.6}, 1e-7) {
		t.Errorf("constant feature: got %v; want [0.48 0.64 0 0.6]", v.Values)
	}
	// Alpha 0 ignores features; alpha 1 ignores the embedding.
	m0, _ := New(Spec{Features: []string{"a"}, Alpha: 0, Dims: 2}, std)
	v, _ = m0.Merge([]float32{3, 4}, map[string]float64{"a": 14})
	if !close32(v.Values, []float64{0.6, 0.8, 0}, 1e-7) {
		t.Errorf("alpha 0: got %v", v.Values)
	}
	m1, _ := New(Spec{Features: []string{"a"}, Alpha: 1, Dims: 2}, std)
	v, _ = m1.Merge([]float32{3, 4}, map[string]float64{"a": 6})
	if !close32(v.Values, []float64{0, 0, -1}, 1e-7) {
		t.Errorf("alpha 1: got %v", v.Values)
	}
	if _, err := m1.Merge([]float32{3, 4}, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("alpha 1, no features: got %v; want ErrInvalidInput", err)
	}
}

// dot(h_a, h_b) = (1-alpha) cos(e_a, e_b) + alpha cos(f_a, f_b), with f
// computed independently here from the standardizer's statistics.
func TestScoreIdentity(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"f0", "f1", "f2", "f3", "f4", "f5"}
	std, _ := NewStandardizer(names)
	for range 500 {
		row := map[string]float64{}
		for i, n := range names {
			row[n] = float64(i*10) + float64(i+1)*rng.NormFloat64()
		}
		if err := std.Observe(row); err != nil {
			t.Fatal(err)
		}
	}
	const d = 32
	weights := map[string]float64{"f0": 2, "f1": 0.5, "f3": 0, "f5": 3}
	for _, alpha := range []float64{0, 0.1, 0.25, 0.5, 0.9, 1} {
		m, err := New(Spec{Features: names, Weights: weights, Alpha: alpha, Dims: d}, std)
		if err != nil {
			t.Fatal(err)
		}
		for trial := range 50 {
			ea, eb := make([]float32, d), make([]float32, d)
			for i := range ea {
				ea[i], eb[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			va, vb := map[string]float64{}, map[string]float64{}
			for i, n := range names {
				va[n] = float64(i*10) + float64(i+1)*2*rng.NormFloat64()
				vb[n] = float64(i*10) + float64(i+1)*2*rng.NormFloat64()
			}
			ha, err := m.Merge(ea, va)
			if err != nil {
				t.Fatal(err)
			}
			hb, _ := m.Merge(eb, vb)
			want := (1-alpha)*cosine(f64(ea), f64(eb)) + alpha*cosine(featurePart(t, std, names, weights, va), featurePart(t, std, names, weights, vb))
			got := floats.Dot(f64(ha.Values), f64(hb.Values))
			if math.Abs(got-want) > 2e-6 {
				t.Errorf("alpha %v trial %d: dot = %v; want %v", alpha, trial, got, want)
			}
			if n := floats.Norm(f64(ha.Values), 2); math.Abs(n-1) > 1e-6 {
				t.Errorf("alpha %v: |h| = %v; want 1", alpha, n)
			}
		}
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func cosine(a, b []float64) float64 {
	return floats.Dot(a, b) / (floats.Norm(a, 2) * floats.Norm(b, 2))
}

func featurePart(t *testing.T, std *Standardizer, names []string, weights map[string]float64, vals map[string]float64) []float64 {
	u := make([]float64, len(names))
	for i, n := range names {
		_, mean, sd, err := std.Stat(n)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := weights[n]
		if !ok {
			w = 1
		}
		z := (vals[n] - mean) / sd
		z = math.Max(-DefaultClip, math.Min(DefaultClip, z))
		u[i] = w * z
	}
	return u
}

// Running statistics equal gonum's two-pass mean and sample standard
// deviation over the same data, however it arrived.
func TestStandardizerAgainstGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s, _ := NewStandardizer([]string{"x", "y"})
	var xs, ys []float64
	for range 1000 { // single rows
		x, y := 1e4+50*rng.NormFloat64(), rng.ExpFloat64()
		xs, ys = append(xs, x), append(ys, y)
		_ = s.Observe(map[string]float64{"x": x, "y": y})
	}
	for _, n := range []int{1, 2, 700, 3000} { // batches, including one value
		batch := make([]float64, n)
		for i := range batch {
			batch[i] = 1e4 + 80*rng.NormFloat64()
		}
		xs = append(xs, batch...)
		if err := s.ObserveBatch("x", batch); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Observe(map[string]float64{"y": 7})
	ys = append(ys, 7)
	for _, c := range []struct {
		name string
		data []float64
	}{{"x", xs}, {"y", ys}} {
		n, mean, sd, _ := s.Stat(c.name)
		wm, ws := stat.MeanStdDev(c.data, nil)
		if n != int64(len(c.data)) || math.Abs(mean-wm) > 1e-12*math.Abs(wm) || math.Abs(sd-ws) > 1e-10*ws {
			t.Errorf("%s: got n=%d mean=%.17g std=%.17g; want %d %.17g %.17g", c.name, n, mean, sd, len(c.data), wm, ws)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	std := handStandardizer(t)
	std.Freeze()
	if err := std.Observe(map[string]float64{"a": 1}); !errors.Is(err, ErrFrozen) {
		t.Errorf("Observe when frozen: got %v; want ErrFrozen", err)
	}
	if err := std.ObserveBatch("a", []float64{1}); !errors.Is(err, ErrFrozen) {
		t.Errorf("ObserveBatch when frozen: got %v; want ErrFrozen", err)
	}
	data, err := json.Marshal(std.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	back, err := NewStandardizerFromSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if back.Version() != std.Version() || !back.Frozen() {
		t.Errorf("restored: version %q frozen %v; want %q true", back.Version(), back.Frozen(), std.Version())
	}
	spec := Spec{Features: []string{"a", "b", "c"}, Alpha: 0.3, Dims: 3}
	m1, _ := New(spec, std)
	m2, _ := New(spec, back)
	emb := []float32{0.1, -0.7, 0.2}
	vals := map[string]float64{"a": 9.3, "b": 0.4, "c": 3}
	v1, _ := m1.Merge(emb, vals)
	v2, _ := m2.Merge(emb, vals)
	if !slices.Equal(v1.Values, v2.Values) || v1.StatsVersion != v2.StatsVersion {
		t.Errorf("restored merge: got %v %q; want %v %q", v2.Values, v2.StatsVersion, v1.Values, v1.StatsVersion)
	}

	// Restore in place onto an unfrozen standardizer of the same features.
	fresh, _ := NewStandardizer([]string{"a", "b", "c"})
	if fresh.Version() == std.Version() {
		t.Fatalf("empty and filled standardizers share version %q", std.Version())
	}
	if err := fresh.Restore(snap); err != nil || fresh.Version() != std.Version() {
		t.Errorf("Restore: %v, version %q; want %q", err, fresh.Version(), std.Version())
	}

	bad := func(mut func(*Snapshot)) Snapshot {
		var s Snapshot
		_ = json.Unmarshal(data, &s)
		mut(&s)
		return s
	}
	for _, c := range []struct {
		name string
		snap Snapshot
	}{
		{"tampered mean", bad(func(s *Snapshot) { s.Features[0].Mean++ })},
		{"negative m2", bad(func(s *Snapshot) { s.Features[1].M2 = -1 })},
		{"negative count", bad(func(s *Snapshot) { s.Features[1].Count = -1 })},
		{"renamed", bad(func(s *Snapshot) { s.Features[2].Name = "z" })},
		{"fewer", bad(func(s *Snapshot) { s.Features = s.Features[:2] })},
	} {
		before := fresh.Version()
		if err := fresh.Restore(c.snap); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: got %v; want ErrSnapshot", c.name, err)
		}
		if fresh.Version() != before {
			t.Errorf("%s: a failed Restore changed the statistics", c.name)
		}
	}
	if _, err := NewStandardizerFromSnapshot(Snapshot{}); !errors.Is(err, ErrSnapshot) {
		t.Errorf("empty snapshot: got %v; want ErrSnapshot", err)
	}
}

func TestBadInput(t *testing.T) {
	std := handStandardizer(t)
	ok := Spec{Features: []string{"a", "b"}, Alpha: 0.5, Dims: 3}
	for _, c := range []struct {
		name string
		spec Spec
		err  error
		msg  string
	}{
		{"alpha high", Spec{Features: ok.Features, Alpha: 1.1, Dims: 3}, ErrInvalidSpec, "Alpha"},
		{"alpha low", Spec{Features: ok.Features, Alpha: -0.1, Dims: 3}, ErrInvalidSpec, "Alpha"},
		{"alpha NaN", Spec{Features: ok.Features, Alpha: math.NaN(), Dims: 3}, ErrInvalidSpec, "Alpha"},
		{"no features", Spec{Alpha: 0.5, Dims: 3}, ErrInvalidSpec, "0 features"},
		{"duplicate", Spec{Features: []string{"a", "b", "a"}, Alpha: 0.5, Dims: 3}, ErrInvalidSpec, `Features[2] "a" repeats Features[0]`},
		{"unknown", Spec{Features: []string{"a", "q"}, Alpha: 0.5, Dims: 3}, ErrUnknownFeature, `Features[1] "q"`},
		{"weight unknown", Spec{Features: ok.Features, Weights: map[string]float64{"c": 1}, Alpha: 0.5, Dims: 3}, ErrUnknownFeature, `Weights["c"]`},
		{"weight negative", Spec{Features: ok.Features, Weights: map[string]float64{"b": -1}, Alpha: 0.5, Dims: 3}, ErrInvalidSpec, `Weights["b"] (Features[1])`},
		{"weight NaN", Spec{Features: ok.Features, Weights: map[string]float64{"b": math.NaN()}, Alpha: 0.5, Dims: 3}, ErrInvalidSpec, `Weights["b"]`},
		{"dims", Spec{Features: ok.Features, Alpha: 0.5, Dims: 0}, ErrInvalidSpec, "Dims"},
		{"too many dims", Spec{Features: ok.Features, Alpha: 0.5, Dims: MaxDims - 1}, ErrInvalidSpec, "MaxDims=8192"},
		{"clip", Spec{Features: ok.Features, Alpha: 0.5, Dims: 3, Clip: -1}, ErrInvalidSpec, "Clip"},
	} {
		_, err := New(c.spec, std)
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v; want %v containing %q", c.name, err, c.err, c.msg)
		}
	}

	m, err := New(ok, std)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		emb  []float32
		vals map[string]float64
		msg  string
	}{
		{"dims mismatch", []float32{1, 2}, nil, "embedding has 2 dims; want Spec.Dims=3"},
		{"NaN embedding", []float32{1, float32(math.NaN()), 0}, nil, "embedding[1]"},
		{"Inf embedding", []float32{float32(math.Inf(-1)), 1, 0}, nil, "embedding[0]"},
		{"zero embedding", []float32{0, 0, 0}, nil, "zero norm"},
		{"NaN feature", []float32{1, 0, 0}, map[string]float64{"a": 1, "b": math.NaN()}, `feature "b" (Features[1])`},
		{"Inf feature", []float32{1, 0, 0}, map[string]float64{"a": math.Inf(1)}, `feature "a" (Features[0])`},
	} {
		_, err := m.Merge(c.emb, c.vals)
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v; want ErrInvalidInput containing %q", c.name, err, c.msg)
		}
	}

	for _, c := range []struct {
		name  string
		names []string
	}{{"empty", nil}, {"dup", []string{"x", "x"}}, {"blank", []string{"x", ""}}, {"long", []string{strings.Repeat("x", MaxNameBytes+1)}}} {
		if _, err := NewStandardizer(c.names); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("NewStandardizer %s: got %v; want ErrInvalidSpec", c.name, err)
		}
	}
	s, _ := NewStandardizer([]string{"x"})
	if err := s.Observe(map[string]float64{"x": math.NaN()}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Observe NaN: got %v; want ErrInvalidInput", err)
	}
	if err := s.ObserveBatch("x", []float64{1, math.Inf(1)}); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "values[1]") {
		t.Errorf("ObserveBatch Inf: got %v; want ErrInvalidInput naming values[1]", err)
	}
	if err := s.ObserveBatch("q", []float64{1}); !errors.Is(err, ErrUnknownFeature) {
		t.Errorf("ObserveBatch unknown: got %v; want ErrUnknownFeature", err)
	}
	if n, _, _, _ := s.Stat("x"); n != 0 {
		t.Errorf("after rejected updates: count %d; want 0", n)
	}
}

// Concurrent updates and merges; run with -race. Each vector's version
// must be one the standardizer had.
func TestConcurrent(t *testing.T) {
	std, _ := NewStandardizer([]string{"a", "b"})
	_ = std.ObserveBatch("a", []float64{1, 2, 3})
	_ = std.ObserveBatch("b", []float64{1, 2, 3})
	m, _ := New(Spec{Features: []string{"a", "b"}, Alpha: 0.5, Dims: 4}, std)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if g%2 == 0 {
					_ = std.Observe(map[string]float64{"a": float64(i), "b": float64(-i)})
				} else if _, err := m.Merge([]float32{1, 2, 3, 4}, map[string]float64{"a": 1, "b": 2}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, _, _, _ := std.Stat("a"); n != 1003 {
		t.Errorf("count: got %d; want 1003", n)
	}
}
