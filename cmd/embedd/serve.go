package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/metrics"
	"github.com/embedd/embedd/internal/server"
	"github.com/embedd/embedd/internal/tlsconf"
	"github.com/embedd/embedd/internal/tracing"
	"github.com/embedd/embedd/models"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// serveConfig is every setting of `embedd serve`.
type serveConfig struct {
	common
	addr            string
	metricsAddr     string
	pprof           bool
	reflection      bool
	defaultModel    string
	preload         string
	maxBatchSize    int
	bulkBatchSize   int
	maxBatchTokens  int
	maxQueueDelay   time.Duration
	queueSize       int
	workers         int
	maxClientBatch  int
	maxTextBytes    int
	maxMessageBytes int
	shutdownTimeout time.Duration
	runTimeout      time.Duration
	embedCacheBytes int64
	healthEvery     time.Duration
	stores          storeConfig
	features        featureConfig
	tls             tlsFlags
	jobs            jobsConfig
	trace           *tracing.Tracing // set by serve from OTEL_*; nil: off (tracing.go)
	http            httpConfig
}

func (c *serveConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	s := server.DefaultOptions()
	e := engine.DefaultOptions()
	b := e.Batch
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9090", "Prometheus /metrics listen address; empty disables")
	fs.BoolVar(&c.pprof, "pprof", false, "serve /debug/pprof/ on the metrics address")
	fs.BoolVar(&c.reflection, "reflection", true, "register gRPC server reflection (grpcurl and other tools list the services); --reflection=false hides the API's shape from clients")
	fs.StringVar(&c.defaultModel, "model", models.Default, "default model for requests that name none")
	fs.StringVar(&c.preload, "preload", "", "comma-separated models to load at start besides the default")
	fs.IntVar(&c.maxBatchSize, "max-batch-size", b.MaxBatchSize, "most texts per model run; 1 disables batching; 0 = device default (CPU 32, CUDA 256)")
	fs.IntVar(&c.bulkBatchSize, "bulk-batch-size", 0, "most texts per bulk model run (EmbedStream, re-embedding jobs) while online requests arrived in the last second, so an online request waits for a short run; 0 = max-batch-size/4")
	fs.IntVar(&c.maxBatchTokens, "max-batch-tokens", b.MaxBatchTokens, "most padded tokens (rows x longest) per model run; 0 = device default (CPU 8192, CUDA 65536)")
	fs.DurationVar(&c.maxQueueDelay, "max-queue-delay", b.MaxQueueDelay, "longest a text waits for its batch to fill, from the batch's first text")
	fs.IntVar(&c.queueSize, "queue-size", b.QueueSize, "texts waiting per model before RESOURCE_EXHAUSTED")
	fs.IntVar(&c.workers, "workers", b.Workers, "model runs in parallel per model; 0 = device default (CPU 1, CUDA 2)")
	fs.IntVar(&c.maxClientBatch, "max-client-batch", s.MaxClientBatch, "most texts in one request")
	fs.IntVar(&c.maxTextBytes, "max-text-bytes", e.MaxTextBytes, "longest text in bytes")
	fs.IntVar(&c.maxMessageBytes, "max-message-bytes", server.MaxMessageBytes, "largest request message in bytes")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long to drain before forcing exit")
	fs.DurationVar(&c.runTimeout, "run-timeout", e.RunTimeout, "longest one model run; its texts then fail with DEADLINE_EXCEEDED; negative = no limit")
	fs.Int64Var(&c.embedCacheBytes, "embed-cache-bytes", engine.DefaultCacheBytes, "bytes of the cache of repeated embeddings (same model version, options and text), shared by the models; 0 = off")
	c.stores.register(fs)
	c.features.register(fs)
	c.tls.register(fs)
	c.jobs.register(fs)
	c.http.register(fs)
	fs.DurationVar(&c.healthEvery, "health-interval", healthEvery, "how often the stores are probed; a service whose store does not answer reports NOT_SERVING")
}

func cmdServe(ctx context.Context, args []string, logger *slog.Logger) error {
	var c serveConfig
	fs := newFlagSet("serve", "")
	c.register(fs)
	if err := c.common.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: serve takes no arguments; got %q", errUsage, fs.Args())
	}
	return serve(ctx, &c, logger, nil)
}

