package reembed

import (
	"context"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
)

// indexTarget adapts an *index.Index: upserts run at bulk priority, so a
// job yields the engine to online requests of the same process.
type indexTarget struct{ x *index.Index }

// FromIndex returns the Target of an index.
func FromIndex(x *index.Index) Target { return indexTarget{x} }

var _ Target = indexTarget{}

func (t indexTarget) CreateVersion(ctx context.Context, collection, version, model string) (store.VersionInfo, error) {
	return t.x.CreateVersion(ctx, collection, version, model)
}

func (t indexTarget) Versions(ctx context.Context, collection string) ([]store.VersionInfo, error) {
	return t.x.Versions(ctx, collection)
}

func (t indexTarget) SwapAlias(ctx context.Context, collection, version string) error {
	return t.x.SwapAlias(ctx, collection, version)
}

func (t indexTarget) ScanVersion(ctx context.Context, collection, version string, fn func(store.Record) error) error {
	return t.x.ScanVersion(ctx, collection, version, fn)
}

func (t indexTarget) UpsertVersion(ctx context.Context, collection, version string, items []index.Item, truncate bool) error {
	_, err := t.x.Upsert(ctx, index.UpsertRequest{Collection: collection, Version: version, Items: items, Truncate: truncate, Priority: batch.Bulk})
	return err
}

func (t indexTarget) DeleteVersion(ctx context.Context, collection, version string, ids []string) error {
	_, err := t.x.DeleteIDs(ctx, index.DeleteRequest{Collection: collection, Version: version, IDs: ids})
	return err
}
