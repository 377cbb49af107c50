// Package store defines where embeddings and entity features are kept: a
// vector store (similarity search; Milvus or the embedded store) and an
// online store (low-latency per-entity hashes; Redis or the embedded store).
// Implementations live in subpackages and all pass the conformance suite in
// internal/store/storetest, so the server behaves the same on every backend.
//
// Invariants every implementation keeps:
//   - Upserts are idempotent by id: writing the same record twice leaves one
//     record, the last one.
//   - A batch is validated as a whole before anything is written (ids, vector
//     dimensions, finite values); an invalid batch writes nothing and the
//     error names the index and the reason.
//   - Search results are ordered by Score descending, ties by ID ascending.
//
// Concurrency: implementations are safe for concurrent use.
package store

import (
	"context"
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

// Limits checked by Validate.
const (
	MaxIDBytes = 256
	// MaxEntityIDBytes bounds online-store ids, which may carry a
	// namespace in front of a record id ("<collection>/<id>").
	MaxEntityIDBytes = 512
	MaxDims          = 8192
	MaxTopK          = 1024
	MaxBatch         = 4096
	MaxMetaBytes     = 64 << 10
)

// Record is one embedded item in a vector collection.
type Record struct {
	ID     string
	Vector []float32
	// Metadata is a JSON object (may be empty).
	Metadata []byte
	// ModelVersion names the model that produced Vector.
	ModelVersion string
	UpdatedAt    time.Time
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

// ValidateID checks a record id: non-empty, valid UTF-8, at most
// MaxIDBytes.
func ValidateID(i int, id string) error { return validateKey(i, id, MaxIDBytes) }

// ValidateEntityID checks an online-store id: like ValidateID with the
// MaxEntityIDBytes limit.
func ValidateEntityID(i int, id string) error { return validateKey(i, id, MaxEntityIDBytes) }

// ValidateIDs checks a list of record ids: at most MaxBatch, each valid.
func ValidateIDs(ids []string) error { return validateKeys(ids, MaxIDBytes) }

// ValidateEntityIDs checks a list of online-store ids: at most MaxBatch,
// each valid under MaxEntityIDBytes.
func ValidateEntityIDs(ids []string) error { return validateKeys(ids, MaxEntityIDBytes) }

func validateKeys(ids []string, limit int) error {
	if len(ids) > MaxBatch {
		return fmt.Errorf("%w: %d ids; limit %d", ErrInvalid, len(ids), MaxBatch)
	}
	for i, id := range ids {
		if err := validateKey(i, id, limit); err != nil {
			return err
		}
	}
	return nil
}

func validateKey(i int, id string, limit int) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: ids[%d] is empty", ErrInvalid, i)
	case len(id) > limit:
		return fmt.Errorf("%w: ids[%d] is %d bytes; limit %d", ErrInvalid, i, len(id), limit)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: ids[%d] is not valid UTF-8", ErrInvalid, i)
	}
	return nil
}

// ValidateRecords checks a batch before any write: ids, duplicate ids,
// dimensions, finite values and metadata size.
func ValidateRecords(recs []Record, dims int) error {
	if len(recs) == 0 {
		return fmt.Errorf("%w: no records", ErrInvalid)
	}
	if len(recs) > MaxBatch {
		return fmt.Errorf("%w: %d records; limit %d", ErrInvalid, len(recs), MaxBatch)
	}
	seen := make(map[string]int, len(recs))
	for i, r := range recs {
		if err := ValidateID(i, r.ID); err != nil {
			return err
		}
		if j, dup := seen[r.ID]; dup {
			return fmt.Errorf("%w: ids[%d] repeats ids[%d] (%q)", ErrInvalid, i, j, r.ID)
		}
		seen[r.ID] = i
		if len(r.Vector) != dims {
			return fmt.Errorf("%w: records[%d] (%q) has %d dimensions; collection has %d", ErrInvalid, i, r.ID, len(r.Vector), dims)
		}
		for k, v := range r.Vector {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%w: records[%d] (%q) value %d is %v", ErrInvalid, i, r.ID, k, v)
			}
		}
		if len(r.Metadata) > MaxMetaBytes {
			return fmt.Errorf("%w: records[%d] (%q) metadata is %d bytes; limit %d", ErrInvalid, i, r.ID, len(r.Metadata), MaxMetaBytes)
		}
	}
	return nil
}

// ValidateSearch checks a search request against the collection's dims.
func ValidateSearch(req SearchRequest, dims int) error {
	if req.TopK < 1 || req.TopK > MaxTopK {
		return fmt.Errorf("%w: top_k %d out of range [1, %d]", ErrInvalid, req.TopK, MaxTopK)
	}
	if len(req.Vector) != dims {
		return fmt.Errorf("%w: query has %d dimensions; collection has %d", ErrInvalid, len(req.Vector), dims)
	}
	for k, v := range req.Vector {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: query value %d is %v", ErrInvalid, k, v)
		}
	}
	return nil
}

// ValidateEntities checks a SetEntities batch before any write: size, ids,
// duplicate ids, finite scale and features, non-empty feature names.
func ValidateEntities(ents []Entity) error {
	if len(ents) > MaxBatch {
		return fmt.Errorf("%w: %d entities; limit %d", ErrInvalid, len(ents), MaxBatch)
	}
	seen := make(map[string]int, len(ents))
	for i, e := range ents {
		if err := ValidateEntityID(i, e.ID); err != nil {
			return err
		}
		if j, dup := seen[e.ID]; dup {
			return fmt.Errorf("%w: ids[%d] repeats ids[%d] (%q)", ErrInvalid, i, j, e.ID)
		}
		seen[e.ID] = i
		if math.IsNaN(float64(e.Scale)) || math.IsInf(float64(e.Scale), 0) {
			return fmt.Errorf("%w: entities[%d] (%q) scale is %v", ErrInvalid, i, e.ID, e.Scale)
		}
		for k, v := range e.Features {
			if k == "" {
				return fmt.Errorf("%w: entities[%d] (%q) has an empty feature name", ErrInvalid, i, e.ID)
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("%w: entities[%d] (%q) feature %q is %v", ErrInvalid, i, e.ID, k, v)
			}
		}
	}
	return nil
}
