package bertonnx_test

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/embedd/embedd/internal/bertonnx"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/testassets"
)

// TestExportRealTokenGraphUnchanged exports the real all-MiniLM-L6-v2 weights
// with zero Options and checks the bytes against the token-output graph's
// pin. (Numerical correctness of the graph is checked against an
// independent numpy forward pass by tools/bertonnx/verify.py, which
// `make verify-export` runs, and end to end by the engine's parity test.)
func TestExportRealTokenGraphUnchanged(t *testing.T) {
	// The zero-Options export of all-MiniLM-L6-v2 (the token-output graph,
	// last_hidden_state) was the default model's pinned model.onnx until the
	// default became the pooled graph; it must not change, so that an ONNX
	// file exported before stays reproducible. TestRealExportsMatchManifests
	// checks the graphs the manifests pin now.
	const tokenGraphSHA256 = "de9137606fff871c36d889fbc3a86b90b3eef93b27b2b2b7a8a50efbcad085f3"
	m := testassets.Model(t, "all-minilm-l6-v2")
	f, ok := m.File(m.ONNX)
	if !ok || f.Derive == nil {
		t.Fatalf("manifest of %s has no derived onnx file", m.Name)
	}
	dir := manifest.Dir(testassets.CacheDir(), m)
	cfg, err := bertonnx.ReadConfig(filepath.Join(dir, f.Derive.Config))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if err := bertonnx.Export(h, cfg, filepath.Join(dir, f.Derive.Weights)); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != tokenGraphSHA256 {
		t.Errorf("zero-options export sha256 %s; want %s", got, tokenGraphSHA256)
	}
}
