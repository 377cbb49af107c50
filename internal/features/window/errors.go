package window

import (
	"errors"
	"time"
)

// Errors returned by this package. They are wrapped with the offending
// field, index, time or limit; test for them with errors.Is.
var (
	// ErrTooLate reports an event older than the watermark (the largest
	// timestamp the series has accepted) minus AllowedLateness, or older than
	// the retained horizon. The event is not stored; the caller counts it.
	ErrTooLate = errors.New("window: event too late")
	// ErrBeyondHorizon reports a read whose window starts before the retained
	// horizon (RetainedFrom), so points it would cover may have been trimmed.
	ErrBeyondHorizon = errors.New("window: as_of beyond the retained horizon")
	// ErrInvalid reports a bad argument: a time outside [MinTS, MaxTS], a
	// non-finite value, a window out of range or a bad value name.
	ErrInvalid = errors.New("window: invalid argument")
	// ErrInvalidConfig reports a Config field out of range.
	ErrInvalidConfig = errors.New("window: invalid config")
	// ErrCorrupt reports an encoded series that cannot be decoded: wrong
	// magic, unknown version, wrong length, bad checksum or a state that
	// breaks the Series invariants.
	ErrCorrupt = errors.New("window: corrupt encoding")
)

// noTime marks an unset watermark or retained horizon. It lies below MinTS,
// so no valid timestamp equals it.
const noTime int64 = -1 << 63

// fmtTS renders unix nanoseconds for error messages.
func fmtTS(ts int64) string {
	if ts == noTime {
		return "none"
	}
	return time.Unix(0, ts).UTC().Format(time.RFC3339Nano)
}
