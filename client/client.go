package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking (Options.HealthCheck)
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// Errors of New.
var (
	// ErrNoTransport: Options has neither TLS nor Insecure.
	ErrNoTransport = errors.New("client: no transport security chosen: set Options.TLS, or Options.Insecure for plaintext")
	// ErrKeyInClear: an API key over plaintext to a non-loopback address.
	ErrKeyInClear = errors.New("client: an API key needs TLS unless the server is on a loopback address")
	// ErrTarget: the target is empty or a list entry is not host:port.
	ErrTarget = errors.New("client: bad target")
)

// MaxRecvMessageBytes is the largest reply the client accepts by default:
// the server's own limit on what it sends (256 wide float vectors exceed
// gRPC's default of 4 MiB).
const MaxRecvMessageBytes = 64 << 20

// Options configures a Client. The zero value is not usable: choose TLS or
// Insecure.
type Options struct {
	// TLS connects over TLS with this configuration: RootCAs to verify the
	// server (nil: the system roots), Certificates for mutual TLS (see
	// LoadTLS). ServerName defaults to the target's host.
	TLS *tls.Config
	// Insecure connects in plaintext (no TLS). Ignored when TLS is set.
	Insecure bool
	// APIKey, when set, is sent on every call as "authorization: Bearer
	// <key>". It needs TLS unless every target is a loopback address.
	APIKey string
	// Retry is the retry policy of unary calls. The zero value means
	// DefaultRetryPolicy(); MaxAttempts 1 turns retries off.
	Retry RetryPolicy
	// MaxRecvMessageBytes bounds a reply. Default MaxRecvMessageBytes.
	MaxRecvMessageBytes int
	// HealthCheck has the client ask each replica's gRPC health service
	// (grpc.health.v1 Watch) for HealthService and send calls only to
	// replicas that report SERVING. embedd reports a service NOT_SERVING
	// while a store it needs is unreachable, and every service while it
	// drains at shutdown; a replica without a health service counts as
	// serving. Default off: every connected replica gets calls.
	HealthCheck bool
	// HealthService is the service HealthCheck asks about: "" (the
	// default) is the server as a whole (every store reachable); e.g.
	// "embedd.v1.EmbeddingService" needs no store.
	HealthService string
	// DialOptions are appended to the client's own (interceptors added
	// here run inside the retry loop, once per attempt).
	DialOptions []grpc.DialOption
}

// DefaultOptions returns plaintext options with the default retry policy,
// for a server on this machine; use TLS for anything else.
func DefaultOptions() Options {
	return Options{Insecure: true, Retry: DefaultRetryPolicy(), MaxRecvMessageBytes: MaxRecvMessageBytes}
}

// Client is a connection to embedd: one replica or several.
type Client struct {
	conn *grpc.ClientConn

	// The generated stubs, for what the typed calls do not cover. They
	// share the connection, the API key and the retries.
	Embeddings embeddv1.EmbeddingServiceClient
	Vectors    embeddv1.VectorServiceClient
	Features   embeddv1.FeatureServiceClient
	Jobs       embeddv1.JobServiceClient
}

// serviceConfig balances calls over every address of the target and,
// with Options.HealthCheck, over those whose health service says SERVING.
func serviceConfig(o Options) string {
	if !o.HealthCheck {
		return `{"loadBalancingConfig": [{"round_robin": {}}]}`
	}
	name, _ := json.Marshal(o.HealthService)
	return `{"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ` + string(name) + `}}`
}

// staticSeq names the resolver scheme of each Client built on a list of
// addresses (manual resolvers are registered per connection, not globally).
var staticSeq atomic.Uint64

