// Package index is embedd's upsert-and-search pipeline. It ties the engine
// (text to vectors), internal/quant (int8 codes) and the two stores
// together:
//
//	Upsert: validate every item → embed the texts (one engine call) →
//	        vector store: float vectors + metadata (Milvus or embedded)
//	        online store: int8 codes + scale + model version + features
//	                      under "<collection>/<id>" (Redis or embedded)
//	Search: text → embed, vector → as is, id → the stored vector →
//	        vector store ANN search (filtered) → optional exact float
//	        rescoring of oversample*top_k candidates → hits with metadata.
//
// Collections are configured, each bound to one model; its dims are the
// model's. A request naming another collection fails with
// ErrUnknownCollection.
//
// Write semantics, the contract callers rely on:
//   - Every item is validated before anything is embedded or written; one bad
//     item fails the call with an error listing each bad item by index, and
//     nothing is written.
//   - Upsert and Delete succeed only after both stores acknowledged. If a
//     store is down the call fails with store.ErrUnavailable naming the
//     store; the other store may already hold the write, which is harmless
//     because writes are idempotent by id (a retry converges).
//   - In durable mode (Options.WAL set) a write that meets an unavailable
//     store is appended to the write-ahead log instead, acknowledged with
//     Queued = true, and applied by Run in order once the store is back.
//     While the log holds entries every new write goes through it too, so
//     writes of one id are applied in the order they were acknowledged.
//     Reads may lag queued writes.
//
// Concurrency: an *Index is safe for concurrent use.
package index

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/errlist"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/wal"
)

// Errors. Store errors (store.ErrInvalid, store.ErrNotFound,
// store.ErrUnavailable) and engine errors pass through wrapped.
var (
	// ErrInvalid reports a bad request; the message names the item, index
	// and limit.
	ErrInvalid = errors.New("index: invalid argument")
	// ErrUnknownCollection reports a collection that is not configured.
	ErrUnknownCollection = errors.New("index: unknown collection")
	// ErrNotFound reports a query id that is not stored.
	ErrNotFound = errors.New("index: not found")
)

// Limits.
const (
	MaxItems          = 4096 // items per Upsert, ids per Get or Delete
	MaxFilterBytes    = 4096
	MaxFeatures       = 256 // numeric features per item
	MaxFeatureName    = 128
	MaxOversample     = 16
	DefaultOversample = 4
	MaxCollectionName = 64
)

// PrecomputedVersion is the model version recorded for vectors a client
// supplied instead of text.
const PrecomputedVersion = "precomputed"

// Embedder is the part of the engine the index uses.
type Embedder interface {
	Embed(ctx context.Context, model string, texts []string, o engine.EmbedOptions) (*engine.Result, error)
	Manifest(name string) (*manifest.Model, error)
}

// CollectionConfig binds a collection name to a model.
type CollectionConfig struct {
	Name  string
	Model string
}

// Collection describes a configured collection.
type Collection struct {
	Name         string
	Model        string
	ModelVersion string
	Dims         int
	// Base is the base collection of a hybrid collection ("" otherwise).
	Base string
}

