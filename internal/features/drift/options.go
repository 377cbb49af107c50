package drift

import (
	"fmt"
	"math"
	"time"
)

// Options configures a Monitor. The zero value is valid: every zero field
// takes its default. Negative values are rejected with ErrInvalidOptions.
type Options struct {
	// Window is the span of the current (sliding) window. Default 1h.
	Window time.Duration
	// Buckets is the number of tumbling sub-buckets Window is cut into;
	// values age out a whole bucket at a time. The current window is the
	// last Buckets buckets including the one in progress, so it holds
	// between Window*(Buckets-1)/Buckets and Window of data. Default 6
	// (10-minute buckets for 1h); at most MaxBuckets; Window/Buckets must be
	// at least 1ms.
	Buckets int
	// SampleSize is the reservoir capacity of every Stats the Monitor
	// keeps, in values. Default DefaultSampleSize (2048); at most
	// MaxSampleSize. Memory per feature is about
	// (Buckets+2) * SampleSize * 8 bytes: 128 KiB with the defaults.
	SampleSize int
	// Bins is the number of PSI quantile bins before deduplication
	// (see Bins). Default 10; at most MaxBins.
	Bins int
	// Epsilon is the floor applied to empty bin proportions in PSI.
	// Default 1e-4; must be below 0.01.
	Epsilon float64
	// PSIModerate and PSISignificant are the status thresholds: PSI below
	// PSIModerate is stable, below PSISignificant moderate, otherwise
	// significant. Defaults 0.1 and 0.2; PSIModerate <= PSISignificant.
	PSIModerate    float64
	PSISignificant float64
	// MinCount is the fewest non-null values the reference and the current
	// window must each hold for a drift verdict; below it the Status is
	// StatusUnknown. It also gates what the Collector exports for sensitive
	// features. Default 30; at least 2.
	MinCount int
	// MaxFeatures bounds the features a Monitor tracks. Default 256; at most
	// MaxFeatures (4096).
	MaxFeatures int
	// AutoReference, when positive, freezes the first AutoReference
	// non-null values observed for a feature that has no reference (nulls
	// seen meanwhile included) as its reference. Default 0: references are
	// set explicitly (SetReference, LoadReferences).
	AutoReference int
	// Seed seeds the random sources of the reservoirs (one PCG per feature,
	// keyed by Seed and the feature name) and of window merges, so a run is
	// reproducible. Default 0, which is a valid seed.
	Seed uint64
}

// DefaultOptions returns the defaults spelled out.
func DefaultOptions() Options {
	return Options{
		Window:         time.Hour,
		Buckets:        6,
		SampleSize:     DefaultSampleSize,
		Bins:           10,
		Epsilon:        1e-4,
		PSIModerate:    0.1,
		PSISignificant: 0.2,
		MinCount:       30,
		MaxFeatures:    256,
	}
}

func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	bad := func(field string, v any, want string) (Options, error) {
		return o, fmt.Errorf("%w: %s is %v; want %s", ErrInvalidOptions, field, v, want)
	}
	if o.Window < 0 {
		return bad("Window", o.Window, ">= 0")
	}
	if o.Window == 0 {
		o.Window = d.Window
	}
	switch {
	case o.Buckets < 0 || o.Buckets > MaxBuckets:
		return bad("Buckets", o.Buckets, fmt.Sprintf("0..MaxBuckets=%d", MaxBuckets))
	case o.Buckets == 0:
		o.Buckets = d.Buckets
	}
	if o.Window/time.Duration(o.Buckets) < time.Millisecond {
		return bad("Window/Buckets", o.Window/time.Duration(o.Buckets), ">= 1ms")
	}
	switch {
	case o.SampleSize < 0 || o.SampleSize > MaxSampleSize:
		return bad("SampleSize", o.SampleSize, fmt.Sprintf("0..MaxSampleSize=%d", MaxSampleSize))
	case o.SampleSize == 0:
		o.SampleSize = d.SampleSize
	}
	switch {
	case o.Bins < 0 || o.Bins == 1 || o.Bins > MaxBins:
		return bad("Bins", o.Bins, fmt.Sprintf("0 or 2..MaxBins=%d", MaxBins))
	case o.Bins == 0:
		o.Bins = d.Bins
	}
	switch {
	case !(o.Epsilon >= 0 && o.Epsilon < 0.01):
		return bad("Epsilon", o.Epsilon, "0 <= Epsilon < 0.01")
	case o.Epsilon == 0:
		o.Epsilon = d.Epsilon
	}
	if !(o.PSIModerate >= 0) || math.IsInf(o.PSIModerate, 0) {
		return bad("PSIModerate", o.PSIModerate, "finite and >= 0")
	}
	if !(o.PSISignificant >= 0) || math.IsInf(o.PSISignificant, 0) {
		return bad("PSISignificant", o.PSISignificant, "finite and >= 0")
	}
	if o.PSIModerate == 0 {
		o.PSIModerate = d.PSIModerate
	}
	if o.PSISignificant == 0 {
		o.PSISignificant = d.PSISignificant
	}
	if o.PSIModerate > o.PSISignificant {
		return bad("PSIModerate", o.PSIModerate, fmt.Sprintf("<= PSISignificant=%v", o.PSISignificant))
	}
	switch {
	case o.MinCount < 0 || o.MinCount == 1:
		return bad("MinCount", o.MinCount, "0 or >= 2")
	case o.MinCount == 0:
		o.MinCount = d.MinCount
	}
	switch {
	case o.MaxFeatures < 0 || o.MaxFeatures > MaxFeatures:
		return bad("MaxFeatures", o.MaxFeatures, fmt.Sprintf("0..MaxFeatures=%d", MaxFeatures))
	case o.MaxFeatures == 0:
		o.MaxFeatures = d.MaxFeatures
	}
	if o.AutoReference < 0 {
		return bad("AutoReference", o.AutoReference, ">= 0")
	}
	return o, nil
}
