package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/metrics"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/internal/server"
	"github.com/embedd/embedd/internal/store"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// The transport over fakes (fakes_test.go): validation, the error table,
// streaming, limits and message conversion, with no model and no store.
// What needs the model (vectors, token counts, queueing, deadlines in the
// batcher) is tested end to end in server_test.go.

// TestEmbedEncodes: each output type carries the engine's vectors encoded
// as quant encodes them, with the request's metadata echoed.
func TestEmbedEncodes(t *testing.T) {
	eng := &fakeEngine{}
	c := serveFakes(t, backends{eng: eng, idx: &fakeIndex{}}, server.Options{})
	ctx := context.Background()
	texts := []string{"the cat sat", "stock markets fell sharply today"}
	norm := false
	for _, out := range []embeddv1.OutputType{embeddv1.OutputType_OUTPUT_TYPE_UNSPECIFIED, embeddv1.OutputType_OUTPUT_TYPE_FLOAT32,
		embeddv1.OutputType_OUTPUT_TYPE_INT8, embeddv1.OutputType_OUTPUT_TYPE_BINARY} {
		t.Run(out.String(), func(t *testing.T) {
			resp, err := c.emb.Embed(ctx, &embeddv1.EmbedRequest{Texts: texts, OutputType: out, Dimensions: 9, Truncate: true, Normalize: &norm, RequestId: "r-" + out.String()})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Model != fakeModel || resp.ModelVersion != fakeVersion || resp.RequestId != "r-"+out.String() || resp.Dims != 9 || len(resp.Embeddings) != 2 {
				t.Fatalf("got model %q version %q id %q dims %d n %d; want %q %q %q 9 2",
					resp.Model, resp.ModelVersion, resp.RequestId, resp.Dims, len(resp.Embeddings), fakeModel, fakeVersion, "r-"+out.String())
			}
			if want := uint64(fakeTokens(texts[0]) + fakeTokens(texts[1])); resp.TotalTokens != want {
				t.Errorf("total_tokens = %d; want %d", resp.TotalTokens, want)
			}
			for i, e := range resp.Embeddings {
				v := fakeVector(texts[i], 9)
				if int(e.Tokens) != fakeTokens(texts[i]) {
					t.Errorf("embeddings[%d].tokens = %d; want %d", i, e.Tokens, fakeTokens(texts[i]))
				}
				var float32s, int8s, binary []byte
				switch out {
				case embeddv1.OutputType_OUTPUT_TYPE_INT8:
					q, _ := quant.QuantizeInt8(v)
					for _, c := range q.Codes {
						int8s = append(int8s, byte(c))
					}
					if e.Scale != q.Scale {
						t.Errorf("embeddings[%d].scale = %v; want %v", i, e.Scale, q.Scale)
					}
				case embeddv1.OutputType_OUTPUT_TYPE_BINARY:
					binary, _ = quant.PackBinary(v)
				default:
					if !slices.Equal(e.Float32, v) {
						t.Errorf("embeddings[%d].float32 = %v; want %v", i, e.Float32, v)
					}
					float32s = []byte{} // checked above
				}
				if !slices.Equal(e.Int8, int8s) || !slices.Equal(e.Binary, binary) || (float32s == nil) != (e.Float32 == nil) {
					t.Errorf("embeddings[%d] = int8 %x binary %x float32 %v; want int8 %x binary %x and float32 only for float output",
						i, e.Int8, e.Binary, e.Float32, int8s, binary)
				}
			}
		})
	}
	calls := eng.Calls()
	if len(calls) != 4 {
		t.Fatalf("engine got %d calls; want 4", len(calls))
	}
	o := calls[0].opts
	if calls[0].model != fakeModel || !slices.Equal(calls[0].texts, texts) || !o.Truncate || o.Dimensions != 9 || o.Normalize == nil || *o.Normalize || o.Priority != batch.Online {
		t.Errorf("engine got %q %q %+v; want the default model, the texts, truncate, 9 dims, normalize false, online priority", calls[0].model, calls[0].texts, o)
	}
}

