package embedded

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/embedd/embedd/internal/store"
)

// Versions: each version of a logical collection is a collection of its
// own (records, graph, snapshot file) under versionKey; the alias table
// maps a logical name to its live version. Both are logged (opVersion,
// opAlias, opDrop) and rebuilt by compaction, so they survive restarts; a
// log written before versions opens with each collection as version
// DefaultVersion of its name, live and unbound.

var (
	_ store.Versioned     = (*Store)(nil)
	_ store.VersionReader = (*Store)(nil)
)

// versionKey is the key of logical's version in Store.colls, in log
// entries and in snapshot files: the logical name itself for
// DefaultVersion (so logs and snapshots written before versions still
// match), else logical NUL version. Logical names hold no NUL
// (checkCollName).
func versionKey(logical, version string) string {
	if version == store.DefaultVersion {
		return logical
	}
	return logical + "\x00" + version
}

// matches checks an existing version against a CreateVersion of it.
func (c *collection) matches(logical, version string, dims int, model string, checkModel bool) error {
	switch {
	case c.logical != logical || c.version != version:
		return fmt.Errorf("%w: collection %q version %q has the key of collection %q version %q", store.ErrInvalid, logical, version, c.logical, c.version)
	case c.dims != dims:
		return fmt.Errorf("%w: collection %q version %q has %d dimensions; asked for %d", store.ErrInvalid, logical, version, c.dims, dims)
	case checkModel && c.model != model:
		return fmt.Errorf("%w: collection %q version %q is bound to model version %q; asked for %q", store.ErrInvalid, logical, version, c.model, model)
	}
	return nil
}

// version returns logical's version. Callers hold s.mu.
func (s *Store) version(logical, version string) (*collection, error) {
	if err := store.CheckVersion(version); err != nil {
		return nil, fmt.Errorf("%w: collection %q: %w", store.ErrInvalid, logical, err)
	}
	c := s.colls[versionKey(logical, version)]
	if c == nil || c.logical != logical || c.version != version {
		return nil, fmt.Errorf("%w: collection %q version %q", store.ErrNotFound, logical, version)
	}
	return c, nil
}

func (c *collection) info(live bool) store.VersionInfo {
	return store.VersionInfo{Version: c.version, Dims: c.dims, ModelVersion: c.model, Count: int64(len(c.recs)), Live: live, CreatedAt: c.created}
}

// forgetColl removes a dropped version's state: its records, graph and
// snapshot bookkeeping. Callers hold s.mu for writing.
func (s *Store) forgetColl(key string) {
	delete(s.colls, key)
	delete(s.snapState, key)
	s.snapMu.Lock()
	delete(s.marks, key)
	s.snapMu.Unlock()
}

// CreateVersion implements store.Versioned.
func (s *Store) CreateVersion(ctx context.Context, logical, version string, dims int, modelVersion string) error {
	if err := checkCollName(logical, dims); err != nil {
		return err
	}
	if err := store.CheckVersion(version); err != nil {
		return fmt.Errorf("%w: collection %q: %w", store.ErrInvalid, logical, err)
	}
	return s.update(ctx, func() (*enc, func(), error) {
		if c := s.colls[versionKey(logical, version)]; c != nil {
			return nil, nil, c.matches(logical, version, dims, modelVersion, true)
		}
		c := &collection{logical: logical, version: version, dims: dims, model: modelVersion, created: s.opts.Now().UTC()}
		return encodeVersion(c, false), func() { s.addColl(c) }, nil
	})
}

// SwapAlias implements store.Versioned.
func (s *Store) SwapAlias(ctx context.Context, logical, version string) error {
	return s.update(ctx, func() (*enc, func(), error) {
		if _, err := s.version(logical, version); err != nil {
			return nil, nil, err
		}
		if s.alias[logical] == version {
			return nil, nil, nil
		}
		return encodeAliasOp(opAlias, logical, version), func() { s.alias[logical] = version }, nil
	})
}

