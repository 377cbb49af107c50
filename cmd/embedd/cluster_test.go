package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeReplicasOnCluster: two serve replicas on one Redis Cluster,
// one given the seeds as several --redis-addr addresses, the other one
// address and --redis-cluster. Events ingested on one are read on the
// other, a session started on one continues on the other, events read
// from a cluster stream (--events-stream) by both consumers are counted
// once, and every key lands on the cluster.
func TestServeReplicasOnCluster(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	addrs := testassets.RedisClusterAddrs(t)
	cc := testassets.RedisCluster(t)
	run := time.Now().UnixNano()
	prefix := fmt.Sprintf("embedd-test:srv%d:", run)
	stream := prefix + "events"
	ctx := context.Background()
	t.Cleanup(func() { testassets.DeleteKeys(ctx, cc, prefix+"*") })
	common := []string{"--redis-feature-prefix", prefix + "fst:", "--redis-session-prefix", prefix + "sess:", "--redis-prefix", prefix + "ent:",
		"--feature-cache-ttl", "-1s", "--events-stream", stream}
	c1 := testServeConfig(t, append([]string{"--redis-addr", addrs, "--consumer-name", "r1"}, common...)...)
	c2 := testServeConfig(t, append([]string{"--redis-addr", strings.Split(addrs, ",")[1], "--redis-cluster", "--consumer-name", "r2"}, common...)...)
	for i, c := range []*serveConfig{c1, c2} {
		o, err := c.stores.redisOptions()
		if err != nil || !o.IsCluster() {
			t.Fatalf("replica %d: redisOptions %+v, %v; want a cluster", i+1, o, err)
		}
	}
	conn1, stop1 := runServe(t, c1)
	defer stop1()
	conn2, stop2 := runServe(t, c2)
	defer stop2()
	f1, f2 := embeddv1.NewFeatureServiceClient(conn1), embeddv1.NewFeatureServiceClient(conn2)

	entity := fmt.Sprintf("cl-%d", run)
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	ingest := func(fc embeddv1.FeatureServiceClient, from, n int) {
		t.Helper()
		var evs []*embeddv1.Event
		for i := from; i < from+n; i++ {
			evs = append(evs, &embeddv1.Event{EventId: fmt.Sprint("ev", i), EntityId: entity, EventType: "view",
				Timestamp: timestamppb.New(start.Add(time.Duration(i) * 10 * time.Second)), Values: map[string]float64{"amount": 1}})
		}
		res, err := fc.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: evs})
		if err != nil || res.Accepted != uint32(n) {
			t.Fatalf("ingest: %v %v", res, err)
		}
	}
	read := func(fc embeddv1.FeatureServiceClient) (count, inSession, duration float64) {
		t.Helper()
		res, err := fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{entity}, Features: []string{"events_count_1h", "events_in_session", "session_duration"}})
		if err != nil {
			t.Fatal(err)
		}
		v := res.Entities[0].Values
		return v[0], v[1], v[2]
	}
	ingest(f1, 0, 3) // session starts on replica 1
	if n, s, d := read(f2); n != 3 || s != 3 || d != 20 {
		t.Errorf("replica 2 after 3 events on replica 1: count %v, in session %v, duration %vs; want 3 3 20", n, s, d)
	}
	ingest(f2, 3, 2) // and continues on replica 2
	ingest(f1, 3, 2) // a client retry on the other replica: duplicates
	if n, s, d := read(f1); n != 5 || s != 5 || d != 40 {
		t.Errorf("replica 1 after 2 more on replica 2: count %v, in session %v, duration %vs; want 5 5 40", n, s, d)
	}
	// The events stream on the cluster: both replicas consume it.
	for i := 5; i < 45; i++ {
		err := cc.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: map[string]any{"entity_id": entity, "event_type": "view",
			"ts": fmt.Sprint(start.Add(time.Duration(i) * 10 * time.Second).UnixMilli()), "values": `{"amount":1}`}}).Err()
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, s, _ := read(f2)
		if n == 45 && s == 45 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the stream's 40 events: count %v, in session %v; want 45 45", n, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := cc.XLen(ctx, stream+":dead").Val(); n != 0 {
		t.Errorf("dead letters: %d; want 0", n)
	}
	// Online rows: an Upsert on replica 1 writes them to the cluster.
	up, err := embeddv1.NewVectorServiceClient(conn1).Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{
		{Id: "cat", Text: "The cat sleeps on the sofa.", Features: map[string]float64{"ctr": 0.25}}, {Id: "dog", Text: "Dogs play in the park."}}})
	if err != nil || up.Upserted != 2 {
		t.Fatalf("upsert: %v %v", up, err)
	}
	var rows atomic.Int64 // ForEachMaster calls fn concurrently
	cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		rows.Add(int64(len(m.Keys(ctx, prefix+"ent:*").Val())))
		return nil
	})
	if rows.Load() != 2 {
		t.Errorf("online rows on the cluster: %d; want 2", rows.Load())
	}
	for _, key := range []string{prefix + "fst:{" + entity + "}", prefix + "sess:{" + entity + "}"} {
		if n, err := cc.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("key %s on the cluster: exists %d, %v", key, n, err)
		}
	}
}

