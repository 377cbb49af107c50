package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/embedd/embedd/internal/auth"
	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestOpenAIPythonClient points the official OpenAI Python client
// (tools/openai/check.py, with the openai package pinned in
// tools/requirements.txt) at a real server with API keys on, and checks
// that what the client decodes — its default (base64, decoded by the
// client), float, base64 and dimensions — equals, bit for bit, what gRPC
// Embed returns from the same server; that usage counts the model's
// tokens; and that the client raises its own error classes for a bad
// dimensions (400) and a bad key (401). It fails without the tooling venv
// under EMBEDD_REQUIRE_ASSETS=1.
func TestOpenAIPythonClient(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	py := testassets.ToolsPython(t)
	if out, err := exec.Command(py, "-c", "import openai").CombinedOutput(); err != nil {
		t.Fatalf("the tooling venv %s has no openai package (scripts/pyenv.sh installs tools/requirements.txt): %v\n%s", py, err, out)
	}
	secret, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(keys, fmt.Appendf(nil, "keys:\n  - {id: py, sha256: %s, scopes: [embed]}\n", auth.HashKey(secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	base, conn, stop := runServeHTTP(t, "--features=false", "--auth-keys", keys)
	defer stop()

	const model, dims = "all-minilm-l6-v2-int8", 96
	texts := []string{"The cat sleeps on the sofa.", "Bond yields rose after the central bank decision.", "ünïcödé ✓"}
	cmd := exec.Command(py, "../../tools/openai/check.py", "--base-url", base+"/v1", "--api-key", secret, "--model", model,
		"--dimensions", fmt.Sprint(dims), "--too-many-dimensions", "385")
	cmd.Args = append(cmd.Args, texts...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check.py: %v", err)
	}
	type apiErr struct {
		Status            int
		Class, Type, Code string
		Message           string
	}
	var got struct {
		Version       string      `json:"openai_version"`
		Default       [][]float32 `json:"default"`
		Float         [][]float32 `json:"float"`
		Base64        []string    `json:"base64"`
		Base64Decoded [][]float32 `json:"base64_decoded"`
		Dimensions    [][]float32 `json:"dimensions"`
		Usage         struct {
			Prompt uint64 `json:"prompt_tokens"`
			Total  uint64 `json:"total_tokens"`
		}
		Model   string
		Models  []string
		TooMany *apiErr `json:"too_many"`
		BadKey  *apiErr `json:"bad_key"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("check.py printed %.300s: %v", out, err)
	}
	t.Logf("openai %s", got.Version)

	ctx := context.Background()
	ec := embeddv1.NewEmbeddingServiceClient(conn)
	md := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
	want, err := ec.Embed(md, &embeddv1.EmbedRequest{Model: model, Texts: texts})
	if err != nil {
		t.Fatal(err)
	}
	wantDims, err := ec.Embed(md, &embeddv1.EmbedRequest{Model: model, Texts: texts, Dimensions: dims})
	if err != nil {
		t.Fatal(err)
	}
	for name, vecs := range map[string][][]float32{"default (base64 decoded by the client)": got.Default, "float": got.Float, "base64": got.Base64Decoded} {
		if diff := sameVectors(vecs, want.Embeddings); diff != "" {
			t.Errorf("%s: %s", name, diff)
		}
	}
	var raw [][]float32
	for _, s := range got.Base64 {
		raw = append(raw, f32(t, s))
	}
	if diff := sameVectors(raw, want.Embeddings); diff != "" {
		t.Errorf("base64 strings: %s", diff)
	}
	if diff := sameVectors(got.Dimensions, wantDims.Embeddings); diff != "" {
		t.Errorf("dimensions %d: %s", dims, diff)
	}
	if got.Usage.Prompt != want.TotalTokens || got.Usage.Total != want.TotalTokens || got.Model != want.Model {
		t.Errorf("usage %+v model %q; want %d tokens, model %q", got.Usage, got.Model, want.TotalTokens, want.Model)
	}
	if !slices.Contains(got.Models, model) {
		t.Errorf("models.list: %v; want %s in it", got.Models, model)
	}
	if e := got.TooMany; e == nil || e.Status != 400 || e.Class != "BadRequestError" || e.Type != "invalid_request_error" || !strings.Contains(e.Message, "dimensions 385 out of range [1, 384]") {
		t.Errorf("dimensions 385: %+v; want BadRequestError 400 naming the range", e)
	}
	if e := got.BadKey; e == nil || e.Status != 401 || e.Class != "AuthenticationError" {
		t.Errorf("a bad key: %+v; want AuthenticationError 401", e)
	}
}
