package milvus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"

	"github.com/embedd/embedd/internal/store"
)

// Collections: names, versions, the alias and its cache.

// Name rules: Milvus names are [A-Za-z_][A-Za-z0-9_]*, at most 255 bytes.
const maxName = 255

// sanitize maps an arbitrary name to a valid Milvus name. A name that is
// valid already is kept; otherwise invalid bytes become '_' and a hash of the
// original is appended, so distinct inputs stay distinct.
func sanitize(name string) string {
	ok := name != "" && len(name) <= 200
	var b strings.Builder
	for i := 0; i < len(name) && i < 200; i++ {
		ch := name[i]
		switch {
		case ch == '_' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z':
			b.WriteByte(ch)
		case ch >= '0' && ch <= '9':
			if i == 0 {
				b.WriteByte('_')
				ok = false
			}
			b.WriteByte(ch)
		default:
			b.WriteByte('_')
			ok = false
		}
	}
	if ok {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s_%08x", b.String(), h.Sum32())
}

// AliasName is the Milvus alias of a logical collection.
func AliasName(logical string) string { return sanitize(logical) }

// PhysicalName is the Milvus collection of a logical collection's version.
func PhysicalName(logical, version string) string {
	n := sanitize(logical) + "__" + sanitize(version)
	if len(n) > maxName {
		n = n[:maxName]
	}
	return n
}

// EnsureCollection makes name usable: when its alias is absent it creates
// version Options.DefaultVersion with dims and points the alias at it. An
// existing collection with other dims is store.ErrInvalid.
func (s *Store) EnsureCollection(ctx context.Context, name string, dims int) error {
	if err := checkDims(dims); err != nil {
		return err
	}
	r, err := s.resolve(ctx, name, true)
	switch {
	case err == nil:
		if r.dims != dims {
			return fmt.Errorf("%w: collection %q has %d dimensions; asked for %d", store.ErrInvalid, name, r.dims, dims)
		}
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if err := s.CreateVersion(ctx, name, s.opts.DefaultVersion, dims); err != nil {
		return err
	}
	return s.SwapAlias(ctx, name, s.opts.DefaultVersion)
}

func checkDims(dims int) error {
	if dims < 1 || dims > store.MaxDims {
		return fmt.Errorf("%w: dims %d out of range [1, %d]", store.ErrInvalid, dims, store.MaxDims)
	}
	return nil
}

// CreateVersion creates, indexes and loads the physical collection for
// logical's version with dims, unless it exists (then its dims must match).
// The alias is not touched; see SwapAlias.
func (s *Store) CreateVersion(ctx context.Context, logical, version string, dims int) error {
	if err := checkDims(dims); err != nil {
		return err
	}
	if logical == "" || version == "" {
		return fmt.Errorf("%w: empty collection name or version", store.ErrInvalid)
	}
	phys := PhysicalName(logical, version)
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if has {
		d, err := s.physicalDims(ctx, phys)
		if err != nil {
			return err
		}
		if d != dims {
			return fmt.Errorf("%w: collection %q version %q has %d dimensions; asked for %d", store.ErrInvalid, logical, version, d, dims)
		}
	} else {
		schema := entity.NewSchema().WithName(phys).
			WithDescription(fmt.Sprintf("embedd %q version %q", logical, version)).
			WithField(entity.NewField().WithName(fieldID).WithDataType(entity.FieldTypeVarChar).
				WithIsPrimaryKey(true).WithMaxLength(store.MaxIDBytes)).
			WithField(entity.NewField().WithName(fieldVector).WithDataType(entity.FieldTypeFloatVector).
				WithDim(int64(dims))).
			WithField(entity.NewField().WithName(fieldMetadata).WithDataType(entity.FieldTypeJSON)).
			WithField(entity.NewField().WithName(fieldModelVersion).WithDataType(entity.FieldTypeVarChar).
				WithMaxLength(maxModelVersion)).
			WithField(entity.NewField().WithName(fieldUpdatedAt).WithDataType(entity.FieldTypeInt64))
		if err := s.c.CreateCollection(ctx, schema, 1, client.WithConsistencyLevel(s.cl)); err != nil {
			return s.mapErr(ctx, "create collection "+phys, err)
		}
	}
	idx, err := s.index()
	if err != nil {
		return err
	}
	// CreateIndex with the same parameters is a no-op on an indexed field.
	if err := s.c.CreateIndex(ctx, phys, fieldVector, idx, false); err != nil {
		return s.mapErr(ctx, "create index on "+phys, err)
	}
	if err := s.c.LoadCollection(ctx, phys, false); err != nil {
		return s.mapErr(ctx, "load collection "+phys, err)
	}
	return nil
}

const maxModelVersion = 256

func (s *Store) metric() entity.MetricType {
	if s.opts.Metric == MetricIP {
		return entity.IP
	}
	return entity.COSINE
}

func (s *Store) index() (entity.Index, error) {
	if s.opts.Index == IndexIVFSQ8 {
		return entity.NewIndexIvfSQ8(s.metric(), s.opts.IVFNList)
	}
	return entity.NewIndexHNSW(s.metric(), s.opts.HNSWM, s.opts.HNSWEfConstruction)
}

func (s *Store) searchParam(topK int) (entity.SearchParam, error) {
	if s.opts.Index == IndexIVFSQ8 {
		return entity.NewIndexIvfSQ8SearchParam(s.opts.IVFNProbe)
	}
	return entity.NewIndexHNSWSearchParam(max(s.opts.HNSWEf, topK))
}

// SwapAlias points logical at its version atomically (creating the alias the
// first time). The version must exist (store.ErrNotFound otherwise). The old
// physical collection is kept; drop it with DropVersion.
func (s *Store) SwapAlias(ctx context.Context, logical, version string) error {
	phys := PhysicalName(logical, version)
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if !has {
		return fmt.Errorf("%w: collection %q version %q", store.ErrNotFound, logical, version)
	}
	alias := AliasName(logical)
	if _, err := s.c.DescribeCollection(ctx, alias); err == nil {
		err = s.c.AlterAlias(ctx, phys, alias)
		if err != nil {
			return s.mapErr(ctx, "alter alias "+alias, err)
		}
	} else if err := s.c.CreateAlias(ctx, phys, alias); err != nil {
		return s.mapErr(ctx, "create alias "+alias, err)
	}
	s.mu.Lock()
	delete(s.live, logical)
	s.mu.Unlock()
	return nil
}

// DropVersion drops logical's version; the live version (the alias target)
// cannot be dropped (store.ErrInvalid). A missing version is not an error.
func (s *Store) DropVersion(ctx context.Context, logical, version string) error {
	phys := PhysicalName(logical, version)
	if r, err := s.resolve(ctx, logical, true); err == nil && r.physical == phys {
		return fmt.Errorf("%w: version %q is live for collection %q; swap first", store.ErrInvalid, version, logical)
	}
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if !has {
		return nil
	}
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
	s.mu.Lock()
	delete(s.live, logical)
	s.mu.Unlock()
	colls, err := s.c.ListCollections(ctx)
	if err != nil {
		return s.mapErr(ctx, "list collections", err)
	}
	prefix := alias + "__"
	var errs []error
	for _, c := range colls {
		if strings.HasPrefix(c.Name, prefix) {
			if err := s.c.DropCollection(ctx, c.Name); err != nil {
				errs = append(errs, s.mapErr(ctx, "drop collection "+c.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// resolve maps a logical name to its live physical collection. fresh skips
// the cache.
func (s *Store) resolve(ctx context.Context, logical string, fresh bool) (resolved, error) {
	if logical == "" {
		return resolved{}, fmt.Errorf("%w: empty collection name", store.ErrInvalid)
	}
	if !fresh && s.opts.AliasTTL > 0 {
		s.mu.Lock()
		r, ok := s.live[logical]
		s.mu.Unlock()
		if ok && time.Since(r.at) < s.opts.AliasTTL {
			return r, nil
		}
	}
	alias := AliasName(logical)
	coll, err := s.c.DescribeCollection(ctx, alias)
	if err != nil {
		if isNotExist(err) {
			return resolved{}, fmt.Errorf("%w: collection %q", store.ErrNotFound, logical)
		}
		return resolved{}, s.mapErr(ctx, "describe "+alias, err)
	}
	d, err := vectorDims(coll.Schema)
	if err != nil {
		return resolved{}, fmt.Errorf("collection %q: %w", logical, err)
	}
	r := resolved{physical: coll.Name, dims: d, at: time.Now()}
	s.mu.Lock()
	s.live[logical] = r
	s.mu.Unlock()
	return r, nil
}

func (s *Store) physicalDims(ctx context.Context, phys string) (int, error) {
	coll, err := s.c.DescribeCollection(ctx, phys)
	if err != nil {
		return 0, s.mapErr(ctx, "describe "+phys, err)
	}
	return vectorDims(coll.Schema)
}

func vectorDims(sch *entity.Schema) (int, error) {
	for _, f := range sch.Fields {
		if f.Name == fieldVector {
			d, err := strconv.Atoi(f.TypeParams[entity.TypeParamDim])
			if err != nil {
				return 0, fmt.Errorf("milvus: field %q has dim %q: %w", fieldVector, f.TypeParams[entity.TypeParamDim], err)
			}
			return d, nil
		}
	}
	return 0, fmt.Errorf("milvus: collection %q has no %q field; not created by embedd", sch.CollectionName, fieldVector)
}
