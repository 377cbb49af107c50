package index

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/internal/store"
)

// Query is a similarity search: exactly one of Text, Vector and ID.
type Query struct {
	Collection     string
	Text           string
	Vector         []float32
	ID             string
	TopK           int
	Filter         string
	Rescore        bool
	Oversample     int
	Truncate       bool
	IncludeVectors bool
	// Features are the query's feature values on a hybrid collection.
	Features map[string]float64
}

// Hit is one search result.
type Hit struct {
	ID       string
	Score    float32
	Metadata []byte
	Vector   []float32
}

// SearchResult holds hits best first (score descending, ties by id).
type SearchResult struct {
	Collection   string
	ModelVersion string
	Hits         []Hit
	Rescored     bool
}

// Search answers q.
func (x *Index) Search(ctx context.Context, q Query) (*SearchResult, error) {
	h := x.hybrids[q.Collection]
	var c *Collection
	var err error
	if h != nil {
		// Query vectors are validated against the base's dims.
		c = &Collection{Name: h.cfg.Name, Model: h.base.Model, ModelVersion: h.base.ModelVersion, Dims: h.base.Dims}
	} else if c, err = x.collection(q.Collection); err != nil {
		return nil, err
	}
	if err := x.opts.Limits.checkQuery(c, h != nil, q); err != nil {
		return nil, err
	}
	var vec []float32
	if h != nil {
		vec, err = x.hybridQuery(ctx, h, q)
	} else {
		vec, err = x.queryVector(ctx, c, q)
	}
	if err != nil {
		return nil, err
	}
	k := q.TopK
	if q.ID != "" {
		k++ // the item itself is dropped below
	}
	fetch := min(k, store.MaxTopK)
	if q.Rescore {
		fetch = min(k*cmp.Or(q.Oversample, x.opts.Limits.DefaultOversample), store.MaxTopK)
	}
	hits, err := x.opts.Vectors.Search(ctx, store.SearchRequest{Collection: c.Name, Vector: vec, TopK: fetch, Filter: q.Filter})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	if q.ID != "" {
		hits = slices.DeleteFunc(hits, func(h store.Hit) bool { return h.ID == q.ID })
	}
	res := &SearchResult{Collection: c.Name, ModelVersion: c.ModelVersion}
	var vectors map[string][]float32
	if q.Rescore || q.IncludeVectors {
		if vectors, err = x.fetchVectors(ctx, c.Name, hits); err != nil {
			return nil, err
		}
	}
	if q.Rescore {
		hits, res.Rescored = rescore(vec, hits, vectors), true
	}
	hits = hits[:min(len(hits), q.TopK)]
	res.Hits = make([]Hit, len(hits))
	for i, h := range hits {
		res.Hits[i] = Hit{ID: h.ID, Score: h.Score, Metadata: h.Metadata}
		if q.IncludeVectors {
			res.Hits[i].Vector = vectors[h.ID]
		}
	}
	return res, nil
}

// rescore replaces the hits' scores with the exact cosine of vec and their
// stored vectors, drops hits deleted since the search, and orders them
// best first.
func rescore(vec []float32, hits []store.Hit, vectors map[string][]float32) []store.Hit {
	for i := range hits {
		if v, ok := vectors[hits[i].ID]; ok {
			hits[i].Score = quant.Cosine(vec, v)
		} else {
			// Deleted between search and fetch: drop it.
			hits[i].Score = float32(math.Inf(-1))
		}
	}
	hits = slices.DeleteFunc(hits, func(h store.Hit) bool { return math.IsInf(float64(h.Score), -1) })
	slices.SortFunc(hits, func(a, b store.Hit) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.ID, b.ID))
	})
	return hits
}

// queryVector returns the vector q searches c with: its own, the stored
// one of its id, or the embedding of its text.
func (x *Index) queryVector(ctx context.Context, c *Collection, q Query) ([]float32, error) {
	switch {
	case len(q.Vector) > 0:
		return q.Vector, nil
	case q.ID != "":
		recs, err := x.opts.Vectors.Get(ctx, c.Name, []string{q.ID})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("%w: id %q in collection %q", ErrNotFound, q.ID, c.Name)
		}
		return recs[0].Vector, nil
	}
	res, err := x.emb.Embed(ctx, c.Model, []string{q.Text}, engine.EmbedOptions{Truncate: q.Truncate})
	if err != nil {
		return nil, err
	}
	return res.Vectors[0], nil
}

func (x *Index) fetchVectors(ctx context.Context, coll string, hits []store.Hit) (map[string][]float32, error) {
	if len(hits) == 0 {
		return nil, nil
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	recs, err := x.opts.Vectors.Get(ctx, coll, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	out := make(map[string][]float32, len(recs))
	for _, r := range recs {
		out[r.ID] = r.Vector
	}
	return out, nil
}
