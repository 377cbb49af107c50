package jobs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/embedd/embedd/internal/reembed"
)

// openRoot returns the source root cleaned, absolute and with its
// symbolic links resolved ("" stays ""), so that every check compares
// real paths.
func openRoot(root string) (string, error) {
	if root == "" {
		return "", nil
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("%w: source root %q: %v", ErrInvalid, root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("%w: source root %q: %v", ErrInvalid, root, err)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: source root %q is not a directory", ErrInvalid, root)
	}
	if strings.ContainsAny(real, `*?[\`) {
		// Sources are globs joined to the root: its own name must match
		// itself only.
		return "", fmt.Errorf("%w: source root %q has a glob character (*?[\\)", ErrInvalid, real)
	}
	return real, nil
}

// within reports whether path is root or inside it (both clean, absolute).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// files resolves s's file sources under the source root: each pattern,
// taken from the root when relative and cleaned, must lie inside it, and
// every file it matches, its symbolic links resolved, too.
func (m *Manager) files(s Spec) ([]reembed.File, error) {
	patterns := make([]string, len(s.Sources))
	for i, src := range s.Sources {
		if m.root == "" {
			return nil, fmt.Errorf("%w: source %q: this server reads no files (start it with --jobs-source-root DIR to allow files under DIR); collection:NAME sources need none", ErrNoSourceRoot, src)
		}
		p := src
		if !filepath.IsAbs(p) {
			p = filepath.Join(m.root, p)
		}
		p = filepath.Clean(p)
		if !within(m.root, p) {
			return nil, fmt.Errorf("%w: source %q (%s) is outside the source root %s", ErrOutsideRoot, src, p, m.root)
		}
		patterns[i] = p
	}
	files, err := reembed.Expand(patterns, s.Format)
	if err != nil {
		return nil, err
	}
	if len(files) > MaxFiles {
		return nil, fmt.Errorf("%w: the sources match %d files; at most %d", ErrInvalid, len(files), MaxFiles)
	}
	for _, f := range files {
		real, err := filepath.EvalSymlinks(f.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", reembed.ErrSource, err)
		}
		if !within(m.root, real) {
			return nil, fmt.Errorf("%w: source file %s resolves to %s, outside the source root %s", ErrOutsideRoot, f.Path, real, m.root)
		}
	}
	return files, nil
}
