// Package index is embedd's upsert-and-search pipeline. It ties the engine
// (text to vectors), internal/quant (int8 codes) and the two stores
// together:
//
//	Upsert: validate every item → embed the texts (one engine call) →
//	        vector store: float vectors + metadata + text hash (Milvus or
//	                      embedded), in one collection version
//	        online store: int8 codes + scale + model version + features
//	                      under OnlineKey (Redis or embedded)
//	Search: text → embed, vector → as is, id → the stored vector →
//	        vector store ANN search (filtered) → optional exact float
//	        rescoring of oversample*top_k candidates → hits with metadata.
//
// Collections are configured, each with a model; a request naming another
// collection fails with ErrUnknownCollection.
//
// Versions (versions.go, live.go): a collection is served by its live
// version, the one the vector store's alias points at; re-embedding jobs
// fill another version (CreateVersion, Upsert with a Version) and swap the
// alias (SwapAlias). Invariants:
//   - Every version is bound to one model version (a new collection's
//     DefaultVersion to its configured model). An upsert embeds the live
//     version's texts with the configured model (with the live version's
//     bound model instead once a swap made after this Index opened moved
//     the alias to another model, so a server keeps writing across a
//     re-embedding), a named version's with its bound model, and is
//     refused with ErrModelMismatch when that model's version is not the
//     binding: vectors of two models never mix in one version, and a
//     configuration that names another model than the live binding at
//     open is refused (naming `embedd reembed`), never followed silently. Client vectors are not checked (they are recorded
//     as PrecomputedVersion). A version created before versions were bound
//     is bound to the model version of its records (the first embedded one
//     among its first 1,000), or, with none, unbound: any model writes it.
//   - A text search embeds the query with the live version's bound model
//     and searches that same version (store.VersionReader), so a search
//     never pairs a query of one model with the vectors of another, even
//     while the alias moves; without that model in the Embedder it is
//     refused (ErrModelMismatch), never embedded with the configured one.
//   - Every read (Get, Search, hybrid queries) uses the live version in
//     both stores: its vectors and its online rows. The live version and
//     its binding are cached for Options.LiveTTL; a swap through this
//     Index is seen at once, one by another process within the TTL. A
//     read whose cached version was dropped meanwhile resolves it again.
//   - Online rows are keyed by OnlineKey: "<collection>/<id>" for
//     DefaultVersion (as before versions), "<collection>@<version>/<id>"
//     for any other, so versions never share rows. DropVersion deletes a
//     version's online rows (listed by a scan of its vectors) before the
//     vectors; it refuses the live version.
//   - A write is resolved to its version when it is accepted; the WAL
//     entry carries it, so a queued write lands in the version it was
//     checked against.
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
	// ErrModelMismatch reports an upsert whose model is not the model
	// version its collection version is bound to, or a text search on a
	// version whose model this process does not have; the message names
	// the collection, the version and the model versions.
	ErrModelMismatch = errors.New("index: model version mismatch")
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

	// openedBinding is the model version the live version was bound to
	// when the Index opened ("" if unbound), to tell a swap made since
	// (followed by upserts) from a misconfiguration (refused).
	openedBinding string
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
	// LiveTTL is how long the resolved live version of a collection (and
	// the model version it is bound to) is trusted before the vector store
	// is asked again: a swap made by another process is seen within it.
	// Default 5s; negative: asked on every request.
	LiveTTL time.Duration
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
		LiveTTL: 5 * time.Second, Now: time.Now, Logger: slog.Default(),
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
	if o.LiveTTL == 0 {
		o.LiveTTL = d.LiveTTL
	}
	return o, nil
}

// Index is the pipeline.
type Index struct {
	emb     Embedder
	opts    Options
	vs      versionStore
	vc      *versionCache
	colls   map[string]*Collection
	order   []string
	hybrids map[string]*hybridColl

	// walMu orders "is the log empty?" with appends, so a write never
	// overtakes one queued before it.
	walMu sync.Mutex
}

// New checks the configuration and makes every collection usable (see
// open).
func New(ctx context.Context, emb Embedder, opts Options) (*Index, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	vs, ok := opts.Vectors.(versionStore)
	if !ok {
		return nil, fmt.Errorf("%w: the vector store (%T) does not keep collection versions", ErrInvalid, opts.Vectors)
	}
	x := &Index{emb: emb, opts: opts, vs: vs, vc: newVersionCache(opts.LiveTTL), colls: map[string]*Collection{}, hybrids: map[string]*hybridColl{}}
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
		c := &Collection{Name: cc.Name, Model: cc.Model, ModelVersion: m.Version, Dims: m.Dims}
		x.learnModel(m.Version, cc.Model)
		if err := x.open(ctx, c); err != nil {
			return nil, fmt.Errorf("collection %q: %w", cc.Name, err)
		}
		x.colls[cc.Name] = c
		x.order = append(x.order, cc.Name)
	}
	for _, hc := range opts.Hybrid {
		if err := x.setupHybrid(ctx, hc); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// open makes c usable. A collection without versions gets DefaultVersion
// bound to the configured model, and the alias. One that has a live
// version keeps it: when that version is bound to another model version
// than the configured model's, New logs it; text searches then embed with
// the bound model and upserts are refused (ErrModelMismatch) until the
// configuration names a model of the bound version.
func (x *Index) open(ctx context.Context, c *Collection) error {
	_, err := x.vs.ListVersions(ctx, c.Name)
	if errors.Is(err, store.ErrNotFound) {
		err = x.vs.CreateVersion(ctx, c.Name, store.DefaultVersion, c.Dims, c.ModelVersion)
	}
	if err == nil {
		if _, lerr := x.vs.LiveVersion(ctx, c.Name); errors.Is(lerr, store.ErrNotFound) {
			err = x.opts.Vectors.EnsureCollection(ctx, c.Name, c.Dims)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	t, err := x.live(ctx, c)
	if err != nil {
		return err
	}
	if t.Bound {
		c.openedBinding = t.ModelVersion
	}
	if t.Bound && t.ModelVersion != c.ModelVersion {
		x.opts.Logger.Warn("index: the live version of a collection is bound to another model than the configured one; upserts are refused until the configuration names the bound model",
			"collection", c.Name, "version", t.Version, "bound_model_version", t.ModelVersion, "bound_model", t.Model, "configured_model", c.Model, "configured_model_version", c.ModelVersion)
	}
	return nil
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

// Collections lists the configured collections, the default first, each
// with the model, model version and dims of its live version as last
// resolved (at most Options.LiveTTL old while requests flow); Model is ""
// when no model of the bound version is known.
func (x *Index) Collections() []Collection {
	out := make([]Collection, 0, len(x.order))
	for _, n := range x.order {
		c := *x.colls[n]
		x.vc.mu.Lock()
		t, ok := x.vc.live[n]
		x.vc.mu.Unlock()
		if ok {
			c.Model, c.ModelVersion, c.Dims = t.Model, t.ModelVersion, t.Dims
		}
		out = append(out, c)
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

// OnlineID is the online-store id of a record of collection's
// DefaultVersion; see OnlineKey for any version.
func OnlineID(collection, id string) string { return OnlineKey(collection, store.DefaultVersion, id) }
