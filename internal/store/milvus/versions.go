package milvus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"

	"github.com/embedd/embedd/internal/store"
)

// Versions: the alias, listing, dropping.

var (
	_ store.Versioned     = (*Store)(nil)
	_ store.VersionReader = (*Store)(nil)
)

// SwapAlias points logical at its version atomically (creating the alias the
// first time); swapping to the live version is a no-op. The version must
// exist (store.ErrNotFound otherwise). The old physical collection is kept;
// drop it with DropVersion.
func (s *Store) SwapAlias(ctx context.Context, logical, version string) error {
	p, err := s.version(ctx, logical, version)
	if err != nil {
		return err
	}
	alias := AliasName(logical)
	live, err := s.resolve(ctx, logical, true)
	switch {
	case err == nil && live.name == p.name:
		return nil
	case err == nil:
		err = s.c.AlterAlias(ctx, p.name, alias)
	case errors.Is(err, store.ErrNotFound):
		err = s.c.CreateAlias(ctx, p.name, alias)
	default:
		return err
	}
	s.forget(logical, "")
	if err != nil {
		// Another process may have created the alias, pointing at the
		// same version, since it was read.
		if live, rerr := s.resolve(ctx, logical, true); rerr == nil && live.name == p.name {
			return nil
		}
		return s.mapErr(ctx, "point alias "+alias+" at "+p.name, err)
	}
	return nil
}

// DropVersion drops logical's version; the live version (the alias target)
// cannot be dropped (store.ErrInvalid). A missing version is not an error.
func (s *Store) DropVersion(ctx context.Context, logical, version string) error {
	if err := checkVersionName(logical, version); err != nil {
		return err
	}
	phys := PhysicalName(logical, version)
	if r, err := s.resolve(ctx, logical, true); err == nil && r.name == phys {
		return fmt.Errorf("%w: version %q is live for collection %q; swap first", store.ErrInvalid, version, logical)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if !has {
		return nil
	}
	s.forget(logical, phys)
	if err := s.c.DropCollection(ctx, phys); err != nil {
		return s.mapErr(ctx, "drop collection "+phys, err)
	}
	return nil
}

// Drop removes logical entirely: its alias and every physical version
// created under it. Meant for tests and tooling.
func (s *Store) Drop(ctx context.Context, logical string) error {
	alias := AliasName(logical)
	if _, err := s.c.DescribeCollection(ctx, alias); err == nil {
		if err := s.c.DropAlias(ctx, alias); err != nil {
			return s.mapErr(ctx, "drop alias "+alias, err)
		}
	}
	s.forget(logical, "")
	colls, err := s.c.ListCollections(ctx)
	if err != nil {
		return s.mapErr(ctx, "list collections", err)
	}
	prefix := alias + "__"
	var errs []error
	for _, c := range colls {
		if strings.HasPrefix(c.Name, prefix) {
			s.forget(logical, c.Name)
			if err := s.c.DropCollection(ctx, c.Name); err != nil {
				errs = append(errs, s.mapErr(ctx, "drop collection "+c.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ListVersions implements store.Versioned. Count is Milvus's count(*) at
// Bounded consistency: it may miss writes of the last seconds and, until
// compaction, count rows deleted since.
func (s *Store) ListVersions(ctx context.Context, logical string) ([]store.VersionInfo, error) {
	if logical == "" {
		return nil, fmt.Errorf("%w: empty collection name", store.ErrInvalid)
	}
	colls, err := s.c.ListCollections(ctx)
	if err != nil {
		return nil, s.mapErr(ctx, "list collections", err)
	}
	live, err := s.resolve(ctx, logical, true)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	prefix := AliasName(logical) + "__"
	var out []store.VersionInfo
	for _, c := range colls {
		if !strings.HasPrefix(c.Name, prefix) {
			continue
		}
		p, err := s.describe(ctx, c.Name, true)
		if errors.Is(err, store.ErrNotFound) {
			continue // dropped since the listing
		} else if err != nil {
			return nil, err
		}
		if p.logical != logical {
			continue // another logical name's version whose name shares the prefix
		}
		v := p.info()
		v.Live = p.name == live.name
		if v.Count, err = s.count(ctx, p.name); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: collection %q has no versions", store.ErrNotFound, logical)
	}
	slices.SortFunc(out, func(a, b store.VersionInfo) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.Version, b.Version))
	})
	return out, nil
}

// count is the number of rows of phys, as count(*) at Bounded consistency.
func (s *Store) count(ctx context.Context, phys string) (int64, error) {
	rs, err := s.c.Query(ctx, phys, nil, "", []string{"count(*)"}, client.WithSearchQueryConsistencyLevel(entity.ClBounded))
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "not loaded") {
		// Another process is creating this version (created, not yet
		// indexed and loaded: CreateVersion loads it before it returns),
		// so it holds nothing yet. Failing here would fail every
		// concurrent ListVersions, such as reembed shards starting
		// together.
		return 0, nil
	}
	if err != nil {
		return 0, s.mapErr(ctx, "count "+phys, err)
	}
	if c, ok := rs.GetColumn("count(*)").(*entity.ColumnInt64); ok && c.Len() == 1 {
		return c.Data()[0], nil
	}
	return 0, fmt.Errorf("milvus: count %s: no count(*) column in the result", phys)
}

// LiveVersion implements store.VersionReader.
func (s *Store) LiveVersion(ctx context.Context, logical string) (store.VersionInfo, error) {
	p, err := s.resolve(ctx, logical, true)
	if err != nil {
		return store.VersionInfo{}, err
	}
	v := p.info()
	v.Live = true
	return v, nil
}
