package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/embedd/embedd/internal/embedcache"
)

func TestEmbedCache(t *testing.T) {
	// No cache: no series.
	reg := prometheus.NewRegistry()
	if err := RegisterEmbedCache(reg, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("no cache: %d series (%v); want none", n, err)
	}

	reg = prometheus.NewRegistry()
	stats := []embedcache.Stats{{Model: "a", Hits: 7, Misses: 3, Evictions: 1, Bytes: 4096, Entries: 2}}
	if err := RegisterEmbedCache(reg, func() []embedcache.Stats { return stats }); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP embedd_embed_cache_bytes Bytes the model's embedding cache entries (text, key and vector) count against the bound.
# TYPE embedd_embed_cache_bytes gauge
embedd_embed_cache_bytes{model="a"} 4096
# HELP embedd_embed_cache_evictions_total Embedding cache entries dropped to stay within the byte bound.
# TYPE embedd_embed_cache_evictions_total counter
embedd_embed_cache_evictions_total{model="a"} 1
# HELP embedd_embed_cache_hits_total Texts the embedding cache served without computing them for the request: cached, or computed by a concurrent request.
# TYPE embedd_embed_cache_hits_total counter
embedd_embed_cache_hits_total{model="a"} 7
# HELP embedd_embed_cache_misses_total Texts computed and put in the embedding cache.
# TYPE embedd_embed_cache_misses_total counter
embedd_embed_cache_misses_total{model="a"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// Read at each scrape.
	stats[0].Hits = 9
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(want, `hits_total{model="a"} 7`, `hits_total{model="a"} 9`, 1))); err != nil {
		t.Error(err)
	}
}