// TestEmbedValidation: a request the transport can reject is rejected
// before the engine sees it, with INVALID_ARGUMENT naming what and the
// limit.
func TestEmbedValidation(t *testing.T) {
	eng := &fakeEngine{}
	c := serveFakes(t, backends{eng: eng, idx: &fakeIndex{}}, server.Options{MaxClientBatch: 4})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  *embeddv1.EmbedRequest
		msg  []string
	}{
		{"empty", &embeddv1.EmbedRequest{}, []string{"texts is empty"}},
		{"too many texts", &embeddv1.EmbedRequest{Texts: []string{"a", "b", "c", "d", "e"}}, []string{"texts has 5 items", "limit 4", "max_client_batch"}},
		{"bad output type", &embeddv1.EmbedRequest{Texts: []string{"a"}, OutputType: 9}, []string{"output_type 9 is not defined"}},
		{"dims beyond any model", &embeddv1.EmbedRequest{Texts: []string{"a"}, Dimensions: 1<<20 + 1}, []string{"dimensions 1048577"}},
		{"long request id", &embeddv1.EmbedRequest{Texts: []string{"a"}, RequestId: strings.Repeat("r", 257)}, []string{"request_id is 257 bytes", "limit 256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.emb.Embed(ctx, tc.req)
			wantCode(t, err, codes.InvalidArgument, tc.msg...)
		})
	}
	// Invalid UTF-8 in model or request_id, which the generated client will
	// not send.
	for _, field := range []protowire.Number{1, 7} {
		b := protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "fine")
		b = protowire.AppendString(protowire.AppendTag(b, field, protowire.BytesType), "x\xff")
		var resp embeddv1.EmbedResponse
		err := c.conn.Invoke(ctx, embeddv1.EmbeddingService_Embed_FullMethodName, b, &resp, grpc.ForceCodecV2(rawCodec{}))
		wantCode(t, err, codes.InvalidArgument, "model and request_id must be valid UTF-8")
	}
	if n := len(eng.Calls()); n != 0 {
		t.Errorf("engine got %d calls; want 0", n)
	}
	// At the limit the request goes through.
	if _, err := c.emb.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"a", "b", "c", "d"}, RequestId: strings.Repeat("r", 256)}); err != nil {
		t.Errorf("4 texts, 256-byte request id: got %v; want success", err)
	}
}

type rpc struct {
	name string
	call func(ctx context.Context, c *clients) error
}

// rpcs calls every RPC that reaches a core interface, returning its error;
// an EmbedStream item's in-band error is returned as its status.
func rpcs() []rpc {
	return []rpc{
		{"Embed", func(ctx context.Context, c *clients) error {
			_, err := c.emb.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"a"}})
			return err
		}},
		{"EmbedStream", func(ctx context.Context, c *clients) error {
			s, err := c.emb.EmbedStream(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&embeddv1.EmbedRequest{Texts: []string{"a"}, RequestId: "x"}); err != nil {
				return err
			}
			s.CloseSend()
			resp, err := s.Recv()
			if err != nil {
				return err
			}
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("stream did not end after its one answer: %v", err)
			}
			if e := resp.GetError(); e != nil {
				return status.Error(codes.Code(e.Code), e.Message)
			}
			return nil
		}},
		{"ListModels", func(ctx context.Context, c *clients) error {
			_, err := c.emb.ListModels(ctx, &embeddv1.ListModelsRequest{})
			return err
		}},
		{"GetModel", func(ctx context.Context, c *clients) error {
			_, err := c.emb.GetModel(ctx, &embeddv1.GetModelRequest{})
			return err
		}},
		{"Upsert", func(ctx context.Context, c *clients) error {
			_, err := c.vec.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{{Id: "a", Text: "t"}}})
			return err
		}},
		{"Search", func(ctx context.Context, c *clients) error {
			_, err := c.vec.Search(ctx, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Text{Text: "q"}})
			return err
		}},
		{"Get", func(ctx context.Context, c *clients) error {
			_, err := c.vec.Get(ctx, &embeddv1.GetRequest{Ids: []string{"a"}})
			return err
		}},
		{"Delete", func(ctx context.Context, c *clients) error {
			_, err := c.vec.Delete(ctx, &embeddv1.DeleteRequest{Ids: []string{"a"}})
			return err
		}},
		{"UpsertHybrid", func(ctx context.Context, c *clients) error {
			_, err := c.vec.UpsertHybrid(ctx, &embeddv1.UpsertHybridRequest{Ids: []string{"a"}})
			return err
		}},
		{"IngestEvents", func(ctx context.Context, c *clients) error {
			_, err := c.feat.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{{EntityId: "u"}}})
			return err
		}},
		{"GetFeatures", func(ctx context.Context, c *clients) error {
			_, err := c.feat.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u"}, FeatureSet: "s"})
			return err
		}},
		{"GetFeatureStats", func(ctx context.Context, c *clients) error {
			_, err := c.feat.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: []string{"f1"}})
			return err
		}},
	}
}

