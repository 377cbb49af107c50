// Package store defines where embeddings and entity features are kept: a
// vector store (similarity search; Milvus or the embedded store) and an
// online store (low-latency per-entity hashes; Redis or the embedded store).
// Implementations live in subpackages and all pass the conformance suite in
// internal/store/storetest, so the server behaves the same on every backend.
//
// Invariants every implementation keeps:
//   - Upserts are idempotent by id: writing the same record twice leaves one
//     record, the last one.
//   - A batch is checked as a whole before anything is written; a rejected
//     batch writes nothing and the error names the first bad element, its
//     index and the reason.
//   - Search results are ordered by Score descending, ties by ID ascending.
//
// Validation: requests are validated by the package that owns their flow
// (internal/index for upsert, search, get and delete: item counts, text or
// vector, features, filters, with every bad item listed). Stores trust that
// validation: they enforce no request limits (no item counts; those are the
// flow owner's Limits) and report only the first bad element. What a store
// checks, once per call (CheckRecords, CheckSearch, CheckIDs, CheckEntities,
// CheckEntityIDs), is the data model its backend imposes and every backend
// shares so that all reject the same input the same way: ids are 1 to
// MaxIDBytes bytes of UTF-8 (Milvus's VarChar(256) primary key, which is
// also a protobuf string) and not repeated within an upsert (Milvus does
// not deduplicate primary keys within one request); vectors have the
// collection's dims of finite values (cosine and the ANN graphs are
// undefined on NaN and ±Inf); metadata is a JSON object of at most
// MaxMetaBytes (Milvus's JSON field). The rule functions (CheckID,
// CheckFinite, CheckMetadata, CheckTopK) are the one definition of each
// rule: the index applies them to name the bad item of a request, the stores
// through the batch checks, so a direct caller (a tool, a benchmark, a WAL
// entry) cannot corrupt a backend. Backend-only limits stay in the backend
// (Milvus's model-version length, the embedded log's entry size, Redis's
// millisecond TTLs).
//
// Concurrency: implementations are safe for concurrent use.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Errors shared by all implementations; wrap them with the item and reason.
var (
	// ErrInvalid reports a bad argument (id, vector, filter, top_k).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrNotFound reports an unknown collection or id where one is required.
	ErrNotFound = errors.New("store: not found")
	// ErrUnavailable reports a backend that cannot be reached; the message
	// names the backend.
	ErrUnavailable = errors.New("store: unavailable")
)

// The data model's bounds (see the package doc); request limits are the
// flow owner's (index.Limits).
const (
	// MaxIDBytes bounds a record id: Milvus's VarChar primary key length.
	MaxIDBytes = 256
	// MaxEntityIDBytes bounds online-store ids, which may carry a
	// namespace in front of a record id ("<collection>/<id>").
	MaxEntityIDBytes = 512
	// MaxDims bounds a collection's vector dimensions.
	MaxDims = 8192
	// MaxTopK bounds the hits of one search.
	MaxTopK = 1024
	// MaxMetaBytes bounds a record's metadata: Milvus's JSON field limit.
	MaxMetaBytes = 64 << 10
)

// Record is one embedded item in a vector collection.
type Record struct {
	ID     string
	Vector []float32
	// Metadata is a JSON object (may be empty).
	Metadata []byte
	// ModelVersion names the model that produced Vector.
	ModelVersion string
	// TextHash identifies the text Vector was computed from (hex of a
	// cryptographic hash; "" for a vector supplied by the client). An
	// incremental re-embedding skips a record whose source text has the
	// same hash. Versions created before the field existed store none.
	TextHash  string
	UpdatedAt time.Time
}

// Hit is one search result.
type Hit struct {
	ID       string
	Score    float32
	Metadata []byte
}

// SearchRequest asks for the TopK nearest records to Vector.
type SearchRequest struct {
	Collection string
	Vector     []float32
	TopK       int
	// Filter is a boolean expression over metadata in Milvus syntax; the
	// embedded store supports a documented subset.
	Filter string
}

// Vectors is a vector store. Collection names are logical names; an
// implementation may map them to physical collections per model version
// and swap an alias atomically (SwapAlias).
type Vectors interface {
	// EnsureCollection creates the collection for dims if it does not exist;
	// an existing one with other dims is an error.
	EnsureCollection(ctx context.Context, name string, dims int) error
	Upsert(ctx context.Context, collection string, recs []Record) error
	Search(ctx context.Context, req SearchRequest) ([]Hit, error)
	// Get returns the records that exist, in the order of ids; missing ids
	// are skipped.
	Get(ctx context.Context, collection string, ids []string) ([]Record, error)
	Delete(ctx context.Context, collection string, ids []string) error
	Close() error
}

// Entity is one entity's online row: an int8 embedding with its scale and
// numeric features.
type Entity struct {
	ID           string
	Embedding    []int8
	Scale        float32
	ModelVersion string
	UpdatedAt    time.Time
	Features     map[string]float64
}

// Online is the low-latency per-entity store.
type Online interface {
	// SetEntities writes the entities (pipelined), each with ttl (0: none).
	SetEntities(ctx context.Context, ents []Entity, ttl time.Duration) error
	// GetEntities reads ids (pipelined); the result has one element per id,
	// nil where the entity does not exist.
	GetEntities(ctx context.Context, ids []string) ([]*Entity, error)
	DeleteEntities(ctx context.Context, ids []string) error
	Close() error
}

