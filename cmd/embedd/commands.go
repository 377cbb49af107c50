package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/bertonnx"
	"github.com/embedd/embedd/internal/embedout"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/models"
)

// maxStdinLine bounds one line read by `embed -`.
const maxStdinLine = 1 << 20

func newFlagSet(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: embedd %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; -h or --help (usage already printed) returns
// flag.ErrHelp, which main turns into exit 0 without running the command.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

type embedItem struct {
	Index     int       `json:"index"`
	Tokens    int       `json:"tokens"`
	Embedding []float32 `json:"embedding,omitempty"`
	Int8      []int8    `json:"int8,omitempty"`
	Scale     *float32  `json:"scale,omitempty"`
	Binary    []byte    `json:"binary,omitempty"` // base64 in JSON: packed sign bits, MSB first
}

type embedOutput struct {
	Model   string      `json:"model"`
	Version string      `json:"version"`
	Dims    int         `json:"dims"`
	Output  string      `json:"output"`
	Device  string      `json:"device"`
	Data    []embedItem `json:"data"`
}

func cmdEmbed(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	var c common
	fs := newFlagSet("embed", "TEXT...")
	c.register(fs)
	model := fs.String("model", models.Default, "model name")
	output := fs.String("output", "float32", "float32, int8 (per-vector scale) or binary (packed sign bits)")
	dims := fs.Int("dimensions", 0, "keep the first N dimensions and renormalize (0 = all)")
	truncate := fs.Bool("truncate", true, "cut texts longer than the model's max_seq_len; false makes them an error")
	noNorm := fs.Bool("no-normalize", false, "skip L2 normalization")
	jsonl := fs.Bool("jsonl", false, `with TEXT "-": each stdin line is a JSON object {"text": ...} (texts may hold newlines)`)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	texts := fs.Args()
	if len(texts) == 1 && texts[0] == "-" {
		var err error
		if *jsonl {
			texts, err = readJSONL(stdin, "stdin")
		} else {
			texts, err = readLines(stdin)
		}
		if err != nil {
			return err
		}
	}
	if len(texts) == 0 {
		return fmt.Errorf("%w: embed needs at least one TEXT", errUsage)
	}
	outType, ok := embedout.ParseType(*output)
	if !ok {
		return fmt.Errorf("%w: --output %q: want float32, int8 or binary", errUsage, *output)
	}
	eng, err := c.engine(logger)
	if err != nil {
		return err
	}
	defer eng.Close()
	m, err := eng.Load(ctx, *model)
	if err != nil {
		return err
	}
	opts := engine.EmbedOptions{Truncate: *truncate, Dimensions: *dims}
	if *noNorm {
		f := false
		opts.Normalize = &f
	}
	res, err := m.Embed(ctx, texts, opts)
	if err != nil {
		return err
	}
	vecs, err := embedout.Encode(res.Vectors, outType)
	if err != nil {
		return err
	}
	out := embedOutput{Model: res.Model, Version: res.Version, Output: *output, Device: m.Device().String(), Data: make([]embedItem, len(res.Vectors))}
	for i, v := range vecs {
		out.Dims = len(res.Vectors[i])
		out.Data[i] = embedItem{Index: i, Tokens: res.Tokens[i], Embedding: v.Float32, Int8: v.Int8, Binary: v.Binary}
		if outType == embedout.Int8 {
			out.Data[i].Scale = &v.Scale
		}
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(out)
}

func readLines(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxStdinLine)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read stdin line %d: %w (limit %d bytes a line)", len(lines)+1, err, maxStdinLine)
	}
	return lines, nil
}

// modelsCommand parses the shared flags of a `models` subcommand and loads
// the catalog; it returns the settings, the catalog and the NAME arguments.
func modelsCommand(name, usage string, args []string, needNames bool) (*common, *manifest.Catalog, []string, error) {
	c := &common{}
	fs := newFlagSet(name, usage)
	c.register(fs)
	if err := c.parse(fs, args); err != nil {
		return nil, nil, nil, err
	}
	if needNames && fs.NArg() == 0 {
		return nil, nil, nil, fmt.Errorf("%w: %s needs at least one NAME", errUsage, name)
	}
	cat, err := c.catalog()
	if err != nil {
		return nil, nil, nil, err
	}
	return c, cat, fs.Args(), nil
}

