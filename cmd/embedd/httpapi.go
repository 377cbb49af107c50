package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/embedd/embedd/internal/httpapi"
	"github.com/embedd/embedd/internal/tlsconf"
)

// httpConfig are serve's flags of the HTTP/JSON API listener.
type httpConfig struct {
	addr              string
	maxBodyBytes      int64
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	// listening, if set, is called with the address once the API listens
	// (for tests).
	listening func(addr string)
}

func (c *httpConfig) register(fs *flag.FlagSet) {
	d := httpapi.DefaultOptions()
	fs.StringVar(&c.addr, "http-addr", "127.0.0.1:8080", "HTTP/JSON API listen address (OpenAI-compatible /v1/embeddings, TEI /embed, JSON for every unary RPC); empty disables")
	fs.Int64Var(&c.maxBodyBytes, "http-max-body-bytes", d.MaxBodyBytes, "largest HTTP request body in bytes (413 beyond); the encoded request must also fit --max-message-bytes")
	fs.DurationVar(&c.readHeaderTimeout, "http-read-header-timeout", 5*time.Second, "longest an HTTP client may take to send its request headers")
	fs.DurationVar(&c.idleTimeout, "http-idle-timeout", 120*time.Second, "how long an idle HTTP keep-alive connection stays open")
}

// start serves the API over gs's services on c.addr, over TLS when creds
// is set; with no address it returns a nil server and an empty address.
func (c *httpConfig) start(gs httpapi.GRPCServer, maxMessageBytes int, creds *tlsconf.Reloader, logger *slog.Logger) (*http.Server, string, error) {
	if c.addr == "" {
		return nil, "", nil
	}
	if c.readHeaderTimeout <= 0 || c.idleTimeout <= 0 {
		return nil, "", fmt.Errorf("%w: --http-read-header-timeout and --http-idle-timeout must be positive", errUsage)
	}
	h, err := httpapi.New(gs, httpapi.Options{MaxBodyBytes: c.maxBodyBytes, MaxMessageBytes: maxMessageBytes})
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: c.readHeaderTimeout, IdleTimeout: c.idleTimeout,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	serve := func() error { return srv.Serve(ln) }
	if creds != nil {
		// GetConfigForClient hands out the reloaded certificate; ServeTLS
		// also turns on HTTP/2.
		srv.TLSConfig = creds.ServerConfig("h2", "http/1.1")
		serve = func() error { return srv.ServeTLS(ln, "", "") }
	}
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("HTTP API stopped", "err", err)
		}
	}()
	addr := ln.Addr().String()
	if c.listening != nil {
		c.listening(addr)
	}
	return srv, addr, nil
}
