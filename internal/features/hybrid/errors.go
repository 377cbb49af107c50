package hybrid

import "errors"

// Errors returned by this package. They are wrapped with the feature name,
// the index and the limit involved; test for them with errors.Is.
var (
	// ErrInvalidSpec reports a Spec that cannot be used: alpha outside
	// [0, 1], no features or too many, a duplicate feature, a bad weight or
	// clip, embedding dimensions out of range.
	ErrInvalidSpec = errors.New("hybrid: invalid spec")
	// ErrUnknownFeature reports a feature the Standardizer does not know, or
	// a weight for a feature not in the Spec.
	ErrUnknownFeature = errors.New("hybrid: unknown feature")
	// ErrInvalidInput reports a bad vector or value: NaN or ±Inf, an
	// embedding of the wrong length or of zero norm, a hybrid vector that
	// would be zero.
	ErrInvalidInput = errors.New("hybrid: invalid input")
	// ErrFrozen reports an update to a frozen Standardizer.
	ErrFrozen = errors.New("hybrid: standardizer is frozen")
	// ErrSnapshot reports a malformed standardizer snapshot: a version that
	// does not match its content, other features, impossible statistics.
	ErrSnapshot = errors.New("hybrid: bad standardizer snapshot")
)

// Limits.
const (
	// MaxFeatures bounds the features of a Standardizer and of a Spec.
	MaxFeatures = 256
	// MaxDims bounds the hybrid vector, embedding dims plus features; it is
	// the vector stores' limit (store.MaxDims).
	MaxDims = 8192
	// MaxNameBytes bounds a feature name.
	MaxNameBytes = 256
	// MaxBatch bounds the values given to one ObserveBatch call.
	MaxBatch = 1 << 20
)
