package window

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestAggregateHandComputed checks reads against values computed by hand.
// The series (default config: 5m lateness, 1h5m horizon):
//
//	ts      seq  v
//	t0      1    2
//	t0+60s  3    9   (inserted before seq 2: arrival order is Seq)
//	t0+60s  2    4
func TestAggregateHandComputed(t *testing.T) {
	s := mustSeries(t, DefaultConfig())
	mustInsert(t, s,
		Point{TS: t0, Seq: 1, V: 2},
		Point{TS: at(time.Minute), Seq: 3, V: 9},
		Point{TS: at(time.Minute), Seq: 2, V: 4},
	)
	sqrt := math.Sqrt
	tests := []struct {
		name string
		asOf int64
		w    time.Duration
		want Aggregates
	}{
		{
			// [t0, t0+60s]: the point at t-W is in, both ties at t are in, and
			// the z-score is that of seq 3 (v=9), the later arrival at t.
			name: "ties and lower bound included",
			asOf: at(time.Minute), w: time.Minute,
			want: Aggregates{Count: 3, Sum: 15, Avg: v(5), Min: v(2), Max: v(9), Stddev: v(sqrt(13)), ZScore: v(4 / sqrt(13))},
		},
		{
			// (t0, t0+60s+1ns]: the point at t0 is 1ns too old.
			name: "just before lower bound excluded",
			asOf: at(time.Minute + 1), w: time.Minute,
			want: Aggregates{Count: 2, Sum: 13, Avg: v(6.5), Min: v(4), Max: v(9), Stddev: v(sqrt(12.5)), ZScore: v(2.5 / sqrt(12.5))},
		},
		{
			// The ties at t0+60s are 1ns after as_of: only t0 is in.
			name: "just before the ties",
			asOf: at(time.Minute - 1), w: time.Minute,
			want: Aggregates{Count: 1, Sum: 2, Avg: v(2), Min: v(2), Max: v(2), Stddev: null, ZScore: null},
		},
		{
			name: "empty window",
			asOf: at(10 * time.Minute), w: time.Minute,
			want: Aggregates{Count: 0, Sum: 0, Avg: null, Min: null, Max: null, Stddev: null, ZScore: null},
		},
		{
			name: "as_of before every point",
			asOf: t0 - 1, w: time.Minute,
			want: Aggregates{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustAggregate(t, s, tt.asOf, tt.w)
			if got.AsOf != tt.asOf || got.Window != tt.w {
				t.Errorf("AsOf, Window: got %d, %v; want %d, %v", got.AsOf, got.Window, tt.asOf, tt.w)
			}
			if d := diffAggregates(got, tt.want, true); d != "" {
				t.Error(d)
			}
		})
	}
}

// TestLateEvent checks that an event within the allowed lateness is placed
// in time order and later reads, current and past, reflect it.
func TestLateEvent(t *testing.T) {
	s := mustSeries(t, DefaultConfig())
	mustInsert(t, s,
		Point{TS: t0, Seq: 1, V: 2},
		Point{TS: at(time.Minute), Seq: 2, V: 4},
		Point{TS: at(time.Minute), Seq: 3, V: 9},
	)
	before := mustAggregate(t, s, at(30*time.Second), time.Minute)
	if d := diffAggregates(before, Aggregates{Count: 1, Sum: 2, Avg: v(2), Min: v(2), Max: v(2)}, true); d != "" {
		t.Fatalf("before the late event: %s", d)
	}
	mustInsert(t, s, Point{TS: at(30 * time.Second), Seq: 4, V: 5}) // 30s late
	if got := s.Points(nil); got[1] != (Point{TS: at(30 * time.Second), Seq: 4, V: 5}) {
		t.Fatalf("points: got %+v; want the late point second", got)
	}
	// Now: 2, 5, 4, 9; mean 5; squares 9+0+1+16 = 26; z of seq 3 (v=9).
	got := mustAggregate(t, s, at(time.Minute), time.Minute)
	want := Aggregates{Count: 4, Sum: 20, Avg: v(5), Min: v(2), Max: v(9), Stddev: v(math.Sqrt(26.0 / 3)), ZScore: v(4 / math.Sqrt(26.0/3))}
	if d := diffAggregates(got, want, true); d != "" {
		t.Errorf("at t0+60s: %s", d)
	}
	// A past read: the latest point at or before t0+30s is the late one.
	got = mustAggregate(t, s, at(30*time.Second), time.Minute)
	want = Aggregates{Count: 2, Sum: 7, Avg: v(3.5), Min: v(2), Max: v(5), Stddev: v(math.Sqrt(4.5)), ZScore: v(1.5 / math.Sqrt(4.5))}
	if d := diffAggregates(got, want, true); d != "" {
		t.Errorf("at t0+30s: %s", d)
	}
}