// TestErrorTable: every RPC maps every core error through the one table:
// the same code for the same error, the core's message (which names the
// item and limit) kept, unknown errors INTERNAL with their text logged and
// not sent.
func TestErrorTable(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string // in the status message; "" checks none
	}{
		{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{context.Canceled, codes.Canceled, ""},
		{fmt.Errorf("texts[3]: %w: too long", engine.ErrInvalidInput), codes.InvalidArgument, "texts[3]"},
		{fmt.Errorf("items[1]: %w", index.ErrInvalid), codes.InvalidArgument, "items[1]"},
		{store.ErrInvalid, codes.InvalidArgument, store.ErrInvalid.Error()},
		{service.ErrInvalid, codes.InvalidArgument, service.ErrInvalid.Error()},
		{window.ErrBeyondHorizon, codes.InvalidArgument, window.ErrBeyondHorizon.Error()},
		{fmt.Errorf("%w: %q", engine.ErrUnknownModel, "m"), codes.NotFound, `"m"`},
		{index.ErrUnknownCollection, codes.NotFound, index.ErrUnknownCollection.Error()},
		{index.ErrNotFound, codes.NotFound, index.ErrNotFound.Error()},
		{store.ErrNotFound, codes.NotFound, store.ErrNotFound.Error()},
		{service.ErrUnknown, codes.NotFound, service.ErrUnknown.Error()},
		{drift.ErrUnknownFeature, codes.NotFound, drift.ErrUnknownFeature.Error()},
		{batch.ErrQueueFull, codes.ResourceExhausted, "queue full; retry later"},
		{batch.ErrClosed, codes.Unavailable, "server is shutting down"},
		{engine.ErrClosed, codes.Unavailable, "server is shutting down"},
		{fmt.Errorf("redis: %w: dial", store.ErrUnavailable), codes.Unavailable, "redis: store: unavailable: dial"},
		{service.ErrUnavailable, codes.Unavailable, service.ErrUnavailable.Error()},
		{index.ErrNoFeatures, codes.FailedPrecondition, index.ErrNoFeatures.Error()},
		{fmt.Errorf("%w: collection %q version %q", index.ErrModelMismatch, "docs", "v2"), codes.FailedPrecondition, `collection "docs" version "v2"`},
		{manifest.ErrMissing, codes.FailedPrecondition, manifest.ErrMissing.Error()},
		{manifest.ErrChecksum, codes.FailedPrecondition, manifest.ErrChecksum.Error()},
		{status.Error(codes.Aborted, "core said so"), codes.Aborted, "core said so"},
		{errors.New("disk on fire"), codes.Internal, "internal error"},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			_, _, _, _, b := allFakes(t, tc.err)
			c := serveFakes(t, b, server.Options{RetryAfter: 75 * time.Millisecond})
			for _, rpc := range rpcs() {
				err := rpc.call(ctx, c)
				st := status.Convert(err)
				if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
					t.Errorf("%s: got %v %q; want %v containing %q", rpc.name, st.Code(), st.Message(), tc.code, tc.msg)
				}
				if tc.code == codes.Internal && strings.Contains(st.Message(), "fire") {
					t.Errorf("%s: message %q carries the internal error's text", rpc.name, st.Message())
				}
				if tc.code == codes.ResourceExhausted && rpc.name != "EmbedStream" {
					var retry *errdetails.RetryInfo
					for _, d := range st.Details() {
						if r, ok := d.(*errdetails.RetryInfo); ok {
							retry = r
						}
					}
					if retry == nil || retry.RetryDelay.AsDuration() != 75*time.Millisecond {
						t.Errorf("%s: retry info = %v; want 75ms", rpc.name, retry)
					}
				}
			}
			if tc.code == codes.Internal {
				if n := strings.Count(c.log.String(), "disk on fire"); n != len(rpcs()) {
					t.Errorf("internal error logged %d times; want once per RPC (%d)", n, len(rpcs()))
				}
			} else if got := c.log.String(); got != "" {
				t.Errorf("logged %q; want nothing for a known error", got)
			}
		})
	}
}

// recvAll returns the answers of a stream until it ends.
func recvAll(t *testing.T, s grpc.BidiStreamingClient[embeddv1.EmbedRequest, embeddv1.EmbedResponse]) []*embeddv1.EmbedResponse {
	t.Helper()
	var out []*embeddv1.EmbedResponse
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp)
	}
}

