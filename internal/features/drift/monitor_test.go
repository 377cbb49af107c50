package drift

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
)

// stepClock is a settable clock.
type stepClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newMonitor(t *testing.T, opts Options) (*Monitor, *stepClock) {
	t.Helper()
	clk := &stepClock{t: t0}
	m, err := New(clk, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, clk
}

func normalRef(t *testing.T, n int, seed uint64) *Stats {
	t.Helper()
	rng := newRand(seed)
	s, _ := NewStats(StatsOptions{Rand: newRand(seed + 1)})
	for range n {
		_ = s.Add(rng.NormFloat64())
	}
	return s
}

func TestMonitorDrift(t *testing.T) {
	for _, c := range []struct {
		name  string
		shift float64
		scale float64
		want  Status
		lowP  bool
	}{
		{"same", 0, 1, StatusStable, false},
		{"small shift", 0.35, 1, StatusModerate, true},
		{"large shift", 1, 1, StatusSignificant, true},
		{"variance", 0, 2.5, StatusSignificant, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, clk := newMonitor(t, Options{Seed: 7})
			if err := m.Track("x", false); err != nil {
				t.Fatal(err)
			}
			if err := m.SetReference("x", normalRef(t, 20000, 11)); err != nil {
				t.Fatal(err)
			}
			rng := newRand(12)
			for i := range 6000 {
				if err := m.Observe("x", c.shift+c.scale*rng.NormFloat64()); err != nil {
					t.Fatal(err)
				}
				if i%100 == 0 {
					clk.Advance(30 * time.Second) // spread over buckets, all within the hour
				}
			}
			r, err := m.Report("x")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("PSI %.4f, KS D %.4f p %.3g", r.PSI, r.KS.D, r.KS.PValue)
			if r.Status != c.want {
				t.Errorf("status: got %v (PSI %v); want %v", r.Status, r.PSI, c.want)
			}
			if (r.KS.PValue < 1e-3) != c.lowP {
				t.Errorf("KS p-value: got %v (D %v); want small=%v", r.KS.PValue, r.KS.D, c.lowP)
			}
			if r.Current.Count != 6000 || r.Reference.Count != 20000 || r.Bins != 10 {
				t.Errorf("counts: got current %d reference %d bins %d; want 6000 20000 10", r.Current.Count, r.Reference.Count, r.Bins)
			}
			if r.KS.N1 != DefaultSampleSize || r.KS.N2 != DefaultSampleSize {
				t.Errorf("KS sizes: got %d, %d; want reservoirs of %d", r.KS.N1, r.KS.N2, DefaultSampleSize)
			}
			// The report is a function of the state and time.
			r2, _ := m.Report("x")
			if r2.PSI != r.PSI || r2.KS != r.KS {
				t.Errorf("second report differs: %v/%v vs %v/%v", r2.PSI, r2.KS, r.PSI, r.KS)
			}
		})
	}
}

// The current window ages out bucket by bucket.
func TestMonitorWindow(t *testing.T) {
	m, clk := newMonitor(t, Options{Window: time.Hour, Buckets: 4, MinCount: 2})
	_ = m.Track("x", false)
	_ = m.SetReference("x", normalRef(t, 100, 1))
	clk.t = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) // a bucket boundary (15 min)
	for i := range 4 {
		_ = m.Observe("x", float64(i))
		_ = m.ObserveNull("x")
		clk.Advance(15 * time.Minute)
	}
	// Now 13:00: buckets 12:15, 12:30, 12:45 and the empty 13:00 are live.
	r, _ := m.Report("x")
	if r.Current.Count != 3 || r.Current.Nulls != 3 || r.Current.Mean != 2 || r.Current.NullRate != 0.5 {
		t.Errorf("window at 13:00: got %+v; want values 1,2,3 and three nulls", r.Current)
	}
	if !r.WindowStart.Equal(t0.Add(15*time.Minute)) || !r.WindowEnd.Equal(t0.Add(75*time.Minute)) {
		t.Errorf("window: got [%v, %v); want [12:15, 13:15)", r.WindowStart, r.WindowEnd)
	}
	clk.Advance(59 * time.Minute) // 13:59: only the 13:00 bucket (empty) and later
	r, _ = m.Report("x")
	if r.Current.Count != 0 || r.Status != StatusUnknown || !strings.Contains(r.Reason, "current window has 0") {
		t.Errorf("after the window: got count %d status %v reason %q; want 0, unknown", r.Current.Count, r.Status, r.Reason)
	}
	// A bucket slot is reused for a new interval: old values are gone.
	_ = m.Observe("x", 100)
	r, _ = m.Report("x")
	if r.Current.Count != 1 || r.Current.Mean != 100 {
		t.Errorf("reused slot: got %+v; want one value 100", r.Current)
	}
}

