package session

import "errors"

// Errors returned by this package, wrapped with the event index, the entity,
// the times or the limit involved; test for them with errors.Is.
var (
	// ErrInvalidConfig reports a Config, Engagement or store options field
	// out of range.
	ErrInvalidConfig = errors.New("session: invalid config")
	// ErrInvalidEvent reports an event that breaks a limit (entity id, event
	// type, time) or a batch larger than MaxBatch.
	ErrInvalidEvent = errors.New("session: invalid event")
	// ErrOutOfOrder reports an event older than the start of its entity's
	// current session; the state is unchanged.
	ErrOutOfOrder = errors.New("session: event older than the current session")
	// ErrCorruptState reports stored state (or a Redis reply) that cannot be
	// read; the message names the key.
	ErrCorruptState = errors.New("session: corrupt state")
	// ErrUnavailable reports a backend that cannot be reached; the message
	// names the backend.
	ErrUnavailable = errors.New("session: store unavailable")
	// ErrClosed reports use of a Store after Close.
	ErrClosed = errors.New("session: store closed")
)
