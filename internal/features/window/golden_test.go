package window

import (
	"cmp"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"
)

// goldenFile is testdata/golden.json, written by
// tools/features/window/make_golden.py with DuckDB's
// RANGE BETWEEN INTERVAL W PRECEDING AND CURRENT ROW windows.
type goldenFile struct {
	Seed     int64 `json:"seed"`
	DuckDB   string
	WindowsS []int64 `json:"windows_s"`
	// Events are [entity, ts_s, seq, v, [[count, sum, avg, min, max,
	// stddev, z] per window]], ordered by (entity, ts, seq).
	Events [][5]json.RawMessage `json:"events"`
}

type goldenEvent struct {
	entity string
	ts     int64 // unix ns
	seq    uint64
	v      float64
	want   []Aggregates // per window; ZScore is the SQL row's own
}

func loadGolden(t *testing.T) ([]time.Duration, []goldenEvent) {
	t.Helper()
	data, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Events) == 0 || len(g.WindowsS) == 0 {
		t.Fatal("golden file has no events or windows")
	}
	ws := make([]time.Duration, len(g.WindowsS))
	for i, s := range g.WindowsS {
		ws[i] = time.Duration(s) * time.Second
	}
	nf := func(p *float64) NullFloat {
		if p == nil {
			return NullFloat{}
		}
		return NullFloat{V: *p, Valid: true}
	}
	evs := make([]goldenEvent, len(g.Events))
	for i, raw := range g.Events {
		var ev goldenEvent
		var tsS int64
		var rows [][7]*float64
		for j, dst := range []any{&ev.entity, &tsS, &ev.seq, &ev.v, &rows} {
			if err := json.Unmarshal(raw[j], dst); err != nil {
				t.Fatalf("event %d field %d: %v", i, j, err)
			}
		}
		if len(rows) != len(ws) {
			t.Fatalf("event %d has %d windows; want %d", i, len(rows), len(ws))
		}
		ev.ts = tsS * int64(time.Second)
		for k, r := range rows {
			if r[0] == nil || r[1] == nil {
				t.Fatalf("event %d window %d: null count or sum", i, k)
			}
			ev.want = append(ev.want, Aggregates{
				AsOf: ev.ts, Window: ws[k], Count: int(*r[0]), Sum: *r[1],
				Avg: nf(r[2]), Min: nf(r[3]), Max: nf(r[4]), Stddev: nf(r[5]), ZScore: nf(r[6]),
			})
		}
		evs[i] = ev
	}
	return ws, evs
}

// TestGoldenDuckDB inserts the golden events in arrival (seq) order, which
// is out of time order, and compares Aggregate at every event's timestamp
// with DuckDB's window over that row, to a relative 1e-9. SQL computes the
// z-score of each row; Aggregate gives that of the last arrival at t, so
// the z-score is compared on the last row of each tie group by seq.
func TestGoldenDuckDB(t *testing.T) {
	ws, evs := loadGolden(t)
	// The events span 5h and arrive shuffled: every one must be accepted.
	cfg := Config{Windows: ws, AllowedLateness: 6 * time.Hour, Horizon: 8 * time.Hour}
	series := map[string]*Series{}
	byArrival := append([]goldenEvent(nil), evs...)
	slices.SortFunc(byArrival, func(a, b goldenEvent) int { return cmp.Compare(a.seq, b.seq) })
	for _, ev := range byArrival {
		s := series[ev.entity]
		if s == nil {
			s = mustSeries(t, cfg)
			series[ev.entity] = s
		}
		mustInsert(t, s, Point{TS: ev.ts, Seq: ev.seq, V: ev.v})
	}

	var zCompared, boundaryRows, sd0, sdNull int
	for i, ev := range evs {
		lastOfTies := i+1 == len(evs) || evs[i+1].entity != ev.entity || evs[i+1].ts != ev.ts
		for k, w := range ws {
			got := mustAggregate(t, series[ev.entity], ev.ts, w)
			if d := diffAggregates(got, ev.want[k], lastOfTies); d != "" {
				t.Errorf("entity %s ts %d seq %d window %v: %s", ev.entity, ev.ts/int64(time.Second), ev.seq, w, d)
			}
			if lastOfTies {
				zCompared++
			}
			if ev.want[k].Stddev.Valid && ev.want[k].Stddev.V == 0 {
				sd0++
			}
			if !ev.want[k].Stddev.Valid {
				sdNull++
			}
			for _, o := range evs {
				if o.entity == ev.entity && o.ts == ev.ts-int64(w) {
					boundaryRows++
					break
				}
			}
		}
	}
	// The golden data must exercise what it is for.
	if zCompared < 100 || boundaryRows < 3 || sd0 == 0 || sdNull == 0 {
		t.Errorf("golden coverage: %d z-scores, %d rows with an event exactly at t-W, %d with stddev 0, %d with stddev null",
			zCompared, boundaryRows, sd0, sdNull)
	}
}
