// Package testassets lets tests find the ONNX Runtime libraries and the model
// files that `make setup` and `make setup-gpu` install, and decides what a
// test does without them.
//
// The cache directory is $EMBEDD_CACHE_DIR, else the user cache dir's
// "embedd". When EMBEDD_REQUIRE_ASSETS=1 (set by `make test` and CI) a missing
// asset fails the test; otherwise the test is skipped with the command that
// installs it, so `go test ./...` on a bare checkout still passes the pure-Go
// tests.
package testassets

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/models"
)

// CacheDir returns the cache directory tests use.
func CacheDir() string {
	if d := os.Getenv("EMBEDD_CACHE_DIR"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "embedd-cache")
	}
	return filepath.Join(d, "embedd")
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("EMBEDD_REQUIRE_ASSETS") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Runtime initializes ONNX Runtime from the cache, or skips/fails the test.
func Runtime(t testing.TB) {
	t.Helper()
	lib := os.Getenv("EMBEDD_ORT_LIB")
	if lib == "" {
		lib = pull.RuntimePath(CacheDir(), pull.DefaultRuntime)
	}
	if _, err := os.Stat(lib); err != nil {
		missing(t, "onnx runtime not installed (%v); run `make setup`", err)
		return
	}
	if err := accel.Init(lib); err != nil {
		t.Fatalf("init onnx runtime: %v", err)
	}
}

// GPURuntime returns the directory of the ONNX Runtime GPU build (CUDA
// provider included) that `make setup-gpu` installs, after verifying its
// libraries, or skips/fails the test. It does not load the runtime: a process
// loads one (see accel.Init), and Runtime loads the CPU one.
func GPURuntime(t testing.TB) string {
	t.Helper()
	if err := pull.VerifyGPURuntime(CacheDir()); err != nil {
		missing(t, "onnx runtime gpu not installed; run `make setup-gpu`: %v", err)
	}
	return pull.GPURuntimeDir(CacheDir())
}

// Catalog returns the built-in manifests.
func Catalog(t testing.TB) *manifest.Catalog {
	t.Helper()
	cat, err := manifest.LoadFS(models.FS)
	if err != nil {
		t.Fatalf("load manifests: %v", err)
	}
	return cat
}

// Model returns the manifest of name after checking its files are pulled,
// or skips/fails the test.
func Model(t testing.TB, name string) *manifest.Model {
	t.Helper()
	m, err := Catalog(t).Get(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.Verify(CacheDir(), m); err != nil {
		missing(t, "model %s not pulled: %v", name, err)
	}
	return m
}

// ToolsPython returns the interpreter of the tooling venv (scripts/pyenv.sh)
// from EMBEDD_TOOLS_PYTHON, which `make test` sets, or skips/fails the test
// when it is unset.
func ToolsPython(t testing.TB) string {
	t.Helper()
	py := os.Getenv("EMBEDD_TOOLS_PYTHON")
	if py == "" {
		missing(t, "EMBEDD_TOOLS_PYTHON unset (the tooling venv: scripts/pyenv.sh prints it; make test sets it)")
	}
	return py
}
