// Package server is the gRPC transport of embedd: it validates requests,
// calls the engine and translates errors, and nothing more. Each RPC does
// three things — validate, call a core interface, map the error with the one
// table in errors.go — so the behaviour lives in internal/engine and
// internal/batch, which know nothing of gRPC.
//
// Limits are explicit: texts per Embed request (Options.MaxClientBatch),
// bytes per text and texts per call (engine options), requests in flight per
// stream (Options.MaxStreamInFlight), and message sizes (set on the
// grpc.Server by the caller, see ServerOptions). The vector and feature
// calls' limits belong to their flows (index.Limits, service.Limits; embedd
// serve sets index.Limits.MaxItems from the same --max-client-batch): the
// transport does not check them again.
//
// The services hold the core through small interfaces defined here, one
// method per call they make (Engine, VectorIndex, FeatureStore,
// DriftMonitor); engine.Engine, index.Index, service.Service and
// drift.Monitor satisfy them, and tests substitute fakes where the model is
// not the point.
//
// Concurrency: a Service is safe for concurrent use by any number of RPCs.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/embedout"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/metrics"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// Options configures a Service.
type Options struct {
	// DefaultModel serves requests that name no model. Required.
	DefaultModel string
	// MaxClientBatch is the most texts one request may carry. Default 256.
	MaxClientBatch int
	// MaxStreamInFlight bounds the requests of one EmbedStream being
	// computed at once; the stream stops reading while it is reached.
	// Default 64.
	MaxStreamInFlight int
	// RetryAfter is the back-off hint sent with RESOURCE_EXHAUSTED.
	// Default 50ms.
	RetryAfter time.Duration
	// Metrics records requests; nil records nothing.
	Metrics *metrics.Metrics
	// Logger receives internal errors. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the documented defaults (DefaultModel excepted).
func DefaultOptions() Options {
	return Options{MaxClientBatch: 256, MaxStreamInFlight: 64, RetryAfter: 50 * time.Millisecond}
}

// MaxMessageBytes is the default limit on a received message; responses may
// be larger (up to MaxSendMessageBytes) since 256 float vectors of a wide
// model exceed it.
const (
	MaxMessageBytes     = 16 << 20
	MaxSendMessageBytes = 64 << 20
)

// ServerOptions returns the grpc.ServerOptions embedd needs: explicit
// message size limits, and the codec and interceptors that turn invalid
// UTF-8 in any request into INVALID_ARGUMENT naming the field (utf8.go).
func ServerOptions(maxRecv int) []grpc.ServerOption {
	if maxRecv <= 0 {
		maxRecv = MaxMessageBytes
	}
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec{}),
		grpc.ChainUnaryInterceptor(rejectBadUTF8),
		grpc.ChainStreamInterceptor(rejectBadUTF8Stream),
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.MaxSendMsgSize(MaxSendMessageBytes),
	}
}

// Embedder computes embeddings: engine.Engine.
type Embedder interface {
	// Embed embeds texts with model; errors are the engine's (see errors.go).
	Embed(ctx context.Context, model string, texts []string, o engine.EmbedOptions) (*engine.Result, error)
}

// Catalog describes the models an Embedder serves: engine.Engine.
type Catalog interface {
	// Models lists the model names.
	Models() []string
	// Manifest describes name without loading it.
	Manifest(name string) (*manifest.Model, error)
	// Loaded returns name's model if it is loaded, without loading it.
	Loaded(name string) (*engine.Model, bool)
}

// Engine is what the EmbeddingService calls.
type Engine interface {
	Embedder
	Catalog
}

var _ Engine = (*engine.Engine)(nil)

// Service implements embedd.v1.EmbeddingService over an Engine.
type Service struct {
	embeddv1.UnimplementedEmbeddingServiceServer
	eng  Engine
	opts Options
}

var _ embeddv1.EmbeddingServiceServer = (*Service)(nil)

