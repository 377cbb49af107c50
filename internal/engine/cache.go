package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/embedcache"
	"github.com/embedd/embedd/internal/manifest"
)

// DefaultCacheBytes is the cache bound `embedd serve` uses unless told
// otherwise: 256 MiB, about 150,000 cached 384-dimension vectors of short
// texts. Serving has the cache on by default because it costs less than the
// 3% of throughput that issue 12 allows on a workload that never repeats a
// text (BenchmarkEmbedCache measures it).
const DefaultCacheBytes = 256 << 20

// newCache returns the engine's cache, or nil for a bound <= 0.
func newCache(maxBytes int64) *embedcache.Cache {
	if maxBytes <= 0 {
		return nil
	}
	c, err := embedcache.New(embedcache.Options{MaxBytes: maxBytes})
	if err != nil {
		panic(err) // embedcache.New fails only for a bound <= 0
	}
	return c
}

// cacheVersion is the Key.Version of a model's cache entries: the manifest
// version, and a digest of the whole manifest (the sha256 of each file: the
// weights, the graph, the tokenizer; pooling, window, inputs and outputs)
// and of the backend (devices round differently). A model whose files or
// settings change gets other keys even if its version string did not.
func cacheVersion(man *manifest.Model, backend string) string {
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(man); err != nil {
		panic(err) // a manifest.Model is plain data
	}
	h.Write([]byte(backend))
	return man.Version + "/" + hex.EncodeToString(h.Sum(nil)[:8])
}

// embedCached is Embed with the cache: texts cached under this model
// version and these options are copied from it; the others are validated
// and tokenized (a bad one fails the call, naming every bad index, before
// anything is computed), then computed in one batcher call, except those
// another call is computing, which are waited for. A waiter with Online
// priority may so wait for a Bulk call's computation of its text.
//
// Hits are not counted by the batch observer (texts_total, tokens_total):
// the model did not run for them; the cache's Stats count them.
func (m *Model) embedCached(ctx context.Context, texts []string, o EmbedOptions, dims int, normalize bool) (*Result, error) {
	if err := m.checkCount(texts); err != nil {
		return nil, err
	}
	keys := make([]embedcache.Key, len(texts))
	for i, t := range texts {
		keys[i] = embedcache.Key{Model: m.man.Name, Version: m.cacheVersion, Dims: dims, Normalize: normalize, Truncate: o.Truncate, Text: t}
	}
	vals := make([]embedcache.Value, len(texts))
	if miss := m.cache.Lookup(keys, vals); len(miss) > 0 {
		toks, err := m.tokenizeAt(texts, miss, o.Truncate)
		if err != nil {
			return nil, err
		}
		compute := func(ctx context.Context, idx []int) ([]embedcache.Value, error) {
			in := make([]Tokenized, len(idx))
			for j, i := range idx {
				in[j] = toks[i]
			}
			vecs, counts, err := m.compute(ctx, in, o.Priority, dims, normalize)
			if ie := (*batch.ItemError)(nil); errors.As(err, &ie) {
				err = &batch.ItemError{Index: idx[ie.Index], Err: ie.Err} // index into texts
			}
			if err != nil {
				return nil, err
			}
			out := make([]embedcache.Value, len(idx))
			for j := range out {
				out[j] = embedcache.Value{Vec: vecs[j], Tokens: counts[j]}
			}
			return out, nil
		}
		if err := m.cache.Fill(ctx, keys, vals, miss, compute); err != nil {
			return nil, err
		}
	}
	res := &Result{Model: m.man.Name, Version: m.man.Version, Vectors: make([][]float32, len(texts)), Tokens: make([]int, len(texts))}
	for i, v := range vals {
		res.Vectors[i], res.Tokens[i] = v.Vec, v.Tokens
	}
	return res, nil
}

// tokenizeAt validates and tokenizes texts[i] for each i in at; the result
// is indexed like texts (the others left empty), and an *InputError names
// indices of texts.
func (m *Model) tokenizeAt(texts []string, at []int, truncate bool) ([]Tokenized, error) {
	sub := make([]string, len(at))
	for j, i := range at {
		sub[j] = texts[i]
	}
	toks, err := m.Tokenize(sub, truncate)
	if ie := (*InputError)(nil); errors.As(err, &ie) {
		items := make([]*ItemError, len(ie.Items))
		for j, it := range ie.Items {
			items[j] = &ItemError{Index: at[it.Index], Err: it.Err}
		}
		return nil, &InputError{Items: items}
	}
	if err != nil {
		return nil, err
	}
	out := make([]Tokenized, len(texts))
	for j, i := range at {
		out[i] = toks[j]
	}
	return out, nil
}

// CacheStats reports the embedding cache's counters by model, or nil when
// the engine has no cache.
func (e *Engine) CacheStats() []embedcache.Stats {
	if e.cache == nil {
		return nil
	}
	return e.cache.Stats()
}
