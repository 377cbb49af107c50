package pull

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/embedd/embedd/internal/manifest"
)

// WheelRuntime pins an ONNX Runtime build that ships in a PyPI wheel: the
// wheel itself and every shared library installed from it.
type WheelRuntime struct {
	// Package and Version name the PyPI release; Version is also the ONNX
	// Runtime version.
	Package, Version string
	// CUDA is the CUDA major version the build links against.
	CUDA string
	// WheelURL, WheelSHA256 and WheelSize pin the wheel; the download is
	// bounded by WheelSize.
	WheelURL    string
	WheelSHA256 string
	WheelSize   int64
	// Libs are installed side by side in one directory, the core library
	// first. ONNX Runtime loads its provider libraries from the directory of
	// the core library, so they must not be split up.
	Libs []WheelLib
	// Dlopened lists libraries the CUDA provider opens at run time without
	// naming them as DT_NEEDED (cuDNN).
	Dlopened []string
}

// WheelLib is one shared library taken from a wheel.
type WheelLib struct {
	// Member is the library's path in the wheel.
	Member string
	// Name is the installed file name.
	Name   string
	SHA256 string
	Size   int64
}

// GPURuntime is the ONNX Runtime build with the CUDA execution provider:
// PyPI onnxruntime-gpu 1.30.0 (the ORT version of DefaultRuntime), built for
// CUDA 13 and cuDNN 9. Its provider library needs libcublasLt.so.13,
// libcublas.so.13, libcurand.so.10, libcudart.so.13 and libcuda.so.1 (see
// MissingCUDALibs); the libraries are the same for every cpXY wheel, so one
// wheel is pinned.
var GPURuntime = WheelRuntime{
	Package:     "onnxruntime-gpu",
	Version:     "1.30.0",
	CUDA:        "13",
	WheelURL:    "https://files.pythonhosted.org/packages/ea/71/b225bd559a718f6cefb058d4f4c4c95e556543f47d4be0e81819681ac347/onnxruntime_gpu-1.30.0-cp311-cp311-manylinux_2_28_x86_64.whl",
	WheelSHA256: "4fbf0c5d7b5fb99266c2e8a802e3e64af68bdc383e0f3c7349b985f1087eedaa",
	WheelSize:   246658419,
	Libs: []WheelLib{
		// SONAME libonnxruntime.so.1, RUNPATH $ORIGIN.
		{Member: "onnxruntime/capi/libonnxruntime.so.1.30.0", Name: "libonnxruntime.so.1",
			SHA256: "5a140dc17c8b60b35b2ceab0bb533e65ac54f06a208948417c1f9c31df6afc4c", Size: 29062976},
		{Member: "onnxruntime/capi/libonnxruntime_providers_shared.so", Name: "libonnxruntime_providers_shared.so",
			SHA256: "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d", Size: 14632},
		{Member: "onnxruntime/capi/libonnxruntime_providers_cuda.so", Name: "libonnxruntime_providers_cuda.so",
			SHA256: "9d7587acb137b31bf84e4d32dc444b969bb601d098b01395effcacfe4341e364", Size: 272049904},
	},
	Dlopened: []string{"libcudnn.so.9"},
}

// GPURuntimeDir is the directory the GPU runtime's libraries are installed
// in under cacheDir.
func GPURuntimeDir(cacheDir string) string { return gpuRuntimeDir(cacheDir, GPURuntime) }

// GPURuntimePath is the GPU runtime's core library (the file to load with
// accel.Init), with its provider libraries beside it.
func GPURuntimePath(cacheDir string) string {
	return filepath.Join(GPURuntimeDir(cacheDir), GPURuntime.Libs[0].Name)
}

func gpuRuntimeDir(cacheDir string, rt WheelRuntime) string {
	return filepath.Join(cacheDir, "lib", "onnxruntime-gpu-"+rt.Version+"-cuda"+rt.CUDA)
}

// PullGPURuntime makes the GPU runtime's libraries present and verified in
// the cache and returns the core library's path. Libraries already verified
// are kept; the wheel is downloaded only if one is missing and the wheel is
// not in downloads/ already.
func (p *Puller) PullGPURuntime(ctx context.Context) (string, error) {
	return p.pullWheelRuntime(ctx, GPURuntime)
}

func (p *Puller) pullWheelRuntime(ctx context.Context, rt WheelRuntime) (string, error) {
	dir := gpuRuntimeDir(p.opts.Dir, rt)
	core := filepath.Join(dir, rt.Libs[0].Name)
	var todo []WheelLib
	for _, l := range rt.Libs {
		if manifest.VerifyFile(filepath.Join(dir, l.Name), l.file()) != nil {
			todo = append(todo, l)
		}
	}
	if len(todo) == 0 {
		return core, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	wheel, err := p.runtimeWheel(ctx, rt)
	if err != nil {
		return "", err
	}
	zr, err := zip.OpenReader(wheel)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", wheel, err)
	}
	defer zr.Close()
	// The core library goes last: once it is in place, so are its providers.
	for i := len(todo) - 1; i >= 0; i-- {
		l := todo[i]
		p.opts.Logger.Info("extracting", "file", filepath.Join(dir, l.Name), "member", l.Member)
		if err := extractVerified(&zr.Reader, l.Member, filepath.Join(dir, l.Name), filePin(l.file())); err != nil {
			return "", fmt.Errorf("onnx runtime gpu %s: wheel %s: %w", rt.Version, wheel, err)
		}
	}
	return core, nil
}

// runtimeWheel returns the path of rt's verified wheel, downloading it if
// needed.
func (p *Puller) runtimeWheel(ctx context.Context, rt WheelRuntime) (string, error) {
	path := filepath.Join(p.opts.Dir, "downloads", rt.WheelSHA256+".whl")
	if sum, err := FileSHA256(path); err == nil && sum == rt.WheelSHA256 {
		return path, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	p.opts.Logger.Info("downloading onnx runtime gpu", "package", rt.Package, "version", rt.Version, "url", rt.WheelURL)
	err := writeVerified(path, pin{SHA256: rt.WheelSHA256, Size: rt.WheelSize, Limit: rt.WheelSize}, func(w io.Writer) error {
		return p.download(ctx, rt.WheelURL, rt.WheelSize, w)
	})
	if err != nil {
		return "", fmt.Errorf("wheel %s==%s: %w", rt.Package, rt.Version, err)
	}
	return path, nil
}

// extractVerified writes member of zr to dst, checked against want.
func extractVerified(zr *zip.Reader, member, dst string, want pin) error {
	r, err := zr.Open(member)
	if err != nil {
		return fmt.Errorf("member %s: %w", member, err)
	}
	defer r.Close()
	return writeVerified(dst, want, func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
}

func (l WheelLib) file() manifest.File {
	return manifest.File{Name: l.Name, SHA256: l.SHA256, Size: l.Size}
}

// VerifyGPURuntime checks every library of the GPU runtime in cacheDir
// against its pin. The error names each missing or mismatched file and the
// command that installs them.
func VerifyGPURuntime(cacheDir string) error { return verifyWheelRuntime(cacheDir, GPURuntime) }

func verifyWheelRuntime(cacheDir string, rt WheelRuntime) error {
	dir := gpuRuntimeDir(cacheDir, rt)
	var errs []error
	for _, l := range rt.Libs {
		if err := manifest.VerifyFile(filepath.Join(dir, l.Name), l.file()); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("onnx runtime gpu %s (cuda %s) is not ready (run `embedd runtime pull --gpu`): %w", rt.Version, rt.CUDA, errors.Join(errs...))
	}
	return nil
}
