package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/store"
)

// Attribute keys of the store spans. The db.* keys are OpenTelemetry's
// database conventions; the embedd.* ones are ours.
const (
	AttrDBSystem     = attribute.Key("db.system.name")     // "milvus", "redis", "embedded", "memory"
	AttrDBOperation  = attribute.Key("db.operation.name")  // the method: "UpsertVersion", "SetEntities"
	AttrDBCollection = attribute.Key("db.collection.name") // the logical collection
	AttrVersion      = attribute.Key("embedd.collection.version")
	AttrItems        = attribute.Key("embedd.store.items")  // records, ids, entities or events of the call
	AttrFailed       = attribute.Key("embedd.store.failed") // items of a per-item call that failed
)

// VectorStore is what internal/index needs of a vector store: the Milvus
// and embedded stores.
type VectorStore interface {
	store.Vectors
	store.Versioned
	store.VersionReader
}

// Vectors wraps a vector store so that each call is a span named
// "vectors.<Method>", a child of the caller's span. system names the
// backend (db.system.name). Off, it returns v.
func (t *Tracing) Vectors(v VectorStore, system string) VectorStore {
	if t == nil {
		return v
	}
	return &vectors{next: v, s: t.spans("vectors.", system)}
}

// Online wraps an online store: spans "online.<Method>". Off, it returns o.
func (t *Tracing) Online(o store.Online, system string) store.Online {
	if t == nil {
		return o
	}
	return &online{next: o, s: t.spans("online.", system)}
}

// States wraps a feature state store: spans "state.<Method>"
// (db.system.name is its Name()). It keeps service.Revisioner when s has
// it. Off, it returns s.
func (t *Tracing) States(s service.StateStore) service.StateStore {
	if t == nil {
		return s
	}
	st := &states{next: s, s: t.spans("state.", s.Name())}
	if r, ok := s.(service.Revisioner); ok {
		return &revStates{states: st, rev: r}
	}
	return st
}

// Sessions wraps a session store: spans "session.<Method>". Off, it
// returns s.
func (t *Tracing) Sessions(s session.Store, system string) session.Store {
	if t == nil {
		return s
	}
	return &sessions{next: s, s: t.spans("session.", system)}
}

// spans starts the spans of one wrapped store.
type spans struct {
	tracer trace.Tracer
	prefix string
	system attribute.KeyValue
	kind   trace.SpanKind
}

func (t *Tracing) spans(prefix, system string) spans {
	kind := trace.SpanKindClient // a call to a database server
	if system == "embedded" || system == "memory" {
		kind = trace.SpanKindInternal // in process
	}
	return spans{tracer: t.tracer, prefix: prefix, system: AttrDBSystem.String(system), kind: kind}
}

// start starts the span of one call, a child of the span in ctx. Outside
// any trace (startup, background loops: WAL replay, the feature
// materializer, the stream consumer) it records nothing and returns ctx's
// non-recording span: such calls would otherwise be a steady stream of
// one-span traces.
func (s *spans) start(ctx context.Context, op string, items int, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return s.tracer.Start(ctx, s.prefix+op, trace.WithSpanKind(s.kind),
		trace.WithAttributes(s.system, AttrDBOperation.String(op), AttrItems.Int(items)),
		trace.WithAttributes(attrs...))
}

// end records err on span and ends it.
func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// endEach ends the span of a call with one error per item.
func endEach(span trace.Span, errs []error) {
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 0 {
		span.SetAttributes(AttrFailed.Int(failed))
		span.SetStatus(codes.Error, first.Error())
	}
	span.End()
}

func coll(name string) attribute.KeyValue { return AttrDBCollection.String(name) }

type vectors struct {
	next VectorStore
	s    spans
}

var _ VectorStore = (*vectors)(nil)

func (v *vectors) EnsureCollection(ctx context.Context, name string, dims int) (err error) {
	ctx, span := v.s.start(ctx, "EnsureCollection", 0, coll(name))
	defer func() { end(span, err) }()
	return v.next.EnsureCollection(ctx, name, dims)
}

