package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/store/milvus"
	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

func testServeConfig(t *testing.T, args ...string) *serveConfig {
	t.Helper()
	var c serveConfig
	fs := newFlagSet("serve", "")
	c.register(fs)
	base := []string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--cache-dir", testassets.CacheDir(), "--model", "all-minilm-l6-v2-int8", "--threads", "2",
		"--data-dir", t.TempDir(), "--milvus-addr", "", "--redis-addr", "", "--http-addr", ""}
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
		{"default (0: the device's own)", c.maxBatchTokens, 0},
		{"default provider", c.provider, "cpu"},
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
	conn, _, stop := runServeMetrics(t, c)
	return conn, stop
}

// runServeMetrics is runServe that also returns the metrics address.
func runServeMetrics(t *testing.T, c *serveConfig) (*grpc.ClientConn, string, func()) {
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
	return conn, addrs[1], func() {
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

// TestServeFeatures: IngestEvents and GetFeatures over a real listener, in
// the embedded mode and, with EMBEDD_REDIS_ADDR, on Redis with events also
// arriving through a Redis stream.
func TestServeFeatures(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	check := func(t *testing.T, fc embeddv1.FeatureServiceClient, entity string, wantCount float64) {
		t.Helper()
		res, err := fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{entity}, Features: []string{"amount_sum_5m", "amount_count_5m", "events_in_session", "user_engagement_score"}, Context: map[string]string{"tier": "enterprise"}})
		if err != nil {
			t.Fatal(err)
		}
		e := res.Entities[0]
		v := e.Values
		if !e.Found || len(res.Features) != 4 || res.Features[3].Name != "user_engagement_score" || res.Features[3].Version != 1 ||
			v[1] != wantCount || v[0] != 10*wantCount || v[2] != wantCount || v[3] != 0.5*1.5 || e.IsNull[3] ||
			e.Sources[3] != embeddv1.ValueSource_VALUE_SOURCE_COMPUTED || e.TimestampsUnixMicros[0] == 0 {
			t.Fatalf("features of %s: %v", entity, res)
		}
	}
	ingest := func(t *testing.T, fc embeddv1.FeatureServiceClient, entity string) {
		t.Helper()
		var evs []*embeddv1.Event
		for i := range 3 {
			evs = append(evs, &embeddv1.Event{EntityId: entity, EventType: "view", Timestamp: ts(time.Duration(i-3) * time.Second), Values: map[string]float64{"amount": 10}})
		}
		evs = append(evs, &embeddv1.Event{EntityId: entity, Timestamp: ts(time.Hour)})                                                      // future: rejected
		evs = append(evs, &embeddv1.Event{EntityId: entity, Timestamp: ts(-time.Second), Values: map[string]float64{"amount": math.NaN()}}) // NaN: rejected
		res, err := fc.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted != 3 || len(res.Errors) != 2 || res.Errors[0].Index != 3 || res.Errors[1].Index != 4 ||
			codes.Code(res.Errors[0].Code) != codes.InvalidArgument || !strings.Contains(res.Errors[1].Message, `value "amount" is NaN`) {
			t.Fatalf("ingest: %v", res)
		}
	}

	t.Run("embedded", func(t *testing.T) {
		data := t.TempDir()
		conn, stop := runServe(t, testServeConfig(t, "--data-dir", data))
		fc := embeddv1.NewFeatureServiceClient(conn)
		ingest(t, fc, "u1")
		check(t, fc, "u1", 3)
		stop()
		// The window state survives a restart of the embedded mode.
		conn, stop = runServe(t, testServeConfig(t, "--data-dir", data))
		defer stop()
		fc = embeddv1.NewFeatureServiceClient(conn)
		if res, err := fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u1"}, Features: []string{"amount_count_5m"}}); err != nil || res.Entities[0].Values[0] != 3 {
			t.Fatalf("after restart: %v %v", res, err)
		}
		check(t, fc, "u1", 3)
		lf, err := fc.ListFeatures(ctx, &embeddv1.ListFeaturesRequest{})
		if err != nil || len(lf.Features) < 30 || len(lf.FeatureSets) == 0 {
			t.Fatalf("list features: %v %v", len(lf.GetFeatures()), err)
		}
		st, err := fc.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: []string{"amount_sum_5m"}})
		if err != nil || st.Features[0].Current.Count != 1 || st.Features[0].Status != "unknown" {
			t.Fatalf("stats: %v %v", st, err)
		}
		_, err = fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u1"}, Features: []string{"nope"}})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("unknown feature: %v", err)
		}
		_, err = fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"u1"}, FeatureSet: "default", AsOf: ts(-3 * time.Hour)})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "retained horizon") {
			t.Fatalf("as_of too old: %v", err)
		}
	})

	t.Run("redis and stream", func(t *testing.T) {
		addr := os.Getenv("EMBEDD_REDIS_ADDR")
		if addr == "" {
			if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
				t.Fatal("EMBEDD_REDIS_ADDR is unset")
			}
			t.Skip("EMBEDD_REDIS_ADDR is unset")
		}
		streamName := fmt.Sprintf("embedd-test:serve-events:%d", time.Now().UnixNano())
		entity := fmt.Sprintf("serve-%d", time.Now().UnixNano())
		rc := goredis.NewClient(&goredis.Options{Addr: addr})
		defer rc.Close()
		defer rc.Del(ctx, streamName, streamName+":dead", "embedd:fst:{"+entity+"}", "embedd:sess:{"+entity+"}", "embedd:fst:{"+entity+"-s}", "embedd:sess:{"+entity+"-s}")
		conn, stop := runServe(t, testServeConfig(t, "--redis-addr", addr, "--events-stream", streamName, "--consumer-name", "test"))
		defer stop()
		fc := embeddv1.NewFeatureServiceClient(conn)
		ingest(t, fc, entity)
		check(t, fc, entity, 3)
		// The same events through the stream, for another entity.
		for i := range 3 {
			rc.XAdd(ctx, &goredis.XAddArgs{Stream: streamName, Values: map[string]any{
				"entity_id": entity + "-s", "event_type": "view", "ts": fmt.Sprint(now.Add(time.Duration(i-3) * time.Second).UnixMilli()), "values": `{"amount":10}`}})
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err := fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{entity + "-s"}, Features: []string{"amount_count_5m"}})
			if err == nil && res.Entities[0].Values[0] == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stream events not applied: %v %v", res, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		check(t, fc, entity+"-s", 3)
	})
}

