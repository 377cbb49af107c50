package server_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/server"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// Fakes of the core interfaces, for the transport tests that need no model
// and no store (transport_test.go): each fake computes a result the test
// can predict from the request, records what it was asked, and fails every
// call with err when err is set.

// fakeModel is the one model fakeEngine knows; fakeDims its vectors' length.
const (
	fakeModel   = "fake-model"
	fakeVersion = "v7"
	fakeDims    = 12
)

// fakeVector is the vector fakeEngine returns for text: mixed signs, no
// zeros; the text "nan" gives a NaN, which no output type but float32 can
// encode.
func fakeVector(text string, dims int) []float32 {
	if dims <= 0 {
		dims = fakeDims
	}
	v := make([]float32, dims)
	for k := range v {
		v[k] = float32(math.Sin(float64(len(text)*31 + k*7 + 1)))
	}
	if text == "nan" {
		v[dims/2] = float32(math.NaN())
	}
	return v
}

// fakeTokens is the token count fakeEngine reports for text.
func fakeTokens(text string) int { return len(strings.Fields(text)) + 2 }

type embedCall struct {
	model string
	texts []string
	opts  engine.EmbedOptions
}

// fakeEngine is a server.Engine without a model.
type fakeEngine struct {
	err error
	// release, when set, holds every Embed until it is closed or the
	// call's ctx ends.
	release chan struct{}
	// running counts the Embed calls under way; peak is its maximum.
	running, peak atomic.Int32

	mu    sync.Mutex // guards calls
	calls []embedCall
}

var _ server.Engine = (*fakeEngine)(nil)

func (f *fakeEngine) Embed(ctx context.Context, model string, texts []string, o engine.EmbedOptions) (*engine.Result, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	f.mu.Lock()
	f.calls = append(f.calls, embedCall{model, slices.Clone(texts), o})
	f.mu.Unlock()
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	if model != fakeModel {
		return nil, fmt.Errorf("%w: %q", engine.ErrUnknownModel, model)
	}
	res := &engine.Result{Model: model, Version: fakeVersion}
	for _, t := range texts {
		res.Vectors = append(res.Vectors, fakeVector(t, o.Dimensions))
		res.Tokens = append(res.Tokens, fakeTokens(t))
	}
	return res, nil
}

func (f *fakeEngine) Calls() []embedCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeEngine) Models() []string { return []string{fakeModel, "other-model"} }

func (f *fakeEngine) Manifest(name string) (*manifest.Model, error) {
	switch {
	case f.err != nil:
		return nil, f.err
	case name != fakeModel && name != "other-model":
		return nil, fmt.Errorf("%w: %q", engine.ErrUnknownModel, name)
	}
	return &manifest.Model{Name: name, Version: fakeVersion, Dims: fakeDims, Pooling: manifest.Pooling("mean"), Normalize: true,
		MaxSeqLen: 128, Description: "a fake", MatryoshkaDims: []int{4, 8}}, nil
}

// Loaded reports every model unloaded: a fake has no *engine.Model to give.
func (f *fakeEngine) Loaded(string) (*engine.Model, bool) { return nil, false }

type getCall struct {
	collection  string
	ids         []string
	withVectors bool
}

// fakeIndex is a server.VectorIndex without stores.
type fakeIndex struct {
	err error

	mu    sync.Mutex // guards err, last and calls
	last  any        // the request of the last call
	calls int
}

var _ server.VectorIndex = (*fakeIndex)(nil)

func (x *fakeIndex) record(req any) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.last, x.calls = req, x.calls+1
	return x.err
}

func (x *fakeIndex) setErr(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.err = err
}

func (x *fakeIndex) Last() (req any, calls int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.last, x.calls
}

func (x *fakeIndex) Upsert(_ context.Context, req index.UpsertRequest) (*index.UpsertResult, error) {
	if err := x.record(req); err != nil {
		return nil, err
	}
	return &index.UpsertResult{Collection: req.Collection, Model: fakeModel, ModelVersion: fakeVersion, Upserted: len(req.Items), Queued: true}, nil
}

func (x *fakeIndex) Search(_ context.Context, q index.Query) (*index.SearchResult, error) {
	if err := x.record(q); err != nil {
		return nil, err
	}
	return &index.SearchResult{Collection: q.Collection, ModelVersion: fakeVersion, Rescored: q.Rescore, Hits: []index.Hit{
		{ID: "a", Score: 0.9, Metadata: []byte(`{"lang":"en"}`), Vector: q.Vector},
		{ID: "b", Score: 0.5},
	}}, nil
}

// fakeUpdated is the update time of every item fakeIndex.Get returns.
var fakeUpdated = time.UnixMilli(1_700_000_000_123)

func (x *fakeIndex) Get(_ context.Context, collection string, ids []string, withVectors bool) ([]index.Stored, []string, error) {
	if err := x.record(getCall{collection, ids, withVectors}); err != nil {
		return nil, nil, err
	}
	var items []index.Stored
	var missing []string
	for _, id := range ids {
		if strings.HasPrefix(id, "missing") {
			missing = append(missing, id)
			continue
		}
		it := index.Stored{ID: id, Metadata: []byte(`{"id":"` + id + `"}`), ModelVersion: fakeVersion, UpdatedAt: fakeUpdated,
			Features: map[string]float64{"f1": 1}, Int8: []int8{-1, 2, -127}, Scale: 0.5}
		if withVectors {
			it.Vector = []float32{0.25, -0.5}
		}
		items = append(items, it)
	}
	return items, missing, nil
}

func (x *fakeIndex) Delete(_ context.Context, collection string, ids []string) (*index.DeleteResult, error) {
	if err := x.record(getCall{collection: collection, ids: ids}); err != nil {
		return nil, err
	}
	return &index.DeleteResult{Deleted: len(ids), Queued: true}, nil
}

