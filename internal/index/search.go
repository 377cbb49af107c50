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
	Collection string
	// Version is the collection version searched ("" for a hybrid
	// collection).
	Version      string
	ModelVersion string
	Hits         []Hit
	Rescored     bool
}

// Search answers q on the live version of its collection (a hybrid
// collection is not versioned); a text query is embedded with that
// version's bound model.
func (x *Index) Search(ctx context.Context, q Query) (*SearchResult, error) {
	if h := x.hybrids[q.Collection]; h != nil {
		// Query vectors are validated against the base's dims.
		t := target{Collection: Collection{Name: h.cfg.Name, Model: h.base.Model, ModelVersion: h.base.ModelVersion, Dims: h.base.Dims}}
		if err := x.opts.Limits.checkQuery(&t.Collection, true, q); err != nil {
			return nil, err
		}
		vec, err := x.hybridQuery(ctx, h, q)
		if err != nil {
			return nil, err
		}
		return x.search(ctx, t, q, vec)
	}
	c, err := x.collection(q.Collection)
	if err != nil {
		return nil, err
	}
	var res *SearchResult
	err = x.withLive(ctx, c, func(t target) error {
		if err := x.opts.Limits.checkQuery(&t.Collection, false, q); err != nil {
			return err
		}
		vec, err := x.queryVector(ctx, t, q)
		if err == nil {
			res, err = x.search(ctx, t, q, vec)
		}
		return err
	})
	return res, err
}

// search runs the vector search of q with vec on t (its version; a hybrid
// collection's when t.Version is "") and builds the result.
func (x *Index) search(ctx context.Context, t target, q Query, vec []float32) (*SearchResult, error) {
	k := q.TopK
	if q.ID != "" {
		k++ // the item itself is dropped below
	}
	fetch := min(k, store.MaxTopK)
	if q.Rescore {
		fetch = min(k*cmp.Or(q.Oversample, x.opts.Limits.DefaultOversample), store.MaxTopK)
	}
	req := store.SearchRequest{Collection: t.Name, Vector: vec, TopK: fetch, Filter: q.Filter}
	var hits []store.Hit
	var err error
	if t.Version == "" {
		hits, err = x.opts.Vectors.Search(ctx, req)
	} else {
		hits, err = x.vs.SearchVersion(ctx, t.Name, t.Version, req)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	if q.ID != "" {
		hits = slices.DeleteFunc(hits, func(h store.Hit) bool { return h.ID == q.ID })
	}
	res := &SearchResult{Collection: t.Name, Version: t.Version, ModelVersion: t.ModelVersion}
	var vectors map[string][]float32
	if q.Rescore || q.IncludeVectors {
		if vectors, err = x.fetchVectors(ctx, t, hits); err != nil {
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

// queryVector returns the vector q searches t with: its own, the stored
// one of its id, or the embedding of its text by t's bound model.
func (x *Index) queryVector(ctx context.Context, t target, q Query) ([]float32, error) {
	switch {
	case len(q.Vector) > 0:
		return q.Vector, nil
	case q.ID != "":
		recs, err := x.vs.GetVersion(ctx, t.Name, t.Version, []string{q.ID})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("%w: id %q in collection %q", ErrNotFound, q.ID, t.Name)
		}
		return recs[0].Vector, nil
	}
	model, err := t.embedModel("search with a vector")
	if err != nil {
		return nil, err
	}
	res, err := x.emb.Embed(ctx, model, []string{q.Text}, engine.EmbedOptions{Truncate: q.Truncate})
	if err != nil {
		return nil, err
	}
	return res.Vectors[0], nil
}

// fetchVectors reads the stored vectors of hits from t (its version; a
// hybrid collection's when t.Version is "").
func (x *Index) fetchVectors(ctx context.Context, t target, hits []store.Hit) (map[string][]float32, error) {
	if len(hits) == 0 {
		return nil, nil
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	var recs []store.Record
	var err error
	if t.Version == "" {
		recs, err = x.opts.Vectors.Get(ctx, t.Name, ids)
	} else {
		recs, err = x.vs.GetVersion(ctx, t.Name, t.Version, ids)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	out := make(map[string][]float32, len(recs))
	for _, r := range recs {
		out[r.ID] = r.Vector
	}
	return out, nil
}
