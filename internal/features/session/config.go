package session

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Limits on configuration and input.
const (
	// MaxTimeout is the longest session Timeout.
	MaxTimeout = 7 * 24 * time.Hour
	// MaxTTLMargin is the longest TTLMargin.
	MaxTTLMargin = 7 * 24 * time.Hour
	// MaxTypeWeights is the most entries in Engagement.TypeWeights.
	MaxTypeWeights = 1024
	// MaxDurationFactors is the most rules in Engagement.DurationFactors.
	MaxDurationFactors = 64
	// MaxEntityIDBytes is the longest entity id: the key of an entity's
	// state (Memory's map, the Redis hash name).
	MaxEntityIDBytes = 256
	// MaxEventTypeBytes is the longest event type: it is looked up in
	// Engagement.TypeWeights, whose keys have the same bound, and sent to
	// the Redis script as an argument.
	MaxEventTypeBytes = 256
	// MaxBatch is the most events in one ProcessBatch call: Redis runs a
	// batch as one pipeline.
	MaxBatch = 4096
	// MaxEventIDBytes is the longest event id (features.Event.ID): ids are
	// held in the state (DedupeIDs of them).
	MaxEventIDBytes = 128
	// MaxDedupeIDs is the largest Config.DedupeIDs: the Redis script reads
	// and sorts the ids when it drops the older half.
	MaxDedupeIDs = 1024
)

// MinEventNanos and MaxEventNanos bound event times, in Unix nanoseconds:
// 1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z. The state holds
// times as non-negative int64 nanoseconds (the Redis script too).
const (
	MinEventNanos int64 = 0
	MaxEventNanos int64 = math.MaxInt64
)

// Config is the session rule and its features, shared by every Store. The
// zero value is valid: each zero field takes its default.
type Config struct {
	// Timeout is the inactivity gap that ends a session: an event less than
	// Timeout after the last activity extends the session, one Timeout or
	// more after it starts a new one. Default 30 minutes; at most MaxTimeout.
	Timeout time.Duration
	// TTLMargin is added to Timeout to give how long an untouched state is
	// kept, in wall-clock time (the Redis key TTL; Memory expiry). Default 5
	// minutes; at most MaxTTLMargin. Zero means the default.
	TTLMargin time.Duration
	// Engagement computes session_engagement_score. The zero Engagement
	// means DefaultEngagement (the seed's values).
	Engagement Engagement
	// FeatureVersion is the Version of every returned Value. Default 1.
	FeatureVersion int
	// DedupeIDs is the most event ids the state of an entity's current
	// session remembers, so that an event with an id is counted once (see
	// Deduplication in the package documentation). Default 32; at most
	// MaxDedupeIDs. Each id costs its bytes plus about 40 in memory.
	DedupeIDs int
}

// DefaultConfig returns the defaults: a 30-minute timeout, a 5-minute TTL
// margin, the seed's engagement and feature version 1.
func DefaultConfig() Config {
	return Config{
		Timeout:        30 * time.Minute,
		TTLMargin:      5 * time.Minute,
		Engagement:     DefaultEngagement(),
		FeatureVersion: 1,
		DedupeIDs:      32,
	}
}

// Engagement is the engagement score:
//
//	score = min(Cap, (Base + TypeWeights[event type]) × factor)
//
// where an unknown type weighs 0 and factor is the Factor of the first rule
// in DurationFactors that the session duration (last - start, event time)
// matches, or 1 when none does. At most one rule applies.
type Engagement struct {
	// Base is the score before weights and factors. Finite.
	Base float64
	// TypeWeights maps an event type to the amount added to Base. Finite
	// values; at most MaxTypeWeights entries.
	TypeWeights map[string]float64
	// DurationFactors are tried in order; the first match applies. At most
	// MaxDurationFactors.
	DurationFactors []DurationFactor
	// Cap is the largest score. Finite and positive.
	Cap float64
}

// DefaultEngagement returns the seed's score: base 0.5; +0.3 purchase,
// +0.1 click, +0.05 view; ×0.8 when the duration is below 30 s, ×1.2 when
// it is above 300 s; capped at 1.0.
func DefaultEngagement() Engagement {
	return Engagement{
		Base:        0.5,
		TypeWeights: map[string]float64{"purchase": 0.3, "click": 0.1, "view": 0.05},
		DurationFactors: []DurationFactor{
			{When: Below, Threshold: 30 * time.Second, Factor: 0.8},
			{When: Above, Threshold: 300 * time.Second, Factor: 1.2},
		},
		Cap: 1.0,
	}
}

// Compare says which side of a threshold a DurationFactor matches.
type Compare uint8

const (
	// Below matches a duration strictly less than the threshold.
	Below Compare = iota + 1
	// Above matches a duration strictly greater than the threshold.
	Above
)

func (c Compare) String() string {
	switch c {
	case Below:
		return "below"
	case Above:
		return "above"
	}
	return fmt.Sprintf("Compare(%d)", uint8(c))
}

