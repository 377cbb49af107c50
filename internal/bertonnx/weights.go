package bertonnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// wordEmbeddings is the tensor whose name tells how a checkpoint names its
// tensors: with or without bertPrefix.
const wordEmbeddings = "embeddings.word_embeddings.weight"

// bertPrefix is the prefix of the tensor names of checkpoints saved from
// BertFor* models (BertForMaskedLM and the like) rather than BertModel.
const bertPrefix = "bert."

// namePrefix returns the prefix of the checkpoint's tensor names, "" or
// "bert.", found by looking for the word embeddings under both names. It
// returns false when neither exists.
func (s *safetensors) namePrefix() (string, bool) {
	if _, ok := s.tensors[wordEmbeddings]; ok {
		return "", true
	}
	if _, ok := s.tensors[bertPrefix+wordEmbeddings]; ok {
		return bertPrefix, true
	}
	return "", false
}

// floatTensor looks up prefix+name and checks that it is F32, F16 or BF16
// of shape want. Errors wrap ErrMissingTensor or ErrTensorMismatch and name
// the tensor, what it is and what was wanted.
func (s *safetensors) floatTensor(prefix, name string, want []int64) (stTensor, error) {
	t, ok := s.tensors[prefix+name]
	if !ok {
		return stTensor{}, fmt.Errorf("%w: %s%s: want %s %v", ErrMissingTensor, prefix, name, floatDtypes, want)
	}
	switch {
	case t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16":
		return stTensor{}, fmt.Errorf("%w: %s%s: got %s %v; want %s %v", ErrTensorMismatch, prefix, name, t.dtype, t.shape, floatDtypes, want)
	case !slices.Equal(t.shape, want):
		return stTensor{}, fmt.Errorf("%w: %s%s: got %s %v; want %s %v", ErrTensorMismatch, prefix, name, t.dtype, t.shape, t.dtype, want)
	}
	return t, nil
}

// layerNormNames returns the names, without prefix, of the scale and bias of
// the LayerNorm at base: base.weight and base.bias, or base.gamma and
// base.beta in checkpoints converted from TensorFlow when those exist
// instead.
func (s *safetensors) layerNormNames(prefix, base string) (scale, bias string) {
	has := func(name string) bool { _, ok := s.tensors[prefix+name]; return ok }
	scale, bias = base+".weight", base+".bias"
	if !has(scale) && has(base+".gamma") {
		scale = base + ".gamma"
	}
	if !has(bias) && has(base+".beta") {
		bias = base + ".beta"
	}
	return scale, bias
}

// Weights reads the tensors of a BERT checkpoint (a model.safetensors file)
// as float32, for code that runs the model itself rather than through an
// exported graph. Names are given as in BertModel
// ("encoder.layer.0.attention.self.query.weight"); a checkpoint whose names
// carry the "bert." prefix is read the same way. F16 and BF16 tensors are
// widened to float32 exactly.
//
// A Weights is safe for concurrent use; Close must not be called while
// other methods run.
type Weights struct {
	path   string
	st     *safetensors
	prefix string
}

// OpenWeights opens the safetensors file at path and validates its header.
// It fails, wrapping ErrMissingTensor, when the file has no word embeddings
// under either name, since the prefix of its tensor names cannot then be
// told.
func OpenWeights(path string) (*Weights, error) {
	st, err := openSafetensors(path)
	if err != nil {
		return nil, err
	}
	prefix, ok := st.namePrefix()
	if !ok {
		st.Close()
		return nil, fmt.Errorf("%s: %w: %s (or %s%s)", path, ErrMissingTensor, wordEmbeddings, bertPrefix, wordEmbeddings)
	}
	return &Weights{path: path, st: st, prefix: prefix}, nil
}

// Prefix is the prefix of the checkpoint's tensor names: "" or "bert.".
func (w *Weights) Prefix() string { return w.prefix }

// Float32 reads the tensor name (without prefix), which must be F32, F16
// or BF16 of exactly shape, and returns its elements as float32 in
// row-major order. Errors wrap ErrMissingTensor or ErrTensorMismatch and
// name the file and the tensor.
func (w *Weights) Float32(name string, shape ...int64) ([]float32, error) {
	t, err := w.st.floatTensor(w.prefix, name, shape)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.path, err)
	}
	full := w.prefix + name
	data, err := w.st.readAll(full, t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.path, err)
	}
	if t.dtype != "F32" {
		if data, err = convert(full, t.dtype, data, storeF32); err != nil {
			return nil, fmt.Errorf("%s: %w", w.path, err)
		}
	}
	out := make([]float32, len(data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out, nil
}

// LayerNorm reads the scale and bias, each of n elements, of the LayerNorm
// at base (for example "embeddings.LayerNorm"), named weight and bias or, in
// checkpoints converted from TensorFlow, gamma and beta.
func (w *Weights) LayerNorm(base string, n int64) (scale, bias []float32, err error) {
	scaleName, biasName := w.st.layerNormNames(w.prefix, base)
	if scale, err = w.Float32(scaleName, n); err != nil {
		return nil, nil, err
	}
	if bias, err = w.Float32(biasName, n); err != nil {
		return nil, nil, err
	}
	return scale, bias, nil
}

// Close closes the file.
func (w *Weights) Close() error {
	if err := w.st.Close(); err != nil {
		return fmt.Errorf("bertonnx: close %s: %w", w.path, err)
	}
	return nil
}