// TestServeRedisClusterTLSACL: serve reaches a Redis Cluster whose nodes
// accept only TLS (client certificates required, TLS on the cluster bus
// too) and only an ACL user with a password, through the cluster client:
// the TLS and ACL flags apply to every node, also the ones the client
// discovers; events ingested land on the cluster, and a wrong password
// fails at start without printing it.
func TestServeRedisClusterTLSACL(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, "redis CA")
	sc, sk := ca.Issue(t, "redis", 1)
	cc, ck := ca.Issue(t, "embedd", 2)
	caFile := tlsconftest.WriteIn(t, dir, "ca.crt", ca.PEM)
	certFile, keyFile := tlsconftest.WriteIn(t, dir, "client.crt", cc), tlsconftest.WriteIn(t, dir, "client.key", ck)
	tc := clientTLS{ca: caFile, cert: certFile, key: keyFile}
	tlsCfg, err := tc.config()
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := tlsconftest.WriteIn(t, dir, "redis.crt", sc), tlsconftest.WriteIn(t, dir, "redis.key", sk)
	addrs := testassets.RedisClusterServer(t, 3, goredis.Options{TLSConfig: tlsCfg, Username: "embedd", Password: "s3cret-pw"},
		"--port", "0", "--tls-port", "PORT", "--tls-cluster", "yes", "--tls-replication", "yes",
		"--tls-cert-file", srvCert, "--tls-key-file", srvKey, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "yes",
		"--user", "default", "off", "--user", "embedd", "on", ">s3cret-pw", "~*", "&*", "+@all")
	args := []string{"--redis-addr", addrs[0], "--redis-cluster", "--redis-user", "embedd", "--redis-tls-ca", caFile,
		"--redis-tls-cert", certFile, "--redis-tls-key", keyFile, "--feature-cache-ttl", "-1s"}
	conn, stop := runServe(t, testServeConfig(t, append(args, "--redis-password", "s3cret-pw")...))
	fc := embeddv1.NewFeatureServiceClient(conn)
	ctx := context.Background()
	var evs []*embeddv1.Event
	for i := range 30 { // entities on every master
		evs = append(evs, &embeddv1.Event{EntityId: fmt.Sprint("tls-user-", i), EventType: "view", Timestamp: timestamppb.Now()})
	}
	res, err := fc.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: evs})
	if err != nil || res.Accepted != 30 {
		t.Fatalf("ingest over TLS as an ACL user on a cluster: %v %v", res, err)
	}
	got, err := fc.GetFeatures(ctx, &embeddv1.GetFeaturesRequest{EntityIds: []string{"tls-user-7"}, Features: []string{"events_count_1h"}})
	if err != nil || got.Entities[0].Values[0] != 1 {
		t.Errorf("GetFeatures: %v %v", got, err)
	}
	stop()
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, TLSConfig: tlsCfg, Username: "embedd", Password: "s3cret-pw"})
	defer cl.Close()
	var keys atomic.Int64
	cl.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		if n := m.DBSize(ctx).Val(); n > 0 {
			keys.Add(1)
		}
		return nil
	})
	if keys.Load() != 3 {
		t.Errorf("masters holding keys: %d; want 3", keys.Load())
	}
	err = serve(ctx, testServeConfig(t, append(args, "--redis-password", "wrong-pw")...), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("wrong password: %v; want a failure that does not print the password", err)
	}
}
