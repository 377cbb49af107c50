package bertonnx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Errors returned by this package. Each is wrapped with the field, tensor or
// limit at fault; test for them with errors.Is.
var (
	// ErrInvalidConfig reports a config.json that is malformed or whose
	// values are out of range.
	ErrInvalidConfig = errors.New("bertonnx: invalid config")
	// ErrUnsupported reports a valid BERT variant this exporter does not
	// build, such as a non-erf activation or relative position embeddings.
	ErrUnsupported = errors.New("bertonnx: unsupported model")
	// ErrBadSafetensors reports a weights file that does not follow the
	// safetensors format or whose offsets point outside the file.
	ErrBadSafetensors = errors.New("bertonnx: malformed safetensors file")
	// ErrMissingTensor reports a tensor the graph needs that the weights
	// file lacks.
	ErrMissingTensor = errors.New("bertonnx: missing tensor")
	// ErrTensorMismatch reports a tensor whose dtype or shape differs from
	// what the config implies.
	ErrTensorMismatch = errors.New("bertonnx: tensor mismatch")
	// ErrTooLarge reports a model that would not fit in one protobuf
	// message (2 GiB).
	ErrTooLarge = errors.New("bertonnx: model too large")
	// ErrInvalidOptions reports an Options value outside its documented
	// set, or a combination the exporter does not build.
	ErrInvalidOptions = errors.New("bertonnx: invalid options")
)

// MaxConfigSize is the largest config.json ReadConfig accepts, in bytes.
const MaxConfigSize = 1 << 20

// Config holds the fields of a Hugging Face BertConfig that shape the graph.
// Fields absent from config.json take the BertConfig defaults (see
// [DefaultConfig]).
type Config struct {
	// ModelType is "bert"; empty is taken as "bert".
	ModelType string `json:"model_type"`
	// VocabSize is the number of rows of the word embedding table.
	VocabSize int `json:"vocab_size"`
	// HiddenSize is the width of every hidden state; it must be a multiple
	// of NumAttentionHeads.
	HiddenSize int `json:"hidden_size"`
	// NumHiddenLayers is the number of encoder layers.
	NumHiddenLayers int `json:"num_hidden_layers"`
	// NumAttentionHeads is the number of attention heads per layer.
	NumAttentionHeads int `json:"num_attention_heads"`
	// IntermediateSize is the width of the feed-forward layer.
	IntermediateSize int `json:"intermediate_size"`
	// HiddenAct is the feed-forward activation; only "gelu" (exact, erf) is
	// supported.
	HiddenAct string `json:"hidden_act"`
	// MaxPositionEmbeddings is the number of rows of the position embedding
	// table and so the longest sequence the model accepts.
	MaxPositionEmbeddings int `json:"max_position_embeddings"`
	// TypeVocabSize is the number of token types (segments).
	TypeVocabSize int `json:"type_vocab_size"`
	// LayerNormEps is the epsilon of every LayerNorm; it must be positive.
	// The ONNX attribute is float32, so it is rounded to float32.
	LayerNormEps float64 `json:"layer_norm_eps"`
	// PositionEmbeddingType is "absolute"; empty is taken as "absolute".
	PositionEmbeddingType string `json:"position_embedding_type"`
	// IsDecoder must be false: decoder (causal) BERT is not supported.
	IsDecoder bool `json:"is_decoder"`
}

// DefaultConfig returns the defaults of transformers.BertConfig (bert-base),
// which ReadConfig applies to fields config.json leaves out.
func DefaultConfig() Config {
	return Config{
		ModelType:             "bert",
		VocabSize:             30522,
		HiddenSize:            768,
		NumHiddenLayers:       12,
		NumAttentionHeads:     12,
		IntermediateSize:      3072,
		HiddenAct:             "gelu",
		MaxPositionEmbeddings: 512,
		TypeVocabSize:         2,
		LayerNormEps:          1e-12,
		PositionEmbeddingType: "absolute",
	}
}

// ReadConfig reads and validates a Hugging Face config.json.
func ReadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("bertonnx: read config: %w", err)
	}
	defer f.Close()
	cfg, err := ParseConfig(f)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads a config.json document from r (at most MaxConfigSize
// bytes), applies the BertConfig defaults and validates the result.
func ParseConfig(r io.Reader) (Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("bertonnx: read config: %w", err)
	}
	if len(data) > MaxConfigSize {
		return Config{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalidConfig, MaxConfigSize)
	}
	cfg := DefaultConfig()
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// maxDim bounds every size in the config so that products of sizes cannot
// overflow and absurd configs fail early rather than in allocation.
const maxDim = 1 << 24

// Validate reports whether the exporter can build a graph for c.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 || v > maxDim {
			errs = append(errs, fmt.Errorf("%w: %s = %d; want 1..%d", ErrInvalidConfig, name, v, maxDim))
		}
	}
	positive("vocab_size", c.VocabSize)
	positive("hidden_size", c.HiddenSize)
	positive("num_hidden_layers", c.NumHiddenLayers)
	positive("num_attention_heads", c.NumAttentionHeads)
	positive("intermediate_size", c.IntermediateSize)
	positive("max_position_embeddings", c.MaxPositionEmbeddings)
	positive("type_vocab_size", c.TypeVocabSize)
	if c.NumHiddenLayers > 1024 {
		errs = append(errs, fmt.Errorf("%w: num_hidden_layers = %d; want at most 1024", ErrInvalidConfig, c.NumHiddenLayers))
	}
	if c.HiddenSize > 0 && c.NumAttentionHeads > 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		errs = append(errs, fmt.Errorf("%w: hidden_size %d is not a multiple of num_attention_heads %d",
			ErrInvalidConfig, c.HiddenSize, c.NumAttentionHeads))
	}
	if !(c.LayerNormEps > 0) || float32(c.LayerNormEps) == 0 || math.IsInf(float64(float32(c.LayerNormEps)), 0) {
		errs = append(errs, fmt.Errorf("%w: layer_norm_eps = %g; want a positive float32", ErrInvalidConfig, c.LayerNormEps))
	}
	if c.ModelType != "" && c.ModelType != "bert" {
		errs = append(errs, fmt.Errorf("%w: model_type %q; want \"bert\"", ErrUnsupported, c.ModelType))
	}
	if c.HiddenAct != "gelu" {
		errs = append(errs, fmt.Errorf("%w: hidden_act %q; want \"gelu\" (exact erf GELU)", ErrUnsupported, c.HiddenAct))
	}
	if c.PositionEmbeddingType != "" && c.PositionEmbeddingType != "absolute" {
		errs = append(errs, fmt.Errorf("%w: position_embedding_type %q; want \"absolute\"", ErrUnsupported, c.PositionEmbeddingType))
	}
	if c.IsDecoder {
		errs = append(errs, fmt.Errorf("%w: is_decoder is true; want an encoder", ErrUnsupported))
	}
	return errors.Join(errs...)
}

func (c Config) headSize() int { return c.HiddenSize / c.NumAttentionHeads }
