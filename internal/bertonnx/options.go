package bertonnx

import (
	"errors"
	"fmt"
	"strings"
)

// Precision is the numeric layout of the exported graph.
type Precision string

const (
	// FP32 stores every weight and computes every node in float32. It is
	// the default; the zero Precision means FP32.
	FP32 Precision = "fp32"
	// FP16 is mixed precision for GPUs: linear and embedding weights and the
	// matmuls in float16, the residual stream, LayerNormalization, softmax
	// and pooling in float32 (see the package doc).
	FP16 Precision = "fp16"
	// Q8 is dynamic int8 quantization for CPUs: linear weights in int8
	// (symmetric, one scale per output channel), their inputs quantized to
	// int8 at run time (symmetric, one scale per token), integer matmuls,
	// int8 word embeddings (one scale per row); the residual stream,
	// LayerNorm, attention and pooling in float32 (see the package doc).
	Q8 Precision = "q8"
)

// Pooling selects what the graph outputs.
type Pooling string

const (
	// PoolNone outputs last_hidden_state [batch, sequence, hidden]; the
	// caller pools. It is the default; the zero Pooling means PoolNone.
	PoolNone Pooling = "none"
	// PoolMean outputs sentence_embedding [batch, hidden], the mean of the
	// last hidden states over the attention mask.
	PoolMean Pooling = "mean"
	// PoolCLS outputs sentence_embedding [batch, hidden], the last hidden
	// state of the first ([CLS]) token.
	PoolCLS Pooling = "cls"
)

// Options selects a variant of the exported graph. The zero Options (FP32,
// PoolNone, no normalization) gives the graph Export has always written, byte
// for byte; setting a field to its documented default gives the same bytes.
type Options struct {
	// Precision is FP32 (default, also ""), FP16 or Q8.
	Precision Precision
	// Pooling is PoolNone (default, also ""), PoolMean or PoolCLS.
	Pooling Pooling
	// Normalize divides the pooled vector by max(its L2 norm, 1e-12), as
	// torch.nn.functional.normalize does, and adds the sentence_norm output
	// holding that norm. It needs Pooling PoolMean or PoolCLS. Default false.
	Normalize bool
}

// Validate reports every field of o outside its documented set, and a
// Normalize without pooling.
func (o Options) Validate() error {
	var errs []error
	switch o.Precision {
	case "", FP32, FP16, Q8:
	default:
		errs = append(errs, fmt.Errorf("%w: precision %q; want %q, %q or %q", ErrInvalidOptions, o.Precision, FP32, FP16, Q8))
	}
	switch o.Pooling {
	case "", PoolNone, PoolMean, PoolCLS:
	default:
		errs = append(errs, fmt.Errorf("%w: pooling %q; want %q, %q or %q", ErrInvalidOptions, o.Pooling, PoolNone, PoolMean, PoolCLS))
	}
	if o.Normalize && (o.Pooling == "" || o.Pooling == PoolNone) {
		errs = append(errs, fmt.Errorf("%w: normalize needs pooling %q or %q; last_hidden_state is not normalized", ErrInvalidOptions, PoolMean, PoolCLS))
	}
	return errors.Join(errs...)
}

func (o Options) fp16() bool   { return o.Precision == FP16 }
func (o Options) q8() bool     { return o.Precision == Q8 }
func (o Options) pooled() bool { return o.Pooling == PoolMean || o.Pooling == PoolCLS }

// describe is appended to the model's doc string; it is empty for the
// default options so that their output is unchanged.
func (o Options) describe() string {
	var parts []string
	if o.fp16() {
		parts = append(parts, "float16 weights and matmuls, float32 residual stream, LayerNorm, softmax and pooling")
	}
	if o.q8() {
		parts = append(parts, "dynamic int8: int8 linear weights per output channel, int8 activations per token, integer matmuls; int8 word embeddings per row; float32 residual stream, LayerNorm, attention and pooling")
	}
	if o.pooled() {
		parts = append(parts, string(o.Pooling)+" pooling")
	}
	if o.Normalize {
		parts = append(parts, "L2-normalized")
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}
