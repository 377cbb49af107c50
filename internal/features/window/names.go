package window

import (
	"fmt"
	"strconv"
	"time"

	"github.com/embedd/embedd/internal/features"
)

// Agg names one aggregate of a window.
type Agg uint8

const (
	AggCount Agg = iota
	AggSum
	AggAvg
	AggMin
	AggMax
	AggStddev
	AggZScore
	NumAggs = 7 // the number of aggregates, AggCount through AggZScore
)

func (a Agg) String() string {
	switch a {
	case AggCount:
		return "count"
	case AggSum:
		return "sum"
	case AggAvg:
		return "avg"
	case AggMin:
		return "min"
	case AggMax:
		return "max"
	case AggStddev:
		return "stddev"
	case AggZScore:
		return "zscore"
	}
	return "Agg(" + strconv.Itoa(int(a)) + ")"
}

// WindowSuffix renders w in its largest whole unit: 1m, 5m, 1h, 90s, 2d,
// 250ms (units d, h, m, s, ms, us, ns). Distinct windows get distinct
// suffixes.
func WindowSuffix(w time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "us"}} {
		if w%u.d == 0 {
			return strconv.FormatInt(int64(w/u.d), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(w), 10) + "ns"
}

// ValidateValueName checks the name of a value: 1 to MaxValueNameBytes
// bytes of ASCII letters, digits and underscores.
func ValidateValueName(name string) error {
	if name == "" || len(name) > MaxValueNameBytes {
		return fmt.Errorf("%w: value name %q is %d bytes; want 1 to %d", ErrInvalid, name, len(name), MaxValueNameBytes)
	}
	for i := range len(name) {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return fmt.Errorf("%w: value name %q has byte %q at %d; want letters, digits and _", ErrInvalid, name, c, i)
		}
	}
	return nil
}

// FeatureNames are the names of the NumAggs features of one value over one
// window, indexed by Agg: value_count_5m, value_sum_5m, value_avg_5m,
// value_min_5m, value_max_5m, value_stddev_5m, value_zscore_5m.
type FeatureNames [NumAggs]string

// Names returns the feature names of value over w (in (0, MaxDuration]).
// Compute them once per value and window; AppendValues then allocates
// nothing beyond dst.
func Names(value string, w time.Duration) (FeatureNames, error) {
	var fn FeatureNames
	if err := ValidateValueName(value); err != nil {
		return fn, err
	}
	if w <= 0 || w > MaxDuration {
		return fn, fmt.Errorf("%w: window %v; want > 0 and <= %v", ErrInvalid, w, MaxDuration)
	}
	suffix := WindowSuffix(w)
	for i := range fn {
		fn[i] = value + "_" + Agg(i).String() + "_" + suffix
	}
	return fn, nil
}

// AppendValues appends the NumAggs features of a to dst, in Agg order,
// named by names, with version, Source SourceComputed and Timestamp a.AsOf.
// Undefined aggregates (see Aggregates) are Null.
func AppendValues(dst []features.Value, names *FeatureNames, version int, a Aggregates) []features.Value {
	ts := time.Unix(0, a.AsOf).UTC()
	vals := [NumAggs]NullFloat{valid(float64(a.Count)), valid(a.Sum), a.Avg, a.Min, a.Max, a.Stddev, a.ZScore}
	for i, v := range vals {
		dst = append(dst, features.Value{
			Name:      names[i],
			Version:   version,
			Null:      !v.Valid,
			Value:     v.V,
			Timestamp: ts,
			Source:    features.SourceComputed,
		})
	}
	return dst
}

// Values returns the features of a for value (see Names and AppendValues).
func Values(value string, version int, a Aggregates) ([]features.Value, error) {
	names, err := Names(value, a.Window)
	if err != nil {
		return nil, err
	}
	return AppendValues(make([]features.Value, 0, NumAggs), &names, version, a), nil
}

// ResolveAsOf returns the read time in unix nanoseconds: asOf, or
// clock.Now() when asOf is the zero time (the default as_of). It fails with
// ErrInvalid outside [MinTS, MaxTS]. How far back asOf may go is the
// Series' retained horizon (see Aggregate and Config.Horizon).
func ResolveAsOf(clock features.Clock, asOf time.Time) (int64, error) {
	if asOf.IsZero() {
		asOf = clock.Now()
	}
	return UnixNanos(asOf)
}

// UnixNanos converts t to unix nanoseconds, failing with ErrInvalid outside
// [MinTS, MaxTS] (where t.UnixNano would overflow or come near it).
func UnixNanos(t time.Time) (int64, error) {
	lo, hi := time.Unix(0, MinTS), time.Unix(0, MaxTS)
	if t.Before(lo) || t.After(hi) {
		return 0, fmt.Errorf("%w: time %s is outside [%s, %s]", ErrInvalid, t.UTC().Format(time.RFC3339Nano), fmtTS(MinTS), fmtTS(MaxTS))
	}
	return t.UnixNano(), nil
}