// New returns a Service. eng may be nil for a Service that only lends its
// options and error table to NewVectors and NewFeatures.
func New(eng Engine, opts Options) *Service {
	d := DefaultOptions()
	if opts.MaxClientBatch <= 0 {
		opts.MaxClientBatch = d.MaxClientBatch
	}
	if opts.MaxStreamInFlight <= 0 {
		opts.MaxStreamInFlight = d.MaxStreamInFlight
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = d.RetryAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{eng: eng, opts: opts}
}

// Embed embeds a list of texts.
func (s *Service) Embed(ctx context.Context, req *embeddv1.EmbedRequest) (resp *embeddv1.EmbedResponse, err error) {
	model := s.model(req.GetModel())
	defer s.observe("Embed", metrics.Model, model, time.Now(), &err)
	resp, err = s.embed(ctx, model, req, batch.Online)
	if err != nil {
		return nil, toStatus(err, &s.opts)
	}
	return resp, nil
}

func (s *Service) model(name string) string {
	if name == "" {
		return s.opts.DefaultModel
	}
	return name
}

// embed validates req and runs it; errors are core errors, not statuses.
func (s *Service) embed(ctx context.Context, model string, req *embeddv1.EmbedRequest, p batch.Priority) (*embeddv1.EmbedResponse, error) {
	if err := s.validate(req); err != nil {
		return nil, err
	}
	opts := engine.EmbedOptions{Truncate: req.GetTruncate(), Dimensions: int(req.GetDimensions()), Normalize: req.Normalize, Priority: p}
	res, err := s.eng.Embed(ctx, model, req.GetTexts(), opts)
	if err != nil {
		return nil, err
	}
	return encode(res, req.GetOutputType(), req.GetRequestId())
}

// errInvalid marks request-level validation failures (INVALID_ARGUMENT).
var errInvalid = errors.New("invalid request")

func (s *Service) validate(req *embeddv1.EmbedRequest) error {
	n := len(req.GetTexts())
	switch {
	case n == 0:
		return fmt.Errorf("%w: texts is empty", errInvalid)
	case n > s.opts.MaxClientBatch:
		return fmt.Errorf("%w: texts has %d items; limit %d (max_client_batch)", errInvalid, n, s.opts.MaxClientBatch)
	}
	if _, ok := embeddv1.OutputType_name[int32(req.GetOutputType())]; !ok {
		return fmt.Errorf("%w: output_type %d is not defined", errInvalid, req.GetOutputType())
	}
	if d := req.GetDimensions(); d > 1<<20 {
		return fmt.Errorf("%w: dimensions %d", errInvalid, d)
	}
	if len(req.GetRequestId()) > 256 {
		return fmt.Errorf("%w: request_id is %d bytes; limit 256", errInvalid, len(req.GetRequestId()))
	}
	if !utf8.ValidString(req.GetRequestId()) || !utf8.ValidString(req.GetModel()) {
		return fmt.Errorf("%w: model and request_id must be valid UTF-8", errInvalid)
	}
	return nil
}

// outputType maps the API's output type to the encoder's; UNSPECIFIED and
// FLOAT32 are float32 (validate has rejected undefined values).
func outputType(t embeddv1.OutputType) embedout.Type {
	switch t {
	case embeddv1.OutputType_OUTPUT_TYPE_INT8:
		return embedout.Int8
	case embeddv1.OutputType_OUTPUT_TYPE_BINARY:
		return embedout.Binary
	}
	return embedout.Float32
}

// encode builds the response in the requested output type.
func encode(res *engine.Result, out embeddv1.OutputType, requestID string) (*embeddv1.EmbedResponse, error) {
	vecs, err := embedout.Encode(res.Vectors, outputType(out))
	if err != nil {
		return nil, err
	}
	resp := &embeddv1.EmbedResponse{
		Model: res.Model, ModelVersion: res.Version, RequestId: requestID,
		Embeddings: make([]*embeddv1.Embedding, len(res.Vectors)),
	}
	for i, v := range vecs {
		resp.Dims = uint32(len(res.Vectors[i]))
		resp.TotalTokens += uint64(res.Tokens[i])
		e := &embeddv1.Embedding{Tokens: uint32(res.Tokens[i]), Float32: v.Float32, Binary: v.Binary, Scale: v.Scale}
		if v.Int8 != nil {
			e.Int8 = embedout.Int8Bytes(v.Int8)
		}
		resp.Embeddings[i] = e
	}
	return resp, nil
}

// EmbedStream embeds the requests of a stream concurrently, at bulk
// priority, answering each with the same request_id. A failed request is
// answered with its error in the response, details included (RetryInfo
// with RESOURCE_EXHAUSTED); the stream stays open.
func (s *Service) EmbedStream(stream grpc.BidiStreamingServer[embeddv1.EmbedRequest, embeddv1.EmbedResponse]) (err error) {
	ctx := stream.Context()
	defer s.observe("EmbedStream", metrics.Model, s.opts.DefaultModel, time.Now(), &err)
	out := make(chan *embeddv1.EmbedResponse, s.opts.MaxStreamInFlight)
	sendDone := make(chan error, 1)
	go func() {
		var sendErr error
		for r := range out {
			if sendErr == nil {
				sendErr = stream.Send(r)
			}
		}
		sendDone <- sendErr
	}()
	sem := make(chan struct{}, s.opts.MaxStreamInFlight)
	var wg sync.WaitGroup
	var recvErr error
	for {
		req, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			recvErr = ctx.Err()
		}
		if recvErr != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			model := s.model(req.GetModel())
			start := time.Now()
			resp, err := s.embed(ctx, model, req, batch.Bulk)
			st := toStatus(err, &s.opts)
			s.observe("EmbedStream.item", metrics.Model, model, start, &st)
			if err != nil {
				sts := status.Convert(st)
				resp = &embeddv1.EmbedResponse{RequestId: strings.ToValidUTF8(req.GetRequestId(), "\uFFFD"), Model: strings.ToValidUTF8(model, "\uFFFD"),
					Error: &embeddv1.ErrorStatus{Code: int32(sts.Code()), Message: sts.Message(), Details: sts.Proto().GetDetails()}}
			}
			out <- resp
		}()
	}
	wg.Wait()
	close(out)
	sendErr := <-sendDone
	if recvErr != nil {
		return toStatus(recvErr, &s.opts)
	}
	return sendErr
}

