package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/models"
)

// Settings: every flag of every command can also come from an environment
// variable or a YAML file. Precedence, highest first:
//
//  1. the flag on the command line (--max-batch-size 64)
//  2. the environment variable EMBEDD_<FLAG> with dashes as underscores
//     (EMBEDD_MAX_BATCH_SIZE=64)
//  3. the YAML file named by --config or EMBEDD_CONFIG, whose keys are the
//     flag names with dashes or underscores (max_batch_size: 64)
//  4. the built-in default shown by -h
//
// resolve applies layers 2 and 3 to the flags not set on the command line.
func resolve(fs *flag.FlagSet, configPath string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	file, err := readConfigFile(configPath)
	if err != nil {
		return err
	}
	for key, v := range file {
		if fs.Lookup(key) == nil {
			return fmt.Errorf("%w: config %s line %d: unknown setting %q", errUsage, configPath, v.line, key)
		}
	}
	var errs []string
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		env := "EMBEDD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", env, v, err))
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := fs.Set(f.Name, v.value); err != nil {
				errs = append(errs, fmt.Sprintf("config %s line %d: %s: %v", configPath, v.line, f.Name, err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", errUsage, strings.Join(errs, "; "))
	}
	return nil
}

type configValue struct {
	value string
	line  int
}

// maxConfigBytes bounds the YAML file.
const maxConfigBytes = 1 << 20

func readConfigFile(path string) (map[string]configValue, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config %s: %d bytes; limit %d", path, len(data), maxConfigBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	out := map[string]configValue{}
	if len(doc.Content) == 0 {
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s line %d: want a mapping of setting: value", path, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := strings.ReplaceAll(k.Value, "_", "-")
		switch v.Kind {
		case yaml.ScalarNode:
			out[key] = configValue{v.Value, k.Line}
		case yaml.SequenceNode:
			var items []string
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("config %s line %d: %s: list items must be scalars", path, it.Line, k.Value)
				}
				items = append(items, it.Value)
			}
			out[key] = configValue{strings.Join(items, ","), k.Line}
		default:
			return nil, fmt.Errorf("config %s line %d: %s: want a scalar or a list", path, k.Line, k.Value)
		}
	}
	return out, nil
}

// common holds the settings every command shares.
type common struct {
	config    string
	cacheDir  string
	ortLib    string
	modelsDir string
	provider  string
	threads   int
	noSpin    bool
	cuda      cudaFlags
}

// cudaFlags are the CUDA execution provider's settings.
type cudaFlags struct {
	device         int
	memLimitMiB    int64
	convAlgoSearch string
	tf32           bool
	ioBinding      bool
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "embedd")
	}
	return filepath.Join(os.TempDir(), "embedd-cache")
}

func (c *common) register(fs *flag.FlagSet) {
	a := accel.DefaultOptions()
	fs.StringVar(&c.config, "config", os.Getenv("EMBEDD_CONFIG"), "YAML file of settings (keys are flag names) (env EMBEDD_CONFIG)")
	fs.StringVar(&c.cacheDir, "cache-dir", defaultCacheDir(), "cache directory for models and the runtime")
	fs.StringVar(&c.ortLib, "ort-lib", "", "path of libonnxruntime.so, not verified (default: the one `embedd runtime pull` installs, or with --provider cuda|cuda-native|auto the GPU build `embedd runtime pull --gpu` installs, verified)")
	fs.StringVar(&c.modelsDir, "models-dir", "", "directory of extra model manifests <dir>/<name>/manifest.yaml")
	fs.StringVar(&c.provider, "provider", string(a.Provider), "execution provider: cpu; cuda (ONNX Runtime CUDA; falls back to cpu, warning why); cuda-native (embedd's own CUDA kernels, in binaries built with `make build-cuda`; falls back to cuda, then cpu, warning why); auto (cuda-native where built in, then cuda, then cpu)")
	fs.IntVar(&c.cuda.device, "cuda-device", a.CUDA.DeviceID, "CUDA device ordinal")
	fs.Int64Var(&c.cuda.memLimitMiB, "cuda-mem-limit", a.CUDA.MemLimit>>20, "CUDA memory arena limit in MiB per model, 0 = none; a batch that does not fit is split")
	fs.StringVar(&c.cuda.convAlgoSearch, "cuda-conv-algo-search", a.CUDA.ConvAlgoSearch, "cuDNN convolution algorithm search: DEFAULT (off), HEURISTIC or EXHAUSTIVE")
	fs.BoolVar(&c.cuda.tf32, "cuda-tf32", a.CUDA.TF32, "let fp32 matmuls use TF32 tensor cores (faster, less exact)")
	fs.BoolVar(&c.cuda.ioBinding, "cuda-io-binding", a.CUDA.IOBinding, "run models through an ONNX Runtime IoBinding")
	fs.IntVar(&c.threads, "threads", a.IntraOpThreads, "ONNX Runtime intra-op threads per model run, 0 = one per core")
	fs.BoolVar(&c.noSpin, "ort-no-spin", a.NoSpin, "stop ONNX Runtime threads from busy-waiting between runs")
}

