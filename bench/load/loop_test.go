package main

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// testServer is a scripted EmbeddingService for checking the load
// generator's own accounting exactly (latency from scheduled send times,
// error counting, coordinated omission), which needs delays and failures on
// cue that the real server cannot give: it counts a text's tokens as words
// plus [CLS] and [SEP], rejects every failEvery-th request and can stall one
// request. The real server is load-tested by scripts/bench-server.sh.
type testServer struct {
	embeddv1.UnimplementedEmbeddingServiceServer
	delay     time.Duration
	failEvery int64
	stall     time.Duration // the request whose number is stallAt sleeps this long
	stallAt   int64
	n         atomic.Int64
}

func (s *testServer) Embed(ctx context.Context, req *embeddv1.EmbedRequest) (*embeddv1.EmbedResponse, error) {
	n := s.n.Add(1)
	if s.failEvery > 0 && n%s.failEvery == 0 {
		return nil, status.Error(codes.ResourceExhausted, "queue full")
	}
	d := s.delay
	if n == s.stallAt {
		d = s.stall
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	resp := &embeddv1.EmbedResponse{Model: "test", Dims: 2}
	for _, text := range req.GetTexts() {
		tokens := uint32(len(strings.Fields(text)) + 2)
		resp.Embeddings = append(resp.Embeddings, &embeddv1.Embedding{Float32: []float32{1, 0}, Tokens: tokens})
		resp.TotalTokens += uint64(tokens)
	}
	return resp, nil
}

// dial serves srv over an in-memory listener and returns an embedFunc that
// calls it the way main does.
func dial(t *testing.T, srv embeddv1.EmbeddingServiceServer) embedFunc {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	embeddv1.RegisterEmbeddingServiceServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cl := embeddv1.NewEmbeddingServiceClient(cc)
	return func(ctx context.Context, text string) (int, error) {
		resp, err := cl.Embed(ctx, &embeddv1.EmbedRequest{Texts: []string{text}})
		if err != nil {
			return 0, err
		}
		return int(resp.GetTotalTokens()), nil
	}
}

var testTexts = []string{"one two three.", "one two three four five."} // 5 and 7 tokens

func TestRunClosed(t *testing.T) {
	embed := dial(t, &testServer{delay: time.Millisecond, failEvery: 5})
	spec := runSpec{Mode: modeClosed, Concurrency: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond, Timeout: time.Second}
	res := runClosed(context.Background(), spec, testTexts, embed)
	if res.OK < 20 {
		t.Fatalf("got %d successful requests; want at least 20", res.OK)
	}
	if res.Concurrency != 4 || res.Mode != modeClosed || res.DurationS != 0.3 {
		t.Errorf("got %+v; want mode closed, concurrency 4, 0.3 s", res)
	}
	if e := res.Errors["ResourceExhausted"]; e == 0 || res.Requests != res.OK+e || len(res.Errors) != 1 {
		t.Errorf("got errors %v, %d requests, %d ok; want only ResourceExhausted, counted in requests", res.Errors, res.Requests, res.OK)
	}
	if got, want := res.SentencesPerS, float64(res.OK)/0.3; got != want {
		t.Errorf("got %g sentences/s; want %g", got, want)
	}
	if res.MeanTokens < 5 || res.MeanTokens > 7 {
		t.Errorf("got %g tokens per text; want between 5 and 7", res.MeanTokens)
	}
	if res.LatencyMS.P50 < 1 || res.LatencyMS.P50 > res.LatencyMS.P99 || res.LatencyMS.P99 > res.LatencyMS.Max {
		t.Errorf("got latency %+v; want 1 ms <= p50 <= p99 <= max", res.LatencyMS)
	}
}

func TestRunClosedTimeout(t *testing.T) {
	embed := dial(t, &testServer{delay: time.Second})
	spec := runSpec{Mode: modeClosed, Concurrency: 2, Duration: 100 * time.Millisecond, Timeout: 20 * time.Millisecond}
	res := runClosed(context.Background(), spec, testTexts, embed)
	if res.OK != 0 || res.Errors["DeadlineExceeded"] == 0 {
		t.Errorf("got %d ok, errors %v; want only DeadlineExceeded", res.OK, res.Errors)
	}
}

func TestRunOpenUniform(t *testing.T) {
	embed := dial(t, &testServer{delay: 2 * time.Millisecond})
	spec := runSpec{Mode: modeOpen, Rate: 200, Arrivals: arrivalsUniform, Warmup: 100 * time.Millisecond,
		Duration: 500 * time.Millisecond, Timeout: time.Second, MaxInFlight: 100}
	res := runOpen(context.Background(), spec, testTexts, embed)
	// Sends every 5 ms: exactly 100 are scheduled inside the window.
	if res.Requests != 100 || res.OK != 100 {
		t.Errorf("got %d requests, %d ok; want 100 of each", res.Requests, res.OK)
	}
	if res.LatencyMS.P50 < 2 {
		t.Errorf("got p50 %g ms; want at least the server's 2 ms", res.LatencyMS.P50)
	}
}

func TestRunOpenPoisson(t *testing.T) {
	embed := dial(t, &testServer{})
	spec := runSpec{Mode: modeOpen, Rate: 400, Arrivals: arrivalsPoisson, Seed: 1,
		Duration: 500 * time.Millisecond, Timeout: time.Second, MaxInFlight: 100}
	res := runOpen(context.Background(), spec, testTexts, embed)
	// 200 expected; a Poisson count's standard deviation is about 14.
	if res.Requests < 150 || res.Requests > 250 {
		t.Errorf("got %d requests; want about 200", res.Requests)
	}
}

// TestRunOpenNoCoordinatedOmission stalls one request while only one may be
// in flight: the sends scheduled during the stall go out late, and their
// latency must include the wait.
func TestRunOpenNoCoordinatedOmission(t *testing.T) {
	embed := dial(t, &testServer{stall: 200 * time.Millisecond, stallAt: 5})
	spec := runSpec{Mode: modeOpen, Rate: 100, Arrivals: arrivalsUniform,
		Duration: 500 * time.Millisecond, Timeout: time.Second, MaxInFlight: 1}
	res := runOpen(context.Background(), spec, testTexts, embed)
	if res.OK != 50 {
		t.Errorf("got %d ok; want 50", res.OK)
	}
	// About 20 of 50 sends wait behind the stall, so p50 stays low while
	// p95 and the send lag show the stall.
	if res.LatencyMS.P95 < 100 || res.MaxSendLagMS < 100 {
		t.Errorf("got p95 %g ms, max send lag %g ms; want both at least 100 ms", res.LatencyMS.P95, res.MaxSendLagMS)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	embed := dial(t, &testServer{delay: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	runClosed(ctx, runSpec{Mode: modeClosed, Concurrency: 2, Duration: time.Hour, Timeout: time.Second}, testTexts, embed)
	runOpen(ctx, runSpec{Mode: modeOpen, Rate: 10, Duration: time.Hour, Timeout: time.Second, MaxInFlight: 1}, testTexts, embed)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("runs took %s after the context ended; want them to stop", d)
	}
}

func TestErrorKey(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.InvalidArgument, "x"), "InvalidArgument"},
		{errBadResponse, "BadResponse"},
		{context.DeadlineExceeded, "DeadlineExceeded"},
	} {
		if got := errorKey(tt.err); got != tt.want {
			t.Errorf("errorKey(%v) = %s; want %s", tt.err, got, tt.want)
		}
	}
}
