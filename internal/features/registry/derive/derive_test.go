package derive

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/registry/temporal"
)

func seedRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	data, err := os.ReadFile("../testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := registry.Load(registry.File{Name: "seed.yaml", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func evaluator(t *testing.T, r *registry.Registry, refs ...string) *Evaluator {
	t.Helper()
	var defs []registry.Def
	for _, ref := range refs {
		d, err := r.Resolve(ref)
		if err != nil {
			t.Fatal(err)
		}
		defs = append(defs, d)
	}
	e, err := New(r, defs)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var at = time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC)

// TestSeed checks the brief's hand-computed cases of the seed's
// calculate_dynamic_features.
func TestSeed(t *testing.T) {
	r := seedRegistry(t)
	e := evaluator(t, r, "user_engagement_score", "market_opportunity_score")
	if got := e.Inputs(); len(got) != 2 || got[0].String() != "events_count_5m@1" || got[1].String() != "opportunity_score@1" {
		t.Fatalf("Inputs() = %v; want [events_count_5m@1 opportunity_score@1]", got)
	}
	count := func(n float64) features.Value { return features.Value{Name: "events_count_5m", Version: 1, Value: n} }
	opp := func(v float64) features.Value { return features.Value{Name: "opportunity_score", Version: 1, Value: v} }
	oppNull := features.Value{Name: "opportunity_score", Version: 1, Null: true}
	tests := []struct {
		name             string
		values           []features.Value
		ctx              map[string]string
		engagement, mkt  float64
		engagementIsNull bool
	}{
		{"12 events, premium", []features.Value{count(12), opp(0.8)}, map[string]string{"tier": "premium"}, 1.08, 0.8, false},
		{"6 events, enterprise", []features.Value{count(6), opp(0.8)}, map[string]string{"tier": "enterprise"}, 1.05, 0.8, false},
		{"2 events, no tier", []features.Value{count(2)}, nil, 0.5, 0.5, false},
		{"opportunity null, high growth", []features.Value{count(2), oppNull}, map[string]string{"region": "high_growth"}, 0.5, 0.65, false},
		{"opportunity missing, high growth", []features.Value{count(11)}, map[string]string{"region": "high_growth", "tier": "basic"}, 0.9, 0.65, false},
		{"opportunity 0.4, low growth", []features.Value{count(5), opp(0.4)}, map[string]string{"region": "low_growth"}, 0.5, 0.4, false},
		{"boundary 10 events", []features.Value{count(10)}, map[string]string{"tier": "premium"}, 0.84, 0.5, false},
	}
	for _, tt := range tests {
		got, err := e.Eval(Input{At: at, Values: tt.values, Context: tt.ctx})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if len(got) != 2 || got[0].Name != "user_engagement_score" || got[1].Name != "market_opportunity_score" {
			t.Fatalf("%s: got %+v", tt.name, got)
		}
		for i, want := range []float64{tt.engagement, tt.mkt} {
			if got[i].Null || math.Abs(got[i].Value-want) > 1e-12 {
				t.Errorf("%s: %s = %+v; want %v", tt.name, got[i].Name, got[i], want)
			}
			if got[i].Version != 1 || !got[i].Timestamp.Equal(at) || got[i].Source != features.SourceComputed {
				t.Errorf("%s: %s metadata %+v", tt.name, got[i].Name, got[i])
			}
		}
	}
}

