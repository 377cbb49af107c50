// Package temporal computes the temporal features of embedd's registry:
// hour of day and day of week in a named IANA time zone, and the time since
// an entity's previous event.
//
// Conventions:
//   - HourOfDay is the local wall-clock hour, 0 to 23. On a daylight saving
//     change it follows the wall clock: in America/New_York on 2026-03-08
//     the hour 2 never occurs (01:59:59 EST is followed by 03:00:00 EDT) and
//     on 2026-11-01 the hour 1 occurs twice.
//   - DayOfWeek is ISO 8601: Monday = 1 through Sunday = 7, of the local
//     date.
//   - SinceLast is in seconds of elapsed (absolute) time, so a daylight
//     saving change never adds or removes an hour.
//
// The time zone database is embedded (time/tzdata), so zones resolve the
// same on a minimal container without /usr/share/zoneinfo. Everything here
// is a pure function and safe for concurrent use.
package temporal

import (
	"errors"
	"fmt"
	"time"
	_ "time/tzdata" // zones must resolve on hosts without a zoneinfo database
)

// Errors returned by this package, wrapped with the offending input.
var (
	// ErrZone reports a time zone name that is empty, "Local" or unknown.
	ErrZone = errors.New("temporal: invalid time zone")
	// ErrOrder reports a previous event later than the time it is measured
	// from.
	ErrOrder = errors.New("temporal: previous event after the reference time")
)

// LoadLocation resolves an IANA zone name such as "America/New_York" or
// "UTC". "Local" and "" are rejected: a feature must not depend on the
// machine it runs on.
func LoadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%w %q: name an IANA zone such as UTC or Europe/Berlin", ErrZone, name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrZone, name, err)
	}
	return loc, nil
}

// HourOfDay returns the hour of t on the wall clock of loc, 0 to 23.
func HourOfDay(t time.Time, loc *time.Location) int { return t.In(loc).Hour() }

// DayOfWeek returns the ISO 8601 weekday of t's date in loc: Monday = 1
// through Sunday = 7.
func DayOfWeek(t time.Time, loc *time.Location) int {
	d := int(t.In(loc).Weekday()) // Sunday = 0
	if d == 0 {
		return 7
	}
	return d
}

// SinceLast returns the seconds elapsed from the previous event at last to
// at. ok is false when there was no previous event (last is the zero
// time); the feature is then null. A last after at is an error wrapping
// ErrOrder.
func SinceLast(at, last time.Time) (seconds float64, ok bool, err error) {
	if last.IsZero() {
		return 0, false, nil
	}
	if last.After(at) {
		return 0, false, fmt.Errorf("%w: previous event %s is after %s", ErrOrder,
			last.UTC().Format(time.RFC3339Nano), at.UTC().Format(time.RFC3339Nano))
	}
	return at.Sub(last).Seconds(), true, nil
}