func TestMonitorAutoReference(t *testing.T) {
	m, _ := newMonitor(t, Options{AutoReference: 50, MinCount: 10})
	_ = m.Track("x", false)
	for i := range 49 {
		_ = m.Observe("x", float64(i))
	}
	_ = m.ObserveNull("x")
	r, _ := m.Report("x")
	if r.HasReference || r.Reason != "no reference" {
		t.Fatalf("before 50 values: got HasReference %v reason %q", r.HasReference, r.Reason)
	}
	_ = m.Observe("x", 49)
	_ = m.Observe("x", 1000) // after the freeze: not in the reference
	r, _ = m.Report("x")
	if !r.HasReference || r.Reference.Count != 50 || r.Reference.Nulls != 1 || r.Reference.Max != 49 {
		t.Errorf("auto reference: got %+v; want values 0..49 and one null", r.Reference)
	}
	if r.Current.Count != 51 || r.Status == StatusUnknown {
		t.Errorf("current: got count %d status %v; want 51, known", r.Current.Count, r.Status)
	}
}

func TestMonitorLimitsAndErrors(t *testing.T) {
	m, _ := newMonitor(t, Options{MaxFeatures: 2})
	for _, n := range []string{"a", "b"} {
		if err := m.Track(n, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Track("a", true); err != nil { // re-track: flag update only
		t.Errorf("re-track: %v", err)
	}
	err := m.Track("c", false)
	if !errors.Is(err, ErrTooManyFeatures) || !strings.Contains(err.Error(), "MaxFeatures=2") || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("third feature: got %v; want ErrTooManyFeatures naming c and the limit", err)
	}
	if err := m.Track("", false); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("empty name: got %v; want ErrInvalidInput", err)
	}
	if err := m.Track(strings.Repeat("n", MaxNameBytes+1), false); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("long name: got %v; want ErrInvalidInput", err)
	}
	if err := m.Observe("zzz", 1); !errors.Is(err, ErrUnknownFeature) {
		t.Errorf("unknown: got %v; want ErrUnknownFeature", err)
	}
	if err := m.Observe("a", math.Inf(1)); !errors.Is(err, ErrNotFinite) {
		t.Errorf("Inf: got %v; want ErrNotFinite", err)
	}
	if _, err := m.Report("zzz"); !errors.Is(err, ErrUnknownFeature) {
		t.Errorf("report unknown: got %v; want ErrUnknownFeature", err)
	}
	// A batch with one bad value records nothing.
	err = m.ObserveValues([]features.Value{{Name: "a", Value: 1}, {Name: "b", Value: math.NaN()}})
	if !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), "values[1]") {
		t.Errorf("bad batch: got %v; want ErrNotFinite naming values[1]", err)
	}
	err = m.ObserveValues([]features.Value{{Name: "a", Value: 1}, {Name: "q", Value: 1}})
	if !errors.Is(err, ErrUnknownFeature) || !strings.Contains(err.Error(), "values[1]") {
		t.Errorf("unknown in batch: got %v; want ErrUnknownFeature naming values[1]", err)
	}
	if r, _ := m.Report("a"); r.Current.Count != 0 {
		t.Errorf("after rejected batches: got count %d; want 0", r.Current.Count)
	}
	if err := m.ObserveValues([]features.Value{{Name: "a", Value: 2}, {Name: "a", Null: true, Value: math.NaN()}}); err != nil {
		t.Errorf("good batch: %v", err)
	}
	if r, _ := m.Report("a"); r.Current.Count != 1 || r.Current.Nulls != 1 || !r.Sensitive {
		t.Errorf("after good batch: got %+v sensitive %v; want 1 value, 1 null, sensitive", r.Current, r.Sensitive)
	}
	if !m.Untrack("b") || m.Untrack("b") {
		t.Errorf("Untrack: want true then false")
	}
	if got := fmt.Sprint(m.Features()); got != "[a]" {
		t.Errorf("Features: got %s; want [a]", got)
	}

	for _, o := range []Options{{Window: -1}, {Buckets: MaxBuckets + 1}, {Window: time.Millisecond, Buckets: 2},
		{SampleSize: -1}, {Bins: 1}, {Epsilon: 0.5}, {PSIModerate: 0.3, PSISignificant: 0.2}, {MinCount: 1},
		{MaxFeatures: MaxFeatures + 1}, {AutoReference: -1}, {PSISignificant: math.Inf(1)}} {
		if _, err := New(&stepClock{}, o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%+v): got %v; want ErrInvalidOptions", o, err)
		}
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("nil clock: got %v; want ErrInvalidOptions", err)
	}
}

