// Package session is sessionization for embedd's real-time features: it
// groups each entity's events into sessions and serves, with every event,
// the session it belongs to and five session features. It replaces the
// seed's Python RealTimeSessionizer with the same rule and the seed's
// engagement weights as defaults, computed in event time.
//
// # The session rule
//
// Times are event times (features.Event.Timestamp), never the wall clock.
// An entity's state is its current session: id, start, last activity and
// event count. An event at time t is applied as follows:
//
//   - no state (first event, or state expired or evicted): a new session
//     starts at t;
//   - t >= last: if t - last < Timeout the event extends the session (last
//     becomes t); otherwise, a gap of exactly Timeout included, a new
//     session starts at t, as the seed's `gap < timeout` does;
//   - start <= t < last (late, but inside the current session): the event is
//     counted in the session and last does not move backwards;
//   - t < start (older than the current session): the event is rejected
//     with ErrOutOfOrder naming both times, and the state is unchanged. A
//     late event of an earlier session is never reattributed.
//
// Every applied event adds one to the count.
//
// # Deduplication
//
// An event with an id (features.Event.ID) is counted once: the state of
// the current session records the ids of the events it counted, in the same
// atomic step that counts them (Memory's lock, the Redis script), so an
// event delivered again (a stream redelivery after a crash, a client
// retry) changes nothing and its Result has Duplicate set and describes the
// session as it is. Ids of earlier sessions need no record: an event of an
// earlier session is older than the current session's start and is
// rejected with ErrOutOfOrder anyway.
//
// The record is bounded: at most Config.DedupeIDs ids (default 32). When
// one more would pass that, the older half goes at once (so the cost per
// event stays constant): with T the ceil(n/2)-th smallest event time of
// the n ids, every id at or before T is dropped and the floor rises to T.
// An event with an id not recorded and a time at or before the floor is
// rejected with ErrOutOfOrder (it may have been counted), as an event older
// than the session is. So a redelivery is never counted twice; the cost is
// that, in a session of more than DedupeIDs events, a late event with an id
// that arrives behind the floor is not counted in the session (package
// service still counts it in its windows). Events without an id
// are never deduplicated and never meet the floor. The record lives and
// expires with the state (see State retention): an event delivered again
// after its entity's state expired starts a new session.
//
// # Features
//
// Each applied event yields a Result: the session id (a string, in
// Result.SessionID) and, in this order, with Timestamp = the event time:
//
//	session_duration          seconds, last - start (event time)
//	events_in_session         events applied to the session, this one included
//	avg_time_between_events   seconds, duration / (events - 1); Null when events < 2
//	session_engagement_score  see Engagement
//	is_new_session            1 when this event started the session, else 0
//
// The seed measured duration as utcnow() - start, so the same event stream
// gave different features depending on when it was processed, and replayed
// or delayed events were wrong; here duration is last activity minus start,
// both in event time, so results are reproducible.
//
// The engagement score is the seed's, with its constants made configurable
// (Engagement): Base plus the weight of this event's type, times the factor
// of the first DurationFactor rule the session duration matches, capped at
// Cap. The defaults are the seed's: 0.5; +0.3 purchase, +0.1 click, +0.05
// view; ×0.8 below 30 s, ×1.2 above 300 s; cap 1.0. It depends only on the
// current event and the duration, so no score state is stored.
//
// # Session ids
//
// A session id is SessionID(entity, start): 32 hex digits of SHA-1 over the
// entity id, a zero byte and the start time in Unix nanoseconds. It is a
// pure function of the session, so every replica, and the Redis script,
// derive the same id; two sessions of one entity never share a start time,
// so ids are unique up to hash collisions (2^-128 per pair in the birthday
// sense of a 128-bit hash).
//
// # Stores
//
// A Store holds the state and applies events atomically per event. Memory
// keeps it in process (the embedded mode); Redis keeps it in Redis, so a
// restarted process or another replica continues the same sessions. Both
// apply exactly the same transition: Memory runs the Go function, Redis a
// Lua script that implements it, and the package tests run one conformance
// suite against both and compare them on randomized streams.
//
// State retention is wall-clock: a state untouched for Timeout+TTLMargin is
// dropped (Redis: key TTL, refreshed on every write; Memory: the injected
// Clock). For live streams, where event time follows the wall clock, an
// expired state could not have been extended anyway. A replay much slower
// than event time can lose a state that event time would still extend; its
// next event then starts a new session. Memory also bounds the number of
// entities (MemoryOptions.MaxEntities) and evicts the least recently
// touched; an evicted entity's next event starts a new session.
//
// # Batches and errors
//
// ProcessBatch applies events in slice order, so events of one entity in one
// batch see each other. One bad event never fails the others: the errors
// slice has one entry per event, nil where it was applied, and each error
// names the index. Errors wrap the sentinels in errors.go. When a backend
// fails mid-batch (ErrUnavailable, or a context error), the events that
// report the error may or may not have been applied.
//
// # Limits
//
// Entity ids: non-empty UTF-8 of at most MaxEntityIDBytes; event types: at
// most MaxEventTypeBytes; event ids: UTF-8 of at most MaxEventIDBytes; event times: MinEventNanos to MaxEventNanos
// (1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z: Unix nanoseconds
// must be non-negative and fit an int64); batches: at most MaxBatch events;
// Timeout: at most MaxTimeout.
//
// These are the invariants of the store's own state (its keys, the
// engagement lookup, the times it holds, one pipeline per batch), checked
// so that a Store is safe on its own. They are not the service's request
// limits: package service validates ingest requests against its Limits,
// which never exceed these, so an event it accepts is never rejected here
// for a limit.
//
// # Concurrency
//
// Memory and Redis are safe for concurrent use. Redis is also safe across
// processes: the script reads, transitions and writes an entity's state in
// one atomic step on the server, so replicas racing on one entity never
// lose an event.
package session
