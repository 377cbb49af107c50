package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"google.golang.org/grpc"

	"github.com/embedd/embedd/internal/reembed"
	"github.com/embedd/embedd/internal/reembed/remote"
	"github.com/embedd/embedd/internal/server"
)

// `embedd reembed --server ADDR`: the job embeds through a running
// server's EmbedStream (bulk priority there) instead of an engine of its
// own, and writes the stores itself as in process.

// remoteFlags are the flags of the remote embedder.
type remoteFlags struct {
	addr       string
	tls        clientTLS
	apiKeyFile string
	chunk      int
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.addr, "server", "", "embed through the EmbedStream of the embedd server at this gRPC address (bulk priority there; the job still writes the stores) instead of an engine in this process")
	r.tls.register(fs)
	fs.StringVar(&r.apiKeyFile, "api-key-file", "", "`FILE` holding the API key sent to --server (made by embedd keys new; needs scope embed); sent only over TLS unless --server is a loopback address")
	fs.IntVar(&r.chunk, "server-chunk", remote.DefaultOptions().Chunk, "texts per EmbedStream request to --server (at most its max_client_batch)")
}

// apiKey is a key sent with every call, as the auth interceptor reads it
// ("authorization: Bearer <key>").
type apiKey struct {
	key    string
	secure bool
}

func (k apiKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + k.key}, nil
}

func (k apiKey) RequireTransportSecurity() bool { return k.secure }

// dial connects to --server with the TLS and key flags. A key is refused
// over plaintext to a non-loopback address: it would cross the network in
// the clear.
func (r *remoteFlags) dial() (*grpc.ClientConn, error) {
	tc, err := r.tls.credentials()
	if err != nil {
		return nil, err
	}
	tlsOn := tc.Info().SecurityProtocol == "tls"
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tc), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(server.MaxSendMessageBytes))}
	if r.apiKeyFile != "" {
		b, err := os.ReadFile(r.apiKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--api-key-file: %w", err)
		}
		key := strings.TrimSpace(string(b))
		if key == "" {
			return nil, fmt.Errorf("%w: --api-key-file %s is empty", errUsage, r.apiKeyFile)
		}
		if !tlsOn && !isLoopback(r.addr) {
			return nil, fmt.Errorf("%w: --api-key-file needs TLS (--tls-ca) to reach %s, which is not a loopback address", errUsage, r.addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(apiKey{key: key, secure: tlsOn}))
	}
	return grpc.NewClient(r.addr, opts...)
}

// openRemote connects to --server and returns the remote embedder of
// model, to close after the job.
func (c *reembedConfig) openRemote(ctx context.Context, logger *slog.Logger) (*remote.Remote, func(), error) {
	conn, err := c.remote.dial()
	if err != nil {
		return nil, nil, err
	}
	o := remote.DefaultOptions()
	o.Model, o.Server, o.Chunk, o.MaxRate, o.Logger = c.model, "server "+c.remote.addr, c.remote.chunk, c.maxRate, logger
	if c.maxRetries > 0 {
		o.MaxRetries = c.maxRetries
	}
	rm, err := remote.New(ctx, conn, o)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return rm, func() {
		if err := rm.Close(); err != nil {
			logger.Debug("reembed: closing the stream", "err", err)
		}
		conn.Close()
		s := rm.Stats()
		c.remoteStats = &s
		logger.Debug("reembed: remote embedder", "server", c.remote.addr, "requests", s.Requests, "retries", s.Retries, "hinted", s.Hinted, "waited", s.Waited, "min_hint", s.MinHint)
	}, nil
}

var _ reembed.Embedder = (*remote.Remote)(nil)