func TestReferencesSaveLoad(t *testing.T) {
	m, _ := newMonitor(t, Options{})
	_ = m.Track("a", false)
	_ = m.Track("b", true)
	_ = m.SetReference("a", normalRef(t, 5000, 3))
	var buf bytes.Buffer
	if err := m.SaveReferences(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 100<<10 {
		t.Errorf("snapshot is %d bytes; want a bounded reservoir", buf.Len())
	}

	m2, _ := newMonitor(t, Options{})
	_ = m2.Track("a", false)
	_ = m2.Track("b", false)
	if err := m2.LoadReferences(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	r1, _ := m.Report("a")
	r2, _ := m2.Report("a")
	if r1.Reference != r2.Reference {
		t.Errorf("loaded reference: got %+v; want %+v", r2.Reference, r1.Reference)
	}
	if r, _ := m2.Report("b"); r.HasReference {
		t.Errorf("b has a reference; it had none in the snapshot")
	}

	// Errors leave the references unchanged.
	m3, _ := newMonitor(t, Options{})
	_ = m3.Track("b", false)
	bad := []struct{ name, data string }{
		{"untracked", buf.String()},
		{"version", `{"version":2,"features":[]}`},
		{"syntax", `{"version":1,`},
		{"dup", `{"version":1,"features":[{"name":"b","stats":{"sample_size":1,"count":0,"nulls":0,"mean":0,"m2":0,"min":0,"max":0,"sample":[]}},{"name":"b","stats":{"sample_size":1,"count":0,"nulls":0,"mean":0,"m2":0,"min":0,"max":0,"sample":[]}}]}`},
		{"no stats", `{"version":1,"features":[{"name":"b"}]}`},
	}
	for _, c := range bad {
		if err := m3.LoadReferences(strings.NewReader(c.data)); err == nil {
			t.Errorf("%s: got nil error", c.name)
		}
		if _, ok, _ := m3.Reference("b"); ok {
			t.Errorf("%s: a failed load set a reference", c.name)
		}
	}
	if err := m3.LoadReferences(strings.NewReader(buf.String())); !errors.Is(err, ErrUnknownFeature) || !strings.Contains(err.Error(), "features[0]") {
		t.Errorf("untracked: got %v; want ErrUnknownFeature naming features[0]", err)
	}
}

// Concurrent observers, reporters and trackers; run with -race.
func TestMonitorConcurrent(t *testing.T) {
	m, clk := newMonitor(t, Options{Buckets: 3, MinCount: 5})
	names := []string{"a", "b", "c"}
	for _, n := range names {
		_ = m.Track(n, false)
		_ = m.SetReference(n, normalRef(t, 500, 5))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := newRand(uint64(g))
			for i := range 2000 {
				_ = m.Observe(names[i%3], rng.NormFloat64())
				if i%500 == 0 {
					clk.Advance(time.Minute)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			_ = m.Reports()
			_ = m.Track("d", true)
			m.Untrack("d")
		}
	}()
	wg.Wait()
	total := int64(0)
	for _, r := range m.Reports() {
		total += r.Current.Count
	}
	if total != 8000 {
		t.Errorf("values recorded: got %d; want 8000", total)
	}
}

func FuzzLoadReferences(f *testing.F) {
	f.Add([]byte(`{"version":1,"features":[{"name":"x","stats":{"sample_size":2,"count":3,"nulls":1,"mean":2,"m2":2,"min":1,"max":3,"sample":[1,3]}}]}`))
	f.Add([]byte(`{"version":1,"features":[]}`))
	f.Add([]byte(`{"version":1,"features":[{"name":"x","stats":{"sample_size":0}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := New(&stepClock{t: t0}, Options{MinCount: 2})
		if err != nil {
			t.Fatal(err)
		}
		_ = m.Track("x", false)
		_ = m.Observe("x", 1)
		_ = m.Observe("x", 2)
		if err := m.LoadReferences(bytes.NewReader(data)); err != nil {
			return
		}
		// Whatever loads must report without panicking and save again.
		if _, err := m.Report("x"); err != nil {
			t.Fatal(err)
		}
		if err := m.SaveReferences(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSensitiveWithheld: a sensitive feature's window with fewer than
// MinCount values reports no value-derived statistic, through Report and
// Reports alike; a plain feature and a full window report them.
func TestSensitiveWithheld(t *testing.T) {
	m, _ := newMonitor(t, Options{MinCount: 5})
	for _, f := range []struct {
		name      string
		sensitive bool
	}{{"income", true}, {"clicks", false}} {
		if err := m.Track(f.name, f.sensitive); err != nil {
			t.Fatal(err)
		}
		for _, v := range []float64{41000, 52000} {
			if err := m.Observe(f.name, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, _ := m.Report("income")
	c := r.Current
	if !c.Withheld || c.Count != 2 || !math.IsNaN(c.Mean) || !math.IsNaN(c.Min) || !math.IsNaN(c.Max) || !math.IsNaN(c.P50) || !math.IsNaN(c.StdDev) ||
		!strings.Contains(r.Reason, "withheld") {
		t.Errorf("sensitive, 2 values: got %+v reason %q; want count 2, values NaN, withheld", c, r.Reason)
	}
	for _, rr := range m.Reports() {
		if rr.Feature == "income" && !rr.Current.Withheld {
			t.Errorf("Reports: income not withheld: %+v", rr.Current)
		}
	}
	if r, _ := m.Report("clicks"); r.Current.Withheld || r.Current.Mean != 46500 {
		t.Errorf("plain feature: got %+v; want mean 46500, not withheld", r.Current)
	}
	for _, v := range []float64{1, 2, 3} {
		_ = m.Observe("income", v)
	}
	if r, _ := m.Report("income"); r.Current.Withheld || r.Current.Count != 5 || math.IsNaN(r.Current.Mean) {
		t.Errorf("sensitive, 5 values: got %+v; want statistics", r.Current)
	}
}
