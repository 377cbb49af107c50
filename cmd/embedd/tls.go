package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/embedd/embedd/internal/tlsconf"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// tlsFlags are serve's transport-security flags: one TLS identity for the
// gRPC and the metrics listeners, reloaded when its files change.
type tlsFlags struct {
	cert, key, clientCA string
	authKeys            string
	insecure            bool
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.cert, "tls-cert", "", "PEM certificate chain: serve gRPC and metrics over TLS (reloaded when the file changes)")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&t.clientCA, "tls-client-ca", "", "PEM CA bundle: require client certificates issued by it (mutual TLS)")
	fs.StringVar(&t.authKeys, "auth-keys", "", "API key file (YAML: key ids, SHA-256 of each key, scopes, limits; `embedd keys new` makes entries): every RPC but health then needs a key with its scope (reloaded when the file changes)")
	fs.BoolVar(&t.insecure, "insecure", false, "allow a non-loopback gRPC address without TLS and --auth-keys, or a non-loopback metrics address without TLS")
}

// open returns the reloader of the TLS identity, or nil without one.
func (t *tlsFlags) open(logger *slog.Logger) (*tlsconf.Reloader, error) {
	switch {
	case t.cert == "" && t.key == "" && t.clientCA == "":
		return nil, nil
	case t.cert == "" || t.key == "":
		return nil, fmt.Errorf("%w: --tls-cert and --tls-key go together (--tls-client-ca needs both)", errUsage)
	}
	return tlsconf.New(tlsconf.Files{Cert: t.cert, Key: t.key, ClientCA: t.clientCA}, tlsconf.Options{Logger: logger})
}

// errExposed refuses a listener reachable from other hosts without TLS or
// API keys.
var errExposed = errors.New("unprotected listener on a non-loopback address")

// checkExposure refuses a listener on a non-loopback addr (flagName names
// it) that lacks TLS, or, with needAuth, API keys, unless --insecure is
// set, in which case it warns.
func (t *tlsFlags) checkExposure(flagName, addr string, tlsOn, needAuth bool, logger *slog.Logger) error {
	authOK := !needAuth || t.authKeys != ""
	if (tlsOn && authOK) || addr == "" || isLoopback(addr) {
		return nil
	}
	missing := "TLS (--tls-cert, --tls-key)"
	switch {
	case tlsOn:
		missing = "API keys (--auth-keys)"
	case !authOK:
		missing = "TLS (--tls-cert, --tls-key) and API keys (--auth-keys)"
	}
	if !t.insecure {
		return fmt.Errorf("%w: %s %s has no %s: set them, or --insecure to accept it", errExposed, flagName, addr, missing)
	}
	logger.Warn("serving on a non-loopback address without "+missing+" (--insecure)", "flag", flagName, "addr", addr)
	return nil
}

// isLoopback reports whether addr (host:port) only listens on loopback:
// an IP in 127.0.0.0/8 or ::1, or "localhost". An empty host (":50051")
// listens on every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// clientTLS are the flags of a command that connects to a server.
type clientTLS struct {
	ca, cert, key, serverName string
	// flagPrefix names the flags in errors: "" for --tls-*, "redis-" for
	// --redis-tls-*.
	flagPrefix string
}

func (t *clientTLS) register(fs *flag.FlagSet) {
	fs.StringVar(&t.ca, "tls-ca", "", "PEM CA bundle that issued the server's certificate: connect over TLS")
	fs.StringVar(&t.cert, "tls-cert", "", "PEM client certificate, for a server that requires mutual TLS")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&t.serverName, "tls-server-name", "", "name to verify the server's certificate against (default: the host of --addr)")
}

// credentials returns TLS transport credentials, or plaintext ones when no
// TLS flag is set.
func (t *clientTLS) credentials() (credentials.TransportCredentials, error) {
	if t.ca == "" && t.cert == "" && t.key == "" {
		return insecure.NewCredentials(), nil
	}
	cfg, err := t.config()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// config is the client TLS configuration of the flags.
func (t *clientTLS) config() (*tls.Config, error) {
	if (t.cert == "") != (t.key == "") {
		return nil, fmt.Errorf("%w: --%[2]stls-cert and --%[2]stls-key go together", errUsage, t.flagPrefix)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.serverName}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--%stls-ca %s holds no PEM certificate", t.flagPrefix, t.ca)
		}
	}
	if t.cert != "" {
		pair, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, fmt.Errorf("--%[1]stls-cert %[2]s with --%[1]stls-key %[3]s: %[4]w", t.flagPrefix, t.cert, t.key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
