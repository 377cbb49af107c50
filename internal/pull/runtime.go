package pull

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Runtime pins the ONNX Runtime shared library: the npm package
// onnxruntime-node ships it for linux/x64 (ORT 1.30.0); onnxruntime_go
// v1.27.0 loads it.
type Runtime struct {
	Version       string
	TarballURL    string
	TarballSHA256 string
	Member        string
	SHA256        string
	Size          int64
}

// DefaultRuntime is the ONNX Runtime embedd is built and tested with.
var DefaultRuntime = Runtime{
	Version:       "1.30.0",
	TarballURL:    "https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-1.30.0.tgz",
	TarballSHA256: "6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75",
	Member:        "package/bin/napi-v6/linux/x64/libonnxruntime.so.1",
	SHA256:        "ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23",
	Size:          45828512,
}

const maxTarballBytes = 1 << 30

// RuntimePath is where the library of rt lives under cacheDir.
func RuntimePath(cacheDir string, rt Runtime) string {
	return filepath.Join(cacheDir, "lib", "onnxruntime-"+rt.Version, "libonnxruntime.so.1")
}

// PullRuntime makes the ONNX Runtime library present and verified in the
// cache and returns its path.
func (p *Puller) PullRuntime(ctx context.Context, rt Runtime) (string, error) {
	dst := RuntimePath(p.opts.Dir, rt)
	want := pin{SHA256: rt.SHA256, Size: rt.Size, Limit: rt.Size}
	if sum, err := FileSHA256(dst); err == nil && sum == rt.SHA256 {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tgz := filepath.Join(p.opts.Dir, "downloads", rt.TarballSHA256+".tgz")
	if sum, err := FileSHA256(tgz); err != nil || sum != rt.TarballSHA256 {
		if err := os.MkdirAll(filepath.Dir(tgz), 0o755); err != nil {
			return "", err
		}
		p.opts.Logger.Info("downloading onnx runtime", "version", rt.Version, "url", rt.TarballURL)
		err := writeVerified(tgz, pin{SHA256: rt.TarballSHA256, Size: -1, Limit: maxTarballBytes}, func(w io.Writer) error {
			return p.download(ctx, rt.TarballURL, maxTarballBytes, w)
		})
		if err != nil {
			return "", fmt.Errorf("onnx runtime %s: %w", rt.Version, err)
		}
	}
	f, err := os.Open(tgz)
	if err != nil {
		return "", err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%w: %s has no %s", ErrNoSource, tgz, rt.Member)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", tgz, err)
		}
		if h.Name != rt.Member {
			continue
		}
		err = writeVerified(dst, want, func(w io.Writer) error {
			_, err := io.Copy(w, tr)
			return err
		})
		if err != nil {
			return "", err
		}
		return dst, nil
	}
}

// VerifyRuntime checks the library at path against rt's pin.
func VerifyRuntime(path string, rt Runtime) error {
	sum, err := FileSHA256(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s (expected sha256 %s; run `embedd runtime pull`)", ErrMissing, path, rt.SHA256)
	}
	if err != nil {
		return err
	}
	if sum != rt.SHA256 {
		return fmt.Errorf("%w: %s has sha256 %s; expected %s", ErrChecksum, path, sum, rt.SHA256)
	}
	return nil
}
