package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/store/redis"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeRedisPrefixes: the feature stores take their key prefixes from
// --redis-feature-prefix and --redis-session-prefix (defaults
// "embedd:fst:" and "embedd:sess:"), and their client is built from the
// same options as the online store's.
func TestServeRedisPrefixes(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	addr := os.Getenv("EMBEDD_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			t.Fatal("EMBEDD_REDIS_ADDR is unset")
		}
		t.Skip("EMBEDD_REDIS_ADDR is unset")
	}
	c := testServeConfig(t)
	if c.features.redisStatePrefix != "embedd:fst:" || c.features.redisSessionPrefix != "embedd:sess:" {
		t.Errorf("default prefixes %q %q", c.features.redisStatePrefix, c.features.redisSessionPrefix)
	}
	run := time.Now().UnixNano()
	fp, sp := fmt.Sprintf("embedd-test:fst%d:", run), fmt.Sprintf("embedd-test:sess%d:", run)
	c = testServeConfig(t, "--redis-addr", addr, "--redis-feature-prefix", fp, "--redis-session-prefix", sp, "--redis-prefix", "embedd-test:ent:")
	o, err := c.stores.redisOptions()
	if err != nil {
		t.Fatal(err)
	}
	if d := redis.DefaultOptions(); o.Addr != addr || o.Prefix != "embedd-test:ent:" ||
		o.DialTimeout != d.DialTimeout || o.ReadTimeout != d.ReadTimeout || o.WriteTimeout != d.WriteTimeout {
		t.Errorf("redisOptions: %+v", o)
	}
	ctx := context.Background()
	rc := redis.NewClient(redis.Options{Addr: addr})
	defer rc.Close()
	entity := fmt.Sprintf("prefix-%d", run)
	defer rc.Del(ctx, fp+"{"+entity+"}", sp+"{"+entity+"}")

	conn, stop := runServe(t, c)
	defer stop()
	fc := embeddv1.NewFeatureServiceClient(conn)
	res, err := fc.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{
		{EntityId: entity, EventType: "view", Timestamp: timestamppb.Now(), Values: map[string]float64{"amount": 1}}}})
	if err != nil || res.Accepted != 1 {
		t.Fatalf("ingest: %v %v", res, err)
	}
	for _, key := range []string{fp + "{" + entity + "}", sp + "{" + entity + "}"} {
		if n, err := rc.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("key %s: exists %d, %v", key, n, err)
		}
	}
	for _, key := range []string{"embedd:fst:{" + entity + "}", "embedd:sess:{" + entity + "}"} {
		if n, _ := rc.Exists(ctx, key).Result(); n != 0 {
			t.Errorf("key %s written despite the configured prefix", key)
			rc.Del(ctx, key)
		}
	}
}

// TestServeRedisTLSACL: serve reaches a real Redis that accepts only TLS
// (server certificate from a test CA, client certificates required) and
// only an ACL user with a password; a wrong password fails at start
// without printing the password.
func TestServeRedisTLSACL(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, "redis CA")
	sc, sk := ca.Issue(t, "redis", 1)
	cc, ck := ca.Issue(t, "embedd", 2)
	caFile := tlsconftest.WriteIn(t, dir, "ca.crt", ca.PEM)
	port := testassets.FreePort(t)
	testassets.RedisServer(t, port, t.TempDir(), "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", tlsconftest.WriteIn(t, dir, "redis.crt", sc), "--tls-key-file", tlsconftest.WriteIn(t, dir, "redis.key", sk), "--tls-ca-cert-file", caFile, "--tls-auth-clients", "yes",
		"--user", "default", "off", "--user", "embedd", "on", ">s3cret-pw", "~*", "&*", "+@all")
	args := []string{"--redis-addr", fmt.Sprintf("127.0.0.1:%d", port), "--redis-user", "embedd", "--redis-tls-ca", caFile,
		"--redis-tls-cert", tlsconftest.WriteIn(t, dir, "client.crt", cc), "--redis-tls-key", tlsconftest.WriteIn(t, dir, "client.key", ck)}
	c := testServeConfig(t, append(args, "--redis-password", "s3cret-pw")...)
	conn, stop := runServe(t, c)
	fc := embeddv1.NewFeatureServiceClient(conn)
	res, err := fc.IngestEvents(context.Background(), &embeddv1.IngestEventsRequest{Events: []*embeddv1.Event{
		{EntityId: "tls-user", EventType: "view", Timestamp: timestamppb.Now()}}})
	if err != nil || res.Accepted != 1 {
		t.Errorf("ingest over TLS as an ACL user: %v %v", res, err)
	}
	stop()
	err = serve(context.Background(), testServeConfig(t, append(args, "--redis-password", "wrong-pw")...), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("wrong password: %v; want a failure that does not print the password", err)
	}
}
