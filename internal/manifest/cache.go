package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Errors of Verify and VerifyFile, wrapped with the path and the hashes.
var (
	// ErrMissing reports a pinned file that is not on disk.
	ErrMissing = errors.New("manifest: file missing")
	// ErrChecksum reports a file whose sha256 or size is not the pinned one.
	ErrChecksum = errors.New("manifest: sha256 mismatch")
)

// Dir is where m's files live in a cache directory: <cacheDir>/models/<name>.
// The layout is the manifest's, so that the code that downloads files
// (internal/pull) and the code that loads them (the engine) agree without
// the loader depending on the downloader.
func Dir(cacheDir string, m *Model) string {
	return filepath.Join(cacheDir, "models", m.Name)
}

// Verify checks that every file of m is present under Dir(cacheDir, m) with
// its pinned sha256 and size. The error names each bad path and the
// expected hash, and says which command fetches the model.
func Verify(cacheDir string, m *Model) error {
	dir := Dir(cacheDir, m)
	var errs []error
	for _, f := range m.Files {
		if err := VerifyFile(filepath.Join(dir, f.Name), f); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("model %s is not ready (run `embedd models pull %s`): %w", m.Name, m.Name, errors.Join(errs...))
	}
	return nil
}

// VerifyFile checks that the file at path has f's sha256 and size. It
// reads the whole file.
func VerifyFile(path string, f File) error {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s (expected sha256 %s)", ErrMissing, path, f.SHA256)
	}
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 || n != f.Size {
		return fmt.Errorf("%w: %s has sha256 %s (%d bytes); expected %s (%d bytes)", ErrChecksum, path, got, n, f.SHA256, f.Size)
	}
	return nil
}
