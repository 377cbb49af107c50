package drift

import (
	"fmt"
	"testing"
	"time"
)

func benchMonitor(b *testing.B, features int) *Monitor {
	b.Helper()
	m, err := New(&stepClock{t: t0}, Options{MaxFeatures: features})
	if err != nil {
		b.Fatal(err)
	}
	rng := newRand(1)
	for i := range features {
		name := fmt.Sprintf("f%03d", i)
		_ = m.Track(name, false)
		ref, _ := NewStats(StatsOptions{Rand: newRand(uint64(i))})
		for range 5000 {
			_ = ref.Add(rng.NormFloat64())
		}
		_ = m.SetReference(name, ref)
		for range 5000 {
			_ = m.Observe(name, rng.NormFloat64()+0.1)
		}
	}
	return m
}

func BenchmarkObserve(b *testing.B) {
	m := benchMonitor(b, 1)
	b.ReportAllocs()
	x := 0.0
	for b.Loop() {
		x += 0.001
		_ = m.Observe("f000", x)
	}
}

func BenchmarkObserveParallel(b *testing.B) {
	m := benchMonitor(b, 8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			_ = m.Observe(fmt.Sprintf("f%03d", i%8), float64(i%100))
		}
	})
}

// One full report (window merge, PSI, KS on 2048-value reservoirs).
func BenchmarkReport(b *testing.B) {
	m := benchMonitor(b, 1)
	m.clock.(*stepClock).Advance(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Report("f000"); err != nil {
			b.Fatal(err)
		}
	}
}
