package bertonnx_test

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/embedd/embedd/internal/bertonnx"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/testassets"
)

// TestExportRealMatchesManifest exports the real all-MiniLM-L6-v2 weights and
// checks the bytes against the sha256 its manifest pins, so a change to the
// exporter that would break `embedd models pull` fails here, not on a user's
// machine. (Numerical correctness of the graph is checked against an
// independent numpy forward pass by tools/bertonnx/verify.py and end to end
// by the engine's parity test.)
func TestExportRealMatchesManifest(t *testing.T) {
	m := testassets.Model(t, "all-minilm-l6-v2")
	f, ok := m.File(m.ONNX)
	if !ok || f.Derive == nil {
		t.Fatalf("manifest of %s has no derived onnx file", m.Name)
	}
	dir := pull.ModelDir(testassets.CacheDir(), m)
	cfg, err := bertonnx.ReadConfig(filepath.Join(dir, f.Derive.Config))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if err := bertonnx.Export(h, cfg, filepath.Join(dir, f.Derive.Weights)); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		t.Errorf("export sha256 %s; manifest pins %s", got, f.SHA256)
	}
}
