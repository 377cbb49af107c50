package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/server"
	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

const model = "all-minilm-l6-v2-int8"

type fixture struct {
	client embeddv1.EmbeddingServiceClient
	conn   *grpc.ClientConn
	eng    *engine.Engine
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a real server on a loopback port with a real engine.
func start(t *testing.T, mutate func(*engine.Options, *server.Options)) *fixture {
	t.Helper()
	testassets.Runtime(t)
	testassets.Model(t, model)
	eopts := engine.DefaultOptions()
	eopts.CacheDir = testassets.CacheDir()
	eopts.Logger = quiet()
	eopts.Accel.IntraOpThreads = 2
	sopts := server.Options{DefaultModel: model, Logger: quiet()}
	if mutate != nil {
		mutate(&eopts, &sopts)
	}
	eng := engine.New(testassets.Catalog(t), eopts)
	if _, err := eng.Load(context.Background(), model); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(server.ServerOptions(1 << 20)...)
	embeddv1.RegisterEmbeddingServiceServer(gs, server.New(eng, sopts))
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		eng.Close()
	})
	return &fixture{client: embeddv1.NewEmbeddingServiceClient(conn), conn: conn, eng: eng}
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func TestEmbedOutputs(t *testing.T) {
	f := start(t, nil)
	ctx := context.Background()
	texts := []string{"the cat sat on the mat", "stock markets fell sharply", "a kitten on a rug"}
	want, err := f.eng.Embed(ctx, model, texts, engine.EmbedOptions{Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: texts, Truncate: true, RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Model != model || resp.ModelVersion == "" || resp.Dims != 384 || resp.RequestId != "r1" || len(resp.Embeddings) != 3 {
		t.Fatalf("got model %q version %q dims %d id %q n %d", resp.Model, resp.ModelVersion, resp.Dims, resp.RequestId, len(resp.Embeddings))
	}
	var total uint64
	for i, e := range resp.Embeddings {
		if c := cosine(e.Float32, want.Vectors[i]); c < 0.99999 {
			t.Errorf("float32[%d] cos %v to engine; want 1", i, c)
		}
		if int(e.Tokens) != want.Tokens[i] {
			t.Errorf("tokens[%d] = %d; want %d", i, e.Tokens, want.Tokens[i])
		}
		total += uint64(e.Tokens)
	}
	if resp.TotalTokens != total {
		t.Errorf("total_tokens = %d; want %d", resp.TotalTokens, total)
	}

	q, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: texts, OutputType: embeddv1.OutputType_OUTPUT_TYPE_INT8, Dimensions: 128})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range q.Embeddings {
		if len(e.Int8) != 128 || e.Scale <= 0 {
			t.Fatalf("int8[%d]: %d bytes, scale %v", i, len(e.Int8), e.Scale)
		}
		deq := make([]float32, 128)
		for k, b := range e.Int8 {
			deq[k] = float32(int8(b)) * e.Scale
		}
		if c := cosine(deq, want.Vectors[i][:128]); c < 0.999 {
			t.Errorf("int8[%d] dequantized cos %v to the float prefix; want >= 0.999", i, c)
		}
	}
	b, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: texts[:1], OutputType: embeddv1.OutputType_OUTPUT_TYPE_BINARY})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(b.Embeddings[0].Binary); got != 48 {
		t.Errorf("binary bytes = %d; want 48", got)
	}
	for k := 0; k < 384; k++ {
		bit := b.Embeddings[0].Binary[k/8]>>(7-k%8)&1 == 1
		if bit != (want.Vectors[0][k] > 0) {
			t.Fatalf("binary bit %d = %v; float is %v", k, bit, want.Vectors[0][k])
		}
	}
}

func wantCode(t *testing.T, err error, code codes.Code, substrings ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("got %v (%q); want %v", st.Code(), st.Message(), code)
	}
	for _, s := range substrings {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("message %q does not contain %q", st.Message(), s)
		}
	}
}

