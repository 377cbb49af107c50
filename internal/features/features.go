// Package features is embedd's real-time feature engineering: a versioned
// registry of feature definitions (registry), windowed aggregations over
// event streams (window), sessionization (session), temporal and rule
// features, online retrieval with an in-process cache, the online store and
// an offline Parquet layer, hybrid vectors (hybrid) and drift monitoring
// (drift).
//
// This file holds the few types every subpackage shares. Subpackages depend
// on this package, never on each other, so each can be tested alone; the
// wiring lives in the service that composes them.
//
// Invariants:
//   - Time is always injected (Clock); nothing reads the wall clock directly.
//   - Every value carries its feature name, version and the time it refers
//     to; a missing value is Null, never a zero.
//   - An event with an ID is applied at most once: the entity's state
//     records the ids it applied (within the allowed lateness) in the same
//     atomic update that applies the event, so a redelivered or retried
//     event is counted once (package service; package session likewise for
//     the session count).
package features

import (
	"time"
)

// Clock tells the time. Production uses SystemClock; tests use a fixed or
// stepped clock so window and session arithmetic is exact.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Event is one observation about an entity.
type Event struct {
	// ID, when not empty, identifies the event: two events of one entity
	// with the same ID are the same event, applied once (the first applied
	// wins; a later one with the same ID is a duplicate whatever its other
	// fields). The stream consumer defaults it to the stream message id.
	// Empty means no deduplication.
	ID       string
	EntityID string
	// Type is the event type, e.g. "click", "view", "purchase".
	Type      string
	Timestamp time.Time
	// Values are numeric measurements (finite).
	Values map[string]float64
	// Context carries categorical context, e.g. region or tier.
	Context map[string]string
}

// Source says where a served value came from.
type Source uint8

const (
	SourceUnknown  Source = iota
	SourceComputed        // computed on this request
	SourceCache           // the in-process cache
	SourceOnline          // the online store (Redis or embedded)
	SourceOffline         // the offline layer (Parquet)
)

func (s Source) String() string {
	switch s {
	case SourceComputed:
		return "computed"
	case SourceCache:
		return "cache"
	case SourceOnline:
		return "online"
	case SourceOffline:
		return "offline"
	}
	return "unknown"
}

// Value is one served feature value.
type Value struct {
	Name    string
	Version int
	// Null is true when the value is undefined (e.g. stddev with n < 2);
	// Value is then 0 and must be ignored.
	Null  bool
	Value float64
	// Timestamp is the time the value refers to (the as_of time of a
	// window, the event time of a session feature).
	Timestamp time.Time
	Source    Source
}
