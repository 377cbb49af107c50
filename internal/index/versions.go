package index

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/embedd/embedd/internal/store"
)

// Collection versions, for re-embedding jobs (internal/reembed): create a
// version bound to a model beside the live one, fill it (Upsert with
// UpsertRequest.Version), swap the alias, drop the old version.

// TextHash is the hash stored as store.Record.TextHash for a text: hex of
// the first 16 bytes of SHA-256 of the UTF-8 text.
func TextHash(text string) string {
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:16])
}

// CreateVersion creates collection's version bound to model's version
// (model: a name the Embedder knows; dims from its manifest). Creating an
// existing version with the same model is a no-op; with another model it
// is ErrInvalid (store.ErrInvalid).
func (x *Index) CreateVersion(ctx context.Context, collection, version, model string) (store.VersionInfo, error) {
	c, err := x.collection(collection)
	if err != nil {
		return store.VersionInfo{}, err
	}
	if err := store.CheckVersion(version); err != nil {
		return store.VersionInfo{}, fmt.Errorf("%w: collection %q: %w", ErrInvalid, c.Name, err)
	}
	m, err := x.emb.Manifest(model)
	if err != nil {
		return store.VersionInfo{}, fmt.Errorf("collection %q version %q: %w", c.Name, version, err)
	}
	x.learnModel(m.Version, model)
	if err := x.vs.CreateVersion(ctx, c.Name, version, m.Dims, m.Version); err != nil {
		return store.VersionInfo{}, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	x.vc.forget(c.Name)
	infos, err := x.Versions(ctx, c.Name)
	if err != nil {
		return store.VersionInfo{}, err
	}
	for _, v := range infos {
		if v.Version == version {
			return v, nil
		}
	}
	return store.VersionInfo{}, fmt.Errorf("%w: collection %q version %q vanished after it was created", store.ErrNotFound, c.Name, version)
}

// Versions lists collection's versions, ordered by creation (see
// store.Versioned.ListVersions; counts are approximate on Milvus).
func (x *Index) Versions(ctx context.Context, collection string) ([]store.VersionInfo, error) {
	c, err := x.collection(collection)
	if err != nil {
		return nil, err
	}
	infos, err := x.vs.ListVersions(ctx, c.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	return infos, nil
}

// SwapAlias makes collection's version live, atomically for every reader of
// the vector store. This Index sees the new live version at once; another
// process within Options.LiveTTL.
func (x *Index) SwapAlias(ctx context.Context, collection, version string) error {
	c, err := x.collection(collection)
	if err != nil {
		return err
	}
	if err := store.CheckVersion(version); err != nil {
		return fmt.Errorf("%w: collection %q: %w", ErrInvalid, c.Name, err)
	}
	err = x.vs.SwapAlias(ctx, c.Name, version)
	x.vc.forget(c.Name)
	if err != nil {
		return fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	return nil
}

// dropBatch is the number of online rows DropVersion deletes a call.
const dropBatch = 1000

// DropVersion removes collection's version, which must not be live
// (ErrInvalid), from both stores: its online rows first (their ids come
// from a scan of the version, deleted dropBatch a call), then the vector
// version. It takes time proportional to the version's size (a scan of
// every record); interrupted, it can be run again. Dropping a missing
// version is not an error.
func (x *Index) DropVersion(ctx context.Context, collection, version string) error {
	c, err := x.collection(collection)
	if err != nil {
		return err
	}
	if err := store.CheckVersion(version); err != nil {
		return fmt.Errorf("%w: collection %q: %w", ErrInvalid, c.Name, err)
	}
	x.vc.forget(c.Name)
	live, err := x.live(ctx, c)
	if err != nil {
		return err
	}
	if live.Version == version {
		return fmt.Errorf("%w: version %q is live for collection %q; swap to another version first", ErrInvalid, version, c.Name)
	}
	var ids []string
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		err := x.opts.Online.DeleteEntities(ctx, onlineKeys(c.Name, version, ids))
		ids = ids[:0]
		if err != nil {
			return fmt.Errorf("%s: %w", x.opts.OnlineName, err)
		}
		return nil
	}
	err = x.vs.ScanVersion(ctx, c.Name, version, func(r store.Record) error {
		if ids = append(ids, r.ID); len(ids) == dropBatch {
			return flush()
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil // dropped already
	}
	if err = errors.Join(err, flush()); err != nil {
		return fmt.Errorf("drop collection %q version %q: %w", c.Name, version, err)
	}
	if err := x.vs.DropVersion(ctx, c.Name, version); err != nil {
		return fmt.Errorf("%s: %w", x.opts.VectorsName, err)
	}
	return nil
}

// ScanVersion calls fn with every record of collection's version, without
// vectors (see store.Versioned.ScanVersion); it stops at fn's first error
// and returns it.
func (x *Index) ScanVersion(ctx context.Context, collection, version string, fn func(store.Record) error) error {
	c, err := x.collection(collection)
	if err != nil {
		return err
	}
	if err := store.CheckVersion(version); err != nil {
		return fmt.Errorf("%w: collection %q: %w", ErrInvalid, c.Name, err)
	}
	return x.vs.ScanVersion(ctx, c.Name, version, fn)
}