func TestEmbedErrors(t *testing.T) {
	f := start(t, func(e *engine.Options, s *server.Options) {
		s.MaxClientBatch = 4
		e.MaxTextBytes = 1000
	})
	ctx := context.Background()
	long := strings.Repeat("word ", 300)
	tests := []struct {
		name string
		req  *embeddv1.EmbedRequest
		code codes.Code
		msg  []string
	}{
		{"empty", &embeddv1.EmbedRequest{}, codes.InvalidArgument, []string{"texts is empty"}},
		{"too many texts", &embeddv1.EmbedRequest{Texts: []string{"a", "b", "c", "d", "e"}}, codes.InvalidArgument, []string{"5 items", "limit 4"}},
		{"too many tokens", &embeddv1.EmbedRequest{Texts: []string{"ok", strings.Repeat("a ", 400)}}, codes.InvalidArgument, []string{"texts[1]", "402 tokens", "256"}},
		{"too many bytes", &embeddv1.EmbedRequest{Texts: []string{"ok", long}, Truncate: true}, codes.InvalidArgument, []string{"texts[1]", "1500 bytes", "limit 1000"}},
		{"unknown model", &embeddv1.EmbedRequest{Model: "nope", Texts: []string{"a"}}, codes.NotFound, []string{`"nope"`}},
		{"dims too large", &embeddv1.EmbedRequest{Texts: []string{"a"}, Dimensions: 385}, codes.InvalidArgument, []string{"385", "[1, 384]"}},
		{"bad output type", &embeddv1.EmbedRequest{Texts: []string{"a"}, OutputType: 9}, codes.InvalidArgument, []string{"output_type 9"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.Embed(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg...)
		})
	}
	// The same text is accepted with truncate set.
	if _, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{strings.Repeat("a ", 400)}, Truncate: true}); err != nil {
		t.Errorf("truncated: %v", err)
	}
}

// rawCodec sends pre-encoded bytes, so a test can send what the generated
// client refuses to encode (invalid UTF-8 in a string field).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

var _ encoding.CodecV2 = rawCodec{}

func TestInvalidUTF8(t *testing.T) {
	f := start(t, nil)
	var b []byte
	for _, text := range []string{"fine", "also fine", "bad \xff byte"} {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, text)
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	var resp embeddv1.EmbedResponse
	err := f.conn.Invoke(context.Background(), embeddv1.EmbeddingService_Embed_FullMethodName, b, &resp, grpc.ForceCodecV2(rawCodec{}))
	wantCode(t, err, codes.InvalidArgument, "texts[2]", "invalid UTF-8", "byte offset 4")

	// The same bytes without the bad text decode and embed.
	var ok []byte
	ok = protowire.AppendTag(ok, 2, protowire.BytesType)
	ok = protowire.AppendString(ok, "fine")
	if err := f.conn.Invoke(context.Background(), embeddv1.EmbeddingService_Embed_FullMethodName, ok, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatalf("valid raw request: %v", err)
	}
}

func TestMessageTooLarge(t *testing.T) {
	f := start(t, nil) // ServerOptions(1 MiB) in start
	_, err := f.client.Embed(context.Background(), &embeddv1.EmbedRequest{Texts: []string{strings.Repeat("x", 2<<20)}})
	wantCode(t, err, codes.ResourceExhausted)
}

func TestDeadlineAndCancel(t *testing.T) {
	f := start(t, func(e *engine.Options, s *server.Options) {
		e.Batch.MaxQueueDelay = 300 * time.Millisecond
		e.Batch.MaxBatchSize = 64
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"waits for a batch that fills too late"}})
	wantCode(t, err, codes.DeadlineExceeded)

	cctx, ccancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); ccancel() }()
	_, err = f.client.Embed(cctx, &embeddv1.EmbedRequest{Texts: []string{"cancelled while queued"}})
	wantCode(t, err, codes.Canceled)

	// Dropped items are counted, not computed: the next request still works.
	if _, err := f.client.Embed(context.Background(), &embeddv1.EmbedRequest{Texts: []string{"after"}}); err != nil {
		t.Fatal(err)
	}
}

