// Command milvus measures the Milvus vector store (internal/store/milvus)
// against a running server (scripts/milvus.sh start): upsert throughput in
// batches, search latency percentiles for top-k, and recall@k of the ANN
// index against exact (brute-force) search computed here in Go.
//
// The data are n unit vectors with the structure of text embeddings
// (bench/internal/synth: 32 latent factors plus noise, seeded) and the
// queries fresh vectors from the same distribution; -data random uses
// i.i.d. Gaussian vectors instead, which have no neighbourhood structure
// and make any ANN index look bad (a lower bound).
//
//	scripts/milvus.sh start
//	go run ./bench/stores/milvus -n 100000 -dims 384 -batch 256 -queries 500
//	scripts/milvus.sh stop
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/embedd/embedd/bench/internal/synth"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/milvus"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:19530", "Milvus gRPC address")
	n := flag.Int("n", 100_000, "vectors to upsert")
	dims := flag.Int("dims", 384, "dimensions")
	batch := flag.Int("batch", 256, "records per upsert")
	queries := flag.Int("queries", 500, "search queries (latency and recall)")
	k := flag.Int("k", 10, "top k")
	index := flag.String("index", milvus.IndexHNSW, "HNSW or IVF_SQ8")
	ef := flag.Int("ef", 0, "HNSW ef at search (0: default 64)")
	consistency := flag.String("consistency", "Strong,Bounded", "read consistency levels to measure, comma-separated: Strong, Session, Bounded")
	keep := flag.Bool("keep", false, "keep the collection afterwards")
	data := flag.String("data", "clustered", "clustered (embedding-like) or random")
	flag.Parse()
	if err := run(*addr, *n, *dims, *batch, *queries, *k, *index, *ef, *consistency, *keep, *data); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, n, dims, batch, queries, k int, index string, ef int, consistency string, keep bool, kind string) error {
	ctx := context.Background()
	opts := milvus.Options{Address: addr, Index: index, HNSWEf: ef, Consistency: milvus.ConsistencyBounded}
	s, err := milvus.New(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	name := fmt.Sprintf("bench_%d_%d", dims, time.Now().UnixNano())
	if err := s.EnsureCollection(ctx, name, dims); err != nil {
		return err
	}
	if !keep {
		defer s.Drop(context.Background(), name)
	}

	rng := rand.New(rand.NewPCG(42, uint64(dims)))
	gen := synth.New(42, dims, 32, 0.5)
	next := gen.Unit
	switch kind {
	case "random":
		next = func() []float32 { return unit(rng, dims) }
	case "clustered":
	default:
		return fmt.Errorf("-data %q: want clustered or random", kind)
	}
	data := make([][]float32, n)
	for i := range data {
		data[i] = next()
	}

	// Upsert throughput, one batch at a time (the pipeline's shape).
	start := time.Now()
	recs := make([]store.Record, 0, batch)
	for i := 0; i < n; i += batch {
		recs = recs[:0]
		for j := i; j < min(i+batch, n); j++ {
			recs = append(recs, store.Record{ID: fmt.Sprintf("id%07d", j), Vector: data[j], ModelVersion: "bench"})
		}
		if err := s.Upsert(ctx, name, recs); err != nil {
			return fmt.Errorf("upsert at %d: %w", i, err)
		}
	}
	upsert := time.Since(start)
	fmt.Printf("milvus %s, n=%d dims=%d batch=%d index=%s ef=%d data=%s\n", addr, n, dims, batch, index, ef, kind)
	fmt.Printf("upsert: %.1fs, %.0f vectors/s (%.1f ms/batch)\n",
		upsert.Seconds(), float64(n)/upsert.Seconds(), upsert.Seconds()*1000/float64((n+batch-1)/batch))
	start = time.Now()
	if err := s.Flush(ctx, name); err != nil {
		return err
	}
	fmt.Printf("flush + index build: %.1fs\n", time.Since(start).Seconds())

	qs := make([][]float32, queries)
	for i := range qs {
		qs[i] = next()
	}
	exact := bruteForce(data, qs, k)

	for _, cl := range splitComma(consistency) {
		o := opts
		o.Consistency = cl
		sc, err := milvus.New(ctx, o)
		if err != nil {
			return err
		}
		// Warm up outside the measurement.
		for i := range min(20, queries) {
			if _, err := sc.Search(ctx, store.SearchRequest{Collection: name, Vector: qs[i], TopK: k}); err != nil {
				return err
			}
		}
		lat := make([]time.Duration, queries)
		var hit int
		for i, q := range qs {
			t0 := time.Now()
			hits, err := sc.Search(ctx, store.SearchRequest{Collection: name, Vector: q, TopK: k})
			lat[i] = time.Since(t0)
			if err != nil {
				return err
			}
			for _, h := range hits {
				if slices.Contains(exact[i], h.ID) {
					hit++
				}
			}
		}
		sc.Close()
		slices.Sort(lat)
		fmt.Printf("search top-%d, consistency %s, %d sequential queries: p50 %.2f ms, p99 %.2f ms, max %.2f ms; recall@%d %.4f\n",
			k, cl, queries, ms(pct(lat, 0.50)), ms(pct(lat, 0.99)), ms(lat[len(lat)-1]), k, float64(hit)/float64(queries*k))
	}
	return nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func unit(rng *rand.Rand, dims int) []float32 {
	v := make([]float32, dims)
	var n float64
	for i := range v {
		v[i] = float32(rng.NormFloat64())
		n += float64(v[i]) * float64(v[i])
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

// bruteForce returns the ids of the exact top k by inner product (= cosine
// for unit vectors) for each query, ties by id, in parallel over queries.
func bruteForce(data, qs [][]float32, k int) [][]string {
	out := make([][]string, len(qs))
	type cand struct {
		i     int
		score float32
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for qi := range work {
				q := qs[qi]
				top := make([]cand, 0, k+1)
				for i, v := range data {
					var d float32
					for j := range v {
						d += v[j] * q[j]
					}
					if len(top) == k && d <= top[k-1].score {
						continue
					}
					top = append(top, cand{i, d})
					slices.SortFunc(top, func(a, b cand) int { return cmp.Compare(b.score, a.score) })
					if len(top) > k {
						top = top[:k]
					}
				}
				ids := make([]string, len(top))
				for j, c := range top {
					ids[j] = fmt.Sprintf("id%07d", c.i)
				}
				out[qi] = ids
			}
		})
	}
	for i := range qs {
		work <- i
	}
	close(work)
	wg.Wait()
	return out
}
