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
// Validation: this package owns the validation of the vectors flow's
// requests (validate.go) and their limits (Options.Limits, limits.go). The
// rules of the data model it shares with every store (ids, finite values,
// metadata, top_k) come from package store's rule functions, so each rule
// and each bound is written once; the stores check the data model again at
// their boundary and trust this package for everything else, so a
// validated request meets store.ErrInvalid only for what a backend alone
// can judge (a filter's syntax).
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
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
	// ErrNoFeatures reports a hybrid operation without a FeatureSource.
	ErrNoFeatures = errors.New("index: no feature source configured")
)

// MaxCollectionName bounds a configured collection's name, in bytes.
const MaxCollectionName = 64

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

// Options configures an Index. Zero fields take the defaults of
// DefaultOptions, except the required ones.
type Options struct {
	// Collections to serve; the first is the default. Required.
	Collections []CollectionConfig
	// Vectors and Online are the stores. Required.
	Vectors store.Vectors
	Online  store.Online
	// VectorsName and OnlineName name the stores in errors and listings
	// ("milvus", "redis", "embedded"). Defaults "vector store" and
	// "online store".
	VectorsName string
	OnlineName  string
	// Limits bound each request; zero fields take DefaultLimits'.
	Limits Limits
	// WAL, if set, enables durable mode. Default nil: writes go to the
	// stores only.
	WAL *wal.Log
	// EntityTTL is the TTL of online rows. Default 0: they are kept.
	EntityTTL time.Duration
	// Hybrid declares hybrid collections (see hybrid.go); Features feeds
	// them; SnapshotDir keeps their standardization statistics ("": not
	// kept).
	Hybrid      []HybridConfig
	Features    FeatureSource
	SnapshotDir string
	// Now is the clock for updated_at. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the defaults; Collections, Vectors and Online are
// left for the caller.
func DefaultOptions() Options {
	return Options{
		VectorsName: "vector store", OnlineName: "online store", Limits: DefaultLimits(),
		Now: time.Now, Logger: slog.Default(),
	}
}

// withDefaults fills the zero fields of o from DefaultOptions and checks
// the required ones.
func (o Options) withDefaults() (Options, error) {
	if len(o.Collections) == 0 {
		return o, fmt.Errorf("%w: no collections configured", ErrInvalid)
	}
	if o.Vectors == nil || o.Online == nil {
		return o, fmt.Errorf("%w: both stores are required", ErrInvalid)
	}
	d := DefaultOptions()
	if o.Now == nil {
		o.Now = d.Now
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	if o.VectorsName == "" {
		o.VectorsName = d.VectorsName
	}
	if o.OnlineName == "" {
		o.OnlineName = d.OnlineName
	}
	o.Limits = o.Limits.withDefaults()
	return o, nil
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
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
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
