// Package embedded is the default store when no Milvus or Redis is
// configured: one process-local implementation of both store.Vectors and
// store.Online, kept on disk under a directory and surviving restarts.
//
// Persistence: every write batch is appended to one log file as a single
// length-prefixed, CRC-32C-checked entry and fsynced before the call returns
// (see log.go for the format). Open replays the log into memory; a torn or
// corrupt tail is truncated away, so a crash loses at most the batch being
// written and never half a batch. Compaction rewrites the live state to a
// new file and renames it over the log once the log is CompactMinBytes and
// twice the size it had after the last compaction.
//
// Search: collections up to ExactThreshold records, and every filtered
// search, are answered by an exact scan. Larger collections use an HNSW
// graph (hnsw.go), rebuilt from the records on open. Scores are cosine
// similarity; results are sorted by score descending, ties by id ascending.
//
// Why our own HNSW: the brief named github.com/coder/hnsw (pure Go,
// maintained). Measured here on 20,000 clustered 384-dim vectors it reached
// recall@10 of 0.08 to 0.19 (M=16, ef 10 to 300; 0.66 with M=32): its
// search stops at the first non-improving expansion and keeps only k
// results, its neighbour selection has no diversity heuristic and layer 0
// keeps M instead of 2*M links, and its Delete panics on a graph whose top
// layer becomes empty. The module proxy here serves no other pure-Go HNSW,
// so hnsw.go implements the paper's algorithms (about 250 lines) on
// github.com/viterin/vek for SIMD dot products, with recall@10 0.93 at
// ef=64 on the same data.
//
// Filters: a documented subset of Milvus boolean expressions over the
// metadata JSON; see compileFilter.
//
// Online entities live in memory and on the same log; a TTL is stored as an
// absolute expiry, checked on read and dropped by compaction.
//
// Concurrency: safe for concurrent use. One RWMutex guards all in-memory
// state and the log; writes (including their fsync) are serialized, reads
// run in parallel.
package embedded

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/store"
)

var (
	_ store.Vectors = (*Store)(nil)
	_ store.Online  = (*Store)(nil)
)

// Errors specific to this package.
var (
	// ErrClosed reports use after Close.
	ErrClosed = errors.New("embedded: store is closed")
)

// Options configures a Store.
type Options struct {
	// Dir holds the log; created if missing. Required.
	Dir string
	// ExactThreshold is the collection size (records) up to which search is
	// an exact scan. Default 10,000; negative means always use HNSW.
	ExactThreshold int
	// M is the HNSW link count per node (2*M on layer 0). Default 16.
	M int
	// EfConstruction is the HNSW build beam width. Default 100.
	EfConstruction int
	// EfSearch is the HNSW search beam width (at least top_k). Default 64.
	EfSearch int
	// CompactMinBytes is the log size below which it is never compacted.
	// Default 64 MiB; negative disables automatic compaction.
	CompactMinBytes int64
	// NoSync skips fsync after each batch (tests and benchmarks only).
	// Default false.
	NoSync bool
	// Now is the clock for TTLs. Default time.Now.
	Now func() time.Time
}

// DefaultOptions returns the defaults for dir.
func DefaultOptions(dir string) Options {
	return Options{Dir: dir, ExactThreshold: 10_000, M: 16, EfConstruction: 100, EfSearch: 64, CompactMinBytes: 64 << 20, Now: time.Now}
}

type record struct {
	store.Record
	unit []float32 // Vector scaled to unit length (zeros stay zeros)
	slot uint32    // HNSW slot when the collection has a graph
	meta map[string]any
}

type collection struct {
	dims  int
	recs  map[string]*record
	g     *graph   // nil while the collection is small
	slots []string // graph slot -> id
}

type entity struct {
	store.Entity
	expire int64 // unix nanos; 0: never
}

// Store is the embedded vector and online store.
type Store struct {
	opts Options

	// mu guards everything below.
	mu        sync.RWMutex
	colls     map[string]*collection
	ents      map[string]*entity
	log       *os.File
	size      int64 // bytes in the log
	compacted int64 // log size after the last compaction or open
	closed    bool
}

// Open opens or creates the store in opts.Dir and replays its log.
func Open(opts Options) (*Store, error) {
	def := DefaultOptions(opts.Dir)
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: embedded: Options.Dir is empty", store.ErrInvalid)
	}
	if opts.ExactThreshold == 0 {
		opts.ExactThreshold = def.ExactThreshold
	}
	if opts.M <= 0 {
		opts.M = def.M
	}
	if opts.EfConstruction <= 0 {
		opts.EfConstruction = def.EfConstruction
	}
	if opts.EfSearch <= 0 {
		opts.EfSearch = def.EfSearch
	}
	if opts.CompactMinBytes == 0 {
		opts.CompactMinBytes = def.CompactMinBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	s := &Store{opts: opts, colls: map[string]*collection{}, ents: map[string]*entity{}}
	f, size, err := replayLog(filepath.Join(opts.Dir, logName), s.apply)
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", opts.Dir, err)
	}
	s.log, s.size, s.compacted = f, size, size
	for _, c := range s.colls {
		s.maybeIndex(c)
	}
	return s, nil
}

