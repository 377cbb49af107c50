package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedd/embedd/internal/embedcache"
)

// The embedding cache's series (see internal/embedcache), read from its
// counters at each scrape:
//
//	embed_cache_hits_total{model}        texts served without computing them (cached, or computed by a concurrent call)
//	embed_cache_misses_total{model}      texts computed and cached
//	embed_cache_evictions_total{model}   entries dropped to stay within the byte bound
//	embed_cache_bytes{model}             bytes the model's entries count against the bound
//
// The model label is a loaded model's name: bounded by the catalog.

// CacheStatsFunc reads the embedding cache's counters, e.g.
// (*engine.Engine).CacheStats.
type CacheStatsFunc func() []embedcache.Stats

// embedCacheCollector reports a CacheStatsFunc's answer at each scrape.
type embedCacheCollector struct {
	read                          CacheStatsFunc
	hits, misses, evictions, size *prometheus.Desc
}

// RegisterEmbedCache registers the embedd_embed_cache_* series on reg, read
// with read at each scrape. A nil read (no cache) registers nothing.
func RegisterEmbedCache(reg prometheus.Registerer, read CacheStatsFunc) error {
	if read == nil {
		return nil
	}
	model := []string{"model"}
	return reg.Register(&embedCacheCollector{
		read:      read,
		hits:      prometheus.NewDesc("embedd_embed_cache_hits_total", "Texts the embedding cache served without computing them for the request: cached, or computed by a concurrent request.", model, nil),
		misses:    prometheus.NewDesc("embedd_embed_cache_misses_total", "Texts computed and put in the embedding cache.", model, nil),
		evictions: prometheus.NewDesc("embedd_embed_cache_evictions_total", "Embedding cache entries dropped to stay within the byte bound.", model, nil),
		size:      prometheus.NewDesc("embedd_embed_cache_bytes", "Bytes the model's embedding cache entries (text, key and vector) count against the bound.", model, nil),
	})
}

func (c *embedCacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.hits
	ch <- c.misses
	ch <- c.evictions
	ch <- c.size
}

func (c *embedCacheCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(s.Hits), s.Model)
		ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(s.Misses), s.Model)
		ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(s.Evictions), s.Model)
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.Bytes), s.Model)
	}
}
