package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/embedcache"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/testassets"
)

func withCache(n int64) func(*engine.Options) {
	return func(o *engine.Options) { o.CacheBytes = n }
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func cacheStats(t testing.TB, e *engine.Engine, model string) embedcache.Stats {
	t.Helper()
	for _, s := range e.CacheStats() {
		if s.Model == model {
			return s
		}
	}
	return embedcache.Stats{Model: model}
}

// TestCacheServesComputedBits: with the cache on, a repeated call returns,
// bit for bit, the vectors and token counts computed the first time, for
// every combination of options; each option combination is computed once
// and matches an engine without a cache.
func TestCacheServesComputedBits(t *testing.T) {
	const name = "all-minilm-l6-v2"
	texts := testassets.ReadTexts(t, "testdata/parity/texts.jsonl")[:24]
	cached := newEngine(t, withCache(64<<20))
	plain := newEngine(t, nil)
	loadModel(t, cached, name)
	ctx := context.Background()
	no := false
	variants := []struct {
		name string
		o    engine.EmbedOptions
	}{
		{"default", engine.EmbedOptions{Truncate: true}},
		{"dims 128", engine.EmbedOptions{Truncate: true, Dimensions: 128}},
		{"no normalize", engine.EmbedOptions{Truncate: true, Normalize: &no}},
		{"dims 64 no normalize", engine.EmbedOptions{Truncate: true, Dimensions: 64, Normalize: &no}},
	}
	first := make([]*engine.Result, len(variants))
	for i, v := range variants {
		res, err := cached.Embed(ctx, name, texts, v.o)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		want, err := plain.Embed(ctx, name, texts, v.o)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		for k := range texts {
			if len(res.Vectors[k]) != len(want.Vectors[k]) || res.Tokens[k] != want.Tokens[k] {
				t.Fatalf("%s: texts[%d]: %d dims, %d tokens; want %d, %d", v.name, k, len(res.Vectors[k]), res.Tokens[k], len(want.Vectors[k]), want.Tokens[k])
			}
			for d := range res.Vectors[k] {
				if diff := math.Abs(float64(res.Vectors[k][d] - want.Vectors[k][d])); diff > parityMaxAbs {
					t.Fatalf("%s: texts[%d][%d]: %v; want %v without a cache", v.name, k, d, res.Vectors[k][d], want.Vectors[k][d])
				}
			}
		}
		first[i] = res
	}
	if s := cacheStats(t, cached, name); s.Misses != uint64(len(variants)*len(texts)) || s.Hits != 0 {
		t.Fatalf("after the first calls: %+v; want %d misses, no hits", s, len(variants)*len(texts))
	}
	for i, v := range variants {
		res, err := cached.Embed(ctx, name, texts, v.o)
		if err != nil {
			t.Fatalf("%s again: %v", v.name, err)
		}
		if res.Version != first[i].Version || res.Model != name {
			t.Errorf("%s again: model %s version %s; want %s %s", v.name, res.Model, res.Version, name, first[i].Version)
		}
		for k := range texts {
			if !sameBits(res.Vectors[k], first[i].Vectors[k]) || res.Tokens[k] != first[i].Tokens[k] {
				t.Errorf("%s again: texts[%d] differs from the computed vector", v.name, k)
			}
		}
		// The caller owns its vectors: changing them does not change the cache.
		res.Vectors[0][0] = 42
	}
	s := cacheStats(t, cached, name)
	if s.Hits != uint64(len(variants)*len(texts)) || s.Misses != uint64(len(variants)*len(texts)) {
		t.Errorf("after the repeats: %+v; want %d hits and as many misses", s, len(variants)*len(texts))
	}
	if s.Bytes <= 0 || s.Entries != int64(len(variants)*len(texts)) {
		t.Errorf("after the repeats: %+v; want %d entries of positive bytes", s, len(variants)*len(texts))
	}
	res, err := cached.Embed(ctx, name, texts[:1], variants[0].o)
	if err != nil {
		t.Fatal(err)
	}
	if !sameBits(res.Vectors[0], first[0].Vectors[0]) {
		t.Errorf("a caller's change to a returned vector reached the cache")
	}
}

// TestCacheMixedCall: a call of cached and new texts computes only the new
// ones and returns all in order; a bad text is reported at its index in
// the call, and nothing of a call with a bad text is computed.
func TestCacheMixedCall(t *testing.T) {
	const name = "all-minilm-l6-v2"
	e := newEngine(t, withCache(64<<20))
	m := loadModel(t, e, name)
	ctx := context.Background()
	o := engine.EmbedOptions{}
	a, err := m.Embed(ctx, []string{"alpha", "beta"}, o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Embed(ctx, []string{"gamma", "beta", "alpha", "gamma"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !sameBits(res.Vectors[1], a.Vectors[1]) || !sameBits(res.Vectors[2], a.Vectors[0]) || !sameBits(res.Vectors[3], res.Vectors[0]) {
		t.Errorf("results out of order or not the cached bits")
	}
	if sameBits(res.Vectors[0], a.Vectors[0]) {
		t.Errorf("gamma got alpha's vector")
	}
	if s := cacheStats(t, e, name); s.Misses != 3 || s.Hits != 3 {
		t.Errorf("stats: %+v; want 3 misses (alpha, beta, gamma once) and 3 hits", s)
	}

	long := strings.Repeat("word ", 400)
	_, err = m.Embed(ctx, []string{"alpha", "delta", long, "beta", long}, o)
	var ie *engine.InputError
	if !errors.As(err, &ie) || len(ie.Items) != 2 || ie.Items[0].Index != 2 || ie.Items[1].Index != 4 {
		t.Fatalf("got %v; want an InputError naming texts[2] and texts[4]", err)
	}
	if s := cacheStats(t, e, name); s.Misses != 3 {
		t.Errorf("a call with bad texts computed some: %+v; want 3 misses still", s)
	}
	if _, err := m.Embed(ctx, nil, o); !errors.Is(err, engine.ErrInvalidInput) {
		t.Errorf("no texts: got %v; want ErrInvalidInput", err)
	}
}

// TestCacheConcurrentSameText: callers embedding one text at once share
// one computation.
func TestCacheConcurrentSameText(t *testing.T) {
	const name = "all-minilm-l6-v2"
	e := newEngine(t, withCache(64<<20))
	m := loadModel(t, e, name)
	const n = 16
	var wg sync.WaitGroup
	results := make([]*engine.Result, n)
	errs := make([]error, n)
	for g := range n {
		wg.Go(func() {
			results[g], errs[g] = m.Embed(context.Background(), []string{"one text for all"}, engine.EmbedOptions{})
		})
	}
	wg.Wait()
	for g := range n {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		if !sameBits(results[g].Vectors[0], results[0].Vectors[0]) {
			t.Errorf("caller %d got other bits", g)
		}
	}
	if s := cacheStats(t, e, name); s.Misses != 1 || s.Hits != n-1 {
		t.Errorf("stats: %+v; want 1 miss, %d hits", s, n-1)
	}
}

// benchText is the i-th distinct text of the benchmark's corpus: a short
// sentence (about 16 tokens).
func benchText(i int) string {
	words := benchWords
	var b strings.Builder
	fmt.Fprintf(&b, "note %d:", i)
	for j := range 10 {
		b.WriteByte(' ')
		b.WriteString(words[(i/(j+1)+j*7)%len(words)])
	}
	return b.String()
}

var benchWords = strings.Fields(`the quick brown fox jumps over a lazy dog while embedd turns text
into vectors fast and every request names a model with options for dimensions
truncation normalization priority batching cache search index store feature`)

// BenchmarkEmbedCache compares throughput with and without the cache on two
// workloads: unique (no text repeats: the cache's pure overhead) and zipf
// (texts drawn from 100,000 by a Zipf law, s=1.1, as popular queries are).
// An engine with the cache and one without run the same texts in the same
// order, in alternating rounds (the order flipped each round), so that a
// shared machine's changing load falls on both alike. A round is 16 calls of
// 8 texts from 8 callers at once, so the batcher forms batches. The zipf
// runs start after 2,000 draws of warm-up, about a second of serving on a
// 2-core machine. Reported: texts/s of each, overhead-% (unique: how much
// slower with the cache) or speedup-x (zipf), and the hit rate.
func BenchmarkEmbedCache(b *testing.B) {
	const (
		name     = "all-minilm-l6-v2"
		perCall  = 8
		callers  = 8
		calls    = 16 // per round and side
		distinct = 100_000
		zipfS    = 1.1
	)
	for _, w := range []string{"unique", "zipf"} {
		b.Run("workload="+w, func(b *testing.B) {
			type side struct {
				m    *engine.Model
				e    *engine.Engine
				next []func() string // one text source per caller
				took time.Duration
			}
			newSide := func(cacheBytes int64) *side {
				e := newEngine(b, func(o *engine.Options) {
					withCache(cacheBytes)(o)
					o.Logger = slog.New(slog.DiscardHandler) // go test puts logs between the benchmark lines
				})
				s := &side{e: e, m: loadModel(b, e, name)}
				var unique atomic.Int64
				for c := range callers {
					if w == "unique" {
						s.next = append(s.next, func() string { return benchText(int(unique.Add(1)) + distinct) })
						continue
					}
					z := rand.NewZipf(rand.New(rand.NewPCG(uint64(c), 1)), zipfS, 1, distinct-1)
					s.next = append(s.next, func() string { return benchText(int(z.Uint64())) })
				}
				return s
			}
			// round runs n calls per caller on s and returns how long they took.
			round := func(s *side, n int) time.Duration {
				start := time.Now()
				var wg sync.WaitGroup
				for c := range callers {
					wg.Go(func() {
						for range n {
							texts := make([]string, perCall)
							for i := range texts {
								texts[i] = s.next[c]()
							}
							if _, err := s.m.Embed(context.Background(), texts, engine.EmbedOptions{Truncate: true}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				return time.Since(start)
			}
			off, on := newSide(0), newSide(engine.DefaultCacheBytes)
			warm := 1
			if w == "zipf" {
				warm = 2000 / (callers * perCall)
			}
			for _, s := range []*side{off, on} {
				round(s, warm)
			}
			before := cacheStats(b, on.e, name)
			b.ResetTimer()
			flip := false
			for b.Loop() {
				first, second := off, on
				if flip {
					first, second = on, off
				}
				flip = !flip
				first.took += round(first, calls/callers)
				second.took += round(second, calls/callers)
			}
			texts := float64(b.N * calls * perCall)
			b.ReportMetric(texts/off.took.Seconds(), "texts/s-off")
			b.ReportMetric(texts/on.took.Seconds(), "texts/s-on")
			if w == "unique" {
				b.ReportMetric(100*(on.took.Seconds()/off.took.Seconds()-1), "overhead-%")
			} else {
				b.ReportMetric(off.took.Seconds()/on.took.Seconds(), "speedup-x")
			}
			s := cacheStats(b, on.e, name)
			hits, misses := s.Hits-before.Hits, s.Misses-before.Misses
			b.ReportMetric(float64(hits)/float64(max(hits+misses, 1)), "hit-rate")
		})
	}
}
