package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	seq := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(i + 1)
		}
		return s
	}
	tests := []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{seq(1), 50, 1},
		{seq(1), 99, 1},
		{seq(2), 50, 1},
		{seq(2), 51, 2},
		{seq(10), 50, 5},
		{seq(10), 95, 10},
		{seq(10), 99, 10},
		{seq(100), 50, 50},
		{seq(100), 95, 95},
		{seq(100), 99, 99},
		{seq(100), 100, 100},
		{seq(1000), 99, 990},
		{seq(1000), 0.01, 1},
		{seq(1001), 50, 501},
	}
	for _, tt := range tests {
		if got := percentile(tt.samples, tt.p); got != tt.want {
			t.Errorf("percentile(1..%d, %g) = %d; want %d", len(tt.samples), tt.p, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	samples := []time.Duration{4 * ms, 1 * ms, 3 * ms, 2 * ms, 100 * ms}
	got := summarize(samples)
	want := latencySummary{Mean: 22, P50: 3, P95: 100, P99: 100, Max: 100}
	if got != want {
		t.Errorf("got %+v; want %+v", got, want)
	}
	if got := summarize(nil); got != (latencySummary{}) {
		t.Errorf("summarize(nil) = %+v; want zero", got)
	}
}
