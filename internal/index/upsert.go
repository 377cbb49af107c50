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
	// Version is the collection version written; "" is the live one. Texts
	// are embedded with the configured model into the live version, and
	// with the version's bound model into a named version; either way the
	// model's version must be the version's binding (ErrModelMismatch).
	Version string
}

// UpsertResult reports a successful upsert.
type UpsertResult struct {
	Collection string
	// Version is the collection version written.
	Version      string
	Model        string
	ModelVersion string
	Upserted     int
	// Queued is true when the write is in the WAL, not yet in the stores.
	Queued bool
}

// Upsert embeds, quantizes and writes the items; see the package doc for
// the write semantics. Each record stores TextHash of its text ("" for a
// client vector).
func (x *Index) Upsert(ctx context.Context, req UpsertRequest) (*UpsertResult, error) {
	c, err := x.collection(req.Collection)
	if err != nil {
		return nil, err
	}
	t, model, err := x.writeTarget(ctx, c, req)
	if err != nil {
		return nil, err
	}
	if err := x.opts.Limits.validateItems(&t.Collection, req.Items); err != nil {
		return nil, err
	}
	vecs, versions, err := x.vectors(ctx, model, req)
	if err != nil {
		return nil, err
	}
	now := x.opts.Now()
	recs := make([]store.Record, len(req.Items))
	ents := make([]store.Entity, len(req.Items))
	for i, it := range req.Items {
		if versions[i] != PrecomputedVersion {
			if err := t.writeModel(model, versions[i]); err != nil {
				return nil, err // the model's version changed since it was resolved
			}
		}
		meta := it.Metadata
		if len(meta) == 0 {
			meta = []byte("{}")
		}
		recs[i] = store.Record{ID: it.ID, Vector: vecs[i], Metadata: meta, ModelVersion: versions[i], UpdatedAt: now}
		if it.Text != "" {
			recs[i].TextHash = TextHash(it.Text)
		}
		q, err := quant.QuantizeInt8(vecs[i])
		if err != nil {
			return nil, &InputError{Items: []*ItemError{{Index: i, ID: it.ID, Err: err}}}
		}
		ents[i] = store.Entity{ID: OnlineKey(c.Name, t.Version, it.ID), Embedding: q.Codes, Scale: q.Scale, ModelVersion: versions[i], UpdatedAt: now, Features: it.Features}
	}
	queued, err := x.write(ctx, &wal.Entry{Kind: wal.Upsert, Collection: c.Name, Version: t.Version, Records: recs, Entities: ents, TTL: x.opts.EntityTTL})
	if err != nil {
		return nil, err
	}
	return &UpsertResult{Collection: c.Name, Version: t.Version, Model: model, ModelVersion: t.ModelVersion, Upserted: len(recs), Queued: queued}, nil
}

// writeTarget resolves the version an upsert writes ("" for the live one)
// and the model that embeds its texts: the bound model for a named version
// and for a live version swapped to another model since open, else the
// configured model. The model's version must be the version's binding
// (ErrModelMismatch naming `embedd reembed` otherwise); an upsert of
// client vectors only embeds nothing and is not checked.
func (x *Index) writeTarget(ctx context.Context, c *Collection, req UpsertRequest) (target, string, error) {
	t, err := x.version(ctx, c, req.Version)
	if err != nil || !slices.ContainsFunc(req.Items, func(it Item) bool { return it.Text != "" }) {
		return t, c.Model, err
	}
	model, mv := c.Model, c.ModelVersion
	// A named version is written with its bound model. So is the live one
	// once a swap made after this Index opened moved it to another model
	// (a re-embedding finished while the server runs): the server follows
	// it when it has that model, rather than refusing writes until it is
	// reconfigured. A live binding that already differed from the
	// configuration at open is a misconfiguration: refused (writeModel).
	swapped := req.Version == "" && t.Bound && t.Model != "" && t.ModelVersion != c.ModelVersion && t.ModelVersion != c.openedBinding
	if t.Bound && req.Version != "" || swapped {
		if model, err = t.embedModel("write client vectors"); err != nil {
			return target{}, "", err
		}
		mv = t.ModelVersion
	}
	return t, model, t.writeModel(model, mv)
}

// vectors returns one float vector per item: the embedding of its text or
// its own vector, and the model version of each.
func (x *Index) vectors(ctx context.Context, model string, req UpsertRequest) ([][]float32, []string, error) {
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
	res, err := x.emb.Embed(ctx, model, texts, engine.EmbedOptions{Truncate: req.Truncate, Priority: req.Priority})
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
