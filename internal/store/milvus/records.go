package milvus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"

	"github.com/embedd/embedd/internal/store"
)

// Records: Upsert, Search, Get and Delete on a collection's live version.

// Upsert writes recs into the live version of collection.
func (s *Store) Upsert(ctx context.Context, collection string, recs []store.Record) error {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	return s.upsert(ctx, r, recs)
}

// UpsertVersion writes recs into logical's version, live or not; it is how a
// new version is filled before SwapAlias.
func (s *Store) UpsertVersion(ctx context.Context, logical, version string, recs []store.Record) error {
	phys := PhysicalName(logical, version)
	d, err := s.physicalDims(ctx, phys)
	if err != nil {
		return err
	}
	return s.upsert(ctx, resolved{physical: phys, dims: d}, recs)
}

func (s *Store) upsert(ctx context.Context, r resolved, recs []store.Record) error {
	if err := store.CheckRecords(recs, r.dims); err != nil {
		return err
	}
	ids := make([]string, len(recs))
	vecs := make([][]float32, len(recs))
	metas := make([][]byte, len(recs))
	versions := make([]string, len(recs))
	updated := make([]int64, len(recs))
	now := time.Now()
	for i, rec := range recs {
		if len(rec.ModelVersion) > maxModelVersion {
			return fmt.Errorf("%w: records[%d] (%q) model version is %d bytes; limit %d", store.ErrInvalid, i, rec.ID, len(rec.ModelVersion), maxModelVersion)
		}
		ids[i], vecs[i], metas[i], versions[i] = rec.ID, rec.Vector, rec.Metadata, rec.ModelVersion
		if len(metas[i]) == 0 {
			metas[i] = []byte("{}")
		}
		t := rec.UpdatedAt
		if t.IsZero() {
			t = now
		}
		updated[i] = t.UnixMilli()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := s.c.Upsert(ctx, r.physical, "",
		entity.NewColumnVarChar(fieldID, ids),
		entity.NewColumnFloatVector(fieldVector, r.dims, vecs),
		entity.NewColumnJSONBytes(fieldMetadata, metas),
		entity.NewColumnVarChar(fieldModelVersion, versions),
		entity.NewColumnInt64(fieldUpdatedAt, updated),
	)
	if err != nil {
		return s.mapErr(ctx, fmt.Sprintf("upsert %d records into %s", len(recs), r.physical), err)
	}
	return nil
}

// Flush seals the live version's buffered writes into segments and waits
// until its vector index covers every row, so that searches use the index
// instead of scanning growing segments. Reads do not need it (consistency
// covers them); bulk loads and benchmarks call it once at the end.
func (s *Store) Flush(ctx context.Context, collection string) error {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	if err := s.c.Flush(ctx, r.physical, false); err != nil {
		return s.mapErr(ctx, "flush "+r.physical, err)
	}
	for {
		total, indexed, err := s.c.GetIndexBuildProgress(ctx, r.physical, fieldVector)
		if err != nil {
			return s.mapErr(ctx, "index progress of "+r.physical, err)
		}
		if indexed >= total {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Search returns the req.TopK nearest records of the live version.
func (s *Store) Search(ctx context.Context, req store.SearchRequest) ([]store.Hit, error) {
	r, err := s.resolve(ctx, req.Collection, false)
	if err != nil {
		return nil, err
	}
	if err := store.CheckSearch(req, r.dims); err != nil {
		return nil, err
	}
	// Milvus does not break score ties by id, so ask for a margin of extra
	// candidates, order them (score desc, id asc) and keep TopK: results are
	// then deterministic unless more than the margin tie at the boundary.
	fetch := min(req.TopK+tieMargin, store.MaxTopK+tieMargin)
	sp, err := s.searchParam(fetch)
	if err != nil {
		return nil, err
	}
	res, err := s.c.Search(ctx, r.physical, nil, req.Filter, []string{fieldMetadata},
		[]entity.Vector{entity.FloatVector(req.Vector)}, fieldVector, s.metric(), fetch, sp,
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		if req.Filter != "" && isBadExpr(err) {
			return nil, fmt.Errorf("%w: filter %q: %v", store.ErrInvalid, req.Filter, err)
		}
		return nil, s.mapErr(ctx, "search "+r.physical, err)
	}
	if len(res) == 0 {
		return []store.Hit{}, nil
	}
	sr := res[0]
	if sr.Err != nil {
		return nil, s.mapErr(ctx, "search "+r.physical, sr.Err)
	}
	idc, ok := sr.IDs.(*entity.ColumnVarChar)
	if !ok {
		return nil, fmt.Errorf("milvus: search %s: id column is %T", r.physical, sr.IDs)
	}
	metaCol, _ := sr.Fields.GetColumn(fieldMetadata).(*entity.ColumnJSONBytes)
	hits := make([]store.Hit, 0, sr.ResultCount)
	for i := 0; i < sr.ResultCount && i < idc.Len(); i++ {
		h := store.Hit{ID: idc.Data()[i], Score: sr.Scores[i]}
		if metaCol != nil && i < metaCol.Len() {
			h.Metadata = metaCol.Data()[i]
		}
		hits = append(hits, h)
	}
	sortHits(hits)
	if len(hits) > req.TopK {
		hits = hits[:req.TopK]
	}
	return hits, nil
}

// tieMargin is how many extra candidates Search fetches to order ties.
const tieMargin = 16

func sortHits(hits []store.Hit) {
	slices.SortStableFunc(hits, func(a, b store.Hit) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Get returns the records of the live version with ids, in ids order;
// missing ids are skipped.
func (s *Store) Get(ctx context.Context, collection string, ids []string) ([]store.Record, error) {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return nil, err
	}
	if err := validateIDs(ids); err != nil {
		return nil, err
	}
	rs, err := s.c.QueryByPks(ctx, r.physical, nil, entity.NewColumnVarChar(fieldID, ids),
		[]string{fieldID, fieldVector, fieldMetadata, fieldModelVersion, fieldUpdatedAt},
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		return nil, s.mapErr(ctx, "get from "+r.physical, err)
	}
	idc, _ := rs.GetColumn(fieldID).(*entity.ColumnVarChar)
	vc, _ := rs.GetColumn(fieldVector).(*entity.ColumnFloatVector)
	mc, _ := rs.GetColumn(fieldMetadata).(*entity.ColumnJSONBytes)
	mv, _ := rs.GetColumn(fieldModelVersion).(*entity.ColumnVarChar)
	ut, _ := rs.GetColumn(fieldUpdatedAt).(*entity.ColumnInt64)
	if idc == nil || vc == nil || mc == nil || mv == nil || ut == nil {
		if idc == nil || idc.Len() == 0 {
			return []store.Record{}, nil
		}
		return nil, fmt.Errorf("milvus: get from %s: result lacks a field", r.physical)
	}
	byID := make(map[string]store.Record, idc.Len())
	for i, id := range idc.Data() {
		meta := mc.Data()[i]
		if string(meta) == "{}" {
			meta = nil
		}
		byID[id] = store.Record{
			ID:           id,
			Vector:       vc.Data()[i],
			Metadata:     meta,
			ModelVersion: mv.Data()[i],
			UpdatedAt:    time.UnixMilli(ut.Data()[i]),
		}
	}
	out := make([]store.Record, 0, len(byID))
	for _, id := range ids {
		if rec, ok := byID[id]; ok {
			out = append(out, rec)
		}
	}
	return out, nil
}

// validateIDs checks the ids of a Get or Delete: QueryByPks and
// DeleteByPks need at least one.
func validateIDs(ids []string) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: no ids", store.ErrInvalid)
	}
	return store.CheckIDs(ids)
}

// Delete removes ids from the live version; missing ids are not an error.
func (s *Store) Delete(ctx context.Context, collection string, ids []string) error {
	r, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	if err := validateIDs(ids); err != nil {
		return err
	}
	if err := s.c.DeleteByPks(ctx, r.physical, "", entity.NewColumnVarChar(fieldID, ids)); err != nil {
		return s.mapErr(ctx, "delete from "+r.physical, err)
	}
	return nil
}

// isNotExist reports Milvus saying a collection or alias does not exist.
