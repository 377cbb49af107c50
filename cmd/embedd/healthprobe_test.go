package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/embedd/embedd/internal/testassets"
)

// TestServeHealthFollowsStores: with the online store and the feature
// state on a real Redis, killing Redis turns VectorService, FeatureService
// and the overall status NOT_SERVING while EmbeddingService stays SERVING;
// restarting it brings them back.
func TestServeHealthFollowsStores(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	port, dir := testassets.FreePort(t), t.TempDir()
	stopRedis := testassets.RedisServer(t, port, dir)
	conn, stop := runServe(t, testServeConfig(t, "--redis-addr", fmt.Sprintf("127.0.0.1:%d", port), "--health-interval", "100ms"))
	defer stop()
	hc := healthpb.NewHealthClient(conn)
	status := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		res, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health %q: %v", service, err)
		}
		return res.GetStatus()
	}
	const serving, notServing = healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING
	// await waits for the store-backed services and the overall status to
	// reach want, and checks that embedding stays SERVING throughout.
	await := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got := status("embedd.v1.EmbeddingService"); got != serving {
				t.Fatalf("EmbeddingService %v; want SERVING whatever Redis does", got)
			}
			all := true
			for _, s := range []string{"", vectorService, featureService} {
				all = all && status(s) == want
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("overall %v, vectors %v, features %v; want all %v", status(""), status(vectorService), status(featureService), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	await(serving)
	stopRedis()
	await(notServing)
	testassets.RedisServer(t, port, dir)
	await(serving)
}
