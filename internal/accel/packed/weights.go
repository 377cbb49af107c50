package packed

import (
	"errors"
	"fmt"

	"github.com/embedd/embedd/internal/bertonnx"
)

// Config is the model's config.json, as bertonnx reads and validates it.
type Config = bertonnx.Config

// Layer holds the weights of one encoder layer, float32, row-major, linear
// weights in PyTorch's [out, in] layout (see Weights).
type Layer struct {
	QKV, QKVBias      []float32 // [3H, H]: Q rows, then K, then V; [3H]
	Out, OutBias      []float32 // [H, H], [H]: attention output projection
	LN1Gamma, LN1Beta []float32 // [H]: LayerNorm after attention
	FF1, FF1Bias      []float32 // [I, H], [I]: intermediate projection
	FF2, FF2Bias      []float32 // [H, I], [H]: output projection
	LN2Gamma, LN2Beta []float32 // [H]: LayerNorm after the feed-forward
}

// Weights is a BERT encoder's weights in the layout every implementation of
// the packed forward pass shares. Word is [V, H], PosEmb [P, H], TypeEmb
// [TV, H], with V, P and TV the config's vocab_size, max_position_embeddings
// and type_vocab_size.
type Weights struct {
	Config                                       Config
	Word, PosEmb, TypeEmb, EmbLNGamma, EmbLNBeta []float32
	Layers                                       []Layer
}

// Hidden is the width of the hidden states, H.
func (w *Weights) Hidden() int { return w.Config.HiddenSize }

// Heads is the number of attention heads.
func (w *Weights) Heads() int { return w.Config.NumAttentionHeads }

// HeadDim is the width of one attention head, H / heads.
func (w *Weights) HeadDim() int { return w.Config.HiddenSize / w.Config.NumAttentionHeads }

// Eps is the LayerNorm epsilon as every kernel uses it: float32.
func (w *Weights) Eps() float32 { return float32(w.Config.LayerNormEps) }

// LoadWeights reads the model's config.json and model.safetensors (F32, F16
// or BF16 tensors, with or without the "bert." prefix) into float32 Weights,
// fusing each layer's query, key and value projections by stacking their
// rows. A checkpoint with several bad tensors reports all of them.
func LoadWeights(configPath, weightsPath string) (w *Weights, err error) {
	cfg, err := bertonnx.ReadConfig(configPath)
	if err != nil {
		return nil, err
	}
	r, err := bertonnx.OpenWeights(weightsPath)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, r.Close()) }()

	h, in := int64(cfg.HiddenSize), int64(cfg.IntermediateSize)
	var errs []error
	read := func(name string, shape ...int64) []float32 {
		v, err := r.Float32(name, shape...)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	norm := func(base string) (gamma, beta []float32) {
		gamma, beta, err := r.LayerNorm(base, h)
		if err != nil {
			errs = append(errs, err)
		}
		return gamma, beta
	}
	w = &Weights{Config: cfg, Layers: make([]Layer, cfg.NumHiddenLayers)}
	w.Word = read("embeddings.word_embeddings.weight", int64(cfg.VocabSize), h)
	w.PosEmb = read("embeddings.position_embeddings.weight", int64(cfg.MaxPositionEmbeddings), h)
	w.TypeEmb = read("embeddings.token_type_embeddings.weight", int64(cfg.TypeVocabSize), h)
	w.EmbLNGamma, w.EmbLNBeta = norm("embeddings.LayerNorm")
	for i := range w.Layers {
		l := &w.Layers[i]
		p := fmt.Sprintf("encoder.layer.%d.", i)
		l.QKV = make([]float32, 0, 3*h*h)
		l.QKVBias = make([]float32, 0, 3*h)
		for _, n := range []string{"query", "key", "value"} {
			l.QKV = append(l.QKV, read(p+"attention.self."+n+".weight", h, h)...)
			l.QKVBias = append(l.QKVBias, read(p+"attention.self."+n+".bias", h)...)
		}
		l.Out = read(p+"attention.output.dense.weight", h, h)
		l.OutBias = read(p+"attention.output.dense.bias", h)
		l.LN1Gamma, l.LN1Beta = norm(p + "attention.output.LayerNorm")
		l.FF1 = read(p+"intermediate.dense.weight", in, h)
		l.FF1Bias = read(p+"intermediate.dense.bias", in)
		l.FF2 = read(p+"output.dense.weight", h, in)
		l.FF2Bias = read(p+"output.dense.bias", h)
		l.LN2Gamma, l.LN2Beta = norm(p + "output.LayerNorm")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return w, nil
}

// MaxHeadDim and MaxHidden bound the head width and the hidden width the
// kernels are written for (the GPU attention kernel keeps a query's context
// in registers, the LayerNorm kernels a row in shared memory).
const (
	MaxHeadDim = 128
	MaxHidden  = 4096
)

// Validate reports whether w can be run: its Config is valid, within
// MaxHeadDim and MaxHidden, and every slice has the length its shape in the
// Config gives. The error names each slice at fault.
func (w *Weights) Validate() error {
	c := w.Config
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadWeights, err)
	}
	h, in := c.HiddenSize, c.IntermediateSize
	var errs []error
	if h > MaxHidden {
		errs = append(errs, fmt.Errorf("%w: hidden_size %d exceeds %d", ErrBadWeights, h, MaxHidden))
	}
	if d := w.HeadDim(); d > MaxHeadDim {
		errs = append(errs, fmt.Errorf("%w: head dim %d (hidden_size %d / %d heads) exceeds %d",
			ErrBadWeights, d, h, c.NumAttentionHeads, MaxHeadDim))
	}
	check := func(name string, v []float32, dims ...int) {
		n := 1
		for _, d := range dims {
			n *= d
		}
		if len(v) != n {
			errs = append(errs, fmt.Errorf("%w: %s has %d values; want %v = %d", ErrBadWeights, name, len(v), dims, n))
		}
	}
	check("Word", w.Word, c.VocabSize, h)
	check("PosEmb", w.PosEmb, c.MaxPositionEmbeddings, h)
	check("TypeEmb", w.TypeEmb, c.TypeVocabSize, h)
	check("EmbLNGamma", w.EmbLNGamma, h)
	check("EmbLNBeta", w.EmbLNBeta, h)
	if len(w.Layers) != c.NumHiddenLayers {
		errs = append(errs, fmt.Errorf("%w: %d layers; num_hidden_layers is %d", ErrBadWeights, len(w.Layers), c.NumHiddenLayers))
	}
	for i, l := range w.Layers {
		p := fmt.Sprintf("Layers[%d].", i)
		check(p+"QKV", l.QKV, 3*h, h)
		check(p+"QKVBias", l.QKVBias, 3*h)
		check(p+"Out", l.Out, h, h)
		check(p+"OutBias", l.OutBias, h)
		check(p+"LN1Gamma", l.LN1Gamma, h)
		check(p+"LN1Beta", l.LN1Beta, h)
		check(p+"FF1", l.FF1, in, h)
		check(p+"FF1Bias", l.FF1Bias, in)
		check(p+"FF2", l.FF2, h, in)
		check(p+"FF2Bias", l.FF2Bias, h)
		check(p+"LN2Gamma", l.LN2Gamma, h)
		check(p+"LN2Beta", l.LN2Beta, h)
	}
	return errors.Join(errs...)
}
