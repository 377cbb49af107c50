package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/tlsconf/tlsconftest"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// serve accepts TLS connections on a loopback listener and answers each
// with one byte after the handshake.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{1})
					io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects and returns the server certificate's serial.
func dial(addr string, roots *x509.CertPool, client *tls.Certificate) (*tls.Conn, int64, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, 0, err
	}
	// With TLS 1.3 a rejected client certificate shows on the first read.
	if _, err := c.Read(make([]byte, 1)); err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	authority := tlsconftest.NewCA(t, "test CA")
	roots := authority.Pool()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1, k1 := authority.Issue(t, "server", 101)
	tlsconftest.Write(t, certFile, c1)
	tlsconftest.Write(t, keyFile, k1)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	r, err := New(Files{Cert: certFile, Key: keyFile}, Options{Now: clk.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r.ServerConfig())
	old, serial, err := dial(addr, roots, nil)
	if err != nil || serial != 101 {
		t.Fatalf("first dial: serial %d, %v; want 101", serial, err)
	}
	defer old.Close()

	// Rotate: within CheckEvery the old certificate is still served; after
	// it, the new one; the old connection keeps working.
	c2, k2 := authority.Issue(t, "server", 102)
	tlsconftest.Write(t, certFile, c2)
	tlsconftest.Write(t, keyFile, k2)
	if _, serial, _ = dial(addr, roots, nil); serial != 101 {
		t.Errorf("before CheckEvery: serial %d; want 101", serial)
	}
	clk.t = clk.t.Add(2 * time.Second)
	if _, serial, err = dial(addr, roots, nil); err != nil || serial != 102 {
		t.Errorf("after rotation: serial %d, %v; want 102", serial, err)
	}
	if _, err := old.Write([]byte("still here")); err != nil {
		t.Errorf("established connection broken by the reload: %v", err)
	}

	// A half-written rotation (certificate without its key) keeps 102.
	c3, _ := authority.Issue(t, "server", 103)
	tlsconftest.Write(t, certFile, c3)
	clk.t = clk.t.Add(2 * time.Second)
	if _, serial, err = dial(addr, roots, nil); err != nil || serial != 102 {
		t.Errorf("mismatched key: serial %d, %v; want 102 kept", serial, err)
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := tlsconftest.NewCA(t, "server CA"), tlsconftest.NewCA(t, "client CA"), tlsconftest.NewCA(t, "other CA")
	roots := serverCA.Pool()
	files := Files{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), ClientCA: filepath.Join(dir, "ca.crt")}
	sc, sk := serverCA.Issue(t, "server", 1)
	tlsconftest.Write(t, files.Cert, sc)
	tlsconftest.Write(t, files.Key, sk)
	tlsconftest.Write(t, files.ClientCA, clientCA.PEM)
	r, err := New(files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r.ServerConfig())
	pair := func(a *tlsconftest.CA) *tls.Certificate {
		c, k := a.Issue(t, "client", 7)
		p, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	if c, _, err := dial(addr, roots, pair(clientCA)); err != nil {
		t.Errorf("client certificate from the client CA: %v", err)
	} else {
		c.Close()
	}
	if _, _, err := dial(addr, roots, nil); err == nil {
		t.Error("no client certificate: connected; want refused")
	}
	if _, _, err := dial(addr, roots, pair(otherCA)); err == nil {
		t.Error("client certificate from another CA: connected; want refused")
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	authority := tlsconftest.NewCA(t, "CA")
	c, k := authority.Issue(t, "s", 1)
	_, k2 := authority.Issue(t, "s", 2)
	tlsconftest.Write(t, filepath.Join(dir, "c"), c)
	tlsconftest.Write(t, filepath.Join(dir, "k"), k)
	tlsconftest.Write(t, filepath.Join(dir, "k2"), k2)
	tlsconftest.Write(t, filepath.Join(dir, "junk"), []byte("not pem"))
	for _, tc := range []struct {
		files Files
		want  string
	}{
		{Files{Cert: filepath.Join(dir, "c")}, "both required"},
		{Files{Cert: filepath.Join(dir, "c"), Key: filepath.Join(dir, "missing")}, "missing"},
		{Files{Cert: filepath.Join(dir, "c"), Key: filepath.Join(dir, "k2")}, "private key does not match"},
		{Files{Cert: filepath.Join(dir, "c"), Key: filepath.Join(dir, "k"), ClientCA: filepath.Join(dir, "junk")}, "holds no PEM certificate"},
	} {
		_, err := New(tc.files, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v; want an error containing %q", tc.files, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("error quotes file content: %v", err)
		}
	}
}
