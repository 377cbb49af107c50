package stores

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/redis"
)

// BenchmarkRedisGet100 reports the p99 of a pipelined read of 100 entities
// (384-byte int8 embeddings, 8 features). Needs EMBEDD_REDIS_ADDR.
func BenchmarkRedisGet100(b *testing.B) {
	addr := os.Getenv("EMBEDD_REDIS_ADDR")
	if addr == "" {
		b.Skip("EMBEDD_REDIS_ADDR is unset")
	}
	ctx := context.Background()
	o := redis.New(redis.Options{Addr: addr, Prefix: "embedd-bench:ent:"})
	defer o.Close()
	ents := make([]store.Entity, 100)
	ids := make([]string, 100)
	for i := range ents {
		f := map[string]float64{}
		for j := range 8 {
			f[fmt.Sprintf("f%d", j)] = float64(i * j)
		}
		ents[i] = store.Entity{ID: fmt.Sprintf("e%03d", i), Embedding: make([]int8, 384), Scale: 0.01, ModelVersion: "m1", UpdatedAt: time.Now(), Features: f}
		ids[i] = ents[i].ID
	}
	if err := o.SetEntities(ctx, ents, time.Hour); err != nil {
		b.Fatal(err)
	}
	for range 100 { // warm the pool
		if _, err := o.GetEntities(ctx, ids); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := o.GetEntities(ctx, ids); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
