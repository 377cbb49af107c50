package hybrid

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchMerger is a 384-d embedding with 16 features, the common
// sentence-embedding size.
func benchMerger(b *testing.B) (*Merger, []float32, map[string]float64) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	names := make([]string, 16)
	for i := range names {
		names[i] = fmt.Sprintf("feature_%02d", i)
	}
	std, err := NewStandardizer(names)
	if err != nil {
		b.Fatal(err)
	}
	vals := make(map[string]float64, len(names))
	for _, n := range names {
		batch := make([]float64, 1000)
		for i := range batch {
			batch[i] = rng.NormFloat64()
		}
		if err := std.ObserveBatch(n, batch); err != nil {
			b.Fatal(err)
		}
		vals[n] = rng.NormFloat64()
	}
	std.Freeze()
	m, err := New(Spec{Features: names, Alpha: 0.3, Dims: 384}, std)
	if err != nil {
		b.Fatal(err)
	}
	emb := make([]float32, 384)
	for i := range emb {
		emb[i] = float32(rng.NormFloat64())
	}
	if _, err := m.Merge(emb, vals); err != nil { // warm up (and version hash) outside the timer
		b.Fatal(err)
	}
	return m, emb, vals
}

func BenchmarkMerge384x16(b *testing.B) {
	m, emb, vals := benchMerger(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Merge(emb, vals); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMerge384x16Parallel(b *testing.B) {
	m, emb, vals := benchMerger(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Merge(emb, vals); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