func (x *fakeIndex) UpsertHybrid(_ context.Context, collection string, ids []string) (*index.HybridResult, error) {
	if err := x.record(getCall{collection: collection, ids: ids}); err != nil {
		return nil, err
	}
	return &index.HybridResult{Upserted: len(ids) - 1, NotFound: ids[len(ids)-1:], StatsVersion: "s1", Frozen: true,
		MissingFeatures: map[string][]string{ids[0]: {"f2"}}}, nil
}

func (x *fakeIndex) Collections() []index.Collection {
	return []index.Collection{
		{Name: "docs", Model: fakeModel, ModelVersion: fakeVersion, Dims: fakeDims},
		{Name: "docs_hybrid", Model: fakeModel, ModelVersion: fakeVersion, Dims: fakeDims + 2, Base: "docs"},
	}
}

func (x *fakeIndex) StoreNames() (vectors, online string) { return "milvus", "redis" }

// fakeFeatures is a server.FeatureStore without state.
type fakeFeatures struct {
	err error
	// eventErrs rejects the events of an entity id.
	eventErrs map[string]error
	reg       *registry.Registry

	mu      sync.Mutex // guards events and get
	events  []features.Event
	lastGet service.GetRequest
}

var _ server.FeatureStore = (*fakeFeatures)(nil)

func (f *fakeFeatures) Ingest(_ context.Context, events []features.Event) ([]error, error) {
	f.mu.Lock()
	f.events = append(f.events, events...)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	errs := make([]error, len(events))
	for i, e := range events {
		errs[i] = f.eventErrs[e.EntityID]
	}
	return errs, nil
}

// fakeAt is the time of the values fakeFeatures.Get returns.
var fakeAt = time.UnixMicro(1_700_000_000_000_001)

func (f *fakeFeatures) Get(_ context.Context, req service.GetRequest) ([]service.EntityValues, error) {
	f.mu.Lock()
	f.lastGet = req
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := make([]service.EntityValues, len(req.Entities))
	for i, id := range req.Entities {
		out[i] = service.EntityValues{EntityID: id, Found: id != "ghost", Values: []features.Value{
			{Name: "f1", Version: 2, Value: 1.5, Timestamp: fakeAt, Source: features.SourceCache},
			{Name: "f2", Version: 1, Null: true, Source: features.SourceOffline},
		}}
	}
	return out, nil
}

func (f *fakeFeatures) Registry() *registry.Registry { return f.reg }

func (f *fakeFeatures) Events() []features.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func (f *fakeFeatures) LastGet() service.GetRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastGet
}

// fakeMonitor is a server.DriftMonitor tracking names.
type fakeMonitor struct {
	err   error
	names []string
}

var _ server.DriftMonitor = (*fakeMonitor)(nil)

func (m *fakeMonitor) Report(name string) (drift.Report, error) {
	switch {
	case m.err != nil:
		return drift.Report{}, m.err
	case !slices.Contains(m.names, name):
		return drift.Report{}, fmt.Errorf("%w: %q is not tracked", drift.ErrUnknownFeature, name)
	}
	return drift.Report{Feature: name, Status: drift.StatusModerate, Reason: "psi", PSI: 0.15, HasReference: true,
		Current: drift.Summary{Count: 10, Mean: 2}}, nil
}

func (m *fakeMonitor) Reports() []drift.Report {
	var out []drift.Report
	for _, n := range m.names {
		r, _ := m.Report(n)
		out = append(out, r)
	}
	return out
}

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// backends are what a fake server serves; a nil feats serves no
// FeatureService.
type backends struct {
	eng     server.Engine
	idx     server.VectorIndex
	feats   server.FeatureStore
	monitor server.DriftMonitor
}

// clients talk to a server of fakes.
type clients struct {
	conn *grpc.ClientConn
	emb  embeddv1.EmbeddingServiceClient
	vec  embeddv1.VectorServiceClient
	feat embeddv1.FeatureServiceClient
	log  *logBuffer
}

// serveFakes runs the three services over b on a loopback listener, with
// the production server options (receive limit 1 MiB) and opts (its Logger
// replaced by one the returned log collects), until the test ends.
func serveFakes(t *testing.T, b backends, opts server.Options) *clients {
	t.Helper()
	if opts.DefaultModel == "" {
		opts.DefaultModel = fakeModel
	}
	logs := &logBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(server.ServerOptions(1 << 20)...)
	svc := server.New(b.eng, opts)
	embeddv1.RegisterEmbeddingServiceServer(gs, svc)
	embeddv1.RegisterVectorServiceServer(gs, server.NewVectors(b.idx, svc))
	if b.feats != nil {
		embeddv1.RegisterFeatureServiceServer(gs, server.NewFeatures(b.feats, b.monitor, svc))
	}
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return &clients{conn: conn, emb: embeddv1.NewEmbeddingServiceClient(conn), vec: embeddv1.NewVectorServiceClient(conn),
		feat: embeddv1.NewFeatureServiceClient(conn), log: logs}
}

// allFakes returns fakes that all fail with err (nil: succeed).
func allFakes(t *testing.T, err error) (*fakeEngine, *fakeIndex, *fakeFeatures, *fakeMonitor, backends) {
	t.Helper()
	reg, rerr := registry.Default()
	if rerr != nil {
		t.Fatal(rerr)
	}
	eng, idx := &fakeEngine{err: err}, &fakeIndex{err: err}
	feats, mon := &fakeFeatures{err: err, reg: reg}, &fakeMonitor{err: err, names: []string{"f1", "f2"}}
	return eng, idx, feats, mon, backends{eng: eng, idx: idx, feats: feats, monitor: mon}
}
