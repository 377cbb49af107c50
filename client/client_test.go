package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/client"
	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// needStack skips a test when TestMain found no model assets (it fails the
// run instead under EMBEDD_REQUIRE_ASSETS=1).
func needStack(t *testing.T) *stack {
	t.Helper()
	if testStack == nil {
		t.Skip("model assets missing; run `make setup`")
	}
	return testStack
}

// counter is a server interceptor counting calls by method and code.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[fmt.Sprintf("%s %s", info.FullMethod, status.Code(err))]++
	return resp, err
}

func (c *counter) get(method string, code codes.Code) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[fmt.Sprintf("/embedd.v1.%s %s", method, code)]
}

// authServer serves the stack behind embedd's real auth interceptor, with
// one key ("k1", scope embed) limited to rate requests/s with a burst of
// one; calls are counted outside the auth check.
func authServer(t *testing.T, rate float64) (addr, key string, calls *counter) {
	t.Helper()
	s := needStack(t)
	key = auth.KeyPrefix + "client-test-key"
	keyFile := filepath.Join(t.TempDir(), "keys.yaml")
	yaml := fmt.Sprintf("keys:\n  - id: k1\n    sha256: %s\n    scopes: [embed]\n    rate: %g\n    burst: 1\n", auth.HashKey(key), rate)
	if err := os.WriteFile(keyFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.LoadKeys(keyFile, quiet())
	if err != nil {
		t.Fatal(err)
	}
	unary, stream := auth.Interceptors(auth.Options{Keys: keys, Audit: quiet()})
	calls = &counter{}
	addr, stop, err := s.serve(grpc.ChainUnaryInterceptor(calls.unary, unary), grpc.ChainStreamInterceptor(stream))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr, key, calls
}

// TestRetryHonoursRetryInfo: a key over its rate gets RESOURCE_EXHAUSTED
// with a RetryInfo hint from embedd's auth; the client waits that long and
// retries once, not on its own (shorter) backoff schedule.
func TestRetryHonoursRetryInfo(t *testing.T) {
	addr, key, calls := authServer(t, 2) // a token every 500ms
	c, err := client.New(addr, client.Options{Insecure: true, APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Embed(ctx, []string{"first takes the burst"}, client.EmbedOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := c.Embed(ctx, []string{"second waits for the hint"}, client.EmbedOptions{})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("second call: %v; want success after a retry", err)
	}
	if res.Dims != 384 {
		t.Errorf("dims %d; want 384", res.Dims)
	}
	if got := calls.get("EmbeddingService/Embed", codes.ResourceExhausted); got != 1 {
		t.Errorf("RESOURCE_EXHAUSTED answers: %d; want 1 (one retry, after the hint)", got)
	}
	if got := calls.get("EmbeddingService/Embed", codes.OK); got != 2 {
		t.Errorf("OK answers: %d; want 2", got)
	}
	if took < 400*time.Millisecond {
		t.Errorf("the retried call took %v; want about the 500ms hint", took)
	}

	// Without retries the hint reaches the caller.
	once, err := client.New(addr, client.Options{Insecure: true, APIKey: key, Retry: client.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer once.Close()
	_, err = once.Embed(ctx, []string{"no retry"}, client.EmbedOptions{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v; want RESOURCE_EXHAUSTED", err)
	}
	if d, ok := client.RetryDelay(err); !ok || d <= 0 || d > 500*time.Millisecond {
		t.Errorf("RetryDelay = %v, %v; want (0, 500ms], true", d, ok)
	}
}

// TestRetryRespectsDeadline: a hint longer than the time left is not
// waited for: the call fails at once with the server's error, after one
// attempt.
func TestRetryRespectsDeadline(t *testing.T) {
	addr, key, calls := authServer(t, 0.5) // a token every 2s
	c, err := client.New(addr, client.Options{Insecure: true, APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Embed(context.Background(), []string{"takes the burst"}, client.EmbedOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Embed(ctx, []string{"over the rate"}, client.EmbedOptions{})
	took := time.Since(start)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v; want RESOURCE_EXHAUSTED (the server's answer, not a deadline)", err)
	}
	if took > 250*time.Millisecond {
		t.Errorf("took %v; want an immediate return (the 2s hint is past the 500ms deadline)", took)
	}
	if got := calls.get("EmbeddingService/Embed", codes.ResourceExhausted); got != 1 {
		t.Errorf("attempts: %d; want 1", got)
	}
}

// attempts counts the attempts the client makes (an interceptor given in
// DialOptions runs inside the retry loop).
func attempts(n *atomic.Int32) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		n.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

// TestRetryOnlySafeCalls: UNAVAILABLE (nothing listens) is retried on
// Embed and Upsert, and on IngestEvents only when every event has an id.
func TestRetryOnlySafeCalls(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // connection refused: UNAVAILABLE
	for _, tc := range []struct {
		name string
		call func(context.Context, *client.Client) error
		want int32
	}{
		{"embed", func(ctx context.Context, c *client.Client) error {
			_, err := c.Embed(ctx, []string{"x"}, client.EmbedOptions{})
			return err
		}, 3},
		{"upsert", func(ctx context.Context, c *client.Client) error {
			_, err := c.Upsert(ctx, "", []client.Item{{ID: "a", Text: "x"}})
			return err
		}, 3},
		{"ingest with ids", func(ctx context.Context, c *client.Client) error {
			_, err := c.Ingest(ctx, []client.Event{{ID: "e1", Entity: "u", Type: "t"}, {ID: "e2", Entity: "u", Type: "t"}})
			return err
		}, 3},
		{"ingest without ids", func(ctx context.Context, c *client.Client) error {
			_, err := c.Ingest(ctx, []client.Event{{ID: "e1", Entity: "u", Type: "t"}, {Entity: "u", Type: "t"}})
			return err
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			c, err := client.New(addr, client.Options{Insecure: true, DialOptions: []grpc.DialOption{attempts(&n)},
				Retry: client.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tc.call(ctx, c); status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v; want UNAVAILABLE", err)
			}
			if got := n.Load(); got != tc.want {
				t.Errorf("attempts %d; want %d", got, tc.want)
			}
		})
	}
}

// TestNoRetryWithoutHint: RESOURCE_EXHAUSTED without RetryInfo (here a
// reply over the client's size limit) is not retried.
func TestNoRetryWithoutHint(t *testing.T) {
	needStack(t)
	var n atomic.Int32
	c, err := client.New(serverAddr, client.Options{Insecure: true, MaxRecvMessageBytes: 100, DialOptions: []grpc.DialOption{attempts(&n)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Embed(context.Background(), []string{"a reply of 384 floats is over 100 bytes"}, client.EmbedOptions{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v; want RESOURCE_EXHAUSTED", err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("attempts %d; want 1", got)
	}
}

// TestRoundRobin: a list of two replicas gets the calls in turn.
func TestRoundRobin(t *testing.T) {
	s := needStack(t)
	var a, b counter
	addrA, stopA, err := s.serve(grpc.ChainUnaryInterceptor(a.unary))
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	addrB, stopB, err := s.serve(grpc.ChainUnaryInterceptor(b.unary))
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()
	c, err := client.New(addrA+","+addrB, client.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	// Connect to both first: round_robin picks among the ready ones.
	deadline := time.Now().Add(10 * time.Second)
	for a.get("EmbeddingService/ListModels", codes.OK) == 0 || b.get("EmbeddingService/ListModels", codes.OK) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the calls never reached both replicas")
		}
		if _, err := c.Embeddings.ListModels(ctx, &embeddv1.ListModelsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 20
	for i := 0; i < n; i++ {
		if _, err := c.Embed(ctx, []string{fmt.Sprintf("text %d", i)}, client.EmbedOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ga, gb := a.get("EmbeddingService/Embed", codes.OK), b.get("EmbeddingService/Embed", codes.OK)
	if ga != n/2 || gb != n/2 {
		t.Errorf("replica A got %d calls, B %d; want %d each", ga, gb, n/2)
	}
}

// TestAPIKey: embedd's auth sees the key; a call without the scope is
// refused; a key is never sent in plaintext to a non-loopback address.
func TestAPIKey(t *testing.T) {
	addr, key, _ := authServer(t, 1000)
	for _, tc := range []struct {
		key  string
		code codes.Code
	}{{"", codes.Unauthenticated}, {"ek_wrong", codes.Unauthenticated}, {key, codes.OK}} {
		c, err := client.New(addr, client.Options{Insecure: true, APIKey: tc.key})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Embed(context.Background(), []string{"x"}, client.EmbedOptions{})
		c.Close()
		if status.Code(err) != tc.code {
			t.Errorf("key %q: got %v; want %v", tc.key, err, tc.code)
		}
	}
	c, err := client.New(addr, client.Options{Insecure: true, APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Search(context.Background(), "docs", client.Query{Text: "x"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("search with an embed-only key: %v; want PERMISSION_DENIED", err)
	}
	for _, target := range []string{"embedd.example.com:50051", "dns:///embedd:50051", "127.0.0.1:1,10.0.0.1:1"} {
		if _, err := client.New(target, client.Options{Insecure: true, APIKey: key}); !errors.Is(err, client.ErrKeyInClear) {
			t.Errorf("%s: got %v; want ErrKeyInClear", target, err)
		}
	}
	for _, target := range []string{"localhost:1", "dns:///localhost:1", "[::1]:1,127.0.0.2:1"} {
		c, err := client.New(target, client.Options{Insecure: true, APIKey: key})
		if err != nil {
			t.Errorf("%s: %v; want a client (loopback)", target, err)
			continue
		}
		c.Close()
	}
}

// TestMutualTLS: the client verifies the server with the CA and presents
// its certificate; the server requires it.
func TestMutualTLS(t *testing.T) {
	s := needStack(t)
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, "test-ca")
	sc, sk := ca.Issue(t, "server", 2)
	cc, ck := ca.Issue(t, "client", 3)
	caFile := tlsconftest.WriteIn(t, dir, "ca.pem", ca.PEM)
	certFile, keyFile := tlsconftest.WriteIn(t, dir, "client.pem", cc), tlsconftest.WriteIn(t, dir, "client.key", ck)
	serverCert, err := tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := s.serve(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cfg, err := client.LoadTLS(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(addr, client.Options{TLS: cfg, APIKey: "ek_sent_over_tls"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res, err := c.Embed(ctx, []string{"over mutual TLS"}, client.EmbedOptions{}); err != nil || res.Dims != 384 {
		t.Fatalf("mutual TLS: %v, %v", res, err)
	}

	noCert, err := client.LoadTLS(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := client.New(addr, client.Options{TLS: noCert, Retry: client.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Embed(ctx, []string{"x"}, client.EmbedOptions{}); err == nil {
		t.Error("a client without a certificate was served")
	}
	if _, err := client.New(addr, client.Options{}); !errors.Is(err, client.ErrNoTransport) {
		t.Errorf("no TLS nor Insecure: %v; want ErrNoTransport", err)
	}
	if _, err := client.LoadTLS(caFile, certFile, ""); err == nil {
		t.Error("LoadTLS with a certificate and no key: no error")
	}
}

// TestTypedCalls covers Get, Search by id and vector, and the argument
// errors that never reach the server.
func TestTypedCalls(t *testing.T) {
	needStack(t)
	c, err := client.New(serverAddr, client.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	emb, err := c.Embed(ctx, []string{"red apples", "green pears"}, client.EmbedOptions{Dimensions: 64})
	if err != nil {
		t.Fatal(err)
	}
	if emb.Dims != 64 || len(emb.Vectors[1]) != 64 {
		t.Fatalf("dims %d, len %d; want 64", emb.Dims, len(emb.Vectors[1]))
	}
	if _, err := c.Upsert(ctx, "scratch", []client.Item{
		{ID: "apple", Text: "red apples", Metadata: map[string]any{"n": 1}, Features: map[string]float64{"price": 2.5}},
		{ID: "pear", Text: "green pears"},
	}); err != nil {
		t.Fatal(err)
	}
	items, missing, err := c.Get(ctx, "scratch", []string{"apple", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != "apple" || items[0].Metadata["n"] != float64(1) || items[0].Features["price"] != 2.5 || items[0].UpdatedAt.IsZero() {
		t.Errorf("items %+v", items)
	}
	if len(missing) != 1 || missing[0] != "nope" {
		t.Errorf("missing %v; want [nope]", missing)
	}
	byID, err := c.Search(ctx, "scratch", client.Query{ID: "apple", TopK: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(byID.Hits) != 1 || byID.Hits[0].ID != "pear" {
		t.Errorf("search by id: %+v; want only pear (the item itself is left out)", byID.Hits)
	}
	full, err := c.Embed(ctx, []string{"red apples"}, client.EmbedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byVec, err := c.Search(ctx, "scratch", client.Query{Vector: full.Vectors[0], TopK: 1, Rescore: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(byVec.Hits) != 1 || byVec.Hits[0].ID != "apple" || byVec.Hits[0].Score < 0.99 {
		t.Errorf("search by vector: %+v; want apple, score ~1", byVec.Hits)
	}
	if _, err := c.Search(ctx, "scratch", client.Query{Text: "a", ID: "b"}); err == nil {
		t.Error("a query with text and id: no error")
	}
	if _, err := c.Upsert(ctx, "scratch", []client.Item{{ID: "x", Text: "x", Metadata: map[string]any{"bad": make(chan int)}}}); err == nil {
		t.Error("unencodable metadata: no error")
	}
}

// TestHealthCheck: with HealthCheck on, a replica whose health service
// reports NOT_SERVING gets no calls, and gets them again once SERVING.
func TestHealthCheck(t *testing.T) {
	s := needStack(t)
	var a, b counter
	hsA, hsB := health.NewServer(), health.NewServer()
	addrA, stopA, err := s.serveWith(func(gs *grpc.Server) { healthpb.RegisterHealthServer(gs, hsA) }, grpc.ChainUnaryInterceptor(a.unary))
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	addrB, stopB, err := s.serveWith(func(gs *grpc.Server) { healthpb.RegisterHealthServer(gs, hsB) }, grpc.ChainUnaryInterceptor(b.unary))
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()
	hsB.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING) // e.g. its Redis is down
	c, err := client.New(addrA+","+addrB, client.Options{Insecure: true, HealthCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		if _, err := c.Embeddings.ListModels(ctx, &embeddv1.ListModelsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if ga, gb := a.get("EmbeddingService/ListModels", codes.OK), b.get("EmbeddingService/ListModels", codes.OK); ga != 10 || gb != 0 {
		t.Fatalf("serving replica got %d calls, NOT_SERVING one %d; want 10 and 0", ga, gb)
	}
	hsB.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for b.get("EmbeddingService/ListModels", codes.OK) == 0 {
		if ctx.Err() != nil {
			t.Fatal("the replica back to SERVING never got a call")
		}
		if _, err := c.Embeddings.ListModels(ctx, &embeddv1.ListModelsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
}
