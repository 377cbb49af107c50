package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/embedd/embedd/internal/features/hybrid"
	"github.com/embedd/embedd/internal/fsutil"
	"github.com/embedd/embedd/internal/store"
)

// Hybrid collections hold an entity's embedding (from a base collection)
// merged with its numeric features by package hybrid: per-feature running
// standardization, weights, and alpha, the weight of feature similarity in
// the score, dot(h_a, h_b) = (1-alpha) cos(e_a, e_b) + alpha cos(f_a, f_b).
//
// UpsertHybrid builds the vectors of ids from the base collection's stored
// vectors and the features' current values (FeatureSource) and writes them
// to the hybrid collection (vector store only). Search on a hybrid
// collection embeds the text (base model) or takes the vector or the base
// vector of the id, merges it with the request's feature values (or, for an
// id without them, that entity's current values) and searches the hybrid
// collection.
//
// Standardization statistics: the standardizer learns from the values of
// the first FreezeAfter entities upserted, then freezes, so every vector
// written after that uses one statistics version (reported with each write
// and stored as the record's model version). Its snapshot is kept in
// SnapshotDir and restored at start, so restarts and replicas sharing the
// file agree. Vectors written before the freeze carry an older version; to
// align them, upsert them again.

// FeatureSource returns current feature values: one map per id (nil when
// the entity is unknown), null values left out.
type FeatureSource interface {
	FeatureValues(ctx context.Context, ids []string, names []string) ([]map[string]float64, error)
}

// HybridConfig declares one hybrid collection.
type HybridConfig struct {
	Name string
	// Base is the collection whose vectors are merged.
	Base string
	// Features, Weights and Alpha as in hybrid.Spec (Dims comes from Base).
	Features []string
	Weights  map[string]float64
	Alpha    float64
	// FreezeAfter is the number of entities whose values fit the
	// standardizer before it freezes. Default 1000.
	FreezeAfter int
}

type hybridColl struct {
	cfg    HybridConfig
	base   *Collection
	std    *hybrid.Standardizer
	merger *hybrid.Merger
	snap   string // snapshot file, "" for none
	mu     sync.Mutex
}

func (x *Index) setupHybrid(ctx context.Context, cfg HybridConfig) error {
	if err := validCollectionName(cfg.Name); err != nil {
		return err
	}
	if _, dup := x.colls[cfg.Name]; dup {
		return fmt.Errorf("%w: hybrid collection %q is also a plain collection", ErrInvalid, cfg.Name)
	}
	base, ok := x.colls[cfg.Base]
	if !ok {
		return fmt.Errorf("%w: hybrid collection %q: base %q is not a configured collection", ErrInvalid, cfg.Name, cfg.Base)
	}
	if cfg.FreezeAfter <= 0 {
		cfg.FreezeAfter = 1000
	}
	h := &hybridColl{cfg: cfg, base: base}
	if x.opts.SnapshotDir != "" {
		h.snap = filepath.Join(x.opts.SnapshotDir, "hybrid-"+cfg.Name+".json")
	}
	var err error
	if h.std, err = loadStandardizer(h.snap, cfg.Features); err != nil {
		return fmt.Errorf("hybrid collection %q: %w", cfg.Name, err)
	}
	spec := hybrid.Spec{Features: cfg.Features, Weights: cfg.Weights, Alpha: cfg.Alpha, Dims: base.Dims}
	if h.merger, err = hybrid.New(spec, h.std); err != nil {
		return fmt.Errorf("hybrid collection %q: %w", cfg.Name, err)
	}
	if err := x.opts.Vectors.EnsureCollection(ctx, cfg.Name, h.merger.Dims()); err != nil {
		return fmt.Errorf("hybrid collection %q: %s: %w", cfg.Name, x.opts.VectorsName, err)
	}
	x.hybrids[cfg.Name] = h
	return nil
}

func loadStandardizer(path string, features []string) (*hybrid.Standardizer, error) {
	std, err := hybrid.NewStandardizer(features)
	if err != nil || path == "" {
		return std, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return std, nil
	}
	if err != nil {
		return nil, err
	}
	var snap hybrid.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := std.Restore(snap); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return std, nil
}

