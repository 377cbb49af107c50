package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

func testServeConfig(t *testing.T, args ...string) *serveConfig {
	t.Helper()
	var c serveConfig
	fs := newFlagSet("serve", "")
	c.register(fs)
	base := []string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--cache-dir", testassets.CacheDir(), "--model", "all-minilm-l6-v2-int8", "--threads", "2",
		"--data-dir", t.TempDir(), "--milvus-addr", "", "--redis-addr", ""}
	if err := c.common.parse(fs, append(base, args...)); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestServeDrainsOnShutdown: requests accepted before shutdown all finish,
// serve returns nil (exit 0), and the health check stops reporting SERVING.
func TestServeDrainsOnShutdown(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	c := testServeConfig(t, "--max-queue-delay", "400ms", "--shutdown-timeout", "20s")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ready := make(chan [2]string, 1)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-served:
		t.Fatalf("serve: %v", err)
	}
	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := embeddv1.NewEmbeddingServiceClient(conn)
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Embed(context.Background(), &embeddv1.EmbedRequest{Texts: []string{fmt.Sprintf("request %d in flight at shutdown", i)}})
			if err == nil && len(resp.Embeddings) != 1 {
				err = fmt.Errorf("request %d: %d embeddings", i, len(resp.Embeddings))
			}
			errs <- err
		}()
	}
	time.Sleep(150 * time.Millisecond) // all twelve are queued, waiting for the 400ms delay
	stop()                             // what SIGTERM does in main
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("accepted request lost: %v", err)
		}
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve returned %v; want nil (exit 0)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return after shutdown")
	}
	if _, err := client.Embed(context.Background(), &embeddv1.EmbedRequest{Texts: []string{"late"}}); err == nil {
		t.Error("request after shutdown succeeded")
	}
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "embedd.yaml")
	os.WriteFile(cfg, []byte("max_batch_size: 7\nworkers: 3\nqueue-size: 99\npreload: [a, b]\n"), 0o644)
	t.Setenv("EMBEDD_WORKERS", "5")
	t.Setenv("EMBEDD_CONFIG", cfg)
	var c serveConfig
	fs := newFlagSet("serve", "")
	c.register(fs)
	if err := c.common.parse(fs, []string{"--queue-size", "11"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"flag beats env and file", c.queueSize, 11},
		{"env beats file", c.workers, 5},
		{"file beats default", c.maxBatchSize, 7},
		{"list in file", c.preload, "a,b"},
		{"default", c.maxBatchTokens, 8192},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v; want %v", tc.name, tc.got, tc.want)
		}
	}

	os.WriteFile(cfg, []byte("max_batch_size: 7\nmax_bach_tokens: 1\n"), 0o644)
	fs = newFlagSet("serve", "")
	c = serveConfig{}
	c.register(fs)
	err := c.common.parse(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "max-bach-tokens") {
		t.Errorf("got %v; want an error naming line 2 and the unknown key", err)
	}
}

// runServe starts serve with c and returns a client connection and a stop
// function that waits for serve to return nil.
func runServe(t *testing.T, c *serveConfig) (*grpc.ClientConn, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-served:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return conn, func() {
		conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve returned %v", err)
		}
	}
}

// TestServeVectors: Upsert, Search, Get and Delete over a real listener on
// the embedded default store, which survives a restart of the server.
func TestServeVectors(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	data := t.TempDir()
	c := testServeConfig(t, "--data-dir", data, "--collections", "docs,faq=all-minilm-l6-v2-int8")
	conn, stop := runServe(t, c)
	ctx := context.Background()
	vc := embeddv1.NewVectorServiceClient(conn)
	up, err := vc.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{
		{Id: "cat", Text: "The cat sleeps on the sofa.", Metadata: `{"kind":"pet"}`, Features: map[string]float64{"ctr": 0.25}},
		{Id: "bond", Text: "Bond yields rose after the central bank decision.", Metadata: `{"kind":"finance"}`},
	}})
	if err != nil || up.Upserted != 2 || up.Collection != "docs" || up.Queued {
		t.Fatalf("upsert: %v %v", up, err)
	}
	lc, err := vc.ListCollections(ctx, &embeddv1.ListCollectionsRequest{})
	if err != nil || len(lc.Collections) != 2 || lc.Collections[0].VectorStore != "embedded" || lc.Collections[0].Dims != 384 {
		t.Fatalf("list collections: %v %v", lc, err)
	}
	// Bad input: INVALID_ARGUMENT naming the item; unknown collection: NOT_FOUND.
	_, err = vc.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{{Id: "x", Text: "ok"}, {Id: "y", Vector: []float32{1, 2, 3}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `items[1] ("y"): vector has 3 dimensions; collection "docs" has 384`) {
		t.Fatalf("bad upsert: %v", err)
	}
	_, err = vc.Search(ctx, &embeddv1.SearchRequest{Collection: "nope", Query: &embeddv1.SearchRequest_Text{Text: "x"}, TopK: 1})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown collection: %v", err)
	}
	_, err = vc.Search(ctx, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Id{Id: "ghost"}, TopK: 1})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown id: %v", err)
	}
	stop()

	// Restart on the same data directory: the items are still there.
	conn, stop = runServe(t, testServeConfig(t, "--data-dir", data, "--collections", "docs,faq=all-minilm-l6-v2-int8"))
	defer stop()
	vc = embeddv1.NewVectorServiceClient(conn)
	sr, err := vc.Search(ctx, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Text{Text: "a sleepy kitten"}, TopK: 2, Rescore: true})
	if err != nil || len(sr.Hits) != 2 || sr.Hits[0].Id != "cat" || sr.Hits[0].Metadata != `{"kind":"pet"}` || !sr.Rescored {
		t.Fatalf("search after restart: %v %v", sr, err)
	}
	g, err := vc.Get(ctx, &embeddv1.GetRequest{Ids: []string{"cat", "nope"}})
	if err != nil || len(g.Items) != 1 || g.Items[0].Features["ctr"] != 0.25 || len(g.Items[0].Int8) != 384 || fmt.Sprint(g.Missing) != "[nope]" {
		t.Fatalf("get: %v %v", g, err)
	}
	if d, err := vc.Delete(ctx, &embeddv1.DeleteRequest{Ids: []string{"cat"}}); err != nil || d.Deleted != 1 {
		t.Fatalf("delete: %v %v", d, err)
	}
	if g, err := vc.Get(ctx, &embeddv1.GetRequest{Ids: []string{"cat"}}); err != nil || len(g.Items) != 0 {
		t.Fatalf("get after delete: %v %v", g, err)
	}
}