// Options configures an Index.
type Options struct {
	// Collections to serve; the first is the default. Required.
	Collections []CollectionConfig
	// Vectors and Online are the stores; VectorsName and OnlineName name
	// them in errors and listings ("milvus", "redis", "embedded").
	Vectors     store.Vectors
	Online      store.Online
	VectorsName string
	OnlineName  string
	// WAL, if set, enables durable mode.
	WAL *wal.Log
	// EntityTTL is the TTL of online rows; 0 keeps them.
	EntityTTL time.Duration
	// Hybrid declares hybrid collections (see hybrid.go); Features feeds
	// them; SnapshotDir keeps their standardization statistics.
	Hybrid      []HybridConfig
	Features    FeatureSource
	SnapshotDir string
	// Now is the clock for updated_at. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Index is the pipeline.
type Index struct {
	emb     Embedder
	opts    Options
	colls   map[string]*Collection
	order   []string
	hybrids map[string]*hybridColl

	// walMu orders "is the log empty?" with appends, so a write never
	// overtakes one queued before it.
	walMu sync.Mutex
}

// New checks the configuration and ensures every collection exists in the
// vector store with the model's dims.
func New(ctx context.Context, emb Embedder, opts Options) (*Index, error) {
	if len(opts.Collections) == 0 {
		return nil, fmt.Errorf("%w: no collections configured", ErrInvalid)
	}
	if opts.Vectors == nil || opts.Online == nil {
		return nil, fmt.Errorf("%w: both stores are required", ErrInvalid)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.VectorsName == "" {
		opts.VectorsName = "vector store"
	}
	if opts.OnlineName == "" {
		opts.OnlineName = "online store"
	}
	x := &Index{emb: emb, opts: opts, colls: map[string]*Collection{}, hybrids: map[string]*hybridColl{}}
	for i, cc := range opts.Collections {
		if err := validCollectionName(cc.Name); err != nil {
			return nil, fmt.Errorf("collections[%d]: %w", i, err)
		}
		if _, dup := x.colls[cc.Name]; dup {
			return nil, fmt.Errorf("%w: collections[%d]: %q configured twice", ErrInvalid, i, cc.Name)
		}
		m, err := emb.Manifest(cc.Model)
		if err != nil {
			return nil, fmt.Errorf("collection %q: %w", cc.Name, err)
		}
		if err := opts.Vectors.EnsureCollection(ctx, cc.Name, m.Dims); err != nil {
			return nil, fmt.Errorf("collection %q: %s: %w", cc.Name, opts.VectorsName, err)
		}
		x.colls[cc.Name] = &Collection{Name: cc.Name, Model: cc.Model, ModelVersion: m.Version, Dims: m.Dims}
		x.order = append(x.order, cc.Name)
	}
	for _, hc := range opts.Hybrid {
		if err := x.setupHybrid(ctx, hc); err != nil {
			return nil, err
		}
	}
	return x, nil
}

func validCollectionName(name string) error {
	if name == "" || len(name) > MaxCollectionName {
		return fmt.Errorf("%w: collection name %q must be 1 to %d bytes", ErrInvalid, name, MaxCollectionName)
	}
	for i, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' && i > 0) {
			return fmt.Errorf("%w: collection name %q: only letters, digits and _ (not leading digit)", ErrInvalid, name)
		}
	}
	return nil
}

// Collections lists the configured collections, the default first.
func (x *Index) Collections() []Collection {
	out := make([]Collection, 0, len(x.order))
	for _, n := range x.order {
		out = append(out, *x.colls[n])
	}
	for _, hc := range x.opts.Hybrid {
		h := x.hybrids[hc.Name]
		out = append(out, Collection{Name: hc.Name, Model: h.base.Model, ModelVersion: h.base.ModelVersion, Dims: h.merger.Dims(), Base: hc.Base})
	}
	return out
}

// Vectors returns the vector store.
func (x *Index) Vectors() store.Vectors { return x.opts.Vectors }

// StoreNames returns the names of the vector and online stores.
func (x *Index) StoreNames() (vectors, online string) { return x.opts.VectorsName, x.opts.OnlineName }

func (x *Index) collection(name string) (*Collection, error) {
	if name == "" {
		name = x.order[0]
	}
	c, ok := x.colls[name]
	if _, hyb := x.hybrids[name]; hyb {
		return nil, fmt.Errorf("%w: %q is a hybrid collection: write it with UpsertHybrid, read it with Search, remove with Delete", ErrInvalid, name)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %q (configured: %s)", ErrUnknownCollection, name, strings.Join(x.order, ", "))
	}
	return c, nil
}

// OnlineID is the online-store id of a record.
func OnlineID(collection, id string) string { return collection + "/" + id }

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

// ItemError is the failure of one item.
type ItemError struct {
	Index int
	ID    string
	Err   error
}

func (e *ItemError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("items[%d]: %v", e.Index, e.Err)
	}
	return fmt.Sprintf("items[%d] (%q): %v", e.Index, e.ID, e.Err)
}
func (e *ItemError) Unwrap() error { return e.Err }

// InputError lists every bad item of a call; it matches ErrInvalid.
type InputError struct{ Items []*ItemError }

func (e *InputError) Error() string { return errlist.Format("item", e.Items) }

func (e *InputError) Is(target error) bool { return target == ErrInvalid }