// apply decodes one log payload into memory.
func (s *Store) apply(p []byte) error {
	d := &dec{b: p}
	switch d.byte() {
	case opColl:
		name, dims := d.str(), int(d.uvarint())
		if d.err == nil {
			if _, ok := s.colls[name]; !ok {
				s.colls[name] = &collection{dims: dims, recs: map[string]*record{}}
			}
		}
	case opUpsert:
		c := s.colls[d.str()]
		n := d.uvarint()
		if c == nil {
			return errShort
		}
		recs := make([]store.Record, 0, n)
		for range n {
			r := store.Record{ID: d.str(), Vector: make([]float32, c.dims)}
			for i := range r.Vector {
				r.Vector[i] = d.f32()
			}
			r.Metadata, r.ModelVersion = d.bytes(), d.str()
			r.UpdatedAt = time.Unix(0, d.varint()).UTC()
			recs = append(recs, r)
		}
		if d.err == nil {
			s.upsertMem(c, recs)
		}
	case opDelete:
		c := s.colls[d.str()]
		n := d.uvarint()
		for range n {
			id := d.str()
			if c != nil && d.err == nil {
				s.deleteMem(c, id)
			}
		}
	case opEntSet:
		n := d.uvarint()
		for range n {
			e := &entity{}
			e.ID = d.str()
			emb := d.bytes()
			e.Embedding = make([]int8, len(emb))
			for i, b := range emb {
				e.Embedding[i] = int8(b)
			}
			e.Scale, e.ModelVersion = d.f32(), d.str()
			e.UpdatedAt = time.UnixMilli(d.varint()).UTC()
			e.expire = d.varint()
			nf := d.uvarint()
			if nf > 0 {
				e.Features = make(map[string]float64, nf)
			}
			for range nf {
				k := d.str()
				e.Features[k] = d.f64()
			}
			if d.err == nil {
				s.ents[e.ID] = e
			}
		}
	case opEntDel:
		n := d.uvarint()
		for range n {
			id := d.str()
			if d.err == nil {
				delete(s.ents, id)
			}
		}
	default:
		return errShort
	}
	return d.err
}

func unitOf(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	u := make([]float32, len(v))
	if n == 0 {
		return u
	}
	n = math.Sqrt(n)
	for i, x := range v {
		u[i] = float32(float64(x) / n)
	}
	return u
}

func (s *Store) upsertMem(c *collection, recs []store.Record) {
	for _, r := range recs {
		nr := &record{Record: r, unit: unitOf(r.Vector)}
		if len(r.Metadata) > 0 {
			_ = json.Unmarshal(r.Metadata, &nr.meta) // non-objects never match a filter
		}
		if old := c.recs[r.ID]; old != nil && c.g != nil {
			c.g.kill(old.slot)
		}
		c.recs[r.ID] = nr
		if c.g != nil {
			nr.slot = c.g.add(nr.unit)
			c.slots = append(c.slots, r.ID)
		}
	}
	s.maybeIndex(c)
}

func (s *Store) deleteMem(c *collection, id string) {
	if old := c.recs[id]; old != nil {
		if c.g != nil {
			c.g.kill(old.slot)
		}
		delete(c.recs, id)
	}
}

