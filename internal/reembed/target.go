package reembed

import (
	"context"
	"errors"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
)

// Target is what a job writes through: the versioned operations of the
// index (internal/index), which embeds and writes both stores. FromIndex
// adapts an *index.Index.
type Target interface {
	// CreateVersion creates collection's version bound to model's version
	// (idempotent when it exists with that model).
	CreateVersion(ctx context.Context, collection, version, model string) (store.VersionInfo, error)
	// Versions lists collection's versions (counts, models, the live one).
	Versions(ctx context.Context, collection string) ([]store.VersionInfo, error)
	// SwapAlias points collection at version.
	SwapAlias(ctx context.Context, collection, version string) error
	// ScanVersion calls fn with every record of a version (no vectors).
	ScanVersion(ctx context.Context, collection, version string, fn func(store.Record) error) error
	// UpsertVersion embeds items' texts with version's model at bulk
	// priority and writes them to version; a per-item failure is an
	// *index.InputError listing the bad items by index.
	UpsertVersion(ctx context.Context, collection, version string, items []index.Item, truncate bool) error
	// DeleteVersion deletes ids from version.
	DeleteVersion(ctx context.Context, collection, version string, ids []string) error
}

// DefaultRetryable reports the errors a job retries with backoff: a store
// that is unavailable, the engine's queue full (backpressure) or a model
// run that timed out.
func DefaultRetryable(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, batch.ErrQueueFull) || errors.Is(err, batch.ErrRunTimeout)
}