// TestEmbedStreamAnswersEach: every request of a stream gets its own
// answer with its request_id, failures in band; the stream runs at bulk
// priority and survives the failures.
func TestEmbedStreamAnswersEach(t *testing.T) {
	eng := &fakeEngine{}
	c := serveFakes(t, backends{eng: eng, idx: &fakeIndex{}}, server.Options{MaxClientBatch: 2})
	s, err := c.emb.EmbedStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]codes.Code{"a": codes.OK, "empty": codes.InvalidArgument, "big": codes.InvalidArgument,
		"unknown": codes.NotFound, "nan": codes.Internal, "b": codes.OK}
	reqs := []*embeddv1.EmbedRequest{
		{RequestId: "a", Texts: []string{"one"}},
		{RequestId: "empty"},
		{RequestId: "big", Texts: []string{"1", "2", "3"}},
		{RequestId: "unknown", Model: "nope", Texts: []string{"x"}},
		{RequestId: "nan", Texts: []string{"nan"}, OutputType: embeddv1.OutputType_OUTPUT_TYPE_INT8},
		{RequestId: "b", Texts: []string{"two", "three"}, OutputType: embeddv1.OutputType_OUTPUT_TYPE_BINARY},
	}
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	s.CloseSend()
	got := map[string]*embeddv1.EmbedResponse{}
	for _, resp := range recvAll(t, s) {
		got[resp.RequestId] = resp
	}
	if len(got) != len(want) {
		t.Fatalf("got %d answers; want %d", len(got), len(want))
	}
	for id, code := range want {
		r := got[id]
		if gc := codes.Code(r.GetError().GetCode()); gc != code {
			t.Errorf("%s: code %v (%q); want %v", id, gc, r.GetError().GetMessage(), code)
		}
		if code == codes.OK && (len(r.Embeddings) == 0 || r.Model != fakeModel) {
			t.Errorf("%s: %d embeddings of model %q; want some of %q", id, len(r.Embeddings), r.Model, fakeModel)
		}
	}
	if got["unknown"].Model != "nope" {
		t.Errorf("failed answer names model %q; want the request's", got["unknown"].Model)
	}
	if n := len(got["b"].Embeddings[1].Binary); n != 2 {
		t.Errorf("b: %d binary bytes; want 2", n)
	}
	for _, call := range eng.Calls() {
		if call.opts.Priority != batch.Bulk {
			t.Errorf("stream call %q at priority %v; want bulk", call.texts, call.opts.Priority)
		}
	}
}

// TestEmbedStreamInvalidUTF8: a stream request whose request_id is not
// UTF-8 is answered in band, with the id made valid so the answer can be
// sent.
func TestEmbedStreamInvalidUTF8(t *testing.T) {
	c := serveFakes(t, backends{eng: &fakeEngine{}, idx: &fakeIndex{}}, server.Options{})
	ctx := context.Background()
	s, err := c.conn.NewStream(ctx, &embeddv1.EmbeddingService_ServiceDesc.Streams[0], embeddv1.EmbeddingService_EmbedStream_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	b := protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "fine")
	b = protowire.AppendString(protowire.AppendTag(b, 7, protowire.BytesType), "r\xff")
	if err := s.SendMsg(b); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	var resp embeddv1.EmbedResponse
	if err := s.RecvMsg(&resp); err != nil {
		t.Fatal(err)
	}
	if resp.RequestId != "r\uFFFD" || codes.Code(resp.GetError().GetCode()) != codes.InvalidArgument || !strings.Contains(resp.GetError().GetMessage(), "valid UTF-8") {
		t.Errorf("got id %q error %v; want id %q, INVALID_ARGUMENT about UTF-8", resp.RequestId, resp.GetError(), "r\uFFFD")
	}
}

