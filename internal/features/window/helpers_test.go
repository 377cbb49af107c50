package window

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// t0 is 2023-11-14T22:13:20Z in unix nanoseconds.
const t0 = int64(1_700_000_000) * int64(time.Second)

// at returns t0 plus d.
func at(d time.Duration) int64 { return t0 + int64(d) }

// checkInvariants verifies the invariants the package documentation states
// for s.
func checkInvariants(s *Series) error {
	pts := s.buf[s.off:]
	wm, hasWM := s.Watermark()
	from, _ := s.RetainedFrom()
	if len(pts) > s.maxPoints {
		return fmt.Errorf("%d points; MaxPoints %d", len(pts), s.maxPoints)
	}
	if cap(s.buf) > s.capLimit() {
		return fmt.Errorf("capacity %d; limit %d", cap(s.buf), s.capLimit())
	}
	if len(pts) > 0 && (!hasWM || pts[len(pts)-1].TS != wm) {
		return fmt.Errorf("newest point at %d; watermark %d (%v)", pts[len(pts)-1].TS, wm, hasWM)
	}
	for i, p := range pts {
		if i > 0 && p.less(pts[i-1]) {
			return fmt.Errorf("point %d %+v sorts before point %d %+v", i, p, i-1, pts[i-1])
		}
		if p.TS < from {
			return fmt.Errorf("point %d at %d before retained horizon %d", i, p.TS, from)
		}
		if p.Seq > s.maxSeq {
			return fmt.Errorf("point %d seq %d above max seq %d", i, p.Seq, s.maxSeq)
		}
	}
	return nil
}

func mustSeries(t testing.TB, cfg Config) *Series {
	t.Helper()
	s, err := NewSeries(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustInsert(t testing.TB, s *Series, pts ...Point) {
	t.Helper()
	for _, p := range pts {
		if err := s.Insert(p); err != nil {
			t.Fatalf("Insert(%+v): %v", p, err)
		}
	}
}

func mustAggregate(t testing.TB, s *Series, asOf int64, w time.Duration) Aggregates {
	t.Helper()
	a, err := s.Aggregate(asOf, w)
	if err != nil {
		t.Fatalf("Aggregate(%s, %v): %v", fmtTS(asOf), w, err)
	}
	return a
}

// closeTo reports whether got is within a relative 1e-9 of want (absolute
// below magnitude 1).
func closeTo(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*max(1, math.Abs(want), math.Abs(got))
}

func nullCloseTo(got, want NullFloat) bool {
	if got.Valid != want.Valid {
		return false
	}
	return !got.Valid || closeTo(got.V, want.V)
}

// diffAggregates describes the first difference between got and want, or
// returns "".
func diffAggregates(got, want Aggregates, withZ bool) string {
	if got.Count != want.Count {
		return fmt.Sprintf("Count: got %d; want %d", got.Count, want.Count)
	}
	if !closeTo(got.Sum, want.Sum) {
		return fmt.Sprintf("Sum: got %v; want %v", got.Sum, want.Sum)
	}
	for _, f := range []struct {
		name      string
		got, want NullFloat
	}{
		{"Avg", got.Avg, want.Avg}, {"Min", got.Min, want.Min}, {"Max", got.Max, want.Max},
		{"Stddev", got.Stddev, want.Stddev}, {"ZScore", got.ZScore, want.ZScore},
	} {
		if f.name == "ZScore" && !withZ {
			continue
		}
		if !nullCloseTo(f.got, f.want) {
			return fmt.Sprintf("%s: got %+v; want %+v", f.name, f.got, f.want)
		}
	}
	return ""
}

func v(x float64) NullFloat { return NullFloat{V: x, Valid: true} }

var null NullFloat
