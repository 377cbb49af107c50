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

// Get reads ids from both stores, in the order of ids; ids in neither are
// returned in missing. An id in only one store (a write still queued or
// half-applied) is returned with what that store has.
func (x *Index) Get(ctx context.Context, collection string, ids []string, withVectors bool) (items []Stored, missing []string, err error) {
	c, err := x.collection(collection)
	if err != nil {
		return nil, nil, err
	}
	if err := x.opts.Limits.checkIDs(ids); err != nil {
		return nil, nil, err
	}
	ids = dedup(ids)
	recs, err := x.opts.Vectors.Get(ctx, c.Name, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	ents, err := x.opts.Online.GetEntities(ctx, onlineIDs(c.Name, ids))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", x.opts.OnlineName, err)
	}
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
	return items, missing, nil
}

// DeleteResult reports a delete.
type DeleteResult struct {
	Deleted int // ids asked for (unknown ids included)
	Queued  bool
}

// Delete removes ids from both stores; unknown ids are ignored.
func (x *Index) Delete(ctx context.Context, collection string, ids []string) (*DeleteResult, error) {
	if h := x.hybrids[collection]; h != nil {
		// Hybrid collections live in the vector store only.
		if err := x.opts.Limits.checkIDs(ids); err != nil {
			return nil, err
		}
		ids = dedup(ids)
		if err := x.opts.Vectors.Delete(ctx, h.cfg.Name, ids); err != nil {
			return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
		}
		return &DeleteResult{Deleted: len(ids)}, nil
	}
	c, err := x.collection(collection)
	if err != nil {
		return nil, err
	}
	if err := x.opts.Limits.checkIDs(ids); err != nil {
		return nil, err
	}
	ids = dedup(ids)
	queued, err := x.write(ctx, &wal.Entry{Kind: wal.Delete, Collection: c.Name, IDs: ids, EntityIDs: onlineIDs(c.Name, ids)})
	if err != nil {
		return nil, err
	}
	return &DeleteResult{Deleted: len(ids), Queued: queued}, nil
}

// onlineIDs maps record ids of coll to their online-store ids.
func onlineIDs(coll string, ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = OnlineID(coll, id)
	}
	return out
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
