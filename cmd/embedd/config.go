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
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "embedd")
	}
	return filepath.Join(os.TempDir(), "embedd-cache")
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", os.Getenv("EMBEDD_CONFIG"), "YAML file of settings (keys are flag names) (env EMBEDD_CONFIG)")
	fs.StringVar(&c.cacheDir, "cache-dir", defaultCacheDir(), "cache directory for models and the runtime")
	fs.StringVar(&c.ortLib, "ort-lib", "", "path of libonnxruntime.so (default: the one `embedd runtime pull` installs, verified)")
	fs.StringVar(&c.modelsDir, "models-dir", "", "directory of extra model manifests <dir>/<name>/manifest.yaml")
	fs.StringVar(&c.provider, "provider", string(accel.ProviderCPU), "execution provider: cpu, or cuda (falls back to cpu, logging why)")
	fs.IntVar(&c.threads, "threads", 0, "ONNX Runtime intra-op threads per model run, 0 = one per core")
	fs.BoolVar(&c.noSpin, "ort-no-spin", false, "stop ONNX Runtime threads from busy-waiting between runs")
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

// engineOptions loads the runtime and returns engine options over the
// shared settings.
func (c *common) engineOptions(logger *slog.Logger) (*manifest.Catalog, engine.Options, error) {
	opts := engine.DefaultOptions()
	cat, err := c.catalog()
	if err != nil {
		return nil, opts, err
	}
	lib := c.runtimePath()
	if c.ortLib == "" {
		if err := pull.VerifyRuntime(lib, pull.DefaultRuntime); err != nil {
			return nil, opts, err
		}
	}
	if err := accel.Init(lib); err != nil {
		return nil, opts, err
	}
	opts.CacheDir = c.cacheDir
	opts.Logger = logger
	opts.Accel.Provider = accel.Provider(c.provider)
	opts.Accel.IntraOpThreads = c.threads
	opts.Accel.NoSpin = c.noSpin
	opts.Accel.Logger = logger
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