func (v *vectors) Upsert(ctx context.Context, collection string, recs []store.Record) (err error) {
	ctx, span := v.s.start(ctx, "Upsert", len(recs), coll(collection))
	defer func() { end(span, err) }()
	return v.next.Upsert(ctx, collection, recs)
}

func (v *vectors) Search(ctx context.Context, req store.SearchRequest) (_ []store.Hit, err error) {
	ctx, span := v.s.start(ctx, "Search", req.TopK, coll(req.Collection))
	defer func() { end(span, err) }()
	return v.next.Search(ctx, req)
}

func (v *vectors) Get(ctx context.Context, collection string, ids []string) (_ []store.Record, err error) {
	ctx, span := v.s.start(ctx, "Get", len(ids), coll(collection))
	defer func() { end(span, err) }()
	return v.next.Get(ctx, collection, ids)
}

func (v *vectors) Delete(ctx context.Context, collection string, ids []string) (err error) {
	ctx, span := v.s.start(ctx, "Delete", len(ids), coll(collection))
	defer func() { end(span, err) }()
	return v.next.Delete(ctx, collection, ids)
}

func (v *vectors) Close() error { return v.next.Close() }

func (v *vectors) CreateVersion(ctx context.Context, logical, version string, dims int, modelVersion string) (err error) {
	ctx, span := v.s.start(ctx, "CreateVersion", 0, coll(logical), AttrVersion.String(version))
	defer func() { end(span, err) }()
	return v.next.CreateVersion(ctx, logical, version, dims, modelVersion)
}

func (v *vectors) UpsertVersion(ctx context.Context, logical, version string, recs []store.Record) (err error) {
	ctx, span := v.s.start(ctx, "UpsertVersion", len(recs), coll(logical), AttrVersion.String(version))
	defer func() { end(span, err) }()
	return v.next.UpsertVersion(ctx, logical, version, recs)
}

func (v *vectors) DeleteVersion(ctx context.Context, logical, version string, ids []string) (err error) {
	ctx, span := v.s.start(ctx, "DeleteVersion", len(ids), coll(logical), AttrVersion.String(version))
	defer func() { end(span, err) }()
	return v.next.DeleteVersion(ctx, logical, version, ids)
}

func (v *vectors) GetVersion(ctx context.Context, logical, version string, ids []string) (_ []store.Record, err error) {
	ctx, span := v.s.start(ctx, "GetVersion", len(ids), coll(logical), AttrVersion.String(version))
	defer func() { end(span, err) }()
	return v.next.GetVersion(ctx, logical, version, ids)
}

func (v *vectors) ScanVersion(ctx context.Context, logical, version string, fn func(store.Record) error) (err error) {
	ctx, span := v.s.start(ctx, "ScanVersion", 0, coll(logical), AttrVersion.String(version))
	n := 0
	defer func() {
		span.SetAttributes(AttrItems.Int(n))
		end(span, err)
	}()
	return v.next.ScanVersion(ctx, logical, version, func(r store.Record) error {
		n++
		return fn(r)
	})
}

func (v *vectors) ListVersions(ctx context.Context, logical string) (_ []store.VersionInfo, err error) {
	ctx, span := v.s.start(ctx, "ListVersions", 0, coll(logical))
	defer func() { end(span, err) }()
	return v.next.ListVersions(ctx, logical)
}

func (v *vectors) SwapAlias(ctx context.Context, logical, version string) (err error) {
	ctx, span := v.s.start(ctx, "SwapAlias", 0, coll(logical), AttrVersion.String(version))
	defer func() { end(span, err) }()
	return v.next.SwapAlias(ctx, logical, version)
}

func (v *vectors) DropVersion(ctx context.Context, logical, version string) (err error) {
	ctx, span := v.s.start(ctx, "DropVersion", 0, coll(logical), AttrVersion.String(version))
	defer func() { end(span, err) }()
	return v.next.DropVersion(ctx, logical, version)
}

