package registry

import (
	"embed"
	"fmt"
	"io/fs"
)

// defaults holds the built-in registry: defaults/*.yaml and its lock,
// defaults/features.lock.
//
//go:embed defaults
var defaults embed.FS

// DefaultLockPath is the built-in lock's path in the source tree, relative
// to this package, and the name CheckLockData reports for it.
const DefaultLockPath = "defaults/features.lock"

// DefaultFiles returns the built-in registry files, named
// "defaults/<file>", so a service can load them together with its own.
func DefaultFiles() ([]File, error) {
	sub, err := fs.Sub(defaults, "defaults")
	if err != nil {
		return nil, err
	}
	files, err := readFS(sub, "defaults")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no built-in registry files", ErrInvalid)
	}
	return files, nil
}

// Default loads the built-in registry: windowed aggregates of the value
// "amount" and of event counts over 1m, 5m and 1h, the session features,
// the temporal features, the seed's two dynamic rules and the feature sets
// "default" and "recsys".
func Default() (*Registry, error) {
	files, err := DefaultFiles()
	if err != nil {
		return nil, err
	}
	return Load(files...)
}

// DefaultLock returns the built-in lock file's content.
func DefaultLock() ([]byte, error) { return defaults.ReadFile(DefaultLockPath) }
