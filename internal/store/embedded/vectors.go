package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/embedd/embedd/internal/store"
)

// update runs one logged write under the write lock on an open store:
// prepare checks the call against the current state and returns its log
// entry and its change to memory (a nil entry: nothing to write); the
// entry is appended (and fsynced, unless NoSync) before the change is
// applied, and the log is compacted when it has grown enough. An error
// from prepare or the append leaves the log and memory as they were.
func (s *Store) update(ctx context.Context, prepare func() (*enc, func(), error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	e, change, err := prepare()
	if err != nil || e == nil {
		return err
	}
	if err := s.write(e); err != nil {
		return err
	}
	change()
	return s.afterWrite()
}

// write appends one framed payload and syncs. Callers hold s.mu.
func (s *Store) write(e *enc) error {
	if len(e.b) > maxEntry {
		// The replay would drop it, and every entry after it.
		return fmt.Errorf("%w: embedded: a batch of %d bytes; the log's entry limit is %d", store.ErrInvalid, len(e.b), maxEntry)
	}
	b := e.frame()
	if _, err := s.log.Write(b); err != nil {
		// A partial write is truncated away so the log stays replayable.
		_, serr := s.log.Seek(s.pos.off, io.SeekStart)
		return errors.Join(fmt.Errorf("embedded: append: %w", err), s.log.Truncate(s.pos.off), serr)
	}
	if !s.opts.NoSync {
		if err := s.log.Sync(); err != nil {
			return fmt.Errorf("embedded: fsync: %w", err)
		}
	}
	s.pos.add(b[:entryHead], len(e.b))
	return nil
}

// afterWrite compacts when the log has grown enough. Callers hold s.mu.
func (s *Store) afterWrite() error {
	if s.opts.CompactMinBytes < 0 || s.pos.off < s.opts.CompactMinBytes || s.pos.off < 2*s.compacted {
		return nil
	}
	return s.compactLocked()
}

// EnsureCollection implements store.Vectors: without an alias, name gets
// version DefaultVersion (created unbound unless it exists) and the alias.
func (s *Store) EnsureCollection(ctx context.Context, name string, dims int) error {
	if err := checkCollName(name, dims); err != nil {
		return err
	}
	return s.update(ctx, func() (*enc, func(), error) {
		if c, err := s.coll(name); err == nil {
			if c.dims != dims {
				return nil, nil, fmt.Errorf("%w: collection %q has %d dimensions; asked for %d", store.ErrInvalid, name, c.dims, dims)
			}
			return nil, nil, nil
		}
		v := store.DefaultVersion
		if c := s.colls[versionKey(name, v)]; c != nil {
			if err := c.matches(name, v, dims, "", false); err != nil {
				return nil, nil, err
			}
			return encodeAliasOp(opAlias, name, v), func() { s.alias[name] = v }, nil
		}
		c := &collection{logical: name, version: v, dims: dims, created: s.opts.Now().UTC()}
		return encodeVersion(c, true), func() { s.addColl(c); s.alias[name] = v }, nil
	})
}

// checkCollName checks a logical name and dims: a name is a record id
// (store.CheckID) without NUL, which separates it from the version in a
// version's key.
func checkCollName(name string, dims int) error {
	if err := store.CheckID(name); err != nil {
		return fmt.Errorf("%w: collection name %w", store.ErrInvalid, err)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: collection name %q holds a NUL byte", store.ErrInvalid, name)
	}
	if dims < 1 || dims > store.MaxDims {
		return fmt.Errorf("%w: dims %d out of range [1, %d]", store.ErrInvalid, dims, store.MaxDims)
	}
	return nil
}

// coll returns the live version of logical name. Callers hold s.mu.
func (s *Store) coll(name string) (*collection, error) {
	v, ok := s.alias[name]
	if !ok {
		return nil, fmt.Errorf("%w: collection %q", store.ErrNotFound, name)
	}
	return s.colls[versionKey(name, v)], nil
}

// Upsert implements store.Vectors.
func (s *Store) Upsert(ctx context.Context, name string, recs []store.Record) error {
	return s.upsert(ctx, func() (*collection, error) { return s.coll(name) }, recs)
}

// upsert writes recs into the collection that find returns under the lock.
func (s *Store) upsert(ctx context.Context, find func() (*collection, error), recs []store.Record) error {
	return s.update(ctx, func() (*enc, func(), error) {
		c, err := find()
		if err != nil {
			return nil, nil, err
		}
		if err := store.CheckRecords(recs, c.dims); err != nil {
			return nil, nil, err
		}
		// Copy so the caller may reuse its slices.
		own := make([]store.Record, len(recs))
		for i, r := range recs {
			own[i] = cloneRecord(r, true)
		}
		return encodeUpsert(versionKey(c.logical, c.version), c.dims, own), func() {
			s.upsertMem(c, own)
			if s.kick != nil && s.snapshotDue(c) {
				select {
				case s.kick <- struct{}{}:
				default: // already woken
				}
			}
		}, nil
	})
}

// cloneRecord copies r, with its vector when vector is set.
func cloneRecord(r store.Record, vector bool) store.Record {
	out := store.Record{ID: r.ID, Metadata: slices.Clone(r.Metadata), ModelVersion: r.ModelVersion, TextHash: r.TextHash, UpdatedAt: r.UpdatedAt}
	if vector {
		out.Vector = slices.Clone(r.Vector)
	}
	return out
}

// view runs read under the read lock on an open store; reads run in
// parallel with each other, never with a write.
func (s *Store) view(ctx context.Context, read func() error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	return read()
}

// Get implements store.Vectors.
func (s *Store) Get(ctx context.Context, name string, ids []string) ([]store.Record, error) {
	return s.get(ctx, func() (*collection, error) { return s.coll(name) }, ids)
}

func (s *Store) get(ctx context.Context, find func() (*collection, error), ids []string) ([]store.Record, error) {
	if err := store.CheckIDs(ids); err != nil {
		return nil, err
	}
	var out []store.Record
	err := s.view(ctx, func() error {
		c, err := find()
		if err != nil {
			return err
		}
		out = make([]store.Record, 0, len(ids))
		for _, id := range ids {
			if r := c.recs[id]; r != nil {
				out = append(out, cloneRecord(r.Record, true))
			}
		}
		return nil
	})
	return out, err
}

// Delete implements store.Vectors.
func (s *Store) Delete(ctx context.Context, name string, ids []string) error {
	return s.delete(ctx, func() (*collection, error) { return s.coll(name) }, ids)
}

func (s *Store) delete(ctx context.Context, find func() (*collection, error), ids []string) error {
	if err := store.CheckIDs(ids); err != nil {
		return err
	}
	return s.update(ctx, func() (*enc, func(), error) {
		c, err := find()
		if err != nil {
			return nil, nil, err
		}
		key := versionKey(c.logical, c.version)
		return encodeDelete(&key, ids), func() {
			for _, id := range ids {
				s.deleteMem(c, id)
			}
			s.maybeIndex(c)
		}, nil
	})
}

// Search implements store.Vectors.
func (s *Store) Search(ctx context.Context, req store.SearchRequest) ([]store.Hit, error) {
	return s.searchIn(ctx, func() (*collection, error) { return s.coll(req.Collection) }, req)
}

func (s *Store) searchIn(ctx context.Context, find func() (*collection, error), req store.SearchRequest) ([]store.Hit, error) {
	var f filter
	if req.Filter != "" {
		var err error
		if f, err = compileFilter(req.Filter); err != nil {
			return nil, err
		}
	}
	var hits []store.Hit
	err := s.view(ctx, func() error {
		c, err := find()
		if err != nil {
			return err
		}
		if err := store.CheckSearch(req, c.dims); err != nil {
			return err
		}
		hits = s.search(c, req, f)
		return nil
	})
	return hits, err
}

// search answers a checked req on c, with f the compiled filter (nil for
// none): by the graph when c has one and there is no filter, else by an
// exact scan. Callers hold s.mu.
func (s *Store) search(c *collection, req store.SearchRequest, f filter) []store.Hit {
	q := unitOf(req.Vector)
	var hits []store.Hit
	var recs []*record
	if c.g != nil && f == nil {
		for _, cd := range c.g.search(q, req.TopK, s.opts.EfSearch) {
			r := c.recs[c.slots[cd.slot]]
			hits = append(hits, store.Hit{ID: r.ID, Score: dot(q, r.unit)})
			recs = append(recs, r)
		}
	} else {
		for _, r := range c.recs {
			if f != nil && !f(r.meta) {
				continue
			}
			hits = append(hits, store.Hit{ID: r.ID, Score: dot(q, r.unit)})
			recs = append(recs, r)
		}
	}
	byID := make(map[string]*record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	slices.SortFunc(hits, func(a, b store.Hit) int {
		if a.Score != b.Score {
			return cmp.Compare(b.Score, a.Score)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	hits = hits[:min(len(hits), req.TopK)]
	for i := range hits {
		hits[i].Metadata = slices.Clone(byID[hits[i].ID].Metadata)
	}
	return hits
}
