package window

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
)

func TestWindowSuffix(t *testing.T) {
	tests := []struct {
		w    time.Duration
		want string
	}{
		{time.Minute, "1m"}, {5 * time.Minute, "5m"}, {time.Hour, "1h"}, {90 * time.Second, "90s"},
		{90 * time.Minute, "90m"}, {48 * time.Hour, "2d"}, {25 * time.Hour, "25h"},
		{1500 * time.Millisecond, "1500ms"}, {3 * time.Microsecond, "3us"}, {7, "7ns"},
	}
	for _, tt := range tests {
		if got := WindowSuffix(tt.w); got != tt.want {
			t.Errorf("WindowSuffix(%v): got %q; want %q", tt.w, got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	got, err := Names("v", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := FeatureNames{"v_count_5m", "v_sum_5m", "v_avg_5m", "v_min_5m", "v_max_5m", "v_stddev_5m", "v_zscore_5m"}
	if got != want {
		t.Errorf("Names: got %v; want %v", got, want)
	}
	if got[AggZScore] != "v_zscore_5m" || AggStddev.String() != "stddev" || Agg(9).String() != "Agg(9)" {
		t.Errorf("Agg indexing or String: %q %q %q", got[AggZScore], AggStddev, Agg(9))
	}
	for _, tt := range []struct {
		value string
		w     time.Duration
		want  string
	}{
		{"", time.Minute, "value name \"\" is 0 bytes"},
		{strings.Repeat("a", MaxValueNameBytes+1), time.Minute, "want 1 to 64"},
		{"amount-usd", time.Minute, "byte '-' at 6"},
		{"amount", 0, "window 0s"},
	} {
		if _, err := Names(tt.value, tt.w); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Names(%q, %v): got %v; want ErrInvalid with %q", tt.value, tt.w, err, tt.want)
		}
	}
}

func TestValues(t *testing.T) {
	asOf := at(time.Minute)
	a := Aggregates{AsOf: asOf, Window: time.Minute, Count: 1, Sum: 2.5, Avg: v(2.5), Min: v(2.5), Max: v(2.5)}
	vals, err := Values("amount", 3, a)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		null  bool
		value float64
	}{
		{"amount_count_1m", false, 1}, {"amount_sum_1m", false, 2.5}, {"amount_avg_1m", false, 2.5},
		{"amount_min_1m", false, 2.5}, {"amount_max_1m", false, 2.5},
		{"amount_stddev_1m", true, 0}, {"amount_zscore_1m", true, 0},
	}
	if len(vals) != len(want) {
		t.Fatalf("got %d values; want %d", len(vals), len(want))
	}
	for i, w := range want {
		got := vals[i]
		if got.Name != w.name || got.Null != w.null || got.Value != w.value || got.Version != 3 ||
			!got.Timestamp.Equal(time.Unix(0, asOf)) || got.Source != features.SourceComputed {
			t.Errorf("value %d: got %+v; want %s null=%v value=%v version 3 at as_of, computed", i, got, w.name, w.null, w.value)
		}
	}
	// An empty window: count and sum 0, the rest null.
	vals, _ = Values("amount", 1, Aggregates{AsOf: asOf, Window: time.Hour})
	for i, val := range vals {
		if wantNull := i >= int(AggAvg); val.Null != wantNull || val.Value != 0 {
			t.Errorf("empty window value %s: got null=%v value=%v; want null=%v value 0", val.Name, val.Null, val.Value, wantNull)
		}
	}
	if _, err := Values("bad name", 1, a); !errors.Is(err, ErrInvalid) {
		t.Errorf("Values with a bad name: got %v; want ErrInvalid", err)
	}
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

func TestResolveAsOf(t *testing.T) {
	now := time.Unix(0, t0)
	if got, err := ResolveAsOf(fixedClock(now), time.Time{}); err != nil || got != t0 {
		t.Errorf("default as_of: got %d, %v; want %d (the clock)", got, err, t0)
	}
	past := now.Add(-time.Hour)
	if got, err := ResolveAsOf(fixedClock(now), past); err != nil || got != past.UnixNano() {
		t.Errorf("explicit as_of: got %d, %v; want %d", got, err, past.UnixNano())
	}
	if _, err := ResolveAsOf(fixedClock(now), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrInvalid) {
		t.Errorf("as_of in 2200: got %v; want ErrInvalid", err)
	}
	if _, err := UnixNanos(time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrInvalid) {
		t.Errorf("time in 1700: got %v; want ErrInvalid", err)
	}
}