// maybeIndex builds the graph once a collection outgrows exact search, and
// rebuilds it when tombstones outnumber live nodes.
func (s *Store) maybeIndex(c *collection) {
	switch {
	case len(c.recs) <= s.opts.ExactThreshold && s.opts.ExactThreshold >= 0:
		c.g, c.slots = nil, nil
		return
	case c.g != nil && c.g.ndead <= len(c.recs):
		return
	}
	ids := make([]string, 0, len(c.recs))
	for id := range c.recs {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic build order
	c.g = newGraph(s.opts.M, s.opts.EfConstruction, 42)
	c.slots = ids
	for _, id := range ids {
		r := c.recs[id]
		r.slot = c.g.add(r.unit)
	}
}

// write appends one framed payload and syncs. Callers hold s.mu.
func (s *Store) write(e *enc) error {
	b := e.frame()
	if _, err := s.log.Write(b); err != nil {
		// A partial write is truncated away so the log stays replayable.
		_, serr := s.log.Seek(s.size, io.SeekStart)
		return errors.Join(fmt.Errorf("embedded: append: %w", err), s.log.Truncate(s.size), serr)
	}
	if !s.opts.NoSync {
		if err := s.log.Sync(); err != nil {
			return fmt.Errorf("embedded: fsync: %w", err)
		}
	}
	s.size += int64(len(b))
	return nil
}

// afterWrite compacts when the log has grown enough. Callers hold s.mu.
func (s *Store) afterWrite() error {
	if s.opts.CompactMinBytes < 0 || s.size < s.opts.CompactMinBytes || s.size < 2*s.compacted {
		return nil
	}
	return s.compactLocked()
}

func (s *Store) check(ctx context.Context) error {
	if s.closed {
		return ErrClosed
	}
	return ctx.Err()
}

// EnsureCollection implements store.Vectors.
func (s *Store) EnsureCollection(ctx context.Context, name string, dims int) error {
	if err := store.ValidateID(0, name); err != nil {
		return fmt.Errorf("collection name: %w", err)
	}
	if dims < 1 || dims > store.MaxDims {
		return fmt.Errorf("%w: dims %d out of range [1, %d]", store.ErrInvalid, dims, store.MaxDims)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if c, ok := s.colls[name]; ok {
		if c.dims != dims {
			return fmt.Errorf("%w: collection %q has %d dimensions; asked for %d", store.ErrInvalid, name, c.dims, dims)
		}
		return nil
	}
	e := &enc{}
	e.byte(opColl)
	e.str(name)
	e.uvarint(uint64(dims))
	if err := s.write(e); err != nil {
		return err
	}
	s.colls[name] = &collection{dims: dims, recs: map[string]*record{}}
	return nil
}

func (s *Store) coll(name string) (*collection, error) {
	c, ok := s.colls[name]
	if !ok {
		return nil, fmt.Errorf("%w: collection %q", store.ErrNotFound, name)
	}
	return c, nil
}

// Upsert implements store.Vectors.
func (s *Store) Upsert(ctx context.Context, collection string, recs []store.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	c, err := s.coll(collection)
	if err != nil {
		return err
	}
	if err := store.ValidateRecords(recs, c.dims); err != nil {
		return err
	}
	for i, r := range recs {
		if len(r.Metadata) > 0 && !json.Valid(r.Metadata) {
			return fmt.Errorf("%w: records[%d] (%q) metadata is not valid JSON", store.ErrInvalid, i, r.ID)
		}
	}
	e := &enc{b: make([]byte, 0, len(recs)*(c.dims*4+64))}
	e.byte(opUpsert)
	e.str(collection)
	e.uvarint(uint64(len(recs)))
	own := make([]store.Record, len(recs))
	for i, r := range recs {
		e.str(r.ID)
		e.f32s(r.Vector)
		e.bytes(r.Metadata)
		e.str(r.ModelVersion)
		e.varint(r.UpdatedAt.UnixNano())
		// Copy so the caller may reuse its slices.
		own[i] = store.Record{ID: r.ID, Vector: slices.Clone(r.Vector), Metadata: slices.Clone(r.Metadata), ModelVersion: r.ModelVersion, UpdatedAt: r.UpdatedAt}
	}
	if err := s.write(e); err != nil {
		return err
	}
	s.upsertMem(c, own)
	return s.afterWrite()
}

func validateIDs(ids []string) error {
	if len(ids) > store.MaxBatch {
		return fmt.Errorf("%w: %d ids; limit %d", store.ErrInvalid, len(ids), store.MaxBatch)
	}
	for i, id := range ids {
		if err := store.ValidateID(i, id); err != nil {
			return err
		}
	}
	return nil
}

// Get implements store.Vectors.
func (s *Store) Get(ctx context.Context, collection string, ids []string) ([]store.Record, error) {
	if err := validateIDs(ids); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	c, err := s.coll(collection)
	if err != nil {
		return nil, err
	}
	out := make([]store.Record, 0, len(ids))
	for _, id := range ids {
		if r := c.recs[id]; r != nil {
			out = append(out, store.Record{ID: r.ID, Vector: slices.Clone(r.Vector), Metadata: slices.Clone(r.Metadata), ModelVersion: r.ModelVersion, UpdatedAt: r.UpdatedAt})
		}
	}
	return out, nil
}

// Delete implements store.Vectors.
func (s *Store) Delete(ctx context.Context, collection string, ids []string) error {
	if err := validateIDs(ids); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	c, err := s.coll(collection)
	if err != nil {
		return err
	}
	e := &enc{}
	e.byte(opDelete)
	e.str(collection)
	e.uvarint(uint64(len(ids)))
	for _, id := range ids {
		e.str(id)
	}
	if err := s.write(e); err != nil {
		return err
	}
	for _, id := range ids {
		s.deleteMem(c, id)
	}
	s.maybeIndex(c)
	return s.afterWrite()
}

// Search implements store.Vectors.
func (s *Store) Search(ctx context.Context, req store.SearchRequest) ([]store.Hit, error) {
	var f filter
	if req.Filter != "" {
		var err error
		if f, err = compileFilter(req.Filter); err != nil {
			return nil, err
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	c, err := s.coll(req.Collection)
	if err != nil {
		return nil, err
	}
	if err := store.ValidateSearch(req, c.dims); err != nil {
		return nil, err
	}
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
	return hits, nil
}

// Close implements store.Vectors and store.Online.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.log.Close()
}