// TestSeedGolden compares with DuckDB running the seed's SQL over a grid
// with NULLs (tools/features/registry/make_golden.py).
func TestSeedGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/seed_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Rows [][6]any `json:"rows"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Rows) < 500 {
		t.Fatalf("golden has %d rows; want at least 500", len(g.Rows))
	}
	e := evaluator(t, seedRegistry(t), "user_engagement_score", "market_opportunity_score")
	for _, row := range g.Rows {
		in := Input{At: at, Context: map[string]string{}}
		if n, ok := row[0].(float64); ok {
			in.Values = append(in.Values, features.Value{Name: "events_count_5m", Version: 1, Value: n})
		}
		if s, ok := row[1].(string); ok {
			in.Context["tier"] = s
		}
		if v, ok := row[2].(float64); ok {
			in.Values = append(in.Values, features.Value{Name: "opportunity_score", Version: 1, Value: v})
		}
		if s, ok := row[3].(string); ok {
			in.Context["region"] = s
		}
		got, err := e.Eval(in)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []float64{row[4].(float64), row[5].(float64)} {
			if got[i].Null || math.Abs(got[i].Value-want) > 1e-12 {
				t.Errorf("inputs %v: %s = %+v; want %v", row[:4], got[i].Name, got[i], want)
			}
		}
	}
}

const temporalYAML = `
features:
  - {name: hour_ny, version: 1, entity: user, type: int, source: temporal, aggregation: hour_of_day, timezone: America/New_York, description: d, owner: o}
  - {name: dow_ny, version: 1, entity: user, type: int, source: temporal, aggregation: day_of_week, timezone: America/New_York, description: d, owner: o}
  - {name: hour_utc, version: 1, entity: user, type: int, source: temporal, aggregation: hour_of_day, description: d, owner: o}
  - {name: since_last, version: 1, entity: user, type: float, source: temporal, aggregation: time_since_last_event, description: d, owner: o}
  - {name: clicks, version: 1, entity: user, type: int, source: events, aggregation: count, window: 1h, description: d, owner: o}
  - {name: new_session, version: 1, entity: user, type: bool, source: session, aggregation: is_new_session, description: d, owner: o}
  - name: night_owl
    version: 1
    entity: user
    type: bool
    source: rule
    expr: (hour_ny >= 22 || hour_ny < 5) && dow_ny <= 5
    description: d
    owner: o
  - name: recency_score
    version: 1
    entity: user
    type: float
    source: rule
    expr: case(night_owl, 2, 1) * clamp(1 - coalesce(since_last, 3600) / 3600, 0, 1) + case(new_session, 0.5, 0)
    description: d
    owner: o
