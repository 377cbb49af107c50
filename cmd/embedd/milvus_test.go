package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeMilvusSecureOutage runs embedd serve against a private, real
// Milvus configured with authorizationEnabled and mutual TLS:
//   - the right user, password, CA and client certificate serve upserts and
//     searches;
//   - a wrong password, a missing client certificate or an unknown CA fail
//     the start, and the error never shows the password;
//   - then Milvus is killed (SIGKILL) mid-run: VectorService health goes NOT_SERVING,
//     a search fails UNAVAILABLE within the call timeout, an upsert is
//     acknowledged into the write-ahead log (--durable); Milvus restarts and
//     health returns to SERVING and the acknowledged upsert is searchable:
//     nothing acknowledged was lost.
func TestServeMilvusSecureOutage(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	dir := t.TempDir()
	ca := tlsconftest.NewCA(t, "milvus CA")
	sc, sk := ca.Issue(t, "milvus", 1)
	cc, ck := ca.Issue(t, "embedd", 2)
	tlsDir := filepath.Join(dir, "milvus-tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	caFile := tlsconftest.WriteIn(t, tlsDir, "ca.pem", ca.PEM)
	tlsconftest.WriteIn(t, tlsDir, "server.pem", sc)
	tlsconftest.WriteIn(t, tlsDir, "server.key", sk)
	m := testassets.MilvusServer(t, testassets.MilvusOptions{Auth: true, TLSDir: tlsDir, TLSMode: 2})

	certFile, keyFile := tlsconftest.WriteIn(t, dir, "client.crt", cc), tlsconftest.WriteIn(t, dir, "client.key", ck)
	const password = "Milvus" // the default root password of a fresh Milvus
	args := func(pw string, extra ...string) []string {
		return append([]string{"--milvus-addr", m.Addr, "--milvus-user", "root", "--milvus-password", pw,
			"--milvus-tls-ca", caFile, "--milvus-timeout", "3s", "--collections", "secure"}, extra...)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	began := time.Now()
	phase := func(name string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), name) }
	refused := func(name string, a []string, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err := serve(ctx, testServeConfig(t, a...), quiet, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: serve returned %v; want an error containing %q", name, err, want)
		}
		t.Logf("%s: %v", name, err)
		if err != nil && strings.Contains(err.Error(), "wrong-pw") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	refused("no client certificate (mutual TLS)", args(password), "milvus")
	refused("wrong password", args("wrong-pw", "--milvus-tls-cert", certFile, "--milvus-tls-key", keyFile), "milvus")
	other := tlsconftest.NewCA(t, "other CA")
	refused("unknown CA", append(args(password, "--milvus-tls-cert", certFile, "--milvus-tls-key", keyFile),
		"--milvus-tls-ca", tlsconftest.WriteIn(t, dir, "other.pem", other.PEM)), "milvus")

	phase("refusals checked")
	conn, stop := runServe(t, testServeConfig(t, args(password, "--milvus-tls-cert", certFile, "--milvus-tls-key", keyFile,
		"--durable", "--health-interval", "200ms")...))
	defer stop()
	ctx := context.Background()
	vc := embeddv1.NewVectorServiceClient(conn)
	if _, err := vc.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{
		{Id: "cat", Text: "The cat sleeps on the sofa."}, {Id: "bond", Text: "Bond yields rose after the central bank decision."},
	}}); err != nil {
		t.Fatalf("upsert over mutual TLS as root: %v", err)
	}
	search := func(ctx context.Context, text string) (*embeddv1.SearchResponse, error) {
		return vc.Search(ctx, &embeddv1.SearchRequest{Query: &embeddv1.SearchRequest_Text{Text: text}, TopK: 3})
	}
	if sr, err := search(ctx, "a sleepy kitten"); err != nil || len(sr.Hits) != 2 || sr.Hits[0].Id != "cat" {
		t.Fatalf("search: %v %v", sr, err)
	}

	hc := healthpb.NewHealthClient(conn)
	await := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: vectorService})
			if err == nil && res.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("VectorService health %v %v; want %v", res, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	await(healthpb.HealthCheckResponse_SERVING)

	phase("serving")
	m.Kill()
	phase("milvus killed")
	await(healthpb.HealthCheckResponse_NOT_SERVING)
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	start := time.Now()
	_, err := search(sctx, "a sleepy kitten")
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("search with Milvus down: %v; want UNAVAILABLE", err)
	}
	t.Logf("search with Milvus down failed in %v: %v", time.Since(start).Round(time.Millisecond), err)
	if _, err := vc.Upsert(ctx, &embeddv1.UpsertRequest{Items: []*embeddv1.Item{
		{Id: "ship", Text: "The container ship docked at the harbour at dawn."},
	}}); err != nil {
		t.Fatalf("upsert with Milvus down and --durable: %v; want it acknowledged into the write-ahead log", err)
	}

	phase("upsert acknowledged")
	m.Start()
	phase("milvus started")
	await(healthpb.HealthCheckResponse_SERVING)
	phase("serving again")
	deadline := time.Now().Add(60 * time.Second)
	for {
		sr, err := search(ctx, "a boat arriving in port")
		if err == nil && len(sr.Hits) == 3 && sr.Hits[0].Id == "ship" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Milvus came back: %v %v; want the acknowledged %q replayed and found first", sr, err, "ship")
		}
		time.Sleep(200 * time.Millisecond)
	}
	phase("replayed")
}