// New makes a Client for target (see the package doc for its forms). It
// does not connect: the first call does, and a server that is down shows
// as UNAVAILABLE on calls, not as an error here.
func New(target string, o Options) (*Client, error) {
	target = strings.TrimSpace(target)
	if target == "" {
		return nil, fmt.Errorf("%w: empty", ErrTarget)
	}
	if o.Retry == (RetryPolicy{}) {
		o.Retry = DefaultRetryPolicy()
	}
	if err := o.Retry.validate(); err != nil {
		return nil, err
	}
	if o.MaxRecvMessageBytes <= 0 {
		o.MaxRecvMessageBytes = MaxRecvMessageBytes
	}
	var addrs []string
	if strings.Contains(target, ",") {
		for i, a := range strings.Split(target, ",") {
			a = strings.TrimSpace(a)
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("%w: list entry %d %q: want host:port: %v", ErrTarget, i, a, err)
			}
			addrs = append(addrs, a)
		}
	}
	var tc credentials.TransportCredentials
	switch {
	case o.TLS != nil:
		tc = credentials.NewTLS(o.TLS)
	case o.Insecure:
		tc = insecure.NewCredentials()
	default:
		return nil, ErrNoTransport
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(tc),
		grpc.WithDefaultServiceConfig(serviceConfig(o)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.MaxRecvMessageBytes)),
		grpc.WithChainUnaryInterceptor(o.Retry.interceptor()),
	}
	if o.APIKey != "" {
		hosts := addrs
		if hosts == nil {
			hosts = []string{target}
		}
		if o.TLS == nil && !allLoopback(hosts) {
			return nil, fmt.Errorf("%w: target %q", ErrKeyInClear, target)
		}
		dial = append(dial, grpc.WithPerRPCCredentials(apiKey{key: o.APIKey, needTLS: o.TLS != nil}))
	}
	if addrs != nil {
		r := manual.NewBuilderWithScheme(fmt.Sprintf("embedd-static-%d", staticSeq.Add(1)))
		st := resolver.State{}
		for _, a := range addrs {
			st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
		}
		r.InitialState(st)
		dial = append(dial, grpc.WithResolvers(r))
		target = r.Scheme() + ":///replicas"
	}
	conn, err := grpc.NewClient(target, append(dial, o.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", target, err)
	}
	return &Client{
		conn:       conn,
		Embeddings: embeddv1.NewEmbeddingServiceClient(conn),
		Vectors:    embeddv1.NewVectorServiceClient(conn),
		Features:   embeddv1.NewFeatureServiceClient(conn),
		Jobs:       embeddv1.NewJobServiceClient(conn),
	}, nil
}

// Conn returns the underlying connection, e.g. for the health service.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in flight fail CANCELED.
func (c *Client) Close() error { return c.conn.Close() }

// LoadTLS builds a TLS configuration from PEM files: caFile verifies the
// server (empty: the system roots); certFile and keyFile, both set or both
// empty, are the client certificate for mutual TLS (embedd serve
// --tls-client-ca).
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("client: CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: CA file %s: no PEM certificate in it", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("client: client certificate %q and key %q: set both or neither", certFile, keyFile)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// apiKey sends the key on every call.
type apiKey struct {
	key     string
	needTLS bool
}

func (k apiKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + k.key}, nil
}

// RequireTransportSecurity is true with TLS, so that gRPC itself refuses
// to send the key should the connection not be secure; without TLS, New
// has checked that every target is a loopback address.
func (k apiKey) RequireTransportSecurity() bool { return k.needTLS }

// allLoopback reports whether every target names a loopback host (or a
// unix socket).
func allLoopback(targets []string) bool {
	for _, t := range targets {
		if strings.HasPrefix(t, "unix:") || strings.HasPrefix(t, "unix-abstract:") {
			continue
		}
		if i := strings.Index(t, "://"); i >= 0 { // scheme://authority/endpoint
			t = t[i+3:]
			if j := strings.Index(t, "/"); j >= 0 {
				t = t[j+1:]
			}
		}
		host, _, err := net.SplitHostPort(t)
		if err != nil {
			host = t
		}
		if host == "localhost" {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}
