package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
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
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		tlsconftest.Write(t, p, data)
		return p
	}
	sc, sk := serverCA.Issue(t, "embedd", 1)
	cc, ck := clientCA.Issue(t, "recommender", 2)
	args := []string{"--tls-cert", file("tls.crt", sc), "--tls-key", file("tls.key", sk), "--tls-client-ca", file("client-ca.crt", clientCA.PEM), "--features=false"}
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
	var out bytes.Buffer
	err = cmdHealth(ctx, []string{"--addr", addrs[0], "--tls-ca", file("server-ca.crt", serverCA.PEM),
		"--tls-cert", file("client.crt", cc), "--tls-key", file("client.key", ck)}, &out)
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
