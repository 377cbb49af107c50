package bertonnx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// miniLMConfig is the config.json of sentence-transformers/all-MiniLM-L6-v2.
const miniLMConfig = `{
  "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
  "architectures": ["BertModel"],
  "attention_probs_dropout_prob": 0.1,
  "gradient_checkpointing": false,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 384,
  "initializer_range": 0.02,
  "intermediate_size": 1536,
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 6,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "transformers_version": "4.8.2",
  "type_vocab_size": 2,
  "use_cache": true,
  "vocab_size": 30522
}`

func TestParseConfig(t *testing.T) {
	miniLM := Config{
		ModelType: "bert", VocabSize: 30522, HiddenSize: 384, NumHiddenLayers: 6, NumAttentionHeads: 12,
		IntermediateSize: 1536, HiddenAct: "gelu", MaxPositionEmbeddings: 512, TypeVocabSize: 2,
		LayerNormEps: 1e-12, PositionEmbeddingType: "absolute",
	}
	cases := []struct {
		name string
		json string
		want Config
		err  error
		msg  string
	}{
		{name: "MiniLM", json: miniLMConfig, want: miniLM},
		{name: "defaults", json: `{}`, want: DefaultConfig()},
		{name: "not JSON", json: `{`, err: ErrInvalidConfig},
		{name: "fractional size", json: `{"hidden_size": 384.5}`, err: ErrInvalidConfig, msg: "hidden_size"},
		{name: "zero layers", json: `{"num_hidden_layers": 0}`, err: ErrInvalidConfig, msg: "num_hidden_layers = 0"},
		{name: "negative eps", json: `{"layer_norm_eps": -1}`, err: ErrInvalidConfig, msg: "layer_norm_eps"},
		{name: "eps underflows float32", json: `{"layer_norm_eps": 1e-60}`, err: ErrInvalidConfig, msg: "layer_norm_eps"},
		{name: "heads", json: `{"hidden_size": 10, "num_attention_heads": 3}`, err: ErrInvalidConfig, msg: "not a multiple"},
		{name: "relu", json: `{"hidden_act": "relu"}`, err: ErrUnsupported, msg: `hidden_act "relu"`},
		{name: "relative positions", json: `{"position_embedding_type": "relative_key"}`, err: ErrUnsupported, msg: "relative_key"},
		{name: "roberta", json: `{"model_type": "roberta"}`, err: ErrUnsupported, msg: "roberta"},
		{name: "decoder", json: `{"is_decoder": true}`, err: ErrUnsupported, msg: "is_decoder"},
		{name: "too big", json: `{"x": "` + strings.Repeat("a", MaxConfigSize) + `"}`, err: ErrInvalidConfig, msg: "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(strings.NewReader(tc.json))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v; want %v", err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("err = %q; want it to mention %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v; want nil", err)
			}
			if got != tc.want {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, []byte(miniLMConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ReadConfig(p)
	if err != nil {
		t.Fatalf("ReadConfig: %v", err)
	}
	if c.HiddenSize != 384 || c.NumHiddenLayers != 6 {
		t.Errorf("got hidden %d layers %d; want 384 6", c.HiddenSize, c.NumHiddenLayers)
	}
	if _, err := ReadConfig(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadConfig(missing) = %v; want %v", err, os.ErrNotExist)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"hidden_act": "silu"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(bad); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), bad) {
		t.Errorf("ReadConfig(bad) = %v; want %v naming %s", err, ErrUnsupported, bad)
	}
}
