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
// version Options.DefaultVersion with dims (unbound, unless it exists) and
// points the alias at it. An existing collection with other dims is
// store.ErrInvalid.
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
	if err := s.createVersion(ctx, name, s.opts.DefaultVersion, dims, "", false); err != nil {
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

// checkVersionName checks a logical name and a version name.
func checkVersionName(logical, version string) error {
	if logical == "" {
		return fmt.Errorf("%w: empty collection name", store.ErrInvalid)
	}
	if err := store.CheckVersion(version); err != nil {
		return fmt.Errorf("%w: collection %q: %w", store.ErrInvalid, logical, err)
	}
	return nil
}

// CreateVersion creates, indexes and loads the physical collection of
// logical's version with dims, bound to modelVersion, unless it exists
// (then its dims and model version must match: store.ErrInvalid). The
// binding and the creation time are kept as collection properties. The
// alias is not touched; see SwapAlias.
func (s *Store) CreateVersion(ctx context.Context, logical, version string, dims int, modelVersion string) error {
	return s.createVersion(ctx, logical, version, dims, modelVersion, true)
}

func (s *Store) createVersion(ctx context.Context, logical, version string, dims int, model string, checkModel bool) error {
	if err := checkDims(dims); err != nil {
		return err
	}
	if err := checkVersionName(logical, version); err != nil {
		return err
	}
	if len(model) > maxModelVersion {
		return fmt.Errorf("%w: model version is %d bytes; limit %d", store.ErrInvalid, len(model), maxModelVersion)
	}
	phys := PhysicalName(logical, version)
	has, err := s.c.HasCollection(ctx, phys)
	if err != nil {
		return s.mapErr(ctx, "has collection "+phys, err)
	}
	if !has {
		err = s.c.CreateCollection(ctx, newSchema(phys, logical, version, dims), 1, s.createOptions(logical, version, model)...)
		if err != nil {
			// Another process may have created it since HasCollection (its
			// creation time differs, so Milvus calls the request a
			// duplicate with different parameters): then it must match.
			if has, herr := s.c.HasCollection(ctx, phys); herr != nil || !has {
				return s.mapErr(ctx, "create collection "+phys, err)
			}
		}
	}
	if has || err != nil {
		p, err := s.describe(ctx, phys, true)
		if err != nil {
			return err
		}
		if err := p.matches(logical, version, dims, model, checkModel); err != nil {
			return err
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

func newSchema(phys, logical, version string, dims int) *entity.Schema {
	return entity.NewSchema().WithName(phys).
		WithDescription(fmt.Sprintf(legacyDescription, logical, version)).
		WithField(entity.NewField().WithName(fieldID).WithDataType(entity.FieldTypeVarChar).
			WithIsPrimaryKey(true).WithMaxLength(store.MaxIDBytes)).
		WithField(entity.NewField().WithName(fieldVector).WithDataType(entity.FieldTypeFloatVector).
			WithDim(int64(dims))).
		WithField(entity.NewField().WithName(fieldMetadata).WithDataType(entity.FieldTypeJSON)).
		WithField(entity.NewField().WithName(fieldModelVersion).WithDataType(entity.FieldTypeVarChar).
			WithMaxLength(maxModelVersion)).
		WithField(entity.NewField().WithName(fieldUpdatedAt).WithDataType(entity.FieldTypeInt64)).
		WithField(entity.NewField().WithName(fieldTextHash).WithDataType(entity.FieldTypeVarChar).
			WithMaxLength(maxTextHash))
}

func (s *Store) createOptions(logical, version, model string) []client.CreateCollectionOption {
	return []client.CreateCollectionOption{
		client.WithConsistencyLevel(s.cl),
		client.WithCollectionProperty(propLogical, logical),
		client.WithCollectionProperty(propVersion, version),
		client.WithCollectionProperty(propModel, model),
		client.WithCollectionProperty(propCreated, strconv.FormatInt(time.Now().UnixMilli(), 10)),
	}
}

// Backend bounds of the VarChar fields.
const (
	maxModelVersion = 256
	maxTextHash     = 128
)

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
