// Package milvus implements store.Vectors on a Milvus server (2.3 or later)
// through github.com/milvus-io/milvus-sdk-go/v2.
//
// Layout: a logical collection ("docs") is an alias that points at one
// physical collection per model version ("docs__v2"). A new version is
// created with CreateVersion, filled with UpsertVersion beside the live one,
// and made live with SwapAlias, which Milvus applies atomically: a search sees
// either the old or the new collection, never a mix. EnsureCollection creates
// version DefaultVersion and points the alias at it when the alias is absent.
//
// Every physical collection has the fields
//
//	id            VarChar(256), primary key (no auto id)
//	vector        FloatVector(dims), indexed (Options.Index, Options.Metric)
//	metadata      JSON (an empty Record.Metadata is stored as {})
//	model_version VarChar(256)
//	updated_at    Int64, unix milliseconds
//
// Invariants: Upsert validates the whole batch (store.ValidateRecords, JSON
// metadata) before it sends anything, and sends the batch as one Milvus
// Upsert request, which Milvus applies as one delete+insert message pack, so
// an invalid batch writes nothing. Reads use Options.Consistency (default
// Strong: a Get or Search sees every write acknowledged before it started,
// from any client, at the cost of one Milvus time tick per read; Bounded is
// the documented fast alternative). Scores are Milvus's similarity (COSINE or IP: higher is
// nearer); hits are ordered by score descending, ties by id ascending.
//
// Filters are Milvus boolean expressions passed through unchanged, over the
// fields above, e.g. `metadata["lang"] == "en" && updated_at > 1700000000000`.
// Milvus rejecting one yields store.ErrInvalid with Milvus's reason.
//
// Concurrency: a *Store is safe for concurrent use; it holds one gRPC
// connection. The logical-to-physical mapping is cached; SwapAlias through
// the same *Store updates it at once, a swap made by another process is seen
// after Options.AliasTTL.
package milvus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/store"
)

var _ store.Vectors = (*Store)(nil)

// Field names of every physical collection.
const (
	fieldID           = "id"
	fieldVector       = "vector"
	fieldMetadata     = "metadata"
	fieldModelVersion = "model_version"
	fieldUpdatedAt    = "updated_at"
)

// Index kinds.
const (
	IndexHNSW   = "HNSW"
	IndexIVFSQ8 = "IVF_SQ8"
)

// Metrics.
const (
	MetricCosine = "COSINE"
	MetricIP     = "IP"
)

// Consistency levels for reads (Milvus's names).
const (
	ConsistencyStrong  = "Strong"
	ConsistencySession = "Session"
	ConsistencyBounded = "Bounded"
)

