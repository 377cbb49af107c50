package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/models"
)

// common holds the settings every command shares. Precedence: flag, then
// environment variable, then default.
type common struct {
	cacheDir  string
	ortLib    string
	modelsDir string
	provider  string
	threads   int
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "embedd")
	}
	return filepath.Join(os.TempDir(), "embedd-cache")
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cacheDir, "cache-dir", envOr("EMBEDD_CACHE_DIR", defaultCacheDir()), "cache directory for models and the runtime (env EMBEDD_CACHE_DIR)")
	fs.StringVar(&c.ortLib, "ort-lib", os.Getenv("EMBEDD_ORT_LIB"), "path of libonnxruntime.so (env EMBEDD_ORT_LIB; default: the one `embedd runtime pull` installs)")
	fs.StringVar(&c.modelsDir, "models-dir", os.Getenv("EMBEDD_MODELS_DIR"), "directory of extra model manifests <dir>/<name>/manifest.yaml (env EMBEDD_MODELS_DIR)")
	fs.StringVar(&c.provider, "provider", envOr("EMBEDD_PROVIDER", string(accel.ProviderCPU)), "execution provider: cpu or cuda (env EMBEDD_PROVIDER)")
	threads, _ := strconv.Atoi(os.Getenv("EMBEDD_THREADS"))
	fs.IntVar(&c.threads, "threads", threads, "ONNX Runtime intra-op threads per model, 0 = one per core (env EMBEDD_THREADS)")
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

// engine loads the runtime and returns an Engine over the catalog.
func (c *common) engine(logger *slog.Logger) (*engine.Engine, error) {
	cat, err := c.catalog()
	if err != nil {
		return nil, err
	}
	lib := c.runtimePath()
	if c.ortLib == "" {
		if err := pull.VerifyRuntime(lib, pull.DefaultRuntime); err != nil {
			return nil, err
		}
	}
	if err := accel.Init(lib); err != nil {
		return nil, err
	}
	opts := engine.DefaultOptions()
	opts.CacheDir = c.cacheDir
	opts.Logger = logger
	opts.Accel.Provider = accel.Provider(c.provider)
	opts.Accel.IntraOpThreads = c.threads
	opts.Accel.Logger = logger
	return engine.New(cat, opts), nil
}