// serve runs the server until ctx ends, then drains. If ready is not nil it
// receives the gRPC and metrics addresses once both listen (for tests).
func serve(ctx context.Context, c *serveConfig, logger *slog.Logger, ready chan<- [2]string) error {
	if c.healthEvery <= 0 {
		return fmt.Errorf("%w: --health-interval %v is not positive", errUsage, c.healthEvery)
	}
	creds, err := c.tls.open(logger)
	if err != nil {
		return err
	}
	if err := c.tls.checkExposure("--addr", c.addr, creds != nil, true, logger); err != nil {
		return err
	}
	if err := c.tls.checkExposure("--metrics-addr", c.metricsAddr, creds != nil, false, logger); err != nil {
		return err
	}
	if err := c.tls.checkExposure("--http-addr", c.http.addr, creds != nil, true, logger); err != nil {
		return err
	}
	var keys *auth.Keys
	if c.tls.authKeys != "" {
		if keys, err = auth.LoadKeys(c.tls.authKeys, logger); err != nil {
			return err
		}
	}
	tr, stopTracing, err := startTracing(ctx, logger)
	if err != nil {
		return err
	}
	defer stopTracing() // last: after the server drained and the stores closed
	c.trace, c.stores.trace, c.features.trace = tr, tr, tr
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	eng, models, err := c.startEngine(ctx, reg, m, logger)
	if err != nil {
		return err
	}
	engineDone := false
	defer func() {
		if !engineDone {
			eng.Close()
		}
	}()
	var feats *openedFeatures
	var source index.FeatureSource
	if c.features.enabled {
		if feats, err = c.features.open(ctx, &c.stores, reg, logger); err != nil {
			return fmt.Errorf("features: %w", err)
		}
		defer feats.close()
		source = feats.svc
	}
	c.stores.maxItems = c.maxClientBatch
	st, err := c.stores.open(ctx, eng, c.defaultModel, source, logger)
	if err != nil {
		return err
	}
	defer st.close()
	// Background loops (WAL replay, feature materializer, stream
	// consumer) stop after the gRPC server drained and before the stores
	// close (defers run in reverse).
	stopBackground := runBackground(logger, st, feats)
	defer stopBackground()
	jobMgr, err := c.jobs.open(c, eng, st, logger)
	if err != nil {
		return err
	}
	defer jobMgr.Close() // before the stores close; Close is idempotent

	lis, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	allowMetricLabels(m, eng, st, feats)
	gs, hs, services := c.grpcServer(eng, st, feats, jobMgr, m, creds, keys, logger)
	probes := st.probes
	if feats != nil {
		probes = append(probes, feats.probes...)
	}
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	prober := newHealthProber(hs, services, probes, logger)
	prober.every = c.healthEvery
	go prober.run(probeCtx)
	metricsSrv, metricsAddr, err := c.startMetrics(reg, creds)
	if err != nil {
		lis.Close()
		return err
	}
	httpSrv, httpAddr, err := c.http.start(gs, c.maxMessageBytes, creds, logger)
	if err != nil {
		lis.Close()
		if metricsSrv != nil {
			metricsSrv.Close()
		}
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	vn, on := st.idx.StoreNames()
	logger.Info("serving", "addr", lis.Addr().String(), "metrics", metricsAddr, "http", httpAddr, "models", models, "native_cuda_compiled", nativeCompiled,
		"max_queue_delay", c.maxQueueDelay, // batch limits in effect: each "model loaded" line
		"vector_store", vn, "online_store", on, "durable", c.stores.durable)
	if ready != nil {
		ready <- [2]string{lis.Addr().String(), metricsAddr}
	}
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	jobMgr.Close() // running jobs stop (to resume at the next start) before the engine does
	engineDone = true
	return drain(gs, hs, eng, httpSrv, metricsSrv, c.shutdownTimeout, logger)
}

// startEngine builds the engine from the settings, with its metrics on reg
// and m, and loads the default model and --preload; it returns the names
// loaded.
func (c *serveConfig) startEngine(ctx context.Context, reg prometheus.Registerer, m *metrics.Metrics, logger *slog.Logger) (*engine.Engine, []string, error) {
	cat, eopts, err := c.engineOptions(logger)
	if err != nil {
		return nil, nil, err
	}
	if eopts.Accel.Provider != accel.ProviderCPU {
		// Binaries built with the cuda tag read the GPU's memory at each
		// scrape; others have no reader and no such series.
		if err := metrics.RegisterGPUMemory(reg, gpuMemory(c.cuda.device)); err != nil {
			return nil, nil, err
		}
	}
	eopts.MaxTexts = c.maxClientBatch
	eopts.RunTimeout = c.runTimeout
	eopts.MaxTextBytes = c.maxTextBytes
	eopts.CacheBytes = c.embedCacheBytes
	eopts.Batch = batch.Options{
		MaxBatchSize: c.maxBatchSize, MaxBatchTokens: c.maxBatchTokens, MaxQueueDelay: c.maxQueueDelay,
		QueueSize: c.queueSize, Workers: c.workers, BulkBatchSizeWhileOnline: c.bulkBatchSize,
	}
	eopts.Tracer = c.trace.Tracer()
	eopts.Observer = func(model, backend string) batch.Observer { return m.ForModel(model, backend) }
	eopts.OnLoad = func(lm *engine.Model) {
		d := lm.Device()
		m.ModelLoaded(lm.Manifest().Name, lm.Backend(), string(d.Requested), d.Fallback != "")
	}
	eng := engine.New(cat, eopts)
	if err := metrics.RegisterEmbedCache(reg, eng.CacheStats); err != nil {
		eng.Close()
		return nil, nil, err
	}
	models := []string{c.defaultModel}
	for _, p := range strings.Split(c.preload, ",") {
		if p = strings.TrimSpace(p); p != "" && p != c.defaultModel {
			models = append(models, p)
		}
	}
	for _, name := range models {
		if _, err := eng.Load(ctx, name); err != nil {
			eng.Close()
			return nil, nil, err
		}
	}
	return eng, models, nil
}

// runBackground starts the background loops of the stores and the
// features (WAL replay, materializer, stream consumer); the function it
// returns stops them and waits for them.
func runBackground(logger *slog.Logger, st *openedStores, feats *openedFeatures) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := func(loop func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx); err != nil && !errors.Is(err, context.Canceled) {
				logger.Error("background loop stopped", "err", err)
			}
		}()
	}
	start(st.idx.Run)
	if feats != nil {
		for _, loop := range feats.run {
			start(loop)
		}
	}
	return func() { cancel(); wg.Wait() }
}