func TestTooLate(t *testing.T) {
	s := mustSeries(t, DefaultConfig()) // lateness 5m
	mustInsert(t, s, Point{TS: at(10 * time.Minute), Seq: 1, V: 1})
	// Exactly the allowed lateness behind the watermark: accepted.
	mustInsert(t, s, Point{TS: at(5 * time.Minute), Seq: 2, V: 2})
	// 1ns more: rejected, and nothing changes.
	before := s.Points(nil)
	err := s.Insert(Point{TS: at(5*time.Minute - 1), Seq: 3, V: 3})
	if !errors.Is(err, ErrTooLate) {
		t.Fatalf("Insert: got %v; want ErrTooLate", err)
	}
	for _, part := range []string{fmtTS(at(5*time.Minute - 1)), "watermark " + fmtTS(at(10*time.Minute)), "allowed lateness 5m0s"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
	if got := s.Points(nil); len(got) != len(before) || s.MaxSeq() != 2 {
		t.Errorf("after ErrTooLate: %d points, max seq %d; want %d, 2", len(got), s.MaxSeq(), len(before))
	}
	if a := mustAggregate(t, s, at(10*time.Minute), time.Hour); a.Count != 2 {
		t.Errorf("Count: got %d; want 2", a.Count)
	}

	// With zero lateness only events at or after the watermark are taken.
	s = mustSeries(t, Config{AllowedLateness: 0})
	mustInsert(t, s, Point{TS: t0, Seq: 1, V: 1}, Point{TS: t0, Seq: 2, V: 1})
	if err := s.Insert(Point{TS: t0 - 1, Seq: 3, V: 1}); !errors.Is(err, ErrTooLate) {
		t.Errorf("zero lateness: got %v; want ErrTooLate", err)
	}
}

func TestAsOfHorizon(t *testing.T) {
	cfg := DefaultConfig() // horizon 1h5m
	s := mustSeries(t, cfg)
	wm := at(2 * time.Hour)
	mustInsert(t, s, Point{TS: at(30 * time.Minute), Seq: 1, V: 1}, Point{TS: at(time.Hour), Seq: 2, V: 3}, Point{TS: wm, Seq: 3, V: 5})
	from, ok := s.RetainedFrom()
	if want := wm - int64(cfg.Horizon); !ok || from != want {
		t.Fatalf("RetainedFrom: got %s, %v; want %s", fmtTS(from), ok, fmtTS(want))
	}
	// The point at t0+30m is older than the horizon and was trimmed.
	if s.Len() != 2 {
		t.Fatalf("Len: got %d; want 2", s.Len())
	}
	// A past read whose 1h window starts exactly at the horizon works:
	// as_of t0+1h5m covers [t0+5m, t0+1h5m], i.e. the point at t0+1h.
	a := mustAggregate(t, s, from+int64(time.Hour), time.Hour)
	if d := diffAggregates(a, Aggregates{Count: 1, Sum: 3, Avg: v(3), Min: v(3), Max: v(3)}, true); d != "" {
		t.Error(d)
	}
	// The same window 1ns earlier reaches before the horizon.
	_, err := s.Aggregate(from+int64(time.Hour)-1, time.Hour)
	if !errors.Is(err, ErrBeyondHorizon) {
		t.Fatalf("Aggregate: got %v; want ErrBeyondHorizon", err)
	}
	for _, part := range []string{"as_of " + fmtTS(from+int64(time.Hour)-1), "retained horizon " + fmtTS(from)} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
	// A shorter window can go back further.
	if _, err := s.Aggregate(from+int64(time.Minute), time.Minute); err != nil {
		t.Errorf("1m window at horizon+1m: %v", err)
	}
	// An event before the horizon is too late even if lateness allowed it.
	s2 := mustSeries(t, Config{Windows: []time.Duration{time.Minute}, AllowedLateness: time.Hour, Horizon: time.Hour + time.Minute})
	mustInsert(t, s2, Point{TS: t0, Seq: 1, V: 1})
	if err := s2.Trim(at(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Insert(Point{TS: at(50 * time.Minute), Seq: 2, V: 1}); !errors.Is(err, ErrTooLate) || !strings.Contains(err.Error(), "retained horizon") {
		t.Errorf("Insert before horizon: got %v; want ErrTooLate naming the retained horizon", err)
	}
}

func TestStddevNullAndZero(t *testing.T) {
	tests := []struct {
		name   string
		vals   []float64
		stddev NullFloat
		z      NullFloat
	}{
		{"n=1", []float64{3}, null, null},
		{"equal", []float64{7, 7, 7}, v(0), null},
		// 0.1+0.1+0.1 = 0.30000000000000004: the mean is not exactly 0.1,
		// yet the stddev of equal values is exactly 0.
		{"equal inexact mean", []float64{0.1, 0.1, 0.1}, v(0), null},
		{"two", []float64{1, 3}, v(math.Sqrt2), v(1 / math.Sqrt2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSeries(t, DefaultConfig())
			for i, x := range tt.vals {
				mustInsert(t, s, Point{TS: at(time.Duration(i) * time.Second), Seq: uint64(i + 1), V: x})
			}
			a := mustAggregate(t, s, at(time.Minute), time.Minute)
			if a.Stddev != tt.stddev && !nullCloseTo(a.Stddev, tt.stddev) {
				t.Errorf("Stddev: got %+v; want %+v", a.Stddev, tt.stddev)
			}
			if tt.stddev == v(0) && a.Stddev.V != 0 {
				t.Errorf("Stddev: got %v; want exactly 0", a.Stddev.V)
			}
			if !nullCloseTo(a.ZScore, tt.z) {
				t.Errorf("ZScore: got %+v; want %+v", a.ZScore, tt.z)
			}
		})
	}
}

func TestMaxPointsTrimming(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxPoints = 3
	s := mustSeries(t, cfg)
	for i := 1; i <= 5; i++ {
		mustInsert(t, s, Point{TS: at(time.Duration(i) * time.Second), Seq: uint64(i), V: float64(i)})
	}
	if got := s.Points(nil); len(got) != 3 || got[0].V != 3 {
		t.Fatalf("points: got %+v; want the 3 newest", got)
	}
	// The last point dropped was at t0+2s: the horizon is just after it.
	if from, _ := s.RetainedFrom(); from != at(2*time.Second)+1 {
		t.Errorf("RetainedFrom: got %s; want %s", fmtTS(from), fmtTS(at(2*time.Second)+1))
	}
	a := mustAggregate(t, s, at(5*time.Second), 2*time.Second)
	if d := diffAggregates(a, Aggregates{Count: 3, Sum: 12, Avg: v(4), Min: v(3), Max: v(5), Stddev: v(1), ZScore: v(1)}, true); d != "" {
		t.Error(d)
	}
	// A window that would need the trimmed point fails instead of
	// undercounting.
	if _, err := s.Aggregate(at(5*time.Second), 3*time.Second); !errors.Is(err, ErrBeyondHorizon) {
		t.Errorf("Aggregate over trimmed points: got %v; want ErrBeyondHorizon", err)
	}

	// Trimming never splits a timestamp: dropping one of two ties drops both.
	s = mustSeries(t, cfg)
	mustInsert(t, s,
		Point{TS: at(1 * time.Second), Seq: 1, V: 1},
		Point{TS: at(2 * time.Second), Seq: 2, V: 2},
		Point{TS: at(2 * time.Second), Seq: 3, V: 2},
		Point{TS: at(3 * time.Second), Seq: 4, V: 3}, // drops t0+1s
		Point{TS: at(4 * time.Second), Seq: 5, V: 4}, // drops one t0+2s, so both
	)
	if got := s.Points(nil); len(got) != 2 || got[0].Seq != 4 {
		t.Errorf("points: got %+v; want seq 4 and 5", got)
	}
	if from, _ := s.RetainedFrom(); from != at(2*time.Second)+1 {
		t.Errorf("RetainedFrom: got %s; want %s", fmtTS(from), fmtTS(at(2*time.Second)+1))
	}

	// A late point older than every point of a full series is accepted and
	// trimmed at once, so reads over it fail rather than miss it.
	s = mustSeries(t, cfg)
	mustInsert(t, s,
		Point{TS: at(10 * time.Second), Seq: 1, V: 1},
		Point{TS: at(11 * time.Second), Seq: 2, V: 1},
		Point{TS: at(12 * time.Second), Seq: 3, V: 1},
		Point{TS: at(5 * time.Second), Seq: 4, V: 1},
	)
	if s.Len() != 3 {
		t.Errorf("Len: got %d; want 3", s.Len())
	}
	if _, err := s.Aggregate(at(12*time.Second), 7*time.Second); !errors.Is(err, ErrBeyondHorizon) {
		t.Errorf("Aggregate over the trimmed late point: got %v; want ErrBeyondHorizon", err)
	}
	if a := mustAggregate(t, s, at(12*time.Second), 7*time.Second-1); a.Count != 3 {
		t.Errorf("Count: got %d; want 3", a.Count)
	}
}

// TestMemoryBound inserts many points in order, late and in bursts of ties
// and checks the capacity never exceeds the documented bound.
func TestMemoryBound(t *testing.T) {
	for _, maxPoints := range []int{1, 2, 7, 100, 1000} {
		cfg := DefaultConfig()
		cfg.MaxPoints = maxPoints
		s := mustSeries(t, cfg)
		ts := t0
		for i := range 20 * maxPoints {
			p := Point{TS: ts, Seq: uint64(i + 1), V: float64(i)}
			switch i % 5 {
			case 0, 1: // in order
				ts += int64(time.Millisecond)
				p.TS = ts
			case 2: // a tie
			case 3: // late by 10ms: before the horizon when MaxPoints is small
				p.TS = ts - int64(10*time.Millisecond)
			}
			// With a tiny MaxPoints ties and late points fall before the
			// horizon; events newer than the watermark never do.
			if err := s.Insert(p); err != nil && (i%5 <= 1 || !errors.Is(err, ErrTooLate)) {
				t.Fatalf("Insert(%+v): %v", p, err)
			}
			if err := checkInvariants(s); err != nil {
				t.Fatalf("MaxPoints %d, insert %d: %v", maxPoints, i, err)
			}
		}
		if s.Len() > maxPoints {
			t.Errorf("MaxPoints %d: Len %d", maxPoints, s.Len())
		}
	}
	if got := unsafe.Sizeof(Point{}); got != PointBytes {
		t.Errorf("Point is %d bytes; PointBytes says %d", got, PointBytes)
	}
	if got := unsafe.Sizeof(Series{}); got != 80 {
		t.Errorf("Series header is %d bytes; the package doc says 80", got)
	}
}

func TestTrim(t *testing.T) {
	s := mustSeries(t, DefaultConfig())
	mustInsert(t, s, Point{TS: t0, Seq: 1, V: 1}, Point{TS: at(time.Hour), Seq: 2, V: 2})
	if err := s.Trim(at(time.Hour + 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := s.Points(nil); len(got) != 1 || got[0].Seq != 2 {
		t.Errorf("after Trim: got %+v; want seq 2 only", got)
	}
	// A read at now of every default window still works.
	for _, w := range DefaultConfig().Windows {
		if _, err := s.Aggregate(at(time.Hour+30*time.Minute), w); err != nil {
			t.Errorf("Aggregate(now, %v): %v", w, err)
		}
	}
	// An idle entity gives its memory back; the watermark stays.
	if err := s.Trim(at(5 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 || s.buf != nil {
		t.Errorf("after Trim far ahead: Len %d, buf %v; want empty and released", s.Len(), s.buf)
	}
	if wm, ok := s.Watermark(); !ok || wm != at(time.Hour) {
		t.Errorf("Watermark: got %s, %v; want %s", fmtTS(wm), ok, fmtTS(at(time.Hour)))
	}
	if err := s.Trim(MaxTS + 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Trim(MaxTS+1): got %v; want ErrInvalid", err)
	}
	// Shrink: after a burst, trimming to a few points releases capacity.
	s = mustSeries(t, DefaultConfig())
	for i := range 1000 {
		mustInsert(t, s, Point{TS: t0 + int64(i), Seq: uint64(i + 1)})
	}
	mustInsert(t, s, Point{TS: at(2 * time.Hour), Seq: 1001})
	if s.Len() != 1 || cap(s.buf) > 64 {
		t.Errorf("after the burst aged out: Len %d, cap %d; want 1, <= 64", s.Len(), cap(s.buf))
	}
}

func TestInvalidInput(t *testing.T) {
	s := mustSeries(t, DefaultConfig())
	for _, p := range []Point{
		{TS: t0, V: math.NaN()},
		{TS: t0, V: math.Inf(1)},
		{TS: t0, V: -1.5e100},
		{TS: MaxTS + 1},
		{TS: MinTS - 1},
	} {
		if err := s.Insert(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Insert(%+v): got %v; want ErrInvalid", p, err)
		}
	}
	mustInsert(t, s, Point{TS: MaxTS, V: MaxAbsValue}, Point{TS: MaxTS, Seq: 1, V: -MaxAbsValue})
	if a := mustAggregate(t, s, MaxTS, time.Hour); a.Count != 2 || a.Sum != 0 || !a.Stddev.Valid || math.IsInf(a.Stddev.V, 0) {
		t.Errorf("extremes: got %+v; want 2 points, sum 0, finite stddev", a)
	}
	for _, c := range []struct {
		asOf int64
		w    time.Duration
	}{{t0, 0}, {t0, -time.Second}, {t0, MaxDuration + 1}, {MaxTS + 1, time.Minute}, {MinTS - 1, time.Minute}} {
		if _, err := s.Aggregate(c.asOf, c.w); !errors.Is(err, ErrInvalid) {
			t.Errorf("Aggregate(%d, %v): got %v; want ErrInvalid", c.asOf, c.w, err)
		}
	}
}

// TestZeroSeries checks that the zero Series behaves as one made with
// DefaultConfig.
func TestZeroSeries(t *testing.T) {
	var s Series
	if _, ok := s.Watermark(); ok {
		t.Error("zero Series has a watermark")
	}
	if _, ok := s.RetainedFrom(); ok {
		t.Error("zero Series has a retained horizon")
	}
	if a := mustAggregate(t, &s, 0, time.Minute); a.Count != 0 {
		t.Errorf("zero Series Count: got %d; want 0", a.Count)
	}
	mustInsert(t, &s, Point{TS: t0, Seq: 1, V: 1}, Point{TS: at(20 * time.Minute), Seq: 2, V: 1})
	if err := s.Insert(Point{TS: at(14 * time.Minute), Seq: 3}); !errors.Is(err, ErrTooLate) {
		t.Errorf("default lateness: got %v; want ErrTooLate", err)
	}
	if s.maxPoints != DefaultConfig().MaxPoints {
		t.Errorf("MaxPoints: got %d; want the default", s.maxPoints)
	}
}

// TestEqualKeys checks that points equal in (TS, Seq) keep insertion order
// and the z-score takes the last inserted.
func TestEqualKeys(t *testing.T) {
	s := mustSeries(t, DefaultConfig())
	mustInsert(t, s, Point{TS: at(time.Second), Seq: 5, V: 1}, Point{TS: t0, Seq: 9, V: 0}, Point{TS: at(time.Second), Seq: 5, V: 4})
	a := mustAggregate(t, s, at(time.Second), time.Minute)
	// 0, 1, 4: mean 5/3, squares 25/9+4/9+49/9 = 78/9, var 39/9.
	if want := (4 - 5.0/3) / math.Sqrt(39.0/9); !a.ZScore.Valid || !closeTo(a.ZScore.V, want) {
		t.Errorf("ZScore: got %+v; want %v", a.ZScore, want)
	}
}