// DurationFactor multiplies the score when the session duration is strictly
// below (or above) Threshold.
type DurationFactor struct {
	When Compare
	// Threshold is a non-negative duration.
	Threshold time.Duration
	// Factor is finite and non-negative.
	Factor float64
}

func (e Engagement) isZero() bool {
	return e.Base == 0 && e.Cap == 0 && e.TypeWeights == nil && e.DurationFactors == nil
}

// validate checks e and returns a copy the caller may keep (the map and
// slice are cloned, so later changes by the caller have no effect).
func (e Engagement) validate() (Engagement, error) {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if !finite(e.Base) {
		return e, fmt.Errorf("%w: Engagement.Base is %v; want finite", ErrInvalidConfig, e.Base)
	}
	if !finite(e.Cap) || e.Cap <= 0 {
		return e, fmt.Errorf("%w: Engagement.Cap is %v; want finite and > 0", ErrInvalidConfig, e.Cap)
	}
	if len(e.TypeWeights) > MaxTypeWeights {
		return e, fmt.Errorf("%w: Engagement.TypeWeights has %d entries; limit %d", ErrInvalidConfig, len(e.TypeWeights), MaxTypeWeights)
	}
	for _, typ := range slices.Sorted(maps.Keys(e.TypeWeights)) {
		if w := e.TypeWeights[typ]; !finite(w) {
			return e, fmt.Errorf("%w: Engagement.TypeWeights[%q] is %v; want finite", ErrInvalidConfig, typ, w)
		}
		if len(typ) > MaxEventTypeBytes {
			return e, fmt.Errorf("%w: Engagement.TypeWeights key of %d bytes; limit %d", ErrInvalidConfig, len(typ), MaxEventTypeBytes)
		}
	}
	if len(e.DurationFactors) > MaxDurationFactors {
		return e, fmt.Errorf("%w: Engagement.DurationFactors has %d rules; limit %d", ErrInvalidConfig, len(e.DurationFactors), MaxDurationFactors)
	}
	for i, f := range e.DurationFactors {
		switch {
		case f.When != Below && f.When != Above:
			return e, fmt.Errorf("%w: Engagement.DurationFactors[%d].When is %v; want Below or Above", ErrInvalidConfig, i, f.When)
		case f.Threshold < 0:
			return e, fmt.Errorf("%w: Engagement.DurationFactors[%d].Threshold is %v; want >= 0", ErrInvalidConfig, i, f.Threshold)
		case !finite(f.Factor) || f.Factor < 0:
			return e, fmt.Errorf("%w: Engagement.DurationFactors[%d].Factor is %v; want finite and >= 0", ErrInvalidConfig, i, f.Factor)
		}
	}
	e.TypeWeights = maps.Clone(e.TypeWeights)
	e.DurationFactors = slices.Clone(e.DurationFactors)
	return e, nil
}

// score computes the engagement score of an event of type typ in a session
// of duration d.
func (e *Engagement) score(typ string, d time.Duration) float64 {
	s := e.Base + e.TypeWeights[typ]
	for _, f := range e.DurationFactors {
		if (f.When == Below && d < f.Threshold) || (f.When == Above && d > f.Threshold) {
			s *= f.Factor
			break
		}
	}
	return min(s, e.Cap)
}

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	switch {
	case c.Timeout < 0 || c.Timeout > MaxTimeout:
		return c, fmt.Errorf("%w: Timeout is %v; want 0 (default %v) to %v", ErrInvalidConfig, c.Timeout, d.Timeout, MaxTimeout)
	case c.TTLMargin < 0 || c.TTLMargin > MaxTTLMargin:
		return c, fmt.Errorf("%w: TTLMargin is %v; want 0 (default %v) to %v", ErrInvalidConfig, c.TTLMargin, d.TTLMargin, MaxTTLMargin)
	case c.FeatureVersion < 0:
		return c, fmt.Errorf("%w: FeatureVersion is %d; want >= 0", ErrInvalidConfig, c.FeatureVersion)
	case c.DedupeIDs < 0 || c.DedupeIDs > MaxDedupeIDs:
		return c, fmt.Errorf("%w: DedupeIDs is %d; want 0 (default %d) to %d", ErrInvalidConfig, c.DedupeIDs, d.DedupeIDs, MaxDedupeIDs)
	}
	if c.DedupeIDs == 0 {
		c.DedupeIDs = d.DedupeIDs
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.TTLMargin == 0 {
		c.TTLMargin = d.TTLMargin
	}
	if c.FeatureVersion == 0 {
		c.FeatureVersion = d.FeatureVersion
	}
	if c.Engagement.isZero() {
		c.Engagement = d.Engagement
	}
	e, err := c.Engagement.validate()
	if err != nil {
		return c, err
	}
	c.Engagement = e
	return c, nil
}

// ttl is how long an untouched state is kept.
func (c *Config) ttl() time.Duration { return c.Timeout + c.TTLMargin }
