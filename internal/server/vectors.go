package server

import (
	"context"
	"time"

	"github.com/embedd/embedd/internal/embedout"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/metrics"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// VectorIndex is what the VectorService calls: index.Index. It has one
// method per call the RPCs make, like etcd's RaftKV behind its KV service;
// errors are the index's and the stores' (see errors.go).
type VectorIndex interface {
	Upsert(ctx context.Context, req index.UpsertRequest) (*index.UpsertResult, error)
	Search(ctx context.Context, q index.Query) (*index.SearchResult, error)
	Get(ctx context.Context, collection string, ids []string, withVectors bool) (items []index.Stored, missing []string, err error)
	Delete(ctx context.Context, collection string, ids []string) (*index.DeleteResult, error)
	UpsertHybrid(ctx context.Context, collection string, ids []string) (*index.HybridResult, error)
	// Collections lists the collections served; StoreNames names the
	// vector and online stores behind them.
	Collections() []index.Collection
	StoreNames() (vectors, online string)
}

var _ VectorIndex = (*index.Index)(nil)

// Vectors implements embedd.v1.VectorService over a VectorIndex: it
// converts messages and maps errors; request validation and its limits
// (index.Limits: items per call, features, filter size), the pipeline and
// its write semantics live in internal/index.
type Vectors struct {
	embeddv1.UnimplementedVectorServiceServer
	idx VectorIndex
	s   *Service
}

var _ embeddv1.VectorServiceServer = (*Vectors)(nil)

// NewVectors returns the VectorService; it shares s's options (limits,
// metrics, logger) and error table.
func NewVectors(idx VectorIndex, s *Service) *Vectors { return &Vectors{idx: idx, s: s} }

// Upsert implements VectorService.Upsert.
func (v *Vectors) Upsert(ctx context.Context, req *embeddv1.UpsertRequest) (_ *embeddv1.UpsertResponse, err error) {
	defer v.s.observe("Upsert", metrics.Collection, req.GetCollection(), time.Now(), &err)
	items := make([]index.Item, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = index.Item{ID: it.GetId(), Text: it.GetText(), Vector: it.GetVector(), Metadata: []byte(it.GetMetadata()), Features: it.GetFeatures()}
	}
	res, err := v.idx.Upsert(ctx, index.UpsertRequest{Collection: req.GetCollection(), Items: items, Truncate: req.GetTruncate()})
	if err != nil {
		return nil, toStatus(err, &v.s.opts)
	}
	return &embeddv1.UpsertResponse{
		Upserted: uint32(res.Upserted), Collection: res.Collection, Model: res.Model,
		ModelVersion: res.ModelVersion, Queued: res.Queued,
	}, nil
}

// Search implements VectorService.Search.
func (v *Vectors) Search(ctx context.Context, req *embeddv1.SearchRequest) (_ *embeddv1.SearchResponse, err error) {
	defer v.s.observe("Search", metrics.Collection, req.GetCollection(), time.Now(), &err)
	q := index.Query{
		Collection: req.GetCollection(), Text: req.GetText(), Vector: req.GetVector().GetValues(), ID: req.GetId(),
		TopK: int(min(req.GetTopK(), 1<<20)), Filter: req.GetFilter(), Rescore: req.GetRescore(),
		Oversample: int(min(req.GetOversample(), 1<<20)), Truncate: req.GetTruncate(), IncludeVectors: req.GetIncludeVectors(),
		Features: req.GetFeatures(),
	}
	res, err := v.idx.Search(ctx, q)
	if err != nil {
		return nil, toStatus(err, &v.s.opts)
	}
	out := &embeddv1.SearchResponse{Collection: res.Collection, ModelVersion: res.ModelVersion, Rescored: res.Rescored, Hits: make([]*embeddv1.Hit, len(res.Hits))}
	for i, h := range res.Hits {
		out.Hits[i] = &embeddv1.Hit{Id: h.ID, Score: h.Score, Metadata: string(h.Metadata), Vector: h.Vector}
	}
	return out, nil
}

// Get implements VectorService.Get.
func (v *Vectors) Get(ctx context.Context, req *embeddv1.GetRequest) (_ *embeddv1.GetResponse, err error) {
	defer v.s.observe("Get", metrics.Collection, req.GetCollection(), time.Now(), &err)
	items, missing, err := v.idx.Get(ctx, req.GetCollection(), req.GetIds(), req.GetIncludeVectors())
	if err != nil {
		return nil, toStatus(err, &v.s.opts)
	}
	out := &embeddv1.GetResponse{Missing: missing, Items: make([]*embeddv1.StoredItem, len(items))}
	for i, it := range items {
		out.Items[i] = &embeddv1.StoredItem{
			Id: it.ID, Metadata: string(it.Metadata), ModelVersion: it.ModelVersion,
			UpdatedAtUnixMs: it.UpdatedAt.UnixMilli(), Vector: it.Vector, Features: it.Features,
			Int8: embedout.Int8Bytes(it.Int8), Scale: it.Scale,
		}
	}
	return out, nil
}

// Delete implements VectorService.Delete.
func (v *Vectors) Delete(ctx context.Context, req *embeddv1.DeleteRequest) (_ *embeddv1.DeleteResponse, err error) {
	defer v.s.observe("Delete", metrics.Collection, req.GetCollection(), time.Now(), &err)
	res, err := v.idx.Delete(ctx, req.GetCollection(), req.GetIds())
	if err != nil {
		return nil, toStatus(err, &v.s.opts)
	}
	return &embeddv1.DeleteResponse{Deleted: uint32(res.Deleted), Queued: res.Queued}, nil
}

// ListCollections implements VectorService.ListCollections.
func (v *Vectors) ListCollections(context.Context, *embeddv1.ListCollectionsRequest) (*embeddv1.ListCollectionsResponse, error) {
	vn, on := v.idx.StoreNames()
	out := &embeddv1.ListCollectionsResponse{}
	for _, c := range v.idx.Collections() {
		oc := &embeddv1.Collection{Name: c.Name, Model: c.Model, Dims: uint32(c.Dims), VectorStore: vn, OnlineStore: on, Base: c.Base}
		if c.Base != "" {
			oc.OnlineStore = ""
		}
		out.Collections = append(out.Collections, oc)
	}
	return out, nil
}

// UpsertHybrid implements VectorService.UpsertHybrid.
func (v *Vectors) UpsertHybrid(ctx context.Context, req *embeddv1.UpsertHybridRequest) (_ *embeddv1.UpsertHybridResponse, err error) {
	defer v.s.observe("UpsertHybrid", metrics.Collection, req.GetCollection(), time.Now(), &err)
	res, err := v.idx.UpsertHybrid(ctx, req.GetCollection(), req.GetIds())
	if err != nil {
		return nil, toStatus(err, &v.s.opts)
	}
	out := &embeddv1.UpsertHybridResponse{Upserted: uint32(res.Upserted), NotFound: res.NotFound, StatsVersion: res.StatsVersion, StatsFrozen: res.Frozen}
	for _, id := range req.GetIds() {
		if m, ok := res.MissingFeatures[id]; ok {
			out.MissingFeatures = append(out.MissingFeatures, &embeddv1.MissingFeatures{Id: id, Features: m})
			delete(res.MissingFeatures, id)
		}
	}
	return out, nil
}
