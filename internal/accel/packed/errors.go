package packed

import (
	"errors"

	"github.com/embedd/embedd/internal/accel"
)

// Errors returned by this package. Each is wrapped with the row, position,
// tensor or limit at fault; test for them with errors.Is.
var (
	// ErrBadBatch reports a batch that cannot be packed or run: a wrong
	// shape, a row without tokens, left or gap padding, a text longer than
	// the model's positions, a token or type id outside its table, or a
	// packed Batch whose offsets are inconsistent. It also matches
	// accel.ErrBadBatch, so callers of accel.Encoder need not know this
	// package.
	ErrBadBatch error = &aliasError{msg: "packed: malformed batch", alias: accel.ErrBadBatch}
	// ErrBadWeights reports Weights whose slices do not match their
	// Config, or a config the encoder cannot run.
	ErrBadWeights = errors.New("packed: malformed weights")
	// ErrBadOutput reports output buffers too small for the batch, or an
	// output width (dims) outside [1, hidden]. Like ONNX Runtime's encoder,
	// which reports short buffers so, it also matches accel.ErrBadBatch.
	ErrBadOutput error = &aliasError{msg: "packed: bad output buffers", alias: accel.ErrBadBatch}
	// ErrBadMode reports a pooling Mode other than ModeMean and ModeCLS.
	ErrBadMode = errors.New("packed: unknown pooling mode")
	// ErrNonFinite reports a pooled vector holding NaN or ±Inf (weights
	// that overflow float32), which has no unit vector or int8 codes.
	ErrNonFinite = errors.New("packed: non-finite output")
	// ErrClosed reports use of an Encoder after Close.
	ErrClosed = errors.New("packed: encoder closed")
)

// aliasError is a sentinel error that also matches another sentinel.
type aliasError struct {
	msg   string
	alias error
}

func (e *aliasError) Error() string        { return e.msg }
func (e *aliasError) Is(target error) bool { return target == e.alias }