// TestEmbedStreamInFlight: a stream computes at most MaxStreamInFlight
// requests at once and stops reading while it is reached; every request is
// answered once they finish.
func TestEmbedStreamInFlight(t *testing.T) {
	eng := &fakeEngine{release: make(chan struct{})}
	c := serveFakes(t, backends{eng: eng, idx: &fakeIndex{}}, server.Options{MaxStreamInFlight: 2})
	s, err := c.emb.EmbedStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	for i := range n {
		if err := s.Send(&embeddv1.EmbedRequest{RequestId: fmt.Sprint(i), Texts: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
	}
	s.CloseSend()
	deadline := time.Now().Add(5 * time.Second)
	for eng.running.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a third, were it allowed
	if r, calls := eng.running.Load(), len(eng.Calls()); r != 2 || calls != 2 {
		t.Fatalf("%d running, %d started; want 2 and 2 while the engine holds them", r, calls)
	}
	close(eng.release)
	seen := map[string]bool{}
	for _, resp := range recvAll(t, s) {
		if resp.Error != nil || seen[resp.RequestId] {
			t.Errorf("answer %q: error %v, seen before %v; want one success each", resp.RequestId, resp.Error, seen[resp.RequestId])
		}
		seen[resp.RequestId] = true
	}
	if len(seen) != n || eng.peak.Load() != 2 {
		t.Errorf("%d answers, at most %d running; want %d and 2", len(seen), eng.peak.Load(), n)
	}
}

// TestEmbedStreamCancel: a client that cancels its stream ends the
// requests in flight; the RPC returns CANCELED.
func TestEmbedStreamCancel(t *testing.T) {
	eng := &fakeEngine{release: make(chan struct{})}
	c := serveFakes(t, backends{eng: eng, idx: &fakeIndex{}}, server.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.emb.EmbedStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&embeddv1.EmbedRequest{Texts: []string{"t"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for eng.running.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	_, err = s.Recv()
	wantCode(t, err, codes.Canceled)
	for eng.running.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r := eng.running.Load(); r != 0 {
		t.Errorf("%d engine calls still running after the stream was cancelled; want 0", r)
	}
}

// TestRequestLimits: the per-request limits of every RPC that has one, at
// and past the limit, with the core not called past it; and the message
// size limit.
func TestRequestLimits(t *testing.T) {
	_, idx, _, _, b := allFakes(t, nil)
	c := serveFakes(t, b, server.Options{MaxClientBatch: 3})
	ctx := context.Background()
	// Item counts of the vector calls are the index's (index.Limits,
	// internal/index/validate_test.go); the transport only converts.
	t.Run("GetFeatureStats", func(t *testing.T) {
		_, err := c.feat.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: make([]string, service.MaxFeatures+1)})
		wantCode(t, err, codes.InvalidArgument, fmt.Sprintf("%d features; limit %d", service.MaxFeatures+1, service.MaxFeatures))
	})
	t.Run("Search top_k and oversample", func(t *testing.T) {
		if _, err := c.vec.Search(ctx, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Text{Text: "q"}, TopK: 1<<32 - 1, Oversample: 1<<32 - 1}); err != nil {
			t.Fatal(err)
		}
		last, _ := idx.Last()
		if q := last.(index.Query); q.TopK != 1<<20 || q.Oversample != 1<<20 {
			t.Errorf("index got top_k %d, oversample %d; want both capped at %d", q.TopK, q.Oversample, 1<<20)
		}
	})
	t.Run("message size", func(t *testing.T) {
		_, err := c.emb.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{strings.Repeat("x", 1<<20)}})
		wantCode(t, err, codes.ResourceExhausted)
	})
}

// TestDefaultLimits: a zero Options gets the documented defaults.
func TestDefaultLimits(t *testing.T) {
	d := server.DefaultOptions()
	if d.MaxClientBatch != 256 || d.MaxStreamInFlight != 64 || d.RetryAfter != 50*time.Millisecond {
		t.Fatalf("DefaultOptions() = %+v; want 256, 64, 50ms", d)
	}
	_, _, _, _, b := allFakes(t, batch.ErrQueueFull)
	c := serveFakes(t, b, server.Options{})
	_, err := c.emb.Embed(context.Background(), &embeddv1.EmbedRequest{Texts: make([]string, d.MaxClientBatch+1)})
	wantCode(t, err, codes.InvalidArgument, "limit 256")
	_, err = c.emb.Embed(context.Background(), &embeddv1.EmbedRequest{Texts: make([]string, d.MaxClientBatch)})
	for _, det := range status.Convert(err).Details() {
		if r, ok := det.(*errdetails.RetryInfo); ok && r.RetryDelay.AsDuration() != d.RetryAfter {
			t.Errorf("retry after %v; want %v", r.RetryDelay.AsDuration(), d.RetryAfter)
		}
	}
	wantCode(t, err, codes.ResourceExhausted)
}