func TestQueueFull(t *testing.T) {
	f := start(t, func(e *engine.Options, s *server.Options) {
		e.Batch.QueueSize = 4
		e.Batch.MaxQueueDelay = time.Second
		e.Batch.MaxBatchSize = 64
		s.RetryAfter = 75 * time.Millisecond
	})
	ctx := context.Background()
	// Four texts wait a second for their batch; the fifth has no room.
	done := make(chan error, 1)
	go func() {
		_, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"a", "b", "c", "d"}})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, _ := f.eng.Loaded(model)
		if on, _ := m.QueueLen(); on == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	_, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{"no room"}})
	wantCode(t, err, codes.ResourceExhausted, "queue full")
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("rejection took %v; want immediate", el)
	}
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() != 75*time.Millisecond {
		t.Errorf("retry info = %v; want 75ms", retry)
	}
	if err := <-done; err != nil {
		t.Errorf("queued request failed: %v", err)
	}
}

func TestConcurrentClients(t *testing.T) {
	f := start(t, func(e *engine.Options, s *server.Options) { e.Batch.MaxQueueDelay = 5 * time.Millisecond })
	ctx := context.Background()
	const clients, perClient = 32, 3
	texts := make([]string, clients)
	for i := range texts {
		texts[i] = fmt.Sprintf("client %d asks about subject %d", i, i*13)
	}
	want, err := f.eng.Embed(ctx, model, texts, engine.EmbedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < perClient; r++ {
				resp, err := f.client.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{texts[c]}, RequestId: fmt.Sprint(c, "/", r)})
				if err != nil {
					errs <- err
					continue
				}
				if resp.RequestId != fmt.Sprint(c, "/", r) {
					errs <- fmt.Errorf("client %d got request id %q", c, resp.RequestId)
				}
				if cs := cosine(resp.Embeddings[0].Float32, want.Vectors[c]); cs < 0.99999 {
					errs <- fmt.Errorf("client %d: cos %v to its own text", c, cs)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestEmbedStream(t *testing.T) {
	f := start(t, nil)
	stream, err := f.client.EmbedStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*embeddv1.EmbedRequest{
		{RequestId: "a", Texts: []string{"first"}},
		{RequestId: "b", Texts: []string{"second", "third"}},
		{RequestId: "bad", Texts: nil},
		{RequestId: "c", Model: "missing", Texts: []string{"x"}},
		{RequestId: "d", Texts: []string{"last"}, OutputType: embeddv1.OutputType_OUTPUT_TYPE_INT8},
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := map[string]*embeddv1.EmbedResponse{}
	for _, resp := range recvAll(t, stream) {
		got[resp.RequestId] = resp
	}
	if len(got) != len(reqs) {
		t.Fatalf("got %d responses; want %d", len(got), len(reqs))
	}
	if n := len(got["b"].Embeddings); n != 2 || got["b"].Error != nil {
		t.Errorf("b: %d embeddings, error %v; want 2, nil", n, got["b"].Error)
	}
	if e := got["bad"].Error; e == nil || codes.Code(e.Code) != codes.InvalidArgument {
		t.Errorf("bad: error %v; want INVALID_ARGUMENT", e)
	}
	if e := got["c"].Error; e == nil || codes.Code(e.Code) != codes.NotFound {
		t.Errorf("c: error %v; want NOT_FOUND", e)
	}
	if len(got["d"].Embeddings[0].Int8) != 384 {
		t.Errorf("d: int8 output missing")
	}
}

func TestModels(t *testing.T) {
	f := start(t, nil)
	ctx := context.Background()
	list, err := f.client.ListModels(ctx, &embeddv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Models) < 2 {
		t.Fatalf("got %d models; want >= 2", len(list.Models))
	}
	info, err := f.client.GetModel(ctx, &embeddv1.GetModelRequest{Name: model})
	if err != nil {
		t.Fatal(err)
	}
	if info.Dims != 384 || info.MaxTokens != 256 || info.Pooling != "mean" || !info.Loaded || info.Backend != "onnxruntime/cpu" {
		t.Errorf("got %+v", info)
	}
	_, err = f.client.GetModel(ctx, &embeddv1.GetModelRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound)
}
