package bertonnx

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
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
	// FP32Linears, in a Q8 graph, keeps the linears it names in float32
	// (a MatMul on the float32 weight and the bias Add, as in an FP32
	// graph) and quantizes the others. Each entry names a kind of linear,
	// "query", "key", "value", "attention_output" (the attention block's
	// output dense), "intermediate" (the FFN's first dense) or "output"
	// (the FFN's second dense), in every layer; or a layer, "layer.N"
	// (N from 0), all six of its linears; or one linear of one layer,
	// "layer.N.KIND". Entries may overlap; the graph depends only on the
	// set of linears they select, not on their order or spelling. A layer
	// N must be below the config's NumHiddenLayers (checked by the export,
	// which knows it). Default empty: every linear is int8. It needs
	// Precision Q8.
	FP32Linears []string
	// FP32WordEmbeddings, in a Q8 graph, keeps the word embedding table
	// float32 (a Gather, as in an FP32 graph) rather than int8 per row.
	// Default false. It needs Precision Q8.
	FP32WordEmbeddings bool
}

// linearKinds are the linears of an encoder layer, in graph order, as
// FP32Linears names them.
var linearKinds = []string{"query", "key", "value", "attention_output", "intermediate", "output"}

// fp32Linear is one parsed FP32Linears entry: layer -1 means every layer,
// kind "" every kind.
type fp32Linear struct {
	layer int
	kind  string
}

// parseFP32Linear parses an FP32Linears entry.
func parseFP32Linear(s string) (fp32Linear, error) {
	bad := func() (fp32Linear, error) {
		return fp32Linear{}, fmt.Errorf("%w: fp32 linear %q; want a kind (%s), layer.N or layer.N.KIND", ErrInvalidOptions, s, strings.Join(linearKinds, ", "))
	}
	if slices.Contains(linearKinds, s) {
		return fp32Linear{layer: -1, kind: s}, nil
	}
	rest, ok := strings.CutPrefix(s, "layer.")
	if !ok {
		return bad()
	}
	num, kind, hasKind := strings.Cut(rest, ".")
	if hasKind && !slices.Contains(linearKinds, kind) {
		return bad()
	}
	// Plain decimal digits only, so that every layer has one spelling.
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || num != strconv.Itoa(n) {
		return bad()
	}
	return fp32Linear{layer: n, kind: kind}, nil
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
	for _, s := range o.FP32Linears {
		if _, err := parseFP32Linear(s); err != nil {
			errs = append(errs, err)
		}
	}
	if (len(o.FP32Linears) > 0 || o.FP32WordEmbeddings) && !o.q8() {
		errs = append(errs, fmt.Errorf("%w: fp32 linears and fp32 word embeddings need precision %q", ErrInvalidOptions, Q8))
	}
	return errors.Join(errs...)
}

// validateFor reports FP32Linears layers that cfg does not have; o is
// otherwise valid.
func (o Options) validateFor(cfg Config) error {
	var errs []error
	for _, s := range o.FP32Linears {
		if l, err := parseFP32Linear(s); err == nil && l.layer >= cfg.NumHiddenLayers {
			errs = append(errs, fmt.Errorf("%w: fp32 linear %q: the model has %d layers (0 to %d)", ErrInvalidOptions, s, cfg.NumHiddenLayers, cfg.NumHiddenLayers-1))
		}
	}
	return errors.Join(errs...)
}

// fp32Linears returns, for a graph of layers layers, which linears
// FP32Linears selects: [layer][index in linearKinds]. o is valid.
func (o Options) fp32Linears(layers int) [][]bool {
	sel := make([][]bool, layers)
	for i := range sel {
		sel[i] = make([]bool, len(linearKinds))
	}
	for _, s := range o.FP32Linears {
		l, _ := parseFP32Linear(s)
		for i := range layers {
			for k, kind := range linearKinds {
				if (l.layer < 0 || l.layer == i) && (l.kind == "" || l.kind == kind) {
					sel[i][k] = true
				}
			}
		}
	}
	return sel
}

// describeFP32Linears is the canonical form of the set fp32Linears
// selects: the kinds selected in every layer, then each layer whose six
// linears are all selected, then the remaining single linears, in graph
// order; "" when none is.
func describeFP32Linears(sel [][]bool) string {
	var parts []string
	allLayers := make([]bool, len(linearKinds))
	for k, kind := range linearKinds {
		allLayers[k] = len(sel) > 0
		for i := range sel {
			allLayers[k] = allLayers[k] && sel[i][k]
		}
		if allLayers[k] {
			parts = append(parts, kind)
		}
	}
	for i, row := range sel {
		if !slices.Contains(row, false) && slices.Contains(allLayers, false) {
			parts = append(parts, fmt.Sprintf("layer.%d", i))
			continue
		}
		for k, kind := range linearKinds {
			if row[k] && !allLayers[k] {
				parts = append(parts, fmt.Sprintf("layer.%d.%s", i, kind))
			}
		}
	}
	return strings.Join(parts, ", ")
}
func (o Options) fp16() bool   { return o.Precision == FP16 }
func (o Options) q8() bool     { return o.Precision == Q8 }
func (o Options) pooled() bool { return o.Pooling == PoolMean || o.Pooling == PoolCLS }

// describe is appended to the model's doc string for a graph of layers
// layers; it is empty for the default options so that their output is
// unchanged.
func (o Options) describe(layers int) string {
	var parts []string
	if o.fp16() {
		parts = append(parts, "float16 weights and matmuls, float32 residual stream, LayerNorm, softmax and pooling")
	}
	if o.q8() {
		parts = append(parts, "dynamic int8: int8 linear weights per output channel, int8 activations per token, integer matmuls; int8 word embeddings per row; float32 residual stream, LayerNorm, attention and pooling")
		if d := describeFP32Linears(o.fp32Linears(layers)); d != "" {
			parts = append(parts, "except float32 linears: "+d)
		}
		if o.FP32WordEmbeddings {
			parts = append(parts, "except float32 word embeddings")
		}
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