// TestModelsInfo: ListModels and GetModel describe the catalog's
// manifests; an empty name is the default model.
func TestModelsInfo(t *testing.T) {
	c := serveFakes(t, backends{eng: &fakeEngine{}, idx: &fakeIndex{}}, server.Options{})
	ctx := context.Background()
	list, err := c.emb.ListModels(ctx, &embeddv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Models) != 2 || list.Models[0].Name != fakeModel || list.Models[1].Name != "other-model" {
		t.Fatalf("got %v; want %s and other-model", list.Models, fakeModel)
	}
	info, err := c.emb.GetModel(ctx, &embeddv1.GetModelRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != fakeModel || info.Version != fakeVersion || info.Dims != fakeDims || info.Pooling != "mean" || !info.Normalize ||
		info.MaxTokens != 128 || info.Description != "a fake" || !slices.Equal(info.MatryoshkaDims, []uint32{4, 8}) || info.Loaded || info.Backend != "" {
		t.Errorf("got %+v; want the fake manifest, not loaded", info)
	}
	_, err = c.emb.GetModel(ctx, &embeddv1.GetModelRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, `"nope"`)
}

// TestVectorsConvert: the VectorService passes each request's fields to
// the index and each result's back, metadata and int8 codes included.
func TestVectorsConvert(t *testing.T) {
	_, idx, _, _, b := allFakes(t, nil)
	c := serveFakes(t, b, server.Options{})
	ctx := context.Background()

	up, err := c.vec.Upsert(ctx, &embeddv1.UpsertRequest{Collection: "docs", Truncate: true, Items: []*embeddv1.Item{
		{Id: "a", Text: "hello", Metadata: `{"lang":"en"}`, Features: map[string]float64{"f1": 2}},
		{Id: "b", Vector: []float32{1, 2}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := idx.Last()
	ur := last.(index.UpsertRequest)
	if ur.Collection != "docs" || !ur.Truncate || len(ur.Items) != 2 || ur.Items[0].Text != "hello" || string(ur.Items[0].Metadata) != `{"lang":"en"}` ||
		ur.Items[0].Features["f1"] != 2 || !slices.Equal(ur.Items[1].Vector, []float32{1, 2}) || ur.Items[1].Metadata == nil {
		t.Errorf("index got %+v", ur)
	}
	if up.Upserted != 2 || up.Collection != "docs" || up.Model != fakeModel || up.ModelVersion != fakeVersion || !up.Queued {
		t.Errorf("upsert answered %+v", up)
	}

	sr, err := c.vec.Search(ctx, &embeddv1.SearchRequest{Collection: "docs", Query: &embeddv1.SearchRequest_Vector{Vector: &embeddv1.FloatVector{Values: []float32{0.5}}},
		TopK: 5, Filter: `lang == "en"`, Rescore: true, Oversample: 4, Truncate: true, IncludeVectors: true, Features: map[string]float64{"f": 1}})
	if err != nil {
		t.Fatal(err)
	}
	last, _ = idx.Last()
	want := index.Query{Collection: "docs", Vector: []float32{0.5}, TopK: 5, Filter: `lang == "en"`, Rescore: true,
		Oversample: 4, Truncate: true, IncludeVectors: true, Features: map[string]float64{"f": 1}}
	if q := last.(index.Query); fmt.Sprint(q) != fmt.Sprint(want) {
		t.Errorf("index got %+v; want %+v", q, want)
	}
	if len(sr.Hits) != 2 || sr.Hits[0].Metadata != `{"lang":"en"}` || sr.Hits[0].Score != 0.9 || !slices.Equal(sr.Hits[0].Vector, []float32{0.5}) ||
		sr.Hits[1].Metadata != "" || !sr.Rescored || sr.ModelVersion != fakeVersion || sr.Collection != "docs" {
		t.Errorf("search answered %+v", sr)
	}

	gr, err := c.vec.Get(ctx, &embeddv1.GetRequest{Collection: "docs", Ids: []string{"a", "missing1"}, IncludeVectors: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(gr.Items) != 1 || !slices.Equal(gr.Missing, []string{"missing1"}) {
		t.Fatalf("get answered %+v", gr)
	}
	it := gr.Items[0]
	if it.Id != "a" || it.Metadata != `{"id":"a"}` || it.ModelVersion != fakeVersion || it.UpdatedAtUnixMs != fakeUpdated.UnixMilli() ||
		!slices.Equal(it.Int8, []byte{0xff, 2, 0x81}) || it.Scale != 0.5 || !slices.Equal(it.Vector, []float32{0.25, -0.5}) || it.Features["f1"] != 1 {
		t.Errorf("get item %+v", it)
	}

	dr, err := c.vec.Delete(ctx, &embeddv1.DeleteRequest{Collection: "docs", Ids: []string{"a", "b"}})
	if err != nil || dr.Deleted != 2 || !dr.Queued {
		t.Errorf("delete: %+v, %v", dr, err)
	}

	hr, err := c.vec.UpsertHybrid(ctx, &embeddv1.UpsertHybridRequest{Collection: "docs_hybrid", Ids: []string{"a", "b", "gone"}})
	if err != nil {
		t.Fatal(err)
	}
	if hr.Upserted != 2 || !slices.Equal(hr.NotFound, []string{"gone"}) || hr.StatsVersion != "s1" || !hr.StatsFrozen ||
		len(hr.MissingFeatures) != 1 || hr.MissingFeatures[0].Id != "a" || !slices.Equal(hr.MissingFeatures[0].Features, []string{"f2"}) {
		t.Errorf("upsert hybrid answered %+v", hr)
	}

	lc, err := c.vec.ListCollections(ctx, &embeddv1.ListCollectionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(lc.Collections) != 2 {
		t.Fatalf("got %d collections; want 2", len(lc.Collections))
	}
	if d, h := lc.Collections[0], lc.Collections[1]; d.VectorStore != "milvus" || d.OnlineStore != "redis" || h.VectorStore != "milvus" || h.OnlineStore != "" || h.Base != "docs" || h.Dims != fakeDims+2 {
		t.Errorf("got %v; want docs in milvus and redis, docs_hybrid in milvus only", lc.Collections)
	}
}

// TestFeaturesConvert: the FeatureService passes events and reads to the
// features service and answers each event with its own code.
func TestFeaturesConvert(t *testing.T) {
	_, _, feats, _, b := allFakes(t, nil)
	ctx := context.Background()
	feats.eventErrs = map[string]error{
		"late":   fmt.Errorf("events: %w", window.ErrTooLate),
		"bad":    fmt.Errorf("%w: no entity type", service.ErrInvalid),
		"down":   fmt.Errorf("%w: redis", service.ErrUnavailable),
		"cancel": context.Canceled,
	}
	c := serveFakes(t, b, server.Options{})
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	res, err := c.feat.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{
		{EventId: "ev-1", EntityId: "ok", EventType: "view", Timestamp: timestamppb.New(at), Values: map[string]float64{"amount": 3}, Context: map[string]string{"k": "v"}},
		{EntityId: "late"}, {EntityId: "bad"}, {EntityId: "down"}, {EntityId: "cancel"}, {EntityId: "ok2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantErrs := []codes.Code{0, codes.OutOfRange, codes.InvalidArgument, codes.Unavailable, codes.Canceled}
	if res.Accepted != 2 || len(res.Errors) != 4 {
		t.Fatalf("got %d accepted, %d errors; want 2, 4", res.Accepted, len(res.Errors))
	}
	for _, e := range res.Errors {
		if codes.Code(e.Code) != wantErrs[e.Index] || e.Message != feats.eventErrs[[]string{"ok", "late", "bad", "down", "cancel"}[e.Index]].Error() {
			t.Errorf("events[%d]: %v %q; want %v and the core's message", e.Index, codes.Code(e.Code), e.Message, wantErrs[e.Index])
		}
	}
	if evs := feats.Events(); evs[0].ID != "ev-1" || evs[1].ID != "" || !evs[0].Timestamp.Equal(at) || evs[0].Type != "view" || evs[0].Values["amount"] != 3 || evs[0].Context["k"] != "v" || !evs[1].Timestamp.IsZero() {
		t.Errorf("service got %+v; want the event's fields, zero time when unset", evs[:2])
	}

	gr, err := c.feat.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u1", "ghost"}, Features: []string{"f1", "f2@1"},
		AsOf: timestamppb.New(at), Context: map[string]string{"tier": "gold"}})
	if err != nil {
		t.Fatal(err)
	}
	req := feats.LastGet()
	if !slices.Equal(req.Entities, []string{"u1", "ghost"}) || !slices.Equal(req.Features, []string{"f1", "f2@1"}) || !req.AsOf.Equal(at) || req.Context["tier"] != "gold" {
		t.Errorf("service got %+v", req)
	}
	if len(gr.Features) != 2 || gr.Features[0].Name != "f1" || gr.Features[0].Version != 2 || gr.Features[1].Name != "f2" || gr.Features[1].Version != 1 {
		t.Errorf("feature refs %v; want f1@2, f2@1", gr.Features)
	}
	e := gr.Entities[0]
	if !e.Found || gr.Entities[1].Found || !slices.Equal(e.Values, []float64{1.5, 0}) || !slices.Equal(e.IsNull, []bool{false, true}) ||
		!slices.Equal(e.TimestampsUnixMicros, []int64{fakeAt.UnixMicro(), 0}) ||
		!slices.Equal(e.Sources, []embeddv1.ValueSource{embeddv1.ValueSource_VALUE_SOURCE_CACHE, embeddv1.ValueSource_VALUE_SOURCE_OFFLINE}) {
		t.Errorf("entity %+v", e)
	}

	lf, err := c.feat.ListFeatures(ctx, &embeddv1.ListFeaturesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(feats.reg.List()); len(lf.Features) != n || len(lf.FeatureSets) != len(feats.reg.Sets()) {
		t.Errorf("listed %d features, %d sets; want the registry's %d, %d", len(lf.Features), len(lf.FeatureSets), n, len(feats.reg.Sets()))
	}
	for i, d := range feats.reg.List() {
		if d.Sensitive && lf.Features[i].Description != "(sensitive)" {
			t.Errorf("sensitive feature %s described as %q", d.Name, lf.Features[i].Description)
		}
	}
}

// TestFeatureStats: GetFeatureStats reports what the monitor reports, and
// FAILED_PRECONDITION without one, including a nil *drift.Monitor.
func TestFeatureStats(t *testing.T) {
	_, _, _, mon, b := allFakes(t, nil)
	c := serveFakes(t, b, server.Options{})
	ctx := context.Background()
	all, err := c.feat.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Features) != len(mon.names) {
		t.Fatalf("got %d reports; want %d", len(all.Features), len(mon.names))
	}
	if f := all.Features[1]; f.Feature != "f2" || f.Status != drift.StatusModerate.String() || f.Psi != 0.15 || f.Reason != "psi" ||
		!f.HasReference || f.Current.Count != 10 || f.Current.Mean != 2 {
		t.Errorf("report %+v", f)
	}
	_, err = c.feat.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: []string{"f1", "nope"}})
	wantCode(t, err, codes.NotFound, "features[1]", `"nope" is not tracked`)

	for name, monitor := range map[string]server.DriftMonitor{"nil": nil, "nil *drift.Monitor": (*drift.Monitor)(nil)} {
		b.monitor = monitor
		off := serveFakes(t, b, server.Options{})
		_, err := off.feat.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{})
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "feature monitoring is off") {
			t.Errorf("%s monitor: got %v %q; want FAILED_PRECONDITION, monitoring is off", name, st.Code(), st.Message())
		}
	}
}

// TestMetricsCodes: each RPC is counted under the code its client got.
func TestMetricsCodes(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	m.Allow(metrics.Model, fakeModel)
	_, idx, _, _, b := allFakes(t, nil)
	c := serveFakes(t, b, server.Options{Metrics: m})
	ctx := context.Background()
	c.emb.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"a"}})
	c.emb.Embed(ctx, &embeddv1.EmbedRequest{})
	c.emb.Embed(ctx, &embeddv1.EmbedRequest{Model: "nope", Texts: []string{"a"}})
	c.emb.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"nan"}, OutputType: embeddv1.OutputType_OUTPUT_TYPE_BINARY})
	idx.setErr(errors.New("unexpected"))
	c.vec.Delete(ctx, &embeddv1.DeleteRequest{Collection: "docs", Ids: []string{"a"}})
	for _, tc := range []struct{ method, label, code string }{
		{"Embed", fakeModel, "OK"},
		{"Embed", fakeModel, "InvalidArgument"},
		{"Embed", metrics.Other, "NotFound"},
		{"Embed", fakeModel, "Internal"},
		{"Delete", metrics.Other, "Internal"},
	} {
		if got := testutil.ToFloat64(m.Requests.WithLabelValues(tc.method, tc.label, tc.code)); got != 1 {
			t.Errorf("%s{model=%q, code=%s} = %v; want 1", tc.method, tc.label, tc.code, got)
		}
	}
}

// TestNoRequestStateShared: concurrent requests over one server each get
// their own answer.
func TestNoRequestStateShared(t *testing.T) {
	c := serveFakes(t, backends{eng: &fakeEngine{}, idx: &fakeIndex{}}, server.Options{})
	ctx := context.Background()
	errs := make(chan error, 64)
	for i := range 64 {
		go func() {
			text := strings.Repeat("w ", i%7+1)
			resp, err := c.emb.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{text}, RequestId: fmt.Sprint(i)})
			switch {
			case err != nil:
				errs <- err
			case resp.RequestId != fmt.Sprint(i) || !slices.Equal(resp.Embeddings[0].Float32, fakeVector(text, 0)):
				errs <- fmt.Errorf("request %d answered as %q with another text's vector", i, resp.RequestId)
			default:
				errs <- nil
			}
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