// Options configures a Store. The zero value of a field means its default.
type Options struct {
	// Address is the Milvus gRPC endpoint, host:port. Default
	// "127.0.0.1:19530".
	Address string
	// DialTimeout bounds connecting in New. Default 5s.
	DialTimeout time.Duration
	// Index is IndexHNSW (default) or IndexIVFSQ8; it applies to collections
	// created by this Store.
	Index string
	// Metric is MetricCosine (default) or MetricIP. With IP, vectors should
	// be normalized by the caller.
	Metric string
	// HNSWM is the HNSW graph degree M. Default 16.
	HNSWM int
	// HNSWEfConstruction is HNSW's build-time candidate list. Default 200.
	HNSWEfConstruction int
	// HNSWEf is HNSW's search-time candidate list; it is raised to top_k
	// when smaller. Default 128 (recall@10 0.930 at 64 and 0.999 at 256
	// over 100,000 embedding-like vectors, bench/stores/milvus).
	HNSWEf int
	// IVFNList is the number of IVF clusters. Default 1024.
	IVFNList int
	// IVFNProbe is the number of clusters searched. Default 16.
	IVFNProbe int
	// Consistency is the read consistency for Get and Search:
	//   - ConsistencyStrong (default): a read sees every write acknowledged
	//     to any client before it started. Milvus 2.3 implements it by
	//     waiting for the next time tick (proxy.timeTickInterval, 200 ms):
	//     measured p50 ~400 ms per search on the local server (see
	//     bench/stores/milvus).
	//   - ConsistencySession: read-your-writes for this Store, as far as the
	//     server reports write timestamps; Milvus 2.3.5 returns none for
	//     Delete (measured: a Get right after Delete still saw the rows), so
	//     with 2.3 it is close to Bounded.
	//   - ConsistencyBounded: may miss writes of the last few seconds; ~5 ms
	//     searches. Use it for serving where that staleness is acceptable.
	Consistency string
	// DefaultVersion names the physical collection EnsureCollection creates.
	// Default "v1".
	DefaultVersion string
	// AliasTTL is how long a resolved alias is trusted before it is looked up
	// again. Default 5s; negative means look it up on every call.
	AliasTTL time.Duration
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		Address:            "127.0.0.1:19530",
		DialTimeout:        5 * time.Second,
		Index:              IndexHNSW,
		Metric:             MetricCosine,
		HNSWM:              16,
		HNSWEfConstruction: 200,
		HNSWEf:             128,
		IVFNList:           1024,
		IVFNProbe:          16,
		Consistency:        ConsistencyStrong,
		DefaultVersion:     "v1",
		AliasTTL:           5 * time.Second,
	}
}

func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o.Address == "" {
		o.Address = d.Address
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = d.DialTimeout
	}
	if o.Index == "" {
		o.Index = d.Index
	}
	if o.Metric == "" {
		o.Metric = d.Metric
	}
	if o.HNSWM <= 0 {
		o.HNSWM = d.HNSWM
	}
	if o.HNSWEfConstruction <= 0 {
		o.HNSWEfConstruction = d.HNSWEfConstruction
	}
	if o.HNSWEf <= 0 {
		o.HNSWEf = d.HNSWEf
	}
	if o.IVFNList <= 0 {
		o.IVFNList = d.IVFNList
	}
	if o.IVFNProbe <= 0 {
		o.IVFNProbe = d.IVFNProbe
	}
	if o.Consistency == "" {
		o.Consistency = d.Consistency
	}
	if o.DefaultVersion == "" {
		o.DefaultVersion = d.DefaultVersion
	}
	if o.AliasTTL == 0 {
		o.AliasTTL = d.AliasTTL
	}
	switch o.Index {
	case IndexHNSW, IndexIVFSQ8:
	default:
		return o, fmt.Errorf("%w: milvus index %q; want %s or %s", store.ErrInvalid, o.Index, IndexHNSW, IndexIVFSQ8)
	}
	switch o.Metric {
	case MetricCosine, MetricIP:
	default:
		return o, fmt.Errorf("%w: milvus metric %q; want %s or %s", store.ErrInvalid, o.Metric, MetricCosine, MetricIP)
	}
	switch o.Consistency {
	case ConsistencyStrong, ConsistencySession, ConsistencyBounded:
	default:
		return o, fmt.Errorf("%w: milvus consistency %q", store.ErrInvalid, o.Consistency)
	}
	return o, nil
}

// Store is a store.Vectors on Milvus.
type Store struct {
	c    client.Client
	opts Options
	cl   entity.ConsistencyLevel

	mu sync.Mutex
	// live guards nothing else: logical name -> resolved physical collection.
	live map[string]resolved
}

type resolved struct {
	physical string
	dims     int
	at       time.Time
}

// New connects to Milvus at opts.Address. An unreachable server is
// store.ErrUnavailable.
func New(ctx context.Context, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	c, err := client.NewClient(dctx, client.Config{Address: opts.Address})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: milvus at %s: %v", store.ErrUnavailable, opts.Address, err)
	}
	cl := map[string]entity.ConsistencyLevel{
		ConsistencyStrong:  entity.ClStrong,
		ConsistencySession: entity.ClSession,
		ConsistencyBounded: entity.ClBounded,
	}[opts.Consistency]
	return &Store{c: c, opts: opts, cl: cl, live: make(map[string]resolved)}, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.c.Close() }