// validate checks every item; it returns an *InputError listing all bad
// ones.
func validate(c *Collection, items []Item) error {
	if len(items) == 0 {
		return fmt.Errorf("%w: no items", ErrInvalid)
	}
	if len(items) > MaxItems {
		return fmt.Errorf("%w: %d items; limit %d", ErrInvalid, len(items), MaxItems)
	}
	var bad []*ItemError
	fail := func(i int, format string, args ...any) {
		bad = append(bad, &ItemError{Index: i, ID: items[i].ID, Err: fmt.Errorf(format, args...)})
	}
	seen := make(map[string]int, len(items))
	for i, it := range items {
		if err := store.ValidateID(i, it.ID); err != nil {
			bad = append(bad, &ItemError{Index: i, Err: errors.Unwrap(err)})
			if len(it.ID) > store.MaxIDBytes || it.ID == "" {
				bad[len(bad)-1].Err = fmt.Errorf("id is %d bytes; limit 1 to %d", len(it.ID), store.MaxIDBytes)
			} else {
				bad[len(bad)-1].Err = errors.New("id is not valid UTF-8")
			}
			continue
		}
		if j, dup := seen[it.ID]; dup {
			fail(i, "id repeats items[%d]", j)
			continue
		}
		seen[it.ID] = i
		switch {
		case it.Text != "" && len(it.Vector) > 0:
			fail(i, "has both text and vector; send one")
			continue
		case it.Text == "" && len(it.Vector) == 0:
			fail(i, "has neither text nor vector")
			continue
		case len(it.Vector) > 0 && len(it.Vector) != c.Dims:
			fail(i, "vector has %d dimensions; collection %q has %d", len(it.Vector), c.Name, c.Dims)
			continue
		}
		if k := nonFinite(it.Vector); k >= 0 {
			fail(i, "vector value %d is %v", k, it.Vector[k])
			continue
		}
		if len(it.Vector) > 0 && quant.Norm(it.Vector) == 0 {
			fail(i, "vector is all zeros; cosine is undefined")
			continue
		}
		if err := validMetadata(it.Metadata); err != nil {
			fail(i, "%v", err)
			continue
		}
		if err := validFeatures(it.Features); err != nil {
			fail(i, "%v", err)
		}
	}
	if len(bad) > 0 {
		return &InputError{Items: bad}
	}
	return nil
}

func nonFinite(v []float32) int {
	for k, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return k
		}
	}
	return -1
}