// grpcServer returns the gRPC server with every service registered and
// their health set to SERVING.
// grpcServer builds the gRPC server with every service registered, all
// SERVING; it returns the health service names ("" first).
func (c *serveConfig) grpcServer(eng *engine.Engine, st *openedStores, feats *openedFeatures, jobs server.JobManager, m *metrics.Metrics, creds *tlsconf.Reloader, keys *auth.Keys, logger *slog.Logger) (*grpc.Server, *health.Server, []string) {
	var opts []grpc.ServerOption
	if keys != nil { // first: nothing runs for a caller who may not call
		unary, stream := auth.Interceptors(auth.Options{Keys: keys, DefaultCollection: st.idx.Collections()[0].Name, Audit: logger.With("audit", true)})
		opts = append(opts, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	}
	opts = append(opts, server.ServerOptions(c.maxMessageBytes)...)
	opts = append(opts, c.trace.ServerOptions()...)
	if creds != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(creds.ServerConfig("h2"))))
	}
	gs := grpc.NewServer(opts...)
	svc := server.New(eng, server.Options{DefaultModel: c.defaultModel, MaxClientBatch: c.maxClientBatch, Metrics: m, Logger: logger})
	embeddv1.RegisterEmbeddingServiceServer(gs, svc)
	embeddv1.RegisterVectorServiceServer(gs, server.NewVectors(st.idx, svc))
	names := []string{"", embeddv1.EmbeddingService_ServiceDesc.ServiceName, vectorService}
	if feats != nil {
		embeddv1.RegisterFeatureServiceServer(gs, server.NewFeatures(feats.svc, feats.svc.Monitor(), svc))
		names = append(names, featureService)
	}
	embeddv1.RegisterJobServiceServer(gs, server.NewJobs(jobs, svc))
	names = append(names, jobService)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	if c.reflection {
		reflection.Register(gs)
	}
	for _, name := range names {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	return gs, hs, names
}

// The health names of the services that need stores.
var (
	vectorService  = embeddv1.VectorService_ServiceDesc.ServiceName
	featureService = embeddv1.FeatureService_ServiceDesc.ServiceName
)

// startMetrics serves /metrics (and /debug/pprof/ with --pprof) on
// --metrics-addr, over TLS when creds is set; with no address it returns a
// nil server and an empty address.
func (c *serveConfig) startMetrics(reg *prometheus.Registry, creds *tlsconf.Reloader) (*http.Server, string, error) {
	if c.metricsAddr == "" {
		return nil, "", nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if c.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ml, err := net.Listen("tcp", c.metricsAddr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if creds != nil {
		ml = tls.NewListener(ml, creds.ServerConfig("http/1.1"))
	}
	go srv.Serve(ml)
	return srv, ml.Addr().String(), nil
}

// drain reports NOT_SERVING, stops accepting, lets in-flight RPCs and
// HTTP requests (and so every queued text) finish within timeout, then
// stops the batchers and models and the metrics server. httpSrv may be nil.
func drain(gs *grpc.Server, hs *health.Server, eng *engine.Engine, httpSrv, metricsSrv *http.Server, timeout time.Duration, logger *slog.Logger) error {
	logger.Info("shutting down", "timeout", timeout)
	hs.Shutdown()
	dctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var httpErr error
	if httpSrv != nil {
		// HTTP requests are gRPC calls underway: they finish first.
		httpErr = httpSrv.Shutdown(dctx)
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-dctx.Done():
		logger.Warn("drain deadline passed; closing remaining RPCs")
		gs.Stop()
	}
	err := errors.Join(httpErr, eng.Shutdown(dctx))
	if metricsSrv != nil {
		err = errors.Join(err, metricsSrv.Shutdown(dctx))
	}
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// allowMetricLabels bounds the model label of the request metrics to the
// configured names: the model catalog, the collections (hybrid ones
// included) and the registry's feature sets. Requests naming anything else
// count under "other".
func allowMetricLabels(m *metrics.Metrics, eng *engine.Engine, st *openedStores, feats *openedFeatures) {
	m.Allow(metrics.Model, eng.Models()...)
	for _, c := range st.idx.Collections() {
		m.Allow(metrics.Collection, c.Name)
	}
	if feats != nil {
		for _, fs := range feats.svc.Registry().Sets() {
			m.Allow(metrics.FeatureSet, fs.Name)
		}
	}
}
