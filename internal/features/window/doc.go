// Package window computes the windowed aggregations of embedd's real-time
// features: count, sum, avg, min, max, sample stddev and z-score of one
// numeric value of one entity over sliding time windows (1m, 5m and 1h by
// default, see Config).
//
// # Semantics
//
// For an event of an entity at time t, a window of length W covers exactly
// the events of that entity with t-W <= ts <= t, ties at both ends
// included: PostgreSQL's RANGE BETWEEN W PRECEDING AND CURRENT ROW. A read
// at as_of (default now, see ResolveAsOf) applies the same rule with
// t = as_of. Stddev is the sample one (divisor n-1), null when n < 2. The
// z-score is (v - avg) / stddev over the window for the entity's latest
// event at or before as_of (latest by timestamp, ties by arrival order),
// null when stddev is null or 0. Sum is 0 and avg, min and max are null
// over an empty window. Feature names follow Names: amount_avg_5m.
//
// Events arrive out of order. An event up to Config.AllowedLateness behind
// the watermark (the largest event time accepted) is placed in time order
// and every later read reflects it; an older one fails with ErrTooLate and
// is not stored, for the caller to count.
//
// # Invariants
//
//   - A Series holds its points sorted by (TS, Seq), and every accepted
//     point with TS >= RetainedFrom, the retained horizon. The horizon only
//     moves forward: to the watermark (or the now given to Trim) minus
//     Config.Horizon, or past the oldest points dropped by MaxPoints.
//   - A read is either exact or fails: Aggregate fails with
//     ErrBeyondHorizon when its window starts before the retained horizon,
//     never returning a count that misses trimmed points. Until MaxPoints
//     or Trim moves it, the horizon is the watermark minus Horizon, so a
//     window W can be read at any as_of from the watermark minus
//     (Horizon - W) onwards; as Horizon >= largest window + lateness, every
//     configured window can be read wherever an allowed late event can
//     still land.
//   - The binary encoding (MarshalBinary) carries the whole state but the
//     limits; decoding it into a Series with the same Config gives the same
//     state, and decoding rejects any input that is not a valid state.
//
// # Memory
//
// A Point is PointBytes (24) bytes. A Series keeps at most
// Config.MaxPoints points, and its buffer never holds more than
// MaxPoints + MaxPoints/4 + 1 (the slack amortizes trimming), so one series
// takes at most 24 × (1.25 × MaxPoints + 1) bytes plus an 80-byte header:
// 300 KB at the default 10_000 points, 30 MiB at MaxPointsLimit. An entity
// costs that per value it aggregates. Its encoding is 37 + 24 × Len bytes.
// An entity that goes quiet gives memory back when Trim is called.
//
// # Concurrency
//
// A Series is not safe for concurrent use; the owner of an entity's state
// serializes writes (Insert, Trim, UnmarshalBinary). Methods that do not
// modify a Series (Aggregate, MarshalBinary and the accessors) may run
// concurrently with each other. Everything else in the package is pure.
// Times are unix nanoseconds passed in by the caller; the package never
// reads the clock except through the features.Clock given to ResolveAsOf.
package window
