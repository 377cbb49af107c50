package pull_test

import (
	"debug/elf"
	"path/filepath"
	"slices"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/testassets"
)

// TestRealGPURuntime checks the installed onnxruntime-gpu libraries: the
// core library loads as this process's ONNX Runtime, its providers sit beside
// it, the provider is the CUDA 13 build, and MissingCUDALibs reads it.
func TestRealGPURuntime(t *testing.T) {
	dir := testassets.GPURuntime(t)
	core := pull.GPURuntimePath(testassets.CacheDir())
	f, err := elf.Open(core)
	if err != nil {
		t.Fatal(err)
	}
	soname, _ := f.DynString(elf.DT_SONAME)
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	f.Close()
	if !slices.Equal(soname, []string{filepath.Base(core)}) || !slices.Equal(runpath, []string{"$ORIGIN"}) {
		t.Errorf("%s: SONAME %q, RUNPATH %q; want %q and $ORIGIN", core, soname, runpath, filepath.Base(core))
	}

	f, err = elf.Open(filepath.Join(dir, "libonnxruntime_providers_cuda.so"))
	if err != nil {
		t.Fatal(err)
	}
	needed, err := f.ImportedLibraries()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	cudaLibs := []string{"libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13", "libcuda.so.1"}
	for _, lib := range cudaLibs {
		if !slices.Contains(needed, lib) {
			t.Errorf("CUDA provider needs %q; want %s among them (CUDA %s build)", needed, lib, pull.GPURuntime.CUDA)
		}
	}

	missing, err := pull.MissingCUDALibs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range missing {
		if !slices.Contains(cudaLibs, lib) && !slices.Contains(pull.GPURuntime.Dlopened, lib) {
			t.Errorf("MissingCUDALibs reports %s, which is not a CUDA library of the provider", lib)
		}
	}
	t.Logf("CUDA libraries the loader cannot find here: %q", missing)

	if err := accel.Init(core); err != nil {
		t.Fatal(err)
	}
	if got := accel.RuntimeVersion(); got != pull.GPURuntime.Version {
		t.Errorf("loaded ONNX Runtime %s; want %s", got, pull.GPURuntime.Version)
	}
}