func (v *vectors) LiveVersion(ctx context.Context, logical string) (_ store.VersionInfo, err error) {
	ctx, span := v.s.start(ctx, "LiveVersion", 0, coll(logical))
	defer func() { end(span, err) }()
	return v.next.LiveVersion(ctx, logical)
}

func (v *vectors) SearchVersion(ctx context.Context, logical, version string, req store.SearchRequest) (_ []store.Hit, err error) {
	ctx, span := v.s.start(ctx, "SearchVersion", req.TopK, coll(logical), AttrVersion.String(version))
	defer func() { end(span, err) }()
	return v.next.SearchVersion(ctx, logical, version, req)
}

type online struct {
	next store.Online
	s    spans
}

var _ store.Online = (*online)(nil)

func (o *online) SetEntities(ctx context.Context, ents []store.Entity, ttl time.Duration) (err error) {
	ctx, span := o.s.start(ctx, "SetEntities", len(ents))
	defer func() { end(span, err) }()
	return o.next.SetEntities(ctx, ents, ttl)
}

func (o *online) GetEntities(ctx context.Context, ids []string) (_ []*store.Entity, err error) {
	ctx, span := o.s.start(ctx, "GetEntities", len(ids))
	defer func() { end(span, err) }()
	return o.next.GetEntities(ctx, ids)
}

func (o *online) DeleteEntities(ctx context.Context, ids []string) (err error) {
	ctx, span := o.s.start(ctx, "DeleteEntities", len(ids))
	defer func() { end(span, err) }()
	return o.next.DeleteEntities(ctx, ids)
}

func (o *online) Close() error { return o.next.Close() }

type states struct {
	next service.StateStore
	s    spans
}

var _ service.StateStore = (*states)(nil)

func (s *states) UpdateBatch(ctx context.Context, entities []string, fn func(k int, st *service.State) error) []error {
	ctx, span := s.s.start(ctx, "UpdateBatch", len(entities))
	errs := s.next.UpdateBatch(ctx, entities, fn)
	endEach(span, errs)
	return errs
}

func (s *states) Load(ctx context.Context, entities []string) (_ []*service.State, err error) {
	ctx, span := s.s.start(ctx, "Load", len(entities))
	defer func() { end(span, err) }()
	return s.next.Load(ctx, entities)
}

func (s *states) Scan(ctx context.Context, fn func(entity string) bool) (err error) {
	ctx, span := s.s.start(ctx, "Scan", 0)
	n := 0
	defer func() {
		span.SetAttributes(AttrItems.Int(n))
		end(span, err)
	}()
	return s.next.Scan(ctx, func(e string) bool {
		n++
		return fn(e)
	})
}

func (s *states) Name() string { return s.next.Name() }

// revStates is states over a store that is also a service.Revisioner.
type revStates struct {
	*states
	rev service.Revisioner
}

var _ service.Revisioner = (*revStates)(nil)

func (s *revStates) Revisions(ctx context.Context, entities []string) (_ []string, err error) {
	ctx, span := s.s.start(ctx, "Revisions", len(entities))
	defer func() { end(span, err) }()
	return s.rev.Revisions(ctx, entities)
}

type sessions struct {
	next session.Store
	s    spans
}

var _ session.Store = (*sessions)(nil)

func (s *sessions) Process(ctx context.Context, ev features.Event) (_ session.Result, err error) {
	ctx, span := s.s.start(ctx, "Process", 1)
	defer func() { end(span, err) }()
	return s.next.Process(ctx, ev)
}

func (s *sessions) ProcessBatch(ctx context.Context, evs []features.Event) ([]session.Result, []error) {
	ctx, span := s.s.start(ctx, "ProcessBatch", len(evs))
	res, errs := s.next.ProcessBatch(ctx, evs)
	endEach(span, errs)
	return res, errs
}

func (s *sessions) Close() error { return s.next.Close() }
