package index

import (
	"context"
	"fmt"
	"time"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/wal"
)

// Stored is one item as Get returns it.
type Stored struct {
	ID           string
	Metadata     []byte
	ModelVersion string
	UpdatedAt    time.Time
	Vector       []float32 // only when asked for
	Features     map[string]float64
	Int8         []int8
	Scale        float32
}

// Get reads ids from both stores, in the order of ids, from the live
// version; ids in neither are returned in missing. An id in only one
// store (a write still queued or half-applied) is returned with what that
// store has.
func (x *Index) Get(ctx context.Context, collection string, ids []string, withVectors bool) (items []Stored, missing []string, err error) {
	c, err := x.collection(collection)
	if err != nil {
		return nil, nil, err
	}
	if err := x.opts.Limits.checkIDs(ids); err != nil {
		return nil, nil, err
	}
	ids = dedup(ids)
	var recs []store.Record
	var ents []*store.Entity
	err = x.withLive(ctx, c, func(t target) error {
		var err error
		if recs, err = x.vs.GetVersion(ctx, c.Name, t.Version, ids); err != nil {
			return fmt.Errorf("%s: %w", x.opts.VectorsName, err)
		}
		if ents, err = x.opts.Online.GetEntities(ctx, onlineKeys(c.Name, t.Version, ids)); err != nil {
			return fmt.Errorf("%s: %w", x.opts.OnlineName, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	items, missing = merge(ids, recs, ents, withVectors)
	return items, missing, nil
}

// merge joins the records and online rows of ids.
func merge(ids []string, recs []store.Record, ents []*store.Entity, withVectors bool) (items []Stored, missing []string) {
	byID := make(map[string]*store.Record, len(recs))
	for i := range recs {
		byID[recs[i].ID] = &recs[i]
	}
	for i, id := range ids {
		r, e := byID[id], ents[i]
		if r == nil && e == nil {
			missing = append(missing, id)
			continue
		}
		s := Stored{ID: id}
		if r != nil {
			s.Metadata, s.ModelVersion, s.UpdatedAt = r.Metadata, r.ModelVersion, r.UpdatedAt
			if withVectors {
				s.Vector = r.Vector
			}
		}
		if e != nil {
			s.Features, s.Int8, s.Scale = e.Features, e.Embedding, e.Scale
			if r == nil {
				s.ModelVersion, s.UpdatedAt = e.ModelVersion, e.UpdatedAt
			}
		}
		items = append(items, s)
	}
	return items, missing
}

// DeleteResult reports a delete.
type DeleteResult struct {
	Deleted int // ids asked for (unknown ids included)
	Queued  bool
}

// DeleteRequest removes ids from a collection's version.
type DeleteRequest struct {
	Collection string
	// Version is the collection version; "" is the live one.
	Version string
	IDs     []string
}

// Delete removes ids from both stores (the live version); unknown ids are
// ignored.
func (x *Index) Delete(ctx context.Context, collection string, ids []string) (*DeleteResult, error) {
	return x.DeleteIDs(ctx, DeleteRequest{Collection: collection, IDs: ids})
}

// DeleteIDs removes req.IDs from both stores, in req.Version; unknown ids
// are ignored.
func (x *Index) DeleteIDs(ctx context.Context, req DeleteRequest) (*DeleteResult, error) {
	if h := x.hybrids[req.Collection]; h != nil && req.Version == "" {
		// Hybrid collections live in the vector store only.
		if err := x.opts.Limits.checkIDs(req.IDs); err != nil {
			return nil, err
		}
		ids := dedup(req.IDs)
		if err := x.opts.Vectors.Delete(ctx, h.cfg.Name, ids); err != nil {
			return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
		}
		return &DeleteResult{Deleted: len(ids)}, nil
	}
	c, err := x.collection(req.Collection)
	if err != nil {
		return nil, err
	}
	if err := x.opts.Limits.checkIDs(req.IDs); err != nil {
		return nil, err
	}
	t, err := x.version(ctx, c, req.Version)
	if err != nil {
		return nil, err
	}
	ids := dedup(req.IDs)
	e := &wal.Entry{Kind: wal.Delete, Collection: c.Name, Version: t.Version, IDs: ids, EntityIDs: onlineKeys(c.Name, t.Version, ids)}
	queued, err := x.write(ctx, e)
	if err != nil {
		return nil, err
	}
	return &DeleteResult{Deleted: len(ids), Queued: queued}, nil
}

func dedup(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
