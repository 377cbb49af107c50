// Package stores benchmarks the store backends.
//
//	go test ./bench/stores -run '^$' -bench Embedded -benchtime 1x
//	go test ./bench/stores -run '^$' -bench EmbeddedReopen -benchtime 1x -reopen.n 100000
//
// Synthetic data: 384-dim vectors with low intrinsic dimension (32 latent
// Gaussian factors plus isotropic noise), which behaves like text
// embeddings for ANN recall, unlike i.i.d. Gaussian vectors.
package stores

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/embedd/embedd/bench/internal/synth"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/embedded"
)

const dims = 384

// gen is the embedding-like generator of bench/internal/synth.
type gen struct{ *synth.Gen }

func newGen(seed uint64) *gen { return &gen{synth.New(seed, dims, 32, 0.5)} }

func (g *gen) vec() []float32 { return g.Vec() }

func records(g *gen, n, off int) []store.Record {
	out := make([]store.Record, n)
	for i := range out {
		out[i] = store.Record{ID: fmt.Sprintf("r%07d", off+i), Vector: g.vec(), Metadata: []byte(`{"k":"v"}`), ModelVersion: "m1", UpdatedAt: time.Now()}
	}
	return out
}

// BenchmarkEmbeddedUpsert reports vectors/s for batches of 256 into a
// collection on the HNSW path (fsync per batch).
func BenchmarkEmbeddedUpsert(b *testing.B) {
	ctx := context.Background()
	o := embedded.DefaultOptions(b.TempDir())
	o.ExactThreshold = -1
	s, err := embedded.Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsureCollection(ctx, "c", dims); err != nil {
		b.Fatal(err)
	}
	g := newGen(1)
	batches := make([][]store.Record, b.N)
	for i := range batches {
		batches[i] = records(g, 256, i*256)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := s.Upsert(ctx, "c", batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "vectors/s")
}

// BenchmarkEmbeddedSearch100k reports top-10 latency percentiles and
// recall@10 against exact search over 100,000 vectors. Building the graph
// takes minutes; it is skipped under -short.
func BenchmarkEmbeddedSearch100k(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a 100,000-vector graph")
	}
	const n = 100_000
	ctx := context.Background()
	dir := b.TempDir()
	g := newGen(2)
	open := func(exact bool, ef ...int) *embedded.Store {
		o := embedded.DefaultOptions(dir)
		o.NoSync = true
		o.ExactThreshold = -1
		if exact {
			o.ExactThreshold = n + 1
		}
		if len(ef) > 0 {
			o.EfSearch = ef[0]
		}
		s, err := embedded.Open(o)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	s := open(false)
	if err := s.EnsureCollection(ctx, "c", dims); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < n; i += 1000 {
		if err := s.Upsert(ctx, "c", records(g, 1000, i)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("built %d vectors in %v", n, time.Since(start))
	s.Close() // writes the graph snapshot
	start = time.Now()
	s = open(false)
	b.Logf("reopen from the graph snapshot: %v", time.Since(start))
	defer s.Close()
	ex := open(true) // same log, exact scan
	defer ex.Close()

	queries := make([][]float32, 200)
	for i := range queries {
		queries[i] = g.vec()
	}
	var lat []time.Duration
	hit, tot := 0, 0
	b.ResetTimer()
	for i := range b.N {
		for _, q := range queries {
			t0 := time.Now()
			hits, err := s.Search(ctx, store.SearchRequest{Collection: "c", Vector: q, TopK: 10})
			lat = append(lat, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if i > 0 {
				continue
			}
			b.StopTimer()
			truth, err := ex.Search(ctx, store.SearchRequest{Collection: "c", Vector: q, TopK: 10})
			if err != nil {
				b.Fatal(err)
			}
			for _, h := range hits {
				if slices.ContainsFunc(truth, func(t store.Hit) bool { return t.ID == h.ID }) {
					hit++
				}
			}
			tot += len(truth)
			b.StartTimer()
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(hit)/float64(tot), "recall@10")

	// The recall/latency trade-off of the search beam, on the same graph.
	b.StopTimer()
	for _, ef := range []int{64, 256} {
		se := open(false, ef)
		var lat []time.Duration
		hit, tot := 0, 0
		for _, q := range queries {
			t0 := time.Now()
			hits, err := se.Search(ctx, store.SearchRequest{Collection: "c", Vector: q, TopK: 10})
			lat = append(lat, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			truth, _ := ex.Search(ctx, store.SearchRequest{Collection: "c", Vector: q, TopK: 10})
			for _, h := range hits {
				if slices.ContainsFunc(truth, func(t store.Hit) bool { return t.ID == h.ID }) {
					hit++
				}
			}
			tot += len(truth)
		}
		se.Close()
		slices.Sort(lat)
		b.Logf("ef %d: p50 %.2f ms, p99 %.2f ms, recall@10 %.4f", ef, float64(lat[len(lat)/2].Microseconds())/1000,
			float64(lat[len(lat)*99/100].Microseconds())/1000, float64(hit)/float64(tot))
	}
}

var reopenN = flag.Int("reopen.n", 20_000, "vectors in BenchmarkEmbeddedReopen's collection")

// BenchmarkEmbeddedReopen reports the time Open takes on a store of
// -reopen.n vectors (default 20,000) on the HNSW path: "snapshot" loads the
// graph snapshot Close wrote; "rebuild" removes it first, so Open rebuilds
// the graph from the log (the path of a missing or unusable snapshot, and
// the only path before snapshots existed).
func BenchmarkEmbeddedReopen(b *testing.B) {
	n := *reopenN
	ctx := context.Background()
	dir := b.TempDir()
	opts := embedded.DefaultOptions(dir)
	opts.NoSync = true
	opts.ExactThreshold = -1
	s, err := embedded.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.EnsureCollection(ctx, "c", dims); err != nil {
		b.Fatal(err)
	}
	g := newGen(3)
	start := time.Now()
	for i := 0; i < n; i += 1000 {
		if err := s.Upsert(ctx, "c", records(g, min(1000, n-i), i)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("built %d vectors in %v", n, time.Since(start))
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"snapshot", "rebuild"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				if mode == "rebuild" {
					snaps, _ := filepath.Glob(filepath.Join(dir, "hnsw-*.snap"))
					for _, f := range snaps {
						if err := os.Remove(f); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StartTimer()
				s, err := embedded.Open(opts)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Close(); err != nil { // rewrites the snapshot after a rebuild
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/open")
		})
	}
}
