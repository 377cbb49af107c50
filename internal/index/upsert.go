package index

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/wal"
)

// Item is one item to upsert: an id with exactly one of Text and Vector.
type Item struct {
	ID       string
	Text     string
	Vector   []float32
	Metadata []byte // a JSON object; empty means {}
	Features map[string]float64
}

// UpsertRequest is a batch of items for one collection.
type UpsertRequest struct {
	Collection string
	Items      []Item
	Truncate   bool
	// Priority of the embedding work: batch.Online (default) or batch.Bulk
	// for re-embedding jobs.
	Priority batch.Priority
}

// UpsertResult reports a successful upsert.
type UpsertResult struct {
	Collection   string
	Model        string
	ModelVersion string
	Upserted     int
	// Queued is true when the write is in the WAL, not yet in the stores.
	Queued bool
}

// Upsert embeds, quantizes and writes the items; see the package doc for
// the write semantics.
func (x *Index) Upsert(ctx context.Context, req UpsertRequest) (*UpsertResult, error) {
	c, err := x.collection(req.Collection)
	if err != nil {
		return nil, err
	}
	if err := x.opts.Limits.validateItems(c, req.Items); err != nil {
		return nil, err
	}
	vecs, versions, err := x.vectors(ctx, c, req)
	if err != nil {
		return nil, err
	}
	now := x.opts.Now()
	recs := make([]store.Record, len(req.Items))
	ents := make([]store.Entity, len(req.Items))
	for i, it := range req.Items {
		meta := it.Metadata
		if len(meta) == 0 {
			meta = []byte("{}")
		}
		recs[i] = store.Record{ID: it.ID, Vector: vecs[i], Metadata: meta, ModelVersion: versions[i], UpdatedAt: now}
		q, err := quant.QuantizeInt8(vecs[i])
		if err != nil {
			return nil, &InputError{Items: []*ItemError{{Index: i, ID: it.ID, Err: err}}}
		}
		ents[i] = store.Entity{ID: OnlineID(c.Name, it.ID), Embedding: q.Codes, Scale: q.Scale, ModelVersion: versions[i], UpdatedAt: now, Features: it.Features}
	}
	queued, err := x.write(ctx, &wal.Entry{Kind: wal.Upsert, Collection: c.Name, Records: recs, Entities: ents, TTL: x.opts.EntityTTL})
	if err != nil {
		return nil, err
	}
	return &UpsertResult{Collection: c.Name, Model: c.Model, ModelVersion: c.ModelVersion, Upserted: len(recs), Queued: queued}, nil
}

// vectors returns one float vector per item: the embedding of its text or
// its own vector, and the model version of each.
func (x *Index) vectors(ctx context.Context, c *Collection, req UpsertRequest) ([][]float32, []string, error) {
	vecs := make([][]float32, len(req.Items))
	versions := make([]string, len(req.Items))
	var texts []string
	var at []int
	for i, it := range req.Items {
		if it.Text != "" {
			texts = append(texts, it.Text)
			at = append(at, i)
			continue
		}
		vecs[i] = slices.Clone(it.Vector)
		versions[i] = PrecomputedVersion
	}
	if len(texts) == 0 {
		return vecs, versions, nil
	}
	res, err := x.emb.Embed(ctx, c.Model, texts, engine.EmbedOptions{Truncate: req.Truncate, Priority: req.Priority})
	if err != nil {
		var ie *engine.InputError
		if errors.As(err, &ie) {
			// Name items, not positions among the texts.
			out := &InputError{}
			for _, e := range ie.Items {
				i := at[e.Index]
				out.Items = append(out.Items, &ItemError{Index: i, ID: req.Items[i].ID, Err: fmt.Errorf("text: %w", e.Err)})
			}
			return nil, nil, out
		}
		return nil, nil, err
	}
	for k, i := range at {
		vecs[i] = res.Vectors[k]
		versions[i] = res.Version
	}
	return vecs, versions, nil
}
