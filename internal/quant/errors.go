package quant

import "errors"

// Errors returned by this package. They are wrapped with the offending index,
// dimension or limit; test for them with errors.Is.
var (
	// ErrEmpty reports an input with no elements where at least one is
	// needed: an empty vector, an empty calibration set or an empty query.
	ErrEmpty = errors.New("quant: empty input")
	// ErrLengthMismatch reports vectors, codes, a calibration or a
	// destination slice whose dimensions disagree.
	ErrLengthMismatch = errors.New("quant: length mismatch")
	// ErrNonFinite reports a NaN or ±Inf value in an input vector or a
	// non-finite score produced from one.
	ErrNonFinite = errors.New("quant: non-finite value")
	// ErrInvalidK reports a result count k that is zero or negative.
	ErrInvalidK = errors.New("quant: k must be positive")
	// ErrInvalidFactor reports a rescore factor that is zero or negative.
	ErrInvalidFactor = errors.New("quant: rescore factor must be positive")
	// ErrInvalidCalibration reports calibration ranges that cannot be used:
	// min above max, non-finite bounds, mismatched lengths or an unknown
	// serialised version.
	ErrInvalidCalibration = errors.New("quant: invalid calibration")
)
