package embedcache

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkCache measures the cache's own cost per text, with a compute
// that costs nothing: miss (every text new, the cache full so each insert
// evicts: the whole overhead a workload without repeats pays) and hit.
// Each op is one call of 8 texts of 384-dimension vectors; "parallel" runs
// GOMAXPROCS callers. Hold ns/text against the model's (BenchmarkEmbedCache
// in internal/engine) for the overhead in percent.
func BenchmarkCache(b *testing.B) {
	const perCall, dims = 8, 384
	vec := make([]float32, dims)
	compute := func(_ context.Context, idx []int) ([]Value, error) {
		out := make([]Value, len(idx))
		for j := range out {
			out[j] = Value{Vec: vec, Tokens: 16}
		}
		return out, nil
	}
	text := func(i int64) string { return fmt.Sprintf("note %d: the quick brown fox jumps over a lazy dog", i) }
	for _, mode := range []string{"miss", "hit"} {
		for _, parallel := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/parallel=%v", mode, parallel), func(b *testing.B) {
				c := newCache(b, 4<<20)
				var next atomic.Int64
				call := func() {
					ks := make([]Key, perCall)
					for i := range ks {
						n := next.Add(1)
						if mode == "hit" {
							n %= 1000
						}
						ks[i] = Key{Model: "all-minilm-l6-v2", Version: "all-minilm-l6-v2-fp32-1/0123456789abcdef", Dims: dims, Normalize: true, Truncate: true, Text: text(n)}
					}
					vals := make([]Value, perCall)
					if miss := c.Lookup(ks, vals); len(miss) > 0 {
						if err := c.Fill(context.Background(), ks, vals, miss, compute); err != nil {
							b.Fatal(err)
						}
					}
				}
				// Warm-up: fill the cache (miss: to its bound, so inserts evict).
				for range 4 << 20 / (Cost(Key{Text: text(0)}, dims) * perCall) * 2 {
					call()
				}
				b.ResetTimer()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							call()
						}
					})
				} else {
					for range b.N {
						call()
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(perCall*b.N), "ns/text")
				if s := statsOf(c, "all-minilm-l6-v2"); mode == "miss" && s.Evictions == 0 {
					b.Fatalf("no evictions: %+v", s)
				}
			})
		}
	}
}