func cmdModelsList(args []string, stdout io.Writer, logger *slog.Logger) error {
	c, cat, _, err := modelsCommand("models list", "", args, false)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIMS\tPOOLING\tMAX_SEQ_LEN\tVERSION\tPULLED")
	for _, name := range cat.Names() {
		m, _ := cat.Get(name)
		pulled := "yes"
		if manifest.Verify(c.cacheDir, m) != nil {
			pulled = "no"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", m.Name, m.Dims, m.Pooling, m.MaxSeqLen, m.Version, pulled)
	}
	return tw.Flush()
}

func cmdModelsPull(ctx context.Context, args []string, logger *slog.Logger) error {
	c, cat, names, err := modelsCommand("models pull", "NAME...", args, true)
	if err != nil {
		return err
	}
	p := pull.New(pull.Options{Dir: c.cacheDir, Logger: logger})
	for _, name := range names {
		m, err := cat.Get(name)
		if err != nil {
			return err
		}
		if err := p.Pull(ctx, m); err != nil {
			return err
		}
		logger.Info("model ready", "model", name, "dir", manifest.Dir(c.cacheDir, m))
	}
	return nil
}

func cmdModelsVerify(args []string, stdout io.Writer, logger *slog.Logger) error {
	c, cat, names, err := modelsCommand("models verify", "NAME...", args, true)
	if err != nil {
		return err
	}
	for _, name := range names {
		m, err := cat.Get(name)
		if err != nil {
			return err
		}
		if err := manifest.Verify(c.cacheDir, m); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", name)
	}
	return nil
}

func cmdRuntimePull(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	var c common
	fs := newFlagSet("runtime pull", "")
	c.register(fs)
	gpu := fs.Bool("gpu", false, "pull the ONNX Runtime GPU build (CUDA "+pull.GPURuntime.CUDA+" execution provider, onnxruntime-gpu "+pull.GPURuntime.Version+") instead of the CPU one")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	p := pull.New(pull.Options{Dir: c.cacheDir, Logger: logger})
	var path string
	var err error
	if *gpu {
		path, err = p.PullGPURuntime(ctx)
	} else {
		path, err = p.PullRuntime(ctx, pull.DefaultRuntime)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}

func cmdVersion(args []string, stdout io.Writer, logger *slog.Logger) error {
	var c common
	fs := newFlagSet("version", "")
	c.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "embedd (go %s %s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	gpuDir := pull.GPURuntimeDir(c.cacheDir)
	if _, err := os.Stat(gpuDir); err != nil {
		fmt.Fprintf(stdout, "onnx runtime gpu: not installed (run `embedd runtime pull --gpu`)\n")
	} else if err := pull.VerifyGPURuntime(c.cacheDir); err != nil {
		fmt.Fprintf(stdout, "onnx runtime gpu: %v\n", err)
	} else if missing, err := pull.MissingCUDALibs(gpuDir); err != nil {
		fmt.Fprintf(stdout, "onnx runtime gpu: %s (%v)\n", gpuDir, err)
	} else if len(missing) > 0 {
		fmt.Fprintf(stdout, "onnx runtime gpu: %s (CUDA %s provider; libraries not found: %v)\n", gpuDir, pull.GPURuntime.CUDA, missing)
	} else {
		fmt.Fprintf(stdout, "onnx runtime gpu: %s (CUDA %s provider; libraries found)\n", gpuDir, pull.GPURuntime.CUDA)
	}
	if nativeCompiled {
		fmt.Fprintf(stdout, "native cuda encoder: compiled in (--provider cuda-native)\n")
	} else {
		fmt.Fprintf(stdout, "native cuda encoder: not compiled in (build with `make build-cuda`)\n")
	}
	// Device discovery does not need ONNX Runtime: report it either way.
	if gpus, err := accel.CUDADevices(); err != nil {
		fmt.Fprintf(stdout, "cuda devices: %v\n", err)
	} else {
		for _, g := range gpus {
			fmt.Fprintf(stdout, "cuda:%d %s %d MiB cc %s\n", g.Ordinal, g.Name, g.MemoryBytes>>20, g.ComputeCapability)
		}
	}
	lib := c.runtimePath()
	if err := accel.Init(lib); err != nil {
		fmt.Fprintf(stdout, "onnx runtime: not loaded: %v\n", err)
		return nil
	}
	fmt.Fprintf(stdout, "onnx runtime: %s (%s)\n", accel.RuntimeVersion(), lib)
	return nil
}

func cmdModelsExport(args []string, stdout io.Writer) error {
	fs := newFlagSet("models export", "")
	config := fs.String("config", "", "Hugging Face config.json of a BERT model (required)")
	weights := fs.String("weights", "", "model.safetensors with the BERT weights, F32, F16 or BF16 (required)")
	out := fs.String("out", "", "where to write model.onnx (required; written atomically)")
	precision := fs.String("precision", string(bertonnx.FP32), "fp32; fp16: float16 weights and matmuls, float32 LayerNorm, softmax and pooling (for GPUs); or q8: dynamic int8, int8 weights per output channel and activations per token (for CPUs with VNNI)")
	pooling := fs.String("pooling", string(bertonnx.PoolNone), "none (output last_hidden_state), or mean or cls (output sentence_embedding)")
	normalize := fs.Bool("normalize", false, "L2-normalize sentence_embedding and add the sentence_norm output (needs --pooling mean or cls)")
	fp32Linears := fs.String("fp32-linears", "", "q8: comma-separated linears kept fp32: kinds (query, key, value, attention_output, intermediate, output), layer.N or layer.N.KIND")
	fp32Words := fs.Bool("fp32-word-embeddings", false, "q8: keep the word embeddings fp32")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *config == "" || *weights == "" || *out == "" {
		return fmt.Errorf("%w: models export needs --config, --weights and --out", errUsage)
	}
	opts := bertonnx.Options{Precision: bertonnx.Precision(*precision), Pooling: bertonnx.Pooling(*pooling), Normalize: *normalize, FP32WordEmbeddings: *fp32Words}
	if *fp32Linears != "" {
		opts.FP32Linears = strings.Split(*fp32Linears, ",")
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := bertonnx.ExportFileWith(*out, *config, *weights, opts); err != nil {
		return err
	}
	sum, err := pull.FileSHA256(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s sha256 %s\n", *out, sum)
	return nil
}
