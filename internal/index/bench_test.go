package index_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/index"
)

// BenchmarkUpsertVectors reports vectors/s through the whole write path
// (validate, int8 quantize, vector store + online store, both acknowledged)
// for batches of 256 precomputed 384-dim vectors, on each backend.
//
//	EMBEDD_REDIS_ADDR=127.0.0.1:6390 EMBEDD_MILVUS_ADDR=127.0.0.1:19530 \
//	  go test ./internal/index -run '^$' -bench UpsertVectors -benchtime 40x
func BenchmarkUpsertVectors(b *testing.B) {
	for _, be := range []backend{embeddedBackend(), realBackend()} {
		b.Run(be.name, func(b *testing.B) {
			x, coll := newIndex(b, be, nil)
			r := rand.New(rand.NewPCG(1, 2))
			batches := make([][]index.Item, b.N)
			for i := range batches {
				items := make([]index.Item, 256)
				for j := range items {
					v := make([]float32, 384)
					for k := range v {
						v[k] = float32(r.NormFloat64())
					}
					items[j] = index.Item{ID: fmt.Sprintf("b%d-%d", i, j), Vector: v, Metadata: []byte(`{"lang":"en"}`), Features: map[string]float64{"ctr": r.Float64()}}
				}
				batches[i] = items
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if _, err := x.Upsert(context.Background(), index.UpsertRequest{Collection: coll, Items: batches[i]}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "vectors/s")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms/batch")
		})
	}
}