// DropVersion implements store.Versioned. The version's snapshot file is
// removed too; one left behind by a crash is ignored at Open.
func (s *Store) DropVersion(ctx context.Context, logical, version string) error {
	key := versionKey(logical, version)
	err := s.update(ctx, func() (*enc, func(), error) {
		if _, err := s.version(logical, version); err != nil {
			if store.CheckVersion(version) != nil {
				return nil, nil, err
			}
			return nil, nil, nil // gone already
		}
		if s.alias[logical] == version {
			return nil, nil, fmt.Errorf("%w: version %q is live for collection %q; swap first", store.ErrInvalid, version, logical)
		}
		return encodeAliasOp(opDrop, logical, version), func() { s.forgetColl(key) }, nil
	})
	if err != nil {
		return err
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if _, ok := s.marks[key]; ok {
		return nil // recreated since, and snapshotted
	}
	if err := removeSnapshot(s.opts.Dir, snapFile(key)); err != nil {
		s.logger.Warn("embedded: remove the snapshot of a dropped version", "collection", logical, "version", version, "err", err)
	}
	return nil
}

// ListVersions implements store.Versioned; counts are exact.
func (s *Store) ListVersions(ctx context.Context, logical string) ([]store.VersionInfo, error) {
	var out []store.VersionInfo
	err := s.view(ctx, func() error {
		for _, c := range s.colls {
			if c.logical == logical {
				out = append(out, c.info(s.alias[logical] == c.version))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: collection %q has no versions", store.ErrNotFound, logical)
	}
	slices.SortFunc(out, func(a, b store.VersionInfo) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.Version, b.Version))
	})
	return out, nil
}

// LiveVersion implements store.VersionReader.
func (s *Store) LiveVersion(ctx context.Context, logical string) (store.VersionInfo, error) {
	var v store.VersionInfo
	err := s.view(ctx, func() error {
		c, err := s.coll(logical)
		if err == nil {
			v = c.info(true)
			v.Count = 0
		}
		return err
	})
	return v, err
}

// UpsertVersion implements store.Versioned.
func (s *Store) UpsertVersion(ctx context.Context, logical, version string, recs []store.Record) error {
	return s.upsert(ctx, func() (*collection, error) { return s.version(logical, version) }, recs)
}

// DeleteVersion implements store.Versioned.
func (s *Store) DeleteVersion(ctx context.Context, logical, version string, ids []string) error {
	return s.delete(ctx, func() (*collection, error) { return s.version(logical, version) }, ids)
}

// GetVersion implements store.Versioned.
func (s *Store) GetVersion(ctx context.Context, logical, version string, ids []string) ([]store.Record, error) {
	return s.get(ctx, func() (*collection, error) { return s.version(logical, version) }, ids)
}

// SearchVersion implements store.VersionReader.
func (s *Store) SearchVersion(ctx context.Context, logical, version string, req store.SearchRequest) ([]store.Hit, error) {
	return s.searchIn(ctx, func() (*collection, error) { return s.version(logical, version) }, req)
}

// scanChunk is the number of records ScanVersion copies under one read
// lock.
const scanChunk = 1024

// ScanVersion implements store.Versioned. It lists the version's ids in
// order under the read lock, then copies scanChunk records at a time and
// calls fn without holding the lock (fn may write to the store); records
// deleted meanwhile are skipped.
func (s *Store) ScanVersion(ctx context.Context, logical, version string, fn func(store.Record) error) error {
	var c *collection
	var ids []string
	err := s.view(ctx, func() error {
		var err error
		if c, err = s.version(logical, version); err == nil {
			ids = slices.Sorted(maps.Keys(c.recs))
		}
		return err
	})
	for err == nil && len(ids) > 0 {
		chunk := ids[:min(len(ids), scanChunk)]
		ids = ids[len(chunk):]
		recs := make([]store.Record, 0, len(chunk))
		err = s.view(ctx, func() error {
			for _, id := range chunk {
				if r := c.recs[id]; r != nil {
					recs = append(recs, cloneRecord(r.Record, false))
				}
			}
			return nil
		})
		for i := 0; err == nil && i < len(recs); i++ {
			err = fn(recs[i])
		}
	}
	return err
}
