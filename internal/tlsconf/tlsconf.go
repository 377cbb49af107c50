// Package tlsconf serves TLS with a certificate, key and (for mutual TLS)
// client CA bundle read from files, and reloads them when the files change,
// without a restart and without touching established connections.
//
// Invariants:
//   - A handshake always uses a complete, validated set: the certificate
//     matches its key, and the client CA file holds at least one
//     certificate. A change that does not load (a half-written file during
//     a rotation, a key that does not match) is logged and the previous set
//     stays in use; the next handshake after the files settle retries.
//   - Files are checked at most once per Options.CheckEvery, on a
//     handshake: a server that nobody connects to reads nothing.
//   - Connections already established keep the certificate they were
//     made with; only new handshakes see a reloaded one.
//   - TLS 1.2 is the minimum version. With a client CA, a client must
//     present a certificate that chains to it (tls.RequireAndVerifyClientCert).
//   - Nothing read from the files (key material) is ever logged; errors
//     name the file and what is wrong with it.
//
// Concurrency: a *Reloader is safe for concurrent use.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files names the PEM files of a server's TLS identity.
type Files struct {
	// Cert and Key are the server's certificate chain and private key.
	// Required.
	Cert, Key string
	// ClientCA, if set, turns on mutual TLS: clients must present a
	// certificate issued by one of these CAs.
	ClientCA string
}

// Options configures a Reloader; zero fields take the defaults.
type Options struct {
	// CheckEvery is the least time between two checks of the files.
	// Default 1s.
	CheckEvery time.Duration
	// Logger receives reloads and failed reloads. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// loaded is one complete, validated set and the file stamps it came from.
type loaded struct {
	cert   *tls.Certificate
	pool   *x509.CertPool // nil without a client CA
	stamps []stamp
}

// stamp identifies a file's content cheaply: a rewrite or a rename over it
// changes the modification time or the size.
type stamp struct {
	mod  time.Time
	size int64
}

// Reloader hands out the current TLS identity.
type Reloader struct {
	files Files
	opts  Options

	mu      sync.Mutex
	cur     *loaded
	checked time.Time // last check of the files
	failed  []stamp   // stamps of the last set that failed to load
}

// New loads files; it fails if they do not make a valid set.
func New(files Files, opts Options) (*Reloader, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tlsconf: a certificate and a key file are both required")
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reloader{files: files, opts: opts}
	l, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur, r.checked = l, opts.Now()
	return r, nil
}

func (r *Reloader) paths() []string {
	p := []string{r.files.Cert, r.files.Key}
	if r.files.ClientCA != "" {
		p = append(p, r.files.ClientCA)
	}
	return p
}

func (r *Reloader) stamps() ([]stamp, error) {
	out := make([]stamp, 0, 3)
	for _, p := range r.paths() {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %w", err)
		}
		out = append(out, stamp{st.ModTime(), st.Size()})
	}
	return out, nil
}

// load reads and validates the files.
func (r *Reloader) load() (*loaded, error) {
	st, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(r.files.Cert, r.files.Key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate %s with key %s: %w", r.files.Cert, r.files.Key, err)
	}
	l := &loaded{cert: &cert, stamps: st}
	if r.files.ClientCA != "" {
		pem, err := os.ReadFile(r.files.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %w", err)
		}
		l.pool = x509.NewCertPool()
		if !l.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tlsconf: client CA %s holds no PEM certificate", r.files.ClientCA)
		}
	}
	return l, nil
}

// current returns the set to use now, reloading it first if the files
// changed since it was loaded.
func (r *Reloader) current() *loaded {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.opts.Now()
	if now.Sub(r.checked) < r.opts.CheckEvery {
		return r.cur
	}
	r.checked = now
	st, err := r.stamps()
	if err != nil {
		r.opts.Logger.Warn("tls: cannot check the certificate files; keeping the loaded ones", "err", err)
		return r.cur
	}
	if equalStamps(st, r.cur.stamps) || equalStamps(st, r.failed) {
		return r.cur
	}
	l, err := r.load()
	if err != nil {
		r.failed = st
		r.opts.Logger.Warn("tls: reload failed; keeping the loaded certificate", "err", err)
		return r.cur
	}
	r.cur, r.failed = l, nil
	r.opts.Logger.Info("tls: certificate reloaded", "cert", r.files.Cert, "not_after", l.cert.Leaf.NotAfter, "client_ca", r.files.ClientCA != "")
	return r.cur
}

func equalStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// ServerConfig returns a TLS server configuration that takes the current
// certificate (and client CAs) at each handshake. nextProtos are the
// application protocols offered ("h2" for gRPC, which grpc-go adds itself;
// none for plain HTTP/1.1).
func (r *Reloader) ServerConfig(nextProtos ...string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		l := r.current()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{*l.cert}
		if l.pool != nil {
			c.ClientCAs, c.ClientAuth = l.pool, tls.RequireAndVerifyClientCert
		}
		return c, nil
	}
	return base
}