func (h *hybridColl) save() error {
	if h.snap == "" {
		return nil
	}
	b, err := json.MarshalIndent(h.std.Snapshot(), "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(h.snap, b, 0o600)
}

// HybridResult reports an UpsertHybrid.
type HybridResult struct {
	Upserted int
	// NotFound lists ids absent from the base collection (not written).
	NotFound []string
	// MissingFeatures lists, per written id, the features it had no value
	// for (taken as the mean).
	MissingFeatures map[string][]string
	StatsVersion    string
	Frozen          bool
	Queued          bool
}

// UpsertHybrid (re)builds the hybrid vectors of ids.
func (x *Index) UpsertHybrid(ctx context.Context, collection string, ids []string) (*HybridResult, error) {
	h, ok := x.hybrids[collection]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a hybrid collection", ErrUnknownCollection, collection)
	}
	if x.opts.Features == nil {
		return nil, ErrNoFeatures
	}
	if err := x.opts.Limits.checkIDs(ids); err != nil {
		return nil, err
	}
	ids = dedup(ids)
	recs, err := x.opts.Vectors.Get(ctx, h.base.Name, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	found := make(map[string]bool, len(recs))
	fids := make([]string, len(recs))
	for i, r := range recs {
		found[r.ID] = true
		fids[i] = r.ID
	}
	res := &HybridResult{MissingFeatures: map[string][]string{}}
	for _, id := range ids {
		if !found[id] {
			res.NotFound = append(res.NotFound, id)
		}
	}
	if len(recs) == 0 {
		return res, nil
	}
	vals, err := x.opts.Features.FeatureValues(ctx, fids, h.cfg.Features)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	h.mu.Lock()
	if !h.std.Frozen() {
		for _, v := range vals {
			if len(v) > 0 {
				if err := h.std.Observe(v); err != nil {
					h.mu.Unlock()
					return nil, err
				}
			}
		}
		if n, _, _, _ := h.std.Stat(h.cfg.Features[0]); n >= int64(h.cfg.FreezeAfter) {
			h.std.Freeze()
		}
		if err := h.save(); err != nil {
			h.mu.Unlock()
			return nil, fmt.Errorf("hybrid snapshot: %w", err)
		}
	}
	h.mu.Unlock()
	out := make([]store.Record, len(recs))
	for i, r := range recs {
		v, err := h.merger.Merge(r.Vector, vals[i])
		if err != nil {
			return nil, fmt.Errorf("%w: ids %q: %v", ErrInvalid, r.ID, err)
		}
		if len(v.Missing) > 0 {
			res.MissingFeatures[r.ID] = v.Missing
		}
		res.StatsVersion = v.StatsVersion
		out[i] = store.Record{ID: r.ID, Vector: v.Values, Metadata: r.Metadata, ModelVersion: r.ModelVersion + "+stats:" + v.StatsVersion, UpdatedAt: x.opts.Now()}
	}
	if err := x.opts.Vectors.Upsert(ctx, h.cfg.Name, out); err != nil {
		return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	res.Upserted, res.Frozen = len(out), h.std.Frozen()
	return res, nil
}

// hybridQuery builds the query vector of q, validated against the base's
// dims, on hybrid collection h.
func (x *Index) hybridQuery(ctx context.Context, h *hybridColl, q Query) ([]float32, error) {
	var emb []float32
	switch {
	case len(q.Vector) > 0:
		emb = q.Vector
	default:
		bq := q
		bq.Collection = h.base.Name
		err := x.withLive(ctx, h.base, func(t target) error {
			var err error
			emb, err = x.queryVector(ctx, t, bq)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	feats := q.Features
	if len(feats) == 0 && q.ID != "" && x.opts.Features != nil {
		vals, err := x.opts.Features.FeatureValues(ctx, []string{q.ID}, h.cfg.Features)
		if err != nil {
			return nil, fmt.Errorf("features: %w", err)
		}
		feats = vals[0]
	}
	v, err := h.merger.Query(emb, feats)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return v.Values, nil
}