// parseCommon parses args and applies the environment and config layers.
func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	return resolve(fs, c.config)
}

func (c *common) catalog() (*manifest.Catalog, error) {
	cat, err := manifest.LoadFS(models.FS)
	if err != nil {
		return nil, fmt.Errorf("built-in manifests: %w", err)
	}
	if c.modelsDir != "" {
		extra, err := manifest.LoadFS(os.DirFS(c.modelsDir))
		if err != nil {
			return nil, fmt.Errorf("models dir %s: %w", c.modelsDir, err)
		}
		cat.Merge(extra)
	}
	return cat, nil
}

func (c *common) runtimePath() string {
	if c.ortLib != "" {
		return c.ortLib
	}
	return pull.RuntimePath(c.cacheDir, pull.DefaultRuntime)
}

// selectRuntime chooses the ONNX Runtime library to load for provider p and
// verifies it: --ort-lib if set (not verified); for cuda, cuda-native (whose
// fallback is ONNX Runtime's CUDA provider) and auto, the GPU build if it is
// installed and intact; otherwise the CPU build. When CUDA is wanted but
// ONNX Runtime's CUDA provider cannot be tried, the second result says why.
func (c *common) selectRuntime(p accel.Provider) (lib, cudaUnavailable string, err error) {
	if c.ortLib != "" {
		return c.ortLib, "", nil
	}
	if p == accel.ProviderCUDA || p == accel.ProviderCUDANative || p == accel.ProviderAuto {
		gpuErr := pull.VerifyGPURuntime(c.cacheDir)
		if gpuErr == nil {
			return pull.GPURuntimePath(c.cacheDir), "", nil
		}
		cudaUnavailable = "GPU build of ONNX Runtime not usable: " + gpuErr.Error()
	}
	lib = pull.RuntimePath(c.cacheDir, pull.DefaultRuntime)
	if err := pull.VerifyRuntime(lib, pull.DefaultRuntime); err != nil {
		return "", "", err
	}
	return lib, cudaUnavailable, nil
}

// accelOptions maps the shared flags to encoder options.
func (c *common) accelOptions(p accel.Provider, cudaUnavailable string, logger *slog.Logger) accel.Options {
	return accel.Options{
		Provider:       p,
		IntraOpThreads: c.threads,
		NoSpin:         c.noSpin,
		Native:         nativeEncoder(),
		Logger:         logger,
		CUDA: accel.CUDAOptions{
			DeviceID:       c.cuda.device,
			MemLimit:       c.cuda.memLimitMiB << 20,
			ConvAlgoSearch: c.cuda.convAlgoSearch,
			TF32:           c.cuda.tf32,
			IOBinding:      c.cuda.ioBinding,
			Unavailable:    cudaUnavailable,
		},
	}
}

// engineOptions loads the runtime and returns engine options over the
// shared settings.
func (c *common) engineOptions(logger *slog.Logger) (*manifest.Catalog, engine.Options, error) {
	opts := engine.DefaultOptions()
	cat, err := c.catalog()
	if err != nil {
		return nil, opts, err
	}
	p, err := accel.ParseProvider(c.provider)
	if err != nil {
		return nil, opts, fmt.Errorf("%w: --provider: %v", errUsage, err)
	}
	if c.cuda.memLimitMiB < 0 || c.cuda.device < 0 {
		return nil, opts, fmt.Errorf("%w: --cuda-mem-limit %d and --cuda-device %d must be >= 0", errUsage, c.cuda.memLimitMiB, c.cuda.device)
	}
	lib, unavailable, err := c.selectRuntime(p)
	if err == nil {
		err = accel.Init(lib)
	}
	switch {
	case err == nil:
		logger.Debug("onnx runtime loaded", "lib", lib, "version", accel.RuntimeVersion())
	case p == accel.ProviderCUDANative && nativeCompiled && c.ortLib == "":
		// The native CUDA encoder needs no ONNX Runtime; without one there
		// is no fallback: a model the native encoder cannot run fails to
		// load, saying why.
		logger.Warn("ONNX Runtime not loaded; only the native CUDA encoder can run, with no fallback", "err", err)
	default:
		return nil, opts, err
	}
	opts.CacheDir = c.cacheDir
	opts.Logger = logger
	opts.Accel = c.accelOptions(p, unavailable, logger)
	return cat, opts, nil
}

// engine returns an Engine with default batching.
func (c *common) engine(logger *slog.Logger) (*engine.Engine, error) {
	cat, opts, err := c.engineOptions(logger)
	if err != nil {
		return nil, err
	}
	return engine.New(cat, opts), nil
}