// IDError is why an id breaks the data model: empty, longer than Limit
// bytes, or not valid UTF-8. CheckID and CheckEntityID return it; callers
// wrap it with the id's place ("ids[3] is empty").
type IDError struct {
	// Bytes is the id's length and Limit the most it may have.
	Bytes, Limit int
	// BadUTF8 is set when the length is in range but the bytes are not
	// valid UTF-8.
	BadUTF8 bool
}

func (e *IDError) Error() string {
	switch {
	case e.Bytes == 0:
		return "is empty"
	case e.Bytes > e.Limit:
		return fmt.Sprintf("is %d bytes; limit %d", e.Bytes, e.Limit)
	}
	return "is not valid UTF-8"
}

// CheckID checks a record id: 1 to MaxIDBytes bytes of valid UTF-8. It
// returns nil or an *IDError.
func CheckID(id string) error { return checkKey(id, MaxIDBytes) }

// CheckEntityID checks an online-store id: like CheckID with the
// MaxEntityIDBytes limit.
func CheckEntityID(id string) error { return checkKey(id, MaxEntityIDBytes) }

func checkKey(id string, limit int) error {
	if id == "" || len(id) > limit {
		return &IDError{Bytes: len(id), Limit: limit}
	}
	if !utf8.ValidString(id) {
		return &IDError{Bytes: len(id), Limit: limit, BadUTF8: true}
	}
	return nil
}

// CheckFinite checks that every value of v is finite; the error says which
// is not ("value 3 is NaN").
func CheckFinite(v []float32) error {
	for k, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return fmt.Errorf("value %d is %v", k, f)
		}
	}
	return nil
}

// CheckMetadata checks record metadata: empty, or a JSON object of at most
// MaxMetaBytes. It scans the bytes and decodes nothing.
func CheckMetadata(m []byte) error {
	if len(m) == 0 {
		return nil
	}
	if len(m) > MaxMetaBytes {
		return fmt.Errorf("metadata is %d bytes; limit %d", len(m), MaxMetaBytes)
	}
	// A valid JSON text is one value; one whose first byte is '{' is an
	// object.
	if t := bytes.TrimLeft(m, " \t\r\n"); len(t) == 0 || t[0] != '{' || !json.Valid(m) {
		return errors.New("metadata is not a JSON object")
	}
	return nil
}

// CheckTopK checks the number of hits a search asks for: 1 to MaxTopK.
func CheckTopK(k int) error {
	if k < 1 || k > MaxTopK {
		return fmt.Errorf("top_k %d out of range [1, %d]", k, MaxTopK)
	}
	return nil
}

// CheckRecords checks an upsert batch before any write: at least one
// record, ids (CheckID) not repeated, vectors of dims finite values,
// metadata (CheckMetadata). The error names the first bad record and
// matches ErrInvalid.
func CheckRecords(recs []Record, dims int) error {
	if len(recs) == 0 {
		return fmt.Errorf("%w: no records", ErrInvalid)
	}
	seen := make(map[string]int, len(recs))
	for i, r := range recs {
		if err := CheckID(r.ID); err != nil {
			return fmt.Errorf("%w: ids[%d] %w", ErrInvalid, i, err)
		}
		if j, dup := seen[r.ID]; dup {
			return fmt.Errorf("%w: ids[%d] repeats ids[%d] (%q)", ErrInvalid, i, j, r.ID)
		}
		seen[r.ID] = i
		if len(r.Vector) != dims {
			return fmt.Errorf("%w: records[%d] (%q) has %d dimensions; collection has %d", ErrInvalid, i, r.ID, len(r.Vector), dims)
		}
		if err := CheckFinite(r.Vector); err != nil {
			return fmt.Errorf("%w: records[%d] (%q) %w", ErrInvalid, i, r.ID, err)
		}
		if err := CheckMetadata(r.Metadata); err != nil {
			return fmt.Errorf("%w: records[%d] (%q) %w", ErrInvalid, i, r.ID, err)
		}
	}
	return nil
}

// CheckSearch checks a search request against the collection's dims: top_k
// (CheckTopK) and a query of dims finite values.
func CheckSearch(req SearchRequest, dims int) error {
	if err := CheckTopK(req.TopK); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(req.Vector) != dims {
		return fmt.Errorf("%w: query has %d dimensions; collection has %d", ErrInvalid, len(req.Vector), dims)
	}
	if err := CheckFinite(req.Vector); err != nil {
		return fmt.Errorf("%w: query %w", ErrInvalid, err)
	}
	return nil
}

// CheckIDs checks the record ids of a Get or Delete (CheckID).
func CheckIDs(ids []string) error { return checkKeys(ids, CheckID) }

// CheckEntityIDs checks the ids of a GetEntities or DeleteEntities
// (CheckEntityID).
func CheckEntityIDs(ids []string) error { return checkKeys(ids, CheckEntityID) }

// CheckEntities checks a SetEntities call before any write: a ttl that is
// not negative and entity ids (CheckEntityID).
func CheckEntities(ents []Entity, ttl time.Duration) error {
	if ttl < 0 {
		return fmt.Errorf("%w: ttl %v is negative", ErrInvalid, ttl)
	}
	for i, e := range ents {
		if err := CheckEntityID(e.ID); err != nil {
			return fmt.Errorf("%w: ids[%d] %w", ErrInvalid, i, err)
		}
	}
	return nil
}

func checkKeys(ids []string, check func(string) error) error {
	for i, id := range ids {
		if err := check(id); err != nil {
			return fmt.Errorf("%w: ids[%d] %w", ErrInvalid, i, err)
		}
	}
	return nil
}