func validMetadata(m []byte) error {
	if len(m) == 0 {
		return nil
	}
	if len(m) > store.MaxMetaBytes {
		return fmt.Errorf("metadata is %d bytes; limit %d", len(m), store.MaxMetaBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
		return fmt.Errorf("metadata is not a JSON object")
	}
	return nil
}

func validFeatures(f map[string]float64) error {
	if len(f) > MaxFeatures {
		return fmt.Errorf("%d features; limit %d", len(f), MaxFeatures)
	}
	for _, k := range slices.Sorted(maps.Keys(f)) {
		v := f[k]
		switch {
		case k == "" || len(k) > MaxFeatureName:
			return fmt.Errorf("feature name %q must be 1 to %d bytes", k, MaxFeatureName)
		case math.IsNaN(v) || math.IsInf(v, 0):
			return fmt.Errorf("feature %q is %v", k, v)
		}
	}
	return nil
}

// Upsert embeds, quantizes and writes the items; see the package doc for
// the write semantics.
func (x *Index) Upsert(ctx context.Context, req UpsertRequest) (*UpsertResult, error) {
	c, err := x.collection(req.Collection)
	if err != nil {
		return nil, err
	}
	if err := validate(c, req.Items); err != nil {
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

// write applies e to both stores, or queues it in durable mode. It reports
// whether e was queued.
func (x *Index) write(ctx context.Context, e *wal.Entry) (queued bool, err error) {
	if x.opts.WAL == nil {
		return false, x.Apply(ctx, e)
	}
	x.walMu.Lock()
	if x.opts.WAL.Pending() > 0 {
		defer x.walMu.Unlock()
		return true, x.opts.WAL.Append(e)
	}
	x.walMu.Unlock()
	err = x.Apply(ctx, e)
	if !errors.Is(err, store.ErrUnavailable) {
		return false, err
	}
	x.walMu.Lock()
	defer x.walMu.Unlock()
	if werr := x.opts.WAL.Append(e); werr != nil {
		return false, errors.Join(err, werr)
	}
	x.opts.Logger.Warn("index: store unavailable; write queued in the WAL", "collection", e.Collection, "err", err)
	return true, nil
}

// Apply writes e to both stores (the WAL replays through it). Both are
// attempted; the error names each store that failed.
func (x *Index) Apply(ctx context.Context, e *wal.Entry) error {
	var verr, oerr error
	switch e.Kind {
	case wal.Upsert:
		verr = x.opts.Vectors.Upsert(ctx, e.Collection, e.Records)
		if verr == nil || errors.Is(verr, store.ErrUnavailable) {
			oerr = x.opts.Online.SetEntities(ctx, e.Entities, e.TTL)
		}
	case wal.Delete:
		verr = x.opts.Vectors.Delete(ctx, e.Collection, e.IDs)
		if verr == nil || errors.Is(verr, store.ErrUnavailable) {
			oerr = x.opts.Online.DeleteEntities(ctx, e.EntityIDs)
		}
	default:
		return fmt.Errorf("%w: unknown WAL entry kind %d", store.ErrInvalid, e.Kind)
	}
	if verr != nil {
		verr = fmt.Errorf("%s: %w", x.opts.VectorsName, verr)
	}
	if oerr != nil {
		oerr = fmt.Errorf("%s: %w", x.opts.OnlineName, oerr)
	}
	return errors.Join(verr, oerr)
}

// Run replays the WAL into the stores until ctx is done; without a WAL it
// returns at once.
func (x *Index) Run(ctx context.Context) error {
	if x.opts.WAL == nil {
		return nil
	}
	return x.opts.WAL.Run(ctx, x.Apply)
}

// Pending reports writes queued in the WAL (0 without one).
func (x *Index) Pending() int {
	if x.opts.WAL == nil {
		return 0
	}
	return x.opts.WAL.Pending()
}

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
	if len(q.Features) > 0 && h == nil {
		return nil, fmt.Errorf("%w: features are only used on hybrid collections; %q is not one", ErrInvalid, c.Name)
	}
	if err := validFeatures(q.Features); err != nil {
		return nil, fmt.Errorf("%w: query %v", ErrInvalid, err)
	}
	n := 0
	for _, set := range []bool{q.Text != "", len(q.Vector) > 0, q.ID != ""} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return nil, fmt.Errorf("%w: give exactly one of text, vector and id (got %d)", ErrInvalid, n)
	case q.TopK < 1 || q.TopK > store.MaxTopK:
		return nil, fmt.Errorf("%w: top_k %d out of range [1, %d]", ErrInvalid, q.TopK, store.MaxTopK)
	case len(q.Filter) > MaxFilterBytes:
		return nil, fmt.Errorf("%w: filter is %d bytes; limit %d", ErrInvalid, len(q.Filter), MaxFilterBytes)
	case q.Oversample < 0 || q.Oversample > MaxOversample:
		return nil, fmt.Errorf("%w: oversample %d out of range [0, %d]", ErrInvalid, q.Oversample, MaxOversample)
	case len(q.Vector) > 0 && len(q.Vector) != c.Dims:
		return nil, fmt.Errorf("%w: query vector has %d dimensions; collection %q has %d", ErrInvalid, len(q.Vector), c.Name, c.Dims)
	}
	if k := nonFinite(q.Vector); k >= 0 {
		return nil, fmt.Errorf("%w: query vector value %d is %v", ErrInvalid, k, q.Vector[k])
	}
	if q.ID != "" {
		if err := store.ValidateID(0, q.ID); err != nil {
			return nil, reason(err)
		}
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
	fetch := k
	if q.Rescore {
		fetch = min(k*cmp.Or(q.Oversample, DefaultOversample), store.MaxTopK)
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
		res.Rescored = true
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

func (x *Index) queryVector(ctx context.Context, c *Collection, q Query) ([]float32, error) {
	switch {
	case len(q.Vector) > 0:
		if quant.Norm(q.Vector) == 0 {
			return nil, fmt.Errorf("%w: query vector is all zeros", ErrInvalid)
		}
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

func validIDs(ids []string) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: no ids", ErrInvalid)
	}
	return reason(store.ValidateIDs(ids))
}

// reason re-labels a store validation error as this package's, keeping
// its reason ("ids[2] is 300 bytes; limit 256").
func reason(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": "))
}

// Get reads ids from both stores, in the order of ids; ids in neither are
// returned in missing. An id in only one store (a write still queued or
// half-applied) is returned with what that store has.
func (x *Index) Get(ctx context.Context, collection string, ids []string, withVectors bool) (items []Stored, missing []string, err error) {
	c, err := x.collection(collection)
	if err != nil {
		return nil, nil, err
	}
	if err := validIDs(ids); err != nil {
		return nil, nil, err
	}
	ids = dedup(ids)
	recs, err := x.opts.Vectors.Get(ctx, c.Name, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	oids := make([]string, len(ids))
	for i, id := range ids {
		oids[i] = OnlineID(c.Name, id)
	}
	ents, err := x.opts.Online.GetEntities(ctx, oids)
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

// DeleteResult reports a delete.
type DeleteResult struct {
	Deleted int // ids asked for (unknown ids included)
	Queued  bool
}

// Delete removes ids from both stores; unknown ids are ignored.
func (x *Index) Delete(ctx context.Context, collection string, ids []string) (*DeleteResult, error) {
	if h := x.hybrids[collection]; h != nil {
		// Hybrid collections live in the vector store only.
		if err := validIDs(ids); err != nil {
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
	if err := validIDs(ids); err != nil {
		return nil, err
	}
	ids = dedup(ids)
	oids := make([]string, len(ids))
	for i, id := range ids {
		oids[i] = OnlineID(c.Name, id)
	}
	queued, err := x.write(ctx, &wal.Entry{Kind: wal.Delete, Collection: c.Name, IDs: ids, EntityIDs: oids})
	if err != nil {
		return nil, err
	}
	return &DeleteResult{Deleted: len(ids), Queued: queued}, nil
}