func TestFeaturesCommand(t *testing.T) {
	var out strings.Builder
	if err := cmdFeatures([]string{"list"}, &out); err != nil || !strings.Contains(out.String(), "amount_zscore_5m") || !strings.Contains(out.String(), "set recsys") {
		t.Fatalf("list: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := cmdFeatures([]string{"describe", "session_duration@1"}, &out); err != nil || !strings.Contains(out.String(), "kind:         session") {
		t.Fatalf("describe: %v\n%s", err, out.String())
	}
	if err := cmdFeatures([]string{"describe", "nope"}, &out); err == nil {
		t.Fatal("describe of an unknown feature succeeded")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("features:\n  - name: x\n    version: 1\n    colour: red\n"), 0o644)
	err := cmdFeatures([]string{"list", "--features-dir", dir}, &out)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:4") {
		t.Fatalf("bad registry: %v", err)
	}
}

// TestServeHybrid: a hybrid collection configured by flag, filled by
// UpsertHybrid from ingested events, searched with query features.
func TestServeHybrid(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	ctx := context.Background()
	conn, stop := runServe(t, testServeConfig(t, "--collections", "docs", "--hybrid", "docs_h=docs:amount_avg_1h,events_count_1h*2:0.7"))
	defer stop()
	vc := embeddv1.NewVectorServiceClient(conn)
	fc := embeddv1.NewFeatureServiceClient(conn)
	if _, err := vc.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{
		{Id: "big", Text: "A cat sleeps on the mat."}, {Id: "small", Text: "A kitten naps on the rug."}, {Id: "mid", Text: "Dogs play in the park."},
	}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var evs []*embeddv1.Event
	for i, spec := range []struct {
		id     string
		n      int
		amount float64
	}{{"big", 2, 900}, {"small", 30, 3}, {"mid", 10, 60}} {
		for k := range spec.n {
			evs = append(evs, &embeddv1.Event{EntityId: spec.id, Timestamp: timestamppb.New(now.Add(time.Duration(k-spec.n-i) * time.Second)), Values: map[string]float64{"amount": spec.amount}})
		}
	}
	if r, err := fc.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: evs}); err != nil || len(r.Errors) > 0 {
		t.Fatalf("ingest: %v %v", r, err)
	}
	hr, err := vc.UpsertHybrid(ctx, &embeddv1.UpsertHybridRequest{Collection: "docs_h", Ids: []string{"big", "small", "mid", "nobody"}})
	if err != nil || hr.Upserted != 3 || fmt.Sprint(hr.NotFound) != "[nobody]" || hr.StatsVersion == "" {
		t.Fatalf("upsert hybrid: %v %v", hr, err)
	}
	lc, _ := vc.ListCollections(ctx, &embeddv1.ListCollectionsRequest{})
	if len(lc.Collections) != 2 || lc.Collections[1].Base != "docs" || lc.Collections[1].Dims != 386 {
		t.Fatalf("collections: %v", lc)
	}
	// "small" behaves like the query entity: it wins over the closer text.
	sr, err := vc.Search(ctx, &embeddv1.SearchRequest{Collection: "docs_h", Query: &embeddv1.SearchRequest_Text{Text: "a cat on a mat"}, TopK: 3,
		Features: map[string]float64{"amount_avg_1h": 3, "events_count_1h": 30}})
	if err != nil || sr.Hits[0].Id != "small" {
		t.Fatalf("hybrid search: %v %v", sr, err)
	}
	plain, err := vc.Search(ctx, &embeddv1.SearchRequest{Collection: "docs", Query: &embeddv1.SearchRequest_Text{Text: "a cat on a mat"}, TopK: 1})
	if err != nil || plain.Hits[0].Id != "big" {
		t.Fatalf("plain search: %v %v", plain, err)
	}
	_, err = vc.Search(ctx, &embeddv1.SearchRequest{Collection: "docs", Query: &embeddv1.SearchRequest_Text{Text: "x"}, TopK: 1, Features: map[string]float64{"a": 1}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("features on a plain collection: %v", err)
	}
}

