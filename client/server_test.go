package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/server"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/models"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// The client's tests and examples run against embedd's real services on
// loopback, assembled here as `embedd serve` assembles them in embedded
// mode (cmd/embedd/serve.go): the real engine and model, the embedded
// vector and online store in a temporary directory, and the features
// service with the built-in registry in memory. Only the transport
// options differ (interceptors a test adds).

// testModel is the model the server loads: small and fast on a CPU.
const testModel = "all-minilm-l6-v2-int8"

var errNoAssets = errors.New("model assets missing")

// loadRuntime loads ONNX Runtime and checks testModel's files, as
// testassets does, but without a testing.TB (TestMain has none).
func loadRuntime() (*manifest.Catalog, error) {
	lib := os.Getenv("EMBEDD_ORT_LIB")
	if lib == "" {
		lib = pull.RuntimePath(testassets.CacheDir(), pull.DefaultRuntime)
	}
	if _, err := os.Stat(lib); err != nil {
		return nil, fmt.Errorf("%w: onnx runtime not installed (%v); run `make setup`", errNoAssets, err)
	}
	if err := accel.Init(lib); err != nil {
		return nil, fmt.Errorf("init onnx runtime: %w", err)
	}
	cat, err := manifest.LoadFS(models.FS)
	if err != nil {
		return nil, err
	}
	m, err := cat.Get(testModel)
	if err != nil {
		return nil, err
	}
	if err := manifest.Verify(testassets.CacheDir(), m); err != nil {
		return nil, fmt.Errorf("%w: model %s not pulled (%v); run `make setup`", errNoAssets, testModel, err)
	}
	return cat, nil
}

// stack is one engine with its stores and services, which any number of
// gRPC servers can serve.
type stack struct {
	eng      *engine.Engine
	store    *embedded.Store
	svc      *server.Service
	vectors  *server.Vectors
	features *server.Features
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newStack opens the engine (testModel loaded), the embedded store under
// dir and the features service.
func newStack(cat *manifest.Catalog, dir string) (_ *stack, err error) {
	ctx := context.Background()
	eo := engine.DefaultOptions()
	eo.CacheDir, eo.Logger = testassets.CacheDir(), quiet()
	eo.Accel.IntraOpThreads = 2
	eng := engine.New(cat, eo)
	if _, err := eng.Load(ctx, testModel); err != nil {
		eng.Close()
		return nil, err
	}
	so := embedded.DefaultOptions(filepath.Join(dir, "store"))
	so.Logger = quiet()
	st, err := embedded.Open(so)
	if err != nil {
		eng.Close()
		return nil, err
	}
	s := &stack{eng: eng, store: st}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	reg, err := registry.Default()
	if err != nil {
		return nil, err
	}
	fo := service.DefaultOptions()
	fo.Registry, fo.Logger = reg, quiet()
	wcfg, err := service.WindowConfig(reg, fo.Window, fo.AsOfHorizon)
	if err != nil {
		return nil, err
	}
	fo.States = service.NewMemory(wcfg, 1<<16)
	if fo.Sessions, err = session.NewMemory(session.DefaultConfig(), session.MemoryOptions{MaxEntities: 1 << 16}); err != nil {
		return nil, err
	}
	fsvc, err := service.New(fo)
	if err != nil {
		return nil, err
	}
	ix := index.DefaultOptions()
	ix.Collections = []index.CollectionConfig{{Name: "docs", Model: testModel}, {Name: "scratch", Model: testModel}}
	ix.Vectors, ix.Online, ix.VectorsName, ix.OnlineName = st, st, "embedded", "embedded"
	ix.Features, ix.Logger = fsvc, quiet()
	idx, err := index.New(ctx, eng, ix)
	if err != nil {
		return nil, err
	}
	so2 := server.DefaultOptions()
	so2.DefaultModel, so2.Logger = testModel, quiet()
	s.svc = server.New(eng, so2)
	s.vectors = server.NewVectors(idx, s.svc)
	s.features = server.NewFeatures(fsvc, nil, s.svc)
	return s, nil
}

func (s *stack) close() {
	if s.store != nil {
		s.store.Close()
	}
	s.eng.Close()
}

// serve runs a gRPC server of the stack's services on a loopback port,
// with extra server options (interceptors, TLS); stop ends it.
func (s *stack) serve(extra ...grpc.ServerOption) (addr string, stop func(), err error) {
	return s.serveWith(nil, extra...)
}

// serveWith is serve with register, if not nil, registering more services
// (a health server).
func (s *stack) serveWith(register func(*grpc.Server), extra ...grpc.ServerOption) (addr string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	gs := grpc.NewServer(append(server.ServerOptions(0), extra...)...)
	if register != nil {
		register(gs)
	}
	embeddv1.RegisterEmbeddingServiceServer(gs, s.svc)
	embeddv1.RegisterVectorServiceServer(gs, s.vectors)
	embeddv1.RegisterFeatureServiceServer(gs, s.features)
	go gs.Serve(lis)
	return lis.Addr().String(), gs.Stop, nil
}