// ListModels lists the catalog with load state.
func (s *Service) ListModels(ctx context.Context, _ *embeddv1.ListModelsRequest) (*embeddv1.ListModelsResponse, error) {
	resp := &embeddv1.ListModelsResponse{}
	for _, name := range s.eng.Models() {
		info, err := s.info(name)
		if err != nil {
			return nil, toStatus(err, &s.opts)
		}
		resp.Models = append(resp.Models, info)
	}
	return resp, nil
}

// GetModel describes one model.
func (s *Service) GetModel(ctx context.Context, req *embeddv1.GetModelRequest) (*embeddv1.ModelInfo, error) {
	info, err := s.info(s.model(req.GetName()))
	if err != nil {
		return nil, toStatus(err, &s.opts)
	}
	return info, nil
}

func (s *Service) info(name string) (*embeddv1.ModelInfo, error) {
	m, err := s.eng.Manifest(name)
	if err != nil {
		return nil, err
	}
	info := &embeddv1.ModelInfo{
		Name: m.Name, Version: m.Version, Dims: uint32(m.Dims), Pooling: string(m.Pooling),
		Normalize: m.Normalize, MaxTokens: uint32(m.MaxSeqLen), Description: m.Description,
	}
	for _, d := range m.MatryoshkaDims {
		info.MatryoshkaDims = append(info.MatryoshkaDims, uint32(d))
	}
	if lm, ok := s.eng.Loaded(name); ok {
		d := lm.Device()
		info.Loaded, info.Backend = true, lm.Backend()
		info.RequestedProvider, info.Fallback = string(d.Requested), d.Fallback
	}
	return info, nil
}

// observe records one finished RPC that named name, a kind of name
// (metrics.Label bounds it to configured names). errp points at the
// handler's error.
func (s *Service) observe(method string, kind metrics.Kind, name string, start time.Time, errp *error) {
	if s.opts.Metrics == nil {
		return
	}
	code := status.Code(*errp)
	if *errp != nil && code == codes.Unknown {
		code = status.Code(toStatus(*errp, &s.opts))
	}
	s.opts.Metrics.Request(method, kind, name, code.String(), time.Since(start))
}
