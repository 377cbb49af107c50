package milvus

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"

	"github.com/embedd/embedd/internal/store"
)

// Records: Upsert, Search, Get, Delete and Scan on a collection's live
// version or on a named one.

// Upsert writes recs into the live version of collection.
func (s *Store) Upsert(ctx context.Context, collection string, recs []store.Record) error {
	p, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	return s.upsert(ctx, p, recs)
}

// UpsertVersion writes recs into logical's version, live or not; it is how a
// new version is filled before SwapAlias.
func (s *Store) UpsertVersion(ctx context.Context, logical, version string, recs []store.Record) error {
	p, err := s.version(ctx, logical, version)
	if err != nil {
		return err
	}
	return s.upsert(ctx, p, recs)
}

func (s *Store) upsert(ctx context.Context, p physical, recs []store.Record) error {
	if err := store.CheckRecords(recs, p.dims); err != nil {
		return err
	}
	n := len(recs)
	ids, vecs, metas := make([]string, n), make([][]float32, n), make([][]byte, n)
	versions, hashes, updated := make([]string, n), make([]string, n), make([]int64, n)
	now := time.Now()
	for i, rec := range recs {
		if len(rec.ModelVersion) > maxModelVersion {
			return fmt.Errorf("%w: records[%d] (%q) model version is %d bytes; limit %d", store.ErrInvalid, i, rec.ID, len(rec.ModelVersion), maxModelVersion)
		}
		if len(rec.TextHash) > maxTextHash {
			return fmt.Errorf("%w: records[%d] (%q) text hash is %d bytes; limit %d", store.ErrInvalid, i, rec.ID, len(rec.TextHash), maxTextHash)
		}
		ids[i], vecs[i], metas[i], versions[i], hashes[i] = rec.ID, rec.Vector, rec.Metadata, rec.ModelVersion, rec.TextHash
		if len(metas[i]) == 0 {
			metas[i] = []byte("{}")
		}
		updated[i] = cmpTime(rec.UpdatedAt, now).UnixMilli()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cols := []entity.Column{
		entity.NewColumnVarChar(fieldID, ids),
		entity.NewColumnFloatVector(fieldVector, p.dims, vecs),
		entity.NewColumnJSONBytes(fieldMetadata, metas),
		entity.NewColumnVarChar(fieldModelVersion, versions),
		entity.NewColumnInt64(fieldUpdatedAt, updated),
	}
	if p.textHash {
		cols = append(cols, entity.NewColumnVarChar(fieldTextHash, hashes))
	}
	if _, err := s.c.Upsert(ctx, p.name, "", cols...); err != nil {
		return s.mapErr(ctx, fmt.Sprintf("upsert %d records into %s", len(recs), p.name), err)
	}
	return nil
}

func cmpTime(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

// Flush seals the live version's buffered writes into segments and waits
// until its vector index covers every row, so that searches use the index
// instead of scanning growing segments. Reads do not need it (consistency
// covers them); bulk loads and benchmarks call it once at the end.
func (s *Store) Flush(ctx context.Context, collection string) error {
	p, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	if err := s.c.Flush(ctx, p.name, false); err != nil {
		return s.mapErr(ctx, "flush "+p.name, err)
	}
	for {
		total, indexed, err := s.c.GetIndexBuildProgress(ctx, p.name, fieldVector)
		if err != nil {
			return s.mapErr(ctx, "index progress of "+p.name, err)
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
	p, err := s.resolve(ctx, req.Collection, false)
	if err != nil {
		return nil, err
	}
	return s.search(ctx, p, req)
}

// SearchVersion implements store.VersionReader.
func (s *Store) SearchVersion(ctx context.Context, logical, version string, req store.SearchRequest) ([]store.Hit, error) {
	p, err := s.version(ctx, logical, version)
	if err != nil {
		return nil, err
	}
	return s.search(ctx, p, req)
}

func (s *Store) search(ctx context.Context, p physical, req store.SearchRequest) ([]store.Hit, error) {
	if err := store.CheckSearch(req, p.dims); err != nil {
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
	res, err := s.c.Search(ctx, p.name, nil, req.Filter, []string{fieldMetadata},
		[]entity.Vector{entity.FloatVector(req.Vector)}, fieldVector, s.metric(), fetch, sp,
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		if req.Filter != "" && isBadExpr(err) {
			return nil, fmt.Errorf("%w: filter %q: %v", store.ErrInvalid, req.Filter, err)
		}
		return nil, s.mapErr(ctx, "search "+p.name, err)
	}
	if len(res) == 0 {
		return []store.Hit{}, nil
	}
	sr := res[0]
	if sr.Err != nil {
		return nil, s.mapErr(ctx, "search "+p.name, sr.Err)
	}
	idc, ok := sr.IDs.(*entity.ColumnVarChar)
	if !ok {
		return nil, fmt.Errorf("milvus: search %s: id column is %T", p.name, sr.IDs)
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
	p, err := s.resolve(ctx, collection, false)
	if err != nil {
		return nil, err
	}
	return s.get(ctx, p, ids)
}

// GetVersion implements store.Versioned.
func (s *Store) GetVersion(ctx context.Context, logical, version string, ids []string) ([]store.Record, error) {
	p, err := s.version(ctx, logical, version)
	if err != nil {
		return nil, err
	}
	return s.get(ctx, p, ids)
}

func (s *Store) get(ctx context.Context, p physical, ids []string) ([]store.Record, error) {
	if err := validateIDs(ids); err != nil {
		return nil, err
	}
	rs, err := s.c.QueryByPks(ctx, p.name, nil, entity.NewColumnVarChar(fieldID, ids), p.fields(true),
		client.WithSearchQueryConsistencyLevel(s.cl))
	if err != nil {
		return nil, s.mapErr(ctx, "get from "+p.name, err)
	}
	recs, err := p.records(rs, true)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.Record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	out := make([]store.Record, 0, len(byID))
	for _, id := range ids {
		if rec, ok := byID[id]; ok {
			out = append(out, rec)
		}
	}
	return out, nil
}

// fields are the output fields of a read of p.
func (p physical) fields(vector bool) []string {
	f := []string{fieldID, fieldMetadata, fieldModelVersion, fieldUpdatedAt}
	if vector {
		f = append(f, fieldVector)
	}
	if p.textHash {
		f = append(f, fieldTextHash)
	}
	return f
}

// records decodes a query result of p.fields(vector).
func (p physical) records(rs client.ResultSet, vector bool) ([]store.Record, error) {
	idc, _ := rs.GetColumn(fieldID).(*entity.ColumnVarChar)
	if idc == nil || idc.Len() == 0 {
		return []store.Record{}, nil
	}
	mc, _ := rs.GetColumn(fieldMetadata).(*entity.ColumnJSONBytes)
	mv, _ := rs.GetColumn(fieldModelVersion).(*entity.ColumnVarChar)
	ut, _ := rs.GetColumn(fieldUpdatedAt).(*entity.ColumnInt64)
	vc, _ := rs.GetColumn(fieldVector).(*entity.ColumnFloatVector)
	th, _ := rs.GetColumn(fieldTextHash).(*entity.ColumnVarChar)
	n := idc.Len()
	if mc.Len() != n || mv.Len() != n || ut.Len() != n || vector && vc.Len() != n || p.textHash && th.Len() != n {
		return nil, fmt.Errorf("milvus: read from %s: result lacks a field", p.name)
	}
	out := make([]store.Record, n)
	for i, id := range idc.Data() {
		meta := mc.Data()[i]
		if string(meta) == "{}" {
			meta = nil
		}
		out[i] = store.Record{ID: id, Metadata: meta, ModelVersion: mv.Data()[i], UpdatedAt: time.UnixMilli(ut.Data()[i])}
		if vector {
			out[i].Vector = vc.Data()[i]
		}
		if p.textHash {
			out[i].TextHash = th.Data()[i]
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
	p, err := s.resolve(ctx, collection, false)
	if err != nil {
		return err
	}
	return s.delete(ctx, p, ids)
}

// DeleteVersion implements store.Versioned.
func (s *Store) DeleteVersion(ctx context.Context, logical, version string, ids []string) error {
	p, err := s.version(ctx, logical, version)
	if err != nil {
		return err
	}
	return s.delete(ctx, p, ids)
}

func (s *Store) delete(ctx context.Context, p physical, ids []string) error {
	if err := validateIDs(ids); err != nil {
		return err
	}
	if err := s.c.DeleteByPks(ctx, p.name, "", entity.NewColumnVarChar(fieldID, ids)); err != nil {
		return s.mapErr(ctx, "delete from "+p.name, err)
	}
	return nil
}

// scanPage is the number of records one ScanVersion query reads.
const scanPage = 1000

// ScanVersion implements store.Versioned: it pages through the version by
// primary key (see the package doc), scanPage records a query, at the
// store's read consistency.
func (s *Store) ScanVersion(ctx context.Context, logical, version string, fn func(store.Record) error) error {
	p, err := s.version(ctx, logical, version)
	if err != nil {
		return err
	}
	last := ""
	for {
		rs, err := s.c.Query(ctx, p.name, nil, fieldID+" > "+strconv.Quote(last), p.fields(false),
			client.WithLimit(scanPage), client.WithSearchQueryConsistencyLevel(s.cl))
		if err != nil {
			return s.mapErr(ctx, "scan "+p.name, err)
		}
		recs, err := p.records(rs, false)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.ID <= last {
				return fmt.Errorf("milvus: scan %s: id %q after %q: the page is not in primary-key order", p.name, r.ID, last)
			}
			last = r.ID
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(recs) < scanPage {
			return nil
		}
	}
}
