package store

import (
	"context"
	"fmt"
	"time"
)

// Collection versions: a logical collection ("docs") is served by one of
// its versions at a time, the one its alias points at (the live version).
// A re-embedding job (internal/reembed) fills a new version beside the live
// one and then swaps the alias, which a reader sees atomically: every
// Search, Get or Delete on the logical name goes to either the old or the
// new version, never a mix.
//
// Invariants every Versioned implementation keeps:
//   - A version is bound to exactly one model version when it is created
//     (VersionInfo.ModelVersion); records written to it carry that model
//     version, and callers (internal/index) refuse to write another.
//   - The live version cannot be dropped; a missing version dropped is not
//     an error (gc is idempotent).
//   - SwapAlias to a version that does not exist is ErrNotFound and leaves
//     the alias as it was; swapping to the live version is a no-op.
//   - The alias and the versions survive a restart of the process (and, for
//     a server backend, of the server).
//   - EnsureCollection on a logical name without an alias creates
//     DefaultVersion and points the alias at it, as before versions existed.

// DefaultVersion is the version EnsureCollection creates for a logical
// collection that has none (collections created before versions existed
// have it too).
const DefaultVersion = "v1"

// MaxVersionBytes bounds a version name; versions are [A-Za-z0-9_.-]+.
const MaxVersionBytes = 64

// VersionInfo describes one version of a logical collection.
type VersionInfo struct {
	// Version names it within its logical collection.
	Version string
	// Dims is its vectors' dimensions.
	Dims int
	// ModelVersion is the model version it is bound to ("" for a version
	// created before versions were bound to models: unbound, any model of
	// the right dims may write it).
	ModelVersion string
	// Count is its number of records (approximate on Milvus, which counts
	// deleted rows until compaction; exact on the embedded store).
	Count int64
	// Live reports whether the alias points at it.
	Live bool
	// CreatedAt is when it was created (zero if unknown).
	CreatedAt time.Time
}

// Versioned is implemented by vector stores that keep several versions of a
// logical collection (the Milvus and embedded stores). The Vectors methods
// on a logical name act on its live version.
type Versioned interface {
	// CreateVersion creates logical's version with dims, bound to
	// modelVersion, unless it exists: then its dims and model version must
	// match (ErrInvalid otherwise). The alias is not touched.
	CreateVersion(ctx context.Context, logical, version string, dims int, modelVersion string) error
	// UpsertVersion writes recs to logical's version (which must exist:
	// ErrNotFound), whether or not it is live.
	UpsertVersion(ctx context.Context, logical, version string, recs []Record) error
	// DeleteVersion deletes ids from logical's version.
	DeleteVersion(ctx context.Context, logical, version string, ids []string) error
	// GetVersion reads ids from logical's version, like Vectors.Get.
	GetVersion(ctx context.Context, logical, version string, ids []string) ([]Record, error)
	// ScanVersion calls fn with every record of logical's version, in no
	// particular order, without Vector (ID, Metadata, ModelVersion,
	// TextHash, UpdatedAt); it stops at fn's first error and returns it.
	// Records written during the scan may or may not be visited.
	ScanVersion(ctx context.Context, logical, version string, fn func(Record) error) error
	// ListVersions returns logical's versions ordered by CreatedAt, then
	// Version; ErrNotFound when it has none.
	ListVersions(ctx context.Context, logical string) ([]VersionInfo, error)
	// SwapAlias points logical at version atomically (creating the alias
	// the first time).
	SwapAlias(ctx context.Context, logical, version string) error
	// DropVersion removes a version that is not live.
	DropVersion(ctx context.Context, logical, version string) error
}

// CheckVersion checks a version name: 1 to MaxVersionBytes bytes of
// [A-Za-z0-9_.-]. The error says which byte breaks the rule.
func CheckVersion(v string) error {
	if v == "" || len(v) > MaxVersionBytes {
		return fmt.Errorf("version %q is %d bytes; want 1 to %d", v, len(v), MaxVersionBytes)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c == '_' || c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("version %q: byte %d (%q) is not one of [A-Za-z0-9_.-]", v, i, c)
		}
	}
	return nil
}

// VersionReader is implemented by the Versioned stores (Milvus and
// embedded) beside Versioned: what internal/index needs to read one
// version consistently while the alias may move. A search whose query was
// embedded with the live version's model must run on that version, not on
// whatever the alias points at a moment later.
type VersionReader interface {
	// LiveVersion returns the version logical's alias points at, without
	// Count (zero); ErrNotFound when logical has no alias. It reads the
	// alias afresh (no cache).
	LiveVersion(ctx context.Context, logical string) (VersionInfo, error)
	// SearchVersion is Vectors.Search on logical's version (ErrNotFound
	// when it does not exist).
	SearchVersion(ctx context.Context, logical, version string, req SearchRequest) ([]Hit, error)
}