// Name rules: Milvus names are [A-Za-z_][A-Za-z0-9_]*, at most 255 bytes.
const maxName = 255

// sanitize maps an arbitrary name to a valid Milvus name. A name that is
// valid already is kept; otherwise invalid bytes become '_' and a hash of the
// original is appended, so distinct inputs stay distinct.
func sanitize(name string) string {
	ok := name != "" && len(name) <= 200
	var b strings.Builder
	for i := 0; i < len(name) && i < 200; i++ {
		ch := name[i]
		switch {
		case ch == '_' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z':
			b.WriteByte(ch)
		case ch >= '0' && ch <= '9':
			if i == 0 {
				b.WriteByte('_')
				ok = false
			}
			b.WriteByte(ch)
		default:
			b.WriteByte('_')
			ok = false
		}
	}
	if ok {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s_%08x", b.String(), h.Sum32())
}

// AliasName is the Milvus alias of a logical collection.
func AliasName(logical string) string { return sanitize(logical) }

// PhysicalName is the Milvus collection of a logical collection's version.
func PhysicalName(logical, version string) string {
	n := sanitize(logical) + "__" + sanitize(version)
	if len(n) > maxName {
		n = n[:maxName]
	}
	return n
}

// EnsureCollection makes name usable: when its alias is absent it creates
// version Options.DefaultVersion with dims and points the alias at it. An
// existing collection with other dims is store.ErrInvalid.
func (s *Store) EnsureCollection(ctx context.Context, name string, dims int) error {
	if err := checkDims(dims); err != nil {
		return err
	}
	r, err := s.resolve(ctx, name, true)
	switch {
	case err == nil:
		if r.dims != dims {
			return fmt.Errorf("%w: collection %q has %d dimensions; asked for %d", store.ErrInvalid, name, r.dims, dims)
		}
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if err := s.CreateVersion(ctx, name, s.opts.DefaultVersion, dims); err != nil {
		return err
	}
	return s.SwapAlias(ctx, name, s.opts.DefaultVersion)
}

func checkDims(dims int) error {
	if dims < 1 || dims > store.MaxDims {
		return fmt.Errorf("%w: dims %d out of range [1, %d]", store.ErrInvalid, dims, store.MaxDims)
	}
	return nil
}

// CreateVersion creates, indexes and loads the physical collection for
// logical's version with dims, unless it exists (then its dims must match).
// The alias is not touched; see SwapAlias.
func (s *Store) CreateVersion(ctx context.Context, logical, version string, dims int) error {
	if err := checkDims(dims); err != nil {
		return err
	}
	if logical == "" || version == "" {
		return fmt.Errorf("%w: empty collection name or version", store.ErrInvalid)
	}
	phys := PhysicalName(logical, version)
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if has {
		d, err := s.physicalDims(ctx, phys)
		if err != nil {
			return err
		}
		if d != dims {
			return fmt.Errorf("%w: collection %q version %q has %d dimensions; asked for %d", store.ErrInvalid, logical, version, d, dims)
		}
	} else {
		schema := entity.NewSchema().WithName(phys).
			WithDescription(fmt.Sprintf("embedd %q version %q", logical, version)).
			WithField(entity.NewField().WithName(fieldID).WithDataType(entity.FieldTypeVarChar).
				WithIsPrimaryKey(true).WithMaxLength(store.MaxIDBytes)).
			WithField(entity.NewField().WithName(fieldVector).WithDataType(entity.FieldTypeFloatVector).
				WithDim(int64(dims))).
			WithField(entity.NewField().WithName(fieldMetadata).WithDataType(entity.FieldTypeJSON)).
			WithField(entity.NewField().WithName(fieldModelVersion).WithDataType(entity.FieldTypeVarChar).
				WithMaxLength(maxModelVersion)).
			WithField(entity.NewField().WithName(fieldUpdatedAt).WithDataType(entity.FieldTypeInt64))
		if err := s.c.CreateCollection(ctx, schema, 1, client.WithConsistencyLevel(s.cl)); err != nil {
			return s.mapErr(ctx, "create collection "+phys, err)
		}
	}
	idx, err := s.index()
	if err != nil {
		return err
	}
	// CreateIndex with the same parameters is a no-op on an indexed field.
	if err := s.c.CreateIndex(ctx, phys, fieldVector, idx, false); err != nil {
		return s.mapErr(ctx, "create index on "+phys, err)
	}
	if err := s.c.LoadCollection(ctx, phys, false); err != nil {
		return s.mapErr(ctx, "load collection "+phys, err)
	}
	return nil
}

const maxModelVersion = 256

func (s *Store) metric() entity.MetricType {
	if s.opts.Metric == MetricIP {
		return entity.IP
	}
	return entity.COSINE
}

func (s *Store) index() (entity.Index, error) {
	if s.opts.Index == IndexIVFSQ8 {
		return entity.NewIndexIvfSQ8(s.metric(), s.opts.IVFNList)
	}
	return entity.NewIndexHNSW(s.metric(), s.opts.HNSWM, s.opts.HNSWEfConstruction)
}

func (s *Store) searchParam(topK int) (entity.SearchParam, error) {
	if s.opts.Index == IndexIVFSQ8 {
		return entity.NewIndexIvfSQ8SearchParam(s.opts.IVFNProbe)
	}
	return entity.NewIndexHNSWSearchParam(max(s.opts.HNSWEf, topK))
}

// SwapAlias points logical at its version atomically (creating the alias the
// first time). The version must exist (store.ErrNotFound otherwise). The old
// physical collection is kept; drop it with DropVersion.
func (s *Store) SwapAlias(ctx context.Context, logical, version string) error {
	phys := PhysicalName(logical, version)
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if !has {
		return fmt.Errorf("%w: collection %q version %q", store.ErrNotFound, logical, version)
	}
	alias := AliasName(logical)
	if _, err := s.c.DescribeCollection(ctx, alias); err == nil {
		err = s.c.AlterAlias(ctx, phys, alias)
		if err != nil {
			return s.mapErr(ctx, "alter alias "+alias, err)
		}
	} else if err := s.c.CreateAlias(ctx, phys, alias); err != nil {
		return s.mapErr(ctx, "create alias "+alias, err)
	}
	s.mu.Lock()
	delete(s.live, logical)
	s.mu.Unlock()
	return nil
}

// DropVersion drops logical's version; the live version (the alias target)
// cannot be dropped (store.ErrInvalid). A missing version is not an error.
func (s *Store) DropVersion(ctx context.Context, logical, version string) error {
	phys := PhysicalName(logical, version)
	if r, err := s.resolve(ctx, logical, true); err == nil && r.physical == phys {
		return fmt.Errorf("%w: version %q is live for collection %q; swap first", store.ErrInvalid, version, logical)
	}
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if !has {
		return nil
	}
	if err := s.c.DropCollection(ctx, phys); err != nil {
		return s.mapErr(ctx, "drop collection "+phys, err)
	}
	return nil
}

// Drop removes logical entirely: its alias and every physical version
// created under it. Meant for tests and tooling.
func (s *Store) Drop(ctx context.Context, logical string) error {
	alias := AliasName(logical)
	if _, err := s.c.DescribeCollection(ctx, alias); err == nil {
		if err := s.c.DropAlias(ctx, alias); err != nil {
			return s.mapErr(ctx, "drop alias "+alias, err)
		}
	}
	s.mu.Lock()
	delete(s.live, logical)
	s.mu.Unlock()
	colls, err := s.c.ListCollections(ctx)
	if err != nil {
		return s.mapErr(ctx, "list collections", err)
	}
	prefix := alias + "__"
	var errs []error
	for _, c := range colls {
		if strings.HasPrefix(c.Name, prefix) {
			if err := s.c.DropCollection(ctx, c.Name); err != nil {
				errs = append(errs, s.mapErr(ctx, "drop collection "+c.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// resolve maps a logical name to its live physical collection. fresh skips
// the cache.
func (s *Store) resolve(ctx context.Context, logical string, fresh bool) (resolved, error) {
	if logical == "" {
		return resolved{}, fmt.Errorf("%w: empty collection name", store.ErrInvalid)
	}
	if !fresh && s.opts.AliasTTL > 0 {
		s.mu.Lock()
		r, ok := s.live[logical]
		s.mu.Unlock()
		if ok && time.Since(r.at) < s.opts.AliasTTL {
			return r, nil
		}
	}
	alias := AliasName(logical)
	coll, err := s.c.DescribeCollection(ctx, alias)
	if err != nil {
		if isNotExist(err) {
			return resolved{}, fmt.Errorf("%w: collection %q", store.ErrNotFound, logical)
		}
		return resolved{}, s.mapErr(ctx, "describe "+alias, err)
	}
	d, err := vectorDims(coll.Schema)
	if err != nil {
		return resolved{}, fmt.Errorf("collection %q: %w", logical, err)
	}
	r := resolved{physical: coll.Name, dims: d, at: time.Now()}
	s.mu.Lock()
	s.live[logical] = r
	s.mu.Unlock()
	return r, nil
}

func (s *Store) physicalDims(ctx context.Context, phys string) (int, error) {
	coll, err := s.c.DescribeCollection(ctx, phys)
	if err != nil {
		return 0, s.mapErr(ctx, "describe "+phys, err)
	}
	return vectorDims(coll.Schema)
}

func vectorDims(sch *entity.Schema) (int, error) {
	for _, f := range sch.Fields {
		if f.Name == fieldVector {
			d, err := strconv.Atoi(f.TypeParams[entity.TypeParamDim])
			if err != nil {
				return 0, fmt.Errorf("milvus: field %q has dim %q: %w", fieldVector, f.TypeParams[entity.TypeParamDim], err)
			}
			return d, nil
		}
	}
	return 0, fmt.Errorf("milvus: collection %q has no %q field; not created by embedd", sch.CollectionName, fieldVector)
}

// Upsert writes recs into the live version of collection.
func (s *Store) Upsert(ctx context.Context, collection string, recs []store.Record) error {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	return s.upsert(ctx, r, recs)
}

// UpsertVersion writes recs into logical's version, live or not; it is how a
// new version is filled before SwapAlias.
func (s *Store) UpsertVersion(ctx context.Context, logical, version string, recs []store.Record) error {
	phys := PhysicalName(logical, version)
	d, err := s.physicalDims(ctx, phys)
	if err != nil {
		return err
	}
	return s.upsert(ctx, resolved{physical: phys, dims: d}, recs)
}

func (s *Store) upsert(ctx context.Context, r resolved, recs []store.Record) error {
	if err := store.ValidateRecords(recs, r.dims); err != nil {
		return err
	}
	ids := make([]string, len(recs))
	vecs := make([][]float32, len(recs))
	metas := make([][]byte, len(recs))
	versions := make([]string, len(recs))
	updated := make([]int64, len(recs))
	now := time.Now()
	for i, rec := range recs {
		ids[i] = rec.ID
		vecs[i] = rec.Vector
		m, err := metadata(i, rec)
		if err != nil {
			return err
		}
		metas[i] = m
		if len(rec.ModelVersion) > maxModelVersion {
			return fmt.Errorf("%w: records[%d] (%q) model version is %d bytes; limit %d", store.ErrInvalid, i, rec.ID, len(rec.ModelVersion), maxModelVersion)
		}
		versions[i] = rec.ModelVersion
		t := rec.UpdatedAt
		if t.IsZero() {
			t = now
		}
		updated[i] = t.UnixMilli()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := s.c.Upsert(ctx, r.physical, "",
		entity.NewColumnVarChar(fieldID, ids),
		entity.NewColumnFloatVector(fieldVector, r.dims, vecs),
		entity.NewColumnJSONBytes(fieldMetadata, metas),
		entity.NewColumnVarChar(fieldModelVersion, versions),
		entity.NewColumnInt64(fieldUpdatedAt, updated),
	)
	if err != nil {
		return s.mapErr(ctx, fmt.Sprintf("upsert %d records into %s", len(recs), r.physical), err)
	}
	return nil
}

// metadata returns rec's metadata as a JSON object ({} when empty).
func metadata(i int, rec store.Record) ([]byte, error) {
	if len(rec.Metadata) == 0 {
		return []byte("{}"), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(rec.Metadata, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: records[%d] (%q) metadata is not a JSON object", store.ErrInvalid, i, rec.ID)
	}
	return rec.Metadata, nil
}

// Flush seals the live version's buffered writes into segments and waits
// until its vector index covers every row, so that searches use the index
// instead of scanning growing segments. Reads do not need it (consistency
// covers them); bulk loads and benchmarks call it once at the end.
func (s *Store) Flush(ctx context.Context, collection string) error {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	if err := s.c.Flush(ctx, r.physical, false); err != nil {
		return s.mapErr(ctx, "flush "+r.physical, err)
	}
	for {
		total, indexed, err := s.c.GetIndexBuildProgress(ctx, r.physical, fieldVector)
		if err != nil {
			return s.mapErr(ctx, "index progress of "+r.physical, err)
		}
		if indexed >= total {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Search returns the req.TopK nearest records of the live version.
func (s *Store) Search(ctx context.Context, req store.SearchRequest) ([]store.Hit, error) {
	r, err := s.resolve(ctx, req.Collection, false)
	if err != nil {
		return nil, err
	}
	if err := store.ValidateSearch(req, r.dims); err != nil {
		return nil, err
	}
	// Milvus does not break score ties by id, so ask for a margin of extra
	// candidates, order them (score desc, id asc) and keep TopK: results are
	// then deterministic unless more than the margin tie at the boundary.
	fetch := min(req.TopK+tieMargin, store.MaxTopK+tieMargin)
	sp, err := s.searchParam(fetch)
	if err != nil {
		return nil, err
	}
	res, err := s.c.Search(ctx, r.physical, nil, req.Filter, []string{fieldMetadata},
		[]entity.Vector{entity.FloatVector(req.Vector)}, fieldVector, s.metric(), fetch, sp,
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		if req.Filter != "" && isBadExpr(err) {
			return nil, fmt.Errorf("%w: filter %q: %v", store.ErrInvalid, req.Filter, err)
		}
		return nil, s.mapErr(ctx, "search "+r.physical, err)
	}
	if len(res) == 0 {
		return []store.Hit{}, nil
	}
	sr := res[0]
	if sr.Err != nil {
		return nil, s.mapErr(ctx, "search "+r.physical, sr.Err)
	}
	idc, ok := sr.IDs.(*entity.ColumnVarChar)
	if !ok {
		return nil, fmt.Errorf("milvus: search %s: id column is %T", r.physical, sr.IDs)
	}
	metaCol, _ := sr.Fields.GetColumn(fieldMetadata).(*entity.ColumnJSONBytes)
	hits := make([]store.Hit, 0, sr.ResultCount)
	for i := 0; i < sr.ResultCount && i < idc.Len(); i++ {
		h := store.Hit{ID: idc.Data()[i], Score: sr.Scores[i]}
		if metaCol != nil && i < metaCol.Len() {
			h.Metadata = metaCol.Data()[i]
		}
		hits = append(hits, h)
	}
	sortHits(hits)
	if len(hits) > req.TopK {
		hits = hits[:req.TopK]
	}
	return hits, nil
}

// tieMargin is how many extra candidates Search fetches to order ties.
const tieMargin = 16

func sortHits(hits []store.Hit) {
	slices.SortStableFunc(hits, func(a, b store.Hit) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Get returns the records of the live version with ids, in ids order;
// missing ids are skipped.
func (s *Store) Get(ctx context.Context, collection string, ids []string) ([]store.Record, error) {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return nil, err
	}
	if err := validateIDs(ids); err != nil {
		return nil, err
	}
	rs, err := s.c.QueryByPks(ctx, r.physical, nil, entity.NewColumnVarChar(fieldID, ids),
		[]string{fieldID, fieldVector, fieldMetadata, fieldModelVersion, fieldUpdatedAt},
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		return nil, s.mapErr(ctx, "get from "+r.physical, err)
	}
	idc, _ := rs.GetColumn(fieldID).(*entity.ColumnVarChar)
	vc, _ := rs.GetColumn(fieldVector).(*entity.ColumnFloatVector)
	mc, _ := rs.GetColumn(fieldMetadata).(*entity.ColumnJSONBytes)
	mv, _ := rs.GetColumn(fieldModelVersion).(*entity.ColumnVarChar)
	ut, _ := rs.GetColumn(fieldUpdatedAt).(*entity.ColumnInt64)
	if idc == nil || vc == nil || mc == nil || mv == nil || ut == nil {
		if idc == nil || idc.Len() == 0 {
			return []store.Record{}, nil
		}
		return nil, fmt.Errorf("milvus: get from %s: result lacks a field", r.physical)
	}
	byID := make(map[string]store.Record, idc.Len())
	for i, id := range idc.Data() {
		meta := mc.Data()[i]
		if string(meta) == "{}" {
			meta = nil
		}
		byID[id] = store.Record{
			ID:           id,
			Vector:       vc.Data()[i],
			Metadata:     meta,
			ModelVersion: mv.Data()[i],
			UpdatedAt:    time.UnixMilli(ut.Data()[i]),
		}
	}
	out := make([]store.Record, 0, len(byID))
	for _, id := range ids {
		if rec, ok := byID[id]; ok {
			out = append(out, rec)
		}
	}
	return out, nil
}

func validateIDs(ids []string) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: no ids", store.ErrInvalid)
	}
	return store.ValidateIDs(ids)
}

// Delete removes ids from the live version; missing ids are not an error.
func (s *Store) Delete(ctx context.Context, collection string, ids []string) error {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	if err := validateIDs(ids); err != nil {
		return err
	}
	if err := s.c.DeleteByPks(ctx, r.physical, "", entity.NewColumnVarChar(fieldID, ids)); err != nil {
		return s.mapErr(ctx, "delete from "+r.physical, err)
	}
	return nil
}

// isNotExist reports Milvus saying a collection or alias does not exist.
func isNotExist(err error) bool {
	var ne client.ErrCollectionNotExists
	if errors.As(err, &ne) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "can't find collection") ||
		strings.Contains(msg, "collection not found") ||
		strings.Contains(msg, "does not exist")
}

// isBadExpr reports Milvus rejecting a filter expression. Milvus 2.3 returns
// these as a failed status whose reason starts "failed to create query plan:
// cannot parse expression: ..." (syntax errors, unknown fields, type errors).
func isBadExpr(err error) bool {
	if transportErr(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "failed to create query plan") ||
		strings.Contains(msg, "cannot parse expression")
}

// transportErr reports a gRPC-level failure: the server could not be
// reached or did not answer in time.
func transportErr(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return errors.Is(err, client.ErrClientNotReady)
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// mapErr translates a Milvus or transport error; op says what was tried.
func (s *Store) mapErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("milvus: %s: %w", op, ctx.Err())
	}
	if transportErr(err) {
		return fmt.Errorf("%w: milvus at %s: %s: %v", store.ErrUnavailable, s.opts.Address, op, err)
	}
	if isNotExist(err) {
		return fmt.Errorf("%w: milvus: %s: %v", store.ErrNotFound, op, err)
	}
	return fmt.Errorf("milvus: %s: %w", op, err)
}