func TestServeFeatureMetrics(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	c := testServeConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	served := make(chan error, 1)
	go func() { served <- serve(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	addrs := <-ready
	defer func() { cancel(); <-served }()
	conn, _ := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	fc := embeddv1.NewFeatureServiceClient(conn)
	fc.IngestEvents(context.Background(), &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{
		{EntityId: "m", Timestamp: timestamppb.Now()}, {EntityId: "", Timestamp: timestamppb.Now()}}})
	fc.GetFeatures(context.Background(), &embeddv1.GetFeaturesRequest{EntityIds: []string{"m"}, Features: []string{"events_count_1m"}})
	resp, err := http.Get("http://" + addrs[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`embedd_feature_events_total{result="accepted"} 1`, `embedd_feature_events_total{result="invalid"} 1`, `embedd_feature_count{feature="events_count_1m"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestServeDriftReferenceFile: references frozen from served values are
// written at shutdown and loaded at the next start.
func TestServeDriftReferenceFile(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	ctx := context.Background()
	ref := filepath.Join(t.TempDir(), "drift.json")
	args := []string{"--drift-reference", ref, "--drift-reference-size", "2"}
	conn, stop := runServe(t, testServeConfig(t, args...))
	fc := embeddv1.NewFeatureServiceClient(conn)
	fc.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{{EntityId: "d", Timestamp: timestamppb.Now()}}})
	for range 3 {
		if _, err := fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"d"}, Features: []string{"events_count_1h"}}); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if st, err := os.Stat(ref); err != nil || st.Size() == 0 {
		t.Fatalf("reference file: %v", err)
	} else if st.Mode().Perm() != 0o600 { // it holds raw sample values
		t.Errorf("reference file mode %v; want 0600", st.Mode().Perm())
	}
	conn, stop = runServe(t, testServeConfig(t, args...))
	defer stop()
	fc = embeddv1.NewFeatureServiceClient(conn)
	st, err := fc.GetFeatureStats(ctx, &embeddv1.GetFeatureStatsRequest{Features: []string{"events_count_1h"}})
	if err != nil || !st.Features[0].HasReference || st.Features[0].Reference.Count != 2 {
		t.Fatalf("after restart: %v %v", st, err)
	}
}

// TestServeReflection: reflection lists the services by default and is
// absent with --reflection=false.
func TestServeReflection(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	for _, on := range []bool{true, false} {
		conn, stop := runServe(t, testServeConfig(t, fmt.Sprintf("--reflection=%v", on), "--features=false"))
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
		var resp *reflectionpb.ServerReflectionResponse
		if err == nil {
			// A Send error (io.EOF) means the stream ended: Recv has the status.
			_ = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			resp, err = stream.Recv()
		}
		switch {
		case on && (err != nil || len(resp.GetListServicesResponse().GetService()) == 0):
			t.Errorf("--reflection=true: %v, %v; want the services listed", resp, err)
		case !on && status.Code(err) != codes.Unimplemented:
			t.Errorf("--reflection=false: got %v, %v; want Unimplemented", resp, err)
		}
		stop()
	}
}

// TestServeMilvusRedis: the default serve settings on the real servers
// (Session consistency) read their own writes at once.
func TestServeMilvusRedis(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	maddr, raddr := os.Getenv("EMBEDD_MILVUS_ADDR"), os.Getenv("EMBEDD_REDIS_ADDR")
	if maddr == "" || raddr == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			t.Fatal("EMBEDD_MILVUS_ADDR and EMBEDD_REDIS_ADDR are required")
		}
		t.Skip("EMBEDD_MILVUS_ADDR / EMBEDD_REDIS_ADDR unset")
	}
	ctx := context.Background()
	coll := fmt.Sprintf("serve_%d", time.Now().UnixNano())
	mo := milvus.DefaultOptions()
	mo.Address = maddr
	ms, err := milvus.New(ctx, mo)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ms.Drop(context.Background(), coll); ms.Close() }()
	conn, stop := runServe(t, testServeConfig(t, "--milvus-addr", maddr, "--redis-addr", raddr, "--collections", coll, "--redis-prefix", "embedd-test:serve:"))
	defer stop()
	vc := embeddv1.NewVectorServiceClient(conn)
	if _, err := vc.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{
		{Id: "cat", Text: "The cat sleeps on the sofa."}, {Id: "bond", Text: "Bond yields rose after the central bank decision."},
	}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sr, err := vc.Search(ctx, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Text{Text: "a sleepy kitten"}, TopK: 2})
	if err != nil || len(sr.Hits) != 2 || sr.Hits[0].Id != "cat" {
		t.Fatalf("search right after upsert: %v %v", sr, err)
	}
	t.Logf("search right after upsert: %v", time.Since(start))
	lc, _ := vc.ListCollections(ctx, &embeddv1.ListCollectionsRequest{})
	if lc.Collections[0].VectorStore != "milvus" || lc.Collections[0].OnlineStore != "redis" {
		t.Fatalf("stores: %v", lc)
	}
	g, err := vc.Get(ctx, &embeddv1.GetRequest{Ids: []string{"cat"}})
	if err != nil || len(g.Items) != 1 || len(g.Items[0].Int8) != 384 {
		t.Fatalf("get: %v %v", g, err)
	}
	if _, err := vc.Delete(ctx, &embeddv1.DeleteRequest{Ids: []string{"cat", "bond"}}); err != nil {
		t.Fatal(err)
	}
}

// TestServeCUDAFallbackVisible asks for CUDA from a runtime without the
// CUDA provider (the CPU build): the server must serve on the CPU and say
// so in ListModels (requested provider and reason) and in the metrics.
func TestServeCUDAFallbackVisible(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	lib := pull.RuntimePath(testassets.CacheDir(), pull.DefaultRuntime)
	c := testServeConfig(t, "--provider", "cuda", "--ort-lib", lib)
	conn, metricsAddr, stop := runServeMetrics(t, c)
	defer stop()
	res, err := embeddv1.NewEmbeddingServiceClient(conn).GetModel(context.Background(), &embeddv1.GetModelRequest{Name: "all-minilm-l6-v2-int8"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backend != "onnxruntime/cpu" || res.RequestedProvider != "cuda" || res.Fallback == "" {
		t.Errorf("GetModel: backend %q, requested %q, fallback %q; want onnxruntime/cpu, cuda and a reason", res.Backend, res.RequestedProvider, res.Fallback)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `embedd_model_backend{backend="onnxruntime/cpu",fallback="true",model="all-minilm-l6-v2-int8",requested="cuda"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s", want)
	}
}