`

func TestTemporalAndChains(t *testing.T) {
	r, err := registry.Load(registry.File{Name: "t.yaml", Data: []byte(temporalYAML)})
	if err != nil {
		t.Fatal(err)
	}
	e := evaluator(t, r, "hour_ny", "dow_ny", "hour_utc", "since_last", "recency_score")
	if got := e.Inputs(); len(got) != 1 || got[0].String() != "new_session@1" {
		t.Errorf("Inputs() = %v; want [new_session@1]", got)
	}
	ny := func(s string) time.Time {
		loc, _ := temporal.LoadLocation("America/New_York")
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	newSession := func(b bool) features.Value {
		v := features.Value{Name: "new_session", Version: 1}
		if b {
			v.Value = 1
		}
		return v
	}
	tests := []struct {
		name string
		in   Input
		want []float64 // hour_ny, dow_ny, hour_utc, since_last, recency_score; NaN = null
	}{
		// 2026-03-08 is the Sunday New York springs forward at 07:00 UTC.
		{"before the change", Input{At: time.Date(2026, 3, 8, 6, 59, 59, 0, time.UTC)}, []float64{1, 7, 6, math.NaN(), 0}},
		{"after the change", Input{At: time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC), LastEvent: time.Date(2026, 3, 8, 6, 30, 0, 0, time.UTC)}, []float64{3, 7, 7, 1800, 0.5}},
		// Monday 23:00 in New York: night owl (x2), 900 s since last.
		{"monday night", Input{At: ny("2026-03-09 23:00:00"), LastEvent: ny("2026-03-09 22:45:00"), Values: []features.Value{newSession(true)}}, []float64{23, 1, 3, 900, 2*0.75 + 0.5}},
		// Saturday 23:00 is not a weekday: x1.
		{"saturday night", Input{At: ny("2026-03-14 23:00:00"), LastEvent: ny("2026-03-14 22:45:00"), Values: []features.Value{newSession(false)}}, []float64{23, 6, 3, 900, 0.75}},
		// A null session flag is a false case condition: + 0.
		{"null input", Input{At: ny("2026-03-14 12:00:00"), LastEvent: ny("2026-03-14 11:00:00"), Values: []features.Value{{Name: "new_session", Version: 1, Null: true}}}, []float64{12, 6, 16, 3600, 0}},
	}
	for _, tt := range tests {
		got, err := e.Eval(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for i, want := range tt.want {
			if math.IsNaN(want) {
				if !got[i].Null {
					t.Errorf("%s: %s = %+v; want null", tt.name, got[i].Name, got[i])
				}
				continue
			}
			if got[i].Null || math.Abs(got[i].Value-want) > 1e-12 {
				t.Errorf("%s: %s = %+v; want %v", tt.name, got[i].Name, got[i], want)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	r := seedRegistry(t)
	count, _ := r.Resolve("events_count_5m")
	if _, err := New(r, []registry.Def{count}); !errors.Is(err, ErrNotDerived) ||
		err.Error() != "derive: not a derived feature: defs[0] events_count_5m@1 is a window feature; compute it with its own package and pass it in Input.Values" {
		t.Errorf("New(window feature) error = %v", err)
	}
	e := evaluator(t, r, "user_engagement_score")
	if _, err := e.Eval(Input{}); !errors.Is(err, ErrInput) {
		t.Errorf("zero At: %v; want ErrInput", err)
	}
	v := features.Value{Name: "events_count_5m", Version: 1, Value: 3}
	if _, err := e.Eval(Input{At: at, Values: []features.Value{v, v}}); !errors.Is(err, ErrInput) ||
		err.Error() != "derive: invalid input: values[1]: events_count_5m@1 given twice" {
		t.Errorf("duplicate value: %v", err)
	}
	// A value for another version of a dependency is not used.
	got, err := e.Eval(Input{At: at, Values: []features.Value{{Name: "events_count_5m", Version: 2, Value: 100}}})
	if err != nil || got[0].Value != 0.5 {
		t.Errorf("other version: %+v, %v; want 0.5", got, err)
	}
	tr, err := registry.Load(registry.File{Name: "t.yaml", Data: []byte(temporalYAML)})
	if err != nil {
		t.Fatal(err)
	}
	e = evaluator(t, tr, "since_last")
	_, err = e.Eval(Input{At: at, LastEvent: at.Add(time.Second)})
	if !errors.Is(err, ErrInput) || !errors.Is(err, temporal.ErrOrder) {
		t.Errorf("last event after At: %v; want ErrInput and temporal.ErrOrder", err)
	}
}

func TestDefaultRegistrySets(t *testing.T) {
	r, err := registry.Default()
	if err != nil {
		t.Fatal(err)
	}
	defs, err := r.Set("recsys")
	if err != nil {
		t.Fatal(err)
	}
	var derivedDefs []registry.Def
	for _, d := range defs {
		if derived(d) {
			derivedDefs = append(derivedDefs, d)
		}
	}
	if len(derivedDefs) != 4 {
		t.Fatalf("recsys has %d derived features; want 4", len(derivedDefs))
	}
	e, err := New(r, derivedDefs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Eval(Input{
		At:        time.Date(2026, 6, 1, 9, 30, 0, 0, time.UTC), // Monday
		LastEvent: time.Date(2026, 6, 1, 9, 29, 0, 0, time.UTC),
		Values:    []features.Value{{Name: "events_count_5m", Version: 1, Value: 7}},
		Context:   map[string]string{"tier": "enterprise"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"hour_of_day": 9, "day_of_week": 1, "time_since_last_event": 60, "user_engagement_score": 0.7 * 1.5}
	for _, v := range got {
		if w, ok := want[v.Name]; !ok || v.Null || math.Abs(v.Value-w) > 1e-12 {
			t.Errorf("%s = %+v; want %v", v.Name, v, w)
		}
	}
}

func BenchmarkEvalSeed(b *testing.B) {
	data, _ := os.ReadFile("../testdata/seed.yaml")
	r, err := registry.Load(registry.File{Name: "seed.yaml", Data: data})
	if err != nil {
		b.Fatal(err)
	}
	d1, _ := r.Resolve("user_engagement_score")
	d2, _ := r.Resolve("market_opportunity_score")
	e, err := New(r, []registry.Def{d1, d2})
	if err != nil {
		b.Fatal(err)
	}
	in := Input{At: at, Values: []features.Value{{Name: "events_count_5m", Version: 1, Value: 7}}, Context: map[string]string{"tier": "premium", "region": "high_growth"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Eval(in); err != nil {
			b.Fatal(err)
		}
	}
}
