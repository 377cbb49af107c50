package milvus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/entity"

	"github.com/embedd/embedd/internal/store"
)

// Physical collections: what a version's Milvus collection says about
// itself, and the caches of that and of the alias.

// The properties that describe a version, set when it is created. A
// collection created before versions were bound to models has none: its
// logical name and version come from its description (legacyDescription),
// and it is unbound.
const (
	propLogical = "embedd.collection"
	propVersion = "embedd.version"
	propModel   = "embedd.model_version"
	propCreated = "embedd.created_at" // unix milliseconds
)

// legacyDescription is every physical collection's description.
const legacyDescription = "embedd %q version %q"

// physical describes one physical collection.
type physical struct {
	name             string // the Milvus collection
	logical, version string // "" when it was not created by embedd
	dims             int
	textHash         bool // has the text_hash field (versions created since it exists)
	model            string
	created          time.Time
	at               time.Time // when it was described
}

func (p physical) info() store.VersionInfo {
	return store.VersionInfo{Version: p.version, Dims: p.dims, ModelVersion: p.model, CreatedAt: p.created}
}

// matches checks an existing version against a CreateVersion of it.
func (p physical) matches(logical, version string, dims int, model string, checkModel bool) error {
	switch {
	case p.logical != "" && (p.logical != logical || p.version != version):
		return fmt.Errorf("%w: collection %q version %q maps to Milvus collection %s, which holds collection %q version %q", store.ErrInvalid, logical, version, p.name, p.logical, p.version)
	case p.dims != dims:
		return fmt.Errorf("%w: collection %q version %q has %d dimensions; asked for %d", store.ErrInvalid, logical, version, p.dims, dims)
	case checkModel && p.model != model:
		return fmt.Errorf("%w: collection %q version %q is bound to model version %q; asked for %q", store.ErrInvalid, logical, version, p.model, model)
	}
	return nil
}

// describe reads the physical collection name (or the one the alias name
// points at). fresh skips the cache.
func (s *Store) describe(ctx context.Context, name string, fresh bool) (physical, error) {
	if !fresh && s.opts.AliasTTL > 0 {
		s.mu.Lock()
		p, ok := s.phys[name]
		s.mu.Unlock()
		if ok && time.Since(p.at) < s.opts.AliasTTL {
			return p, nil
		}
	}
	coll, err := s.c.DescribeCollection(ctx, name)
	if err != nil {
		return physical{}, s.mapErr(ctx, "describe "+name, err)
	}
	p := physical{name: coll.Name, at: time.Now()}
	if p.dims, err = vectorDims(coll.Schema); err != nil {
		return physical{}, err
	}
	for _, f := range coll.Schema.Fields {
		p.textHash = p.textHash || f.Name == fieldTextHash
	}
	if v, ok := coll.Properties[propVersion]; ok {
		p.logical, p.version, p.model = coll.Properties[propLogical], v, coll.Properties[propModel]
		if ms, err := strconv.ParseInt(coll.Properties[propCreated], 10, 64); err == nil {
			p.created = time.UnixMilli(ms)
		}
	} else if _, err := fmt.Sscanf(coll.Schema.Description, legacyDescription, &p.logical, &p.version); err != nil {
		p.logical, p.version = "", ""
	}
	s.mu.Lock()
	s.phys[p.name] = p
	s.mu.Unlock()
	return p, nil
}

// version describes logical's version; store.ErrNotFound when it does not
// exist.
func (s *Store) version(ctx context.Context, logical, version string) (physical, error) {
	if err := checkVersionName(logical, version); err != nil {
		return physical{}, err
	}
	p, err := s.describe(ctx, PhysicalName(logical, version), false)
	if errors.Is(err, store.ErrNotFound) {
		return physical{}, fmt.Errorf("%w: collection %q version %q", store.ErrNotFound, logical, version)
	}
	return p, err
}

// resolve maps a logical name to its live physical collection. fresh skips
// the cache.
func (s *Store) resolve(ctx context.Context, logical string, fresh bool) (physical, error) {
	if logical == "" {
		return physical{}, fmt.Errorf("%w: empty collection name", store.ErrInvalid)
	}
	if !fresh && s.opts.AliasTTL > 0 {
		s.mu.Lock()
		p, ok := s.live[logical]
		s.mu.Unlock()
		if ok && time.Since(p.at) < s.opts.AliasTTL {
			return p, nil
		}
	}
	alias := AliasName(logical)
	p, err := s.describe(ctx, alias, true)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return physical{}, fmt.Errorf("%w: collection %q", store.ErrNotFound, logical)
		}
		return physical{}, fmt.Errorf("collection %q: %w", logical, err)
	}
	if p.version == "" { // not described: a legacy collection of the default version
		p.version = s.opts.DefaultVersion
	}
	s.mu.Lock()
	s.live[logical] = p
	s.mu.Unlock()
	return p, nil
}

// forget drops the cached alias of logical and description of phys.
func (s *Store) forget(logical, phys string) {
	s.mu.Lock()
	delete(s.live, logical)
	delete(s.phys, phys)
	s.mu.Unlock()
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
