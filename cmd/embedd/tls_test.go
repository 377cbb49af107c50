package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeMutualTLS: with --tls-cert, --tls-key and --tls-client-ca the
// gRPC and metrics listeners speak TLS only and admit only clients with a
// certificate from the client CA; `embedd health` connects with the TLS
// flags.
func TestServeMutualTLS(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	dir := t.TempDir()
	serverCA, clientCA := tlsconftest.NewCA(t, "server CA"), tlsconftest.NewCA(t, "client CA")
	sc, sk := serverCA.Issue(t, "embedd", 1)
	cc, ck := clientCA.Issue(t, "recommender", 2)
	args := []string{"--tls-cert", tlsconftest.WriteIn(t, dir, "tls.crt", sc), "--tls-key", tlsconftest.WriteIn(t, dir, "tls.key", sk), "--tls-client-ca", tlsconftest.WriteIn(t, dir, "client-ca.crt", clientCA.PEM), "--features=false"}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, testServeConfig(t, args...), slog.New(slog.NewTextHandler(io.Discard, nil)), ready)
	}()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-served:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	check := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(&tls.Config{RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{pair}}); err != nil {
		t.Errorf("with a client certificate: %v", err)
	}
	if err := check(&tls.Config{RootCAs: serverCA.Pool()}); err == nil {
		t.Error("without a client certificate: admitted; want refused")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{pair}}}}
	if resp, err := hc.Get("https://" + addrs[1] + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("metrics over TLS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + addrs[1] + "/metrics"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("metrics in plaintext: served; want refused")
	}
	// With --auth-keys, a client certificate whose CN an entry lists in
	// mtls_subjects acts as that key: no API key needed, its scopes apply.
	if err := mtlsIdentity(t, dir, serverCA, clientCA, pair); err != nil {
		t.Error(err)
	}
	var out bytes.Buffer
	err = cmdHealth(ctx, []string{"--addr", addrs[0], "--tls-ca", tlsconftest.WriteIn(t, dir, "server-ca.crt", serverCA.PEM),
		"--tls-cert", tlsconftest.WriteIn(t, dir, "client.crt", cc), "--tls-key", tlsconftest.WriteIn(t, dir, "client.key", ck)}, &out)
	if err != nil || out.String() != "SERVING\n" {
		t.Errorf("embedd health over mTLS: %q, %v", out.String(), err)
	}
}

// TestServeRefusesExposedPlaintext: a plaintext listener on a non-loopback
// address needs --insecure.
func TestServeRefusesExposedPlaintext(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"--addr", "0.0.0.0:0"}, errExposed},
		{[]string{"--metrics-addr", ":0"}, errExposed},
		{[]string{"--tls-client-ca", "ca.pem"}, errUsage},
		{[]string{"--addr", "0.0.0.0:0", "--auth-keys", "keys.yaml"}, errExposed}, // keys without TLS
	} {
		err := serve(context.Background(), testServeConfig(t, tc.args...), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%v: got %v; want %v", tc.args, err, tc.want)
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := (&tlsFlags{insecure: true}).checkExposure("--addr", "0.0.0.0:1", false, true, quiet); err != nil {
		t.Errorf("--insecure: %v; want allowed", err)
	}
	for _, a := range []string{"127.0.0.1:1", "[::1]:1", "localhost:1"} {
		if !isLoopback(a) {
			t.Errorf("isLoopback(%q) = false", a)
		}
	}
	for _, a := range []string{"0.0.0.0:1", ":1", "10.0.0.1:1", "[::]:1", "example.com:1"} {
		if isLoopback(a) {
			t.Errorf("isLoopback(%q) = true", a)
		}
	}
}

// mtlsIdentity serves with a key file whose entry "rec" lists the client
// certificate's CN and holds only the embed scope, and checks that the
// certificate alone may call EmbeddingService but not VectorService.
func mtlsIdentity(t *testing.T, dir string, serverCA, clientCA *tlsconftest.CA, pair tls.Certificate) error {
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	unused, _ := auth.NewKey()
	body := fmt.Sprintf("keys:\n  - {id: rec, sha256: %s, scopes: [embed], mtls_subjects: [recommender]}\n", auth.HashKey(unused))
	if err := os.WriteFile(keys, []byte(body), 0o600); err != nil {
		return err
	}
	args := []string{"--tls-cert", filepath.Join(dir, "tls.crt"), "--tls-key", filepath.Join(dir, "tls.key"), "--tls-client-ca", filepath.Join(dir, "client-ca.crt"),
		"--auth-keys", keys, "--features=false"}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, testServeConfig(t, args...), slog.New(slog.NewTextHandler(io.Discard, nil)), ready)
	}()
	defer func() { cancel(); <-served }()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{pair}})))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := embeddv1.NewEmbeddingServiceClient(conn).ListModels(ctx, &embeddv1.ListModelsRequest{}); err != nil {
		return fmt.Errorf("ListModels as the certificate's key: %w", err)
	}
	if _, err := embeddv1.NewVectorServiceClient(conn).ListCollections(ctx, &embeddv1.ListCollectionsRequest{}); status.Code(err) != codes.PermissionDenied {
		return fmt.Errorf("ListCollections without vectors:read: %v; want PermissionDenied", err)
	}
	return nil
}
